"""localdev.storage_proxy against the session's real Azurite: what goes through it arrives (read
back with clients that bypass the proxy), every request is counted exactly by table or queue,
method and kind, and a fault hook answers without forwarding.

The proxied clients are built with `retry_total=0`, so one SDK call is exactly the requests the
SDK makes for it and nothing is retried behind the test's back.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.data.tables import TableServiceClient, TableTransactionError, UpdateMode
from azure.storage.queue import QueueClient, QueueServiceClient

from localdev.azurite import connection_string
from localdev.storage_proxy import (
    CountRow,
    Fault,
    RequestInfo,
    StorageProxy,
    parse_rows,
    total_requests,
)
from tests.integration.conftest import storage_endpoints

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def upstreams(azurite_connection_string: str) -> dict[str, tuple[str, int]]:
    return storage_endpoints(azurite_connection_string)


@pytest.fixture
def proxy(upstreams: dict[str, tuple[str, int]]) -> Iterator[StorageProxy]:
    with StorageProxy(upstreams) as running:
        yield running


def _tally(rows: list[CountRow], resource: str) -> dict[tuple[str, str], int]:
    """(method, kind) -> requests, for one table or queue."""
    return {(r.key.method, r.key.kind): r.requests for r in rows if r.key.resource == resource}


def _row(rows: list[CountRow], resource: str, method: str, kind: str) -> CountRow:
    return next(r for r in rows if (r.key.resource, r.key.method, r.key.kind)
                == (resource, method, kind))


def test_table_operations_and_transactions_are_forwarded_and_counted(
        proxy: StorageProxy, azurite_connection_string: str) -> None:
    name = f"Proxy{uuid.uuid4().hex[:12]}"
    tables = TableServiceClient.from_connection_string(proxy.connection_string(), retry_total=0)
    direct = TableServiceClient.from_connection_string(azurite_connection_string)
    table = tables.create_table(name)
    table.create_entity({"PartitionKey": "p", "RowKey": "1", "Value": 1})
    assert table.get_entity("p", "1")["Value"] == 1
    table.upsert_entity({"PartitionKey": "p", "RowKey": "1", "Value": 2}, mode=UpdateMode.REPLACE)
    table.submit_transaction([
        ("create", {"PartitionKey": "p", "RowKey": "2", "Value": 20}),
        ("upsert", {"PartitionKey": "p", "RowKey": "3", "Value": 30}),
        ("update", {"PartitionKey": "p", "RowKey": "1", "Extra": "x"}, {"mode": "merge"}),
    ])
    # A transaction of 100 wide entities: a request body and an answer of over 100 KB.
    wide = "w" * 2000
    table.submit_transaction([("create", {"PartitionKey": "q", "RowKey": f"{i:03d}",
                                          "Wide": wide}) for i in range(100)])
    with pytest.raises(TableTransactionError):  # the row exists: the changeset fails as a whole
        table.submit_transaction([("create", {"PartitionKey": "p", "RowKey": "2"}),
                                  ("create", {"PartitionKey": "p", "RowKey": "4"})])
    found = {e["RowKey"]: e for e in table.query_entities("PartitionKey eq 'p'")}
    assert len(list(table.query_entities("PartitionKey eq 'q'"))) == 100
    table.delete_entity("p", "3")

    # What Azurite holds, read without the proxy.
    seen = {e["RowKey"]: dict(e) for e in direct.get_table_client(name).list_entities()}
    assert seen["1"]["Value"] == 2 and seen["1"]["Extra"] == "x"
    assert seen["2"]["Value"] == 20
    assert "3" not in seen and "4" not in seen
    assert sum(1 for k in seen if k.isdigit() and len(k) == 3) == 100
    assert all(seen[f"{i:03d}"]["Wide"] == wide for i in range(100))
    assert set(found) == {"1", "2", "3"}

    tables.delete_table(name)
    with pytest.raises(ResourceNotFoundError):
        direct.get_table_client(name).get_entity("p", "1")

    rows = proxy.snapshot()
    assert _tally(rows, name) == {
        ("POST", "table"): 1, ("DELETE", "table"): 1,
        ("POST", "insert"): 1, ("GET", "entity"): 1, ("PUT", "entity"): 1,
        ("DELETE", "entity"): 1, ("POST", "batch"): 3, ("GET", "query"): 2,
    }
    assert {r.key.resource for r in rows} == {name}
    batch = _row(rows, name, "POST", "batch")
    assert batch.batch_ops == 3 + 100 + 2
    assert batch.statuses == {202: 3}
    assert sum(batch.inner_statuses.values()) == 3 + 100 + 1  # a failed changeset answers once
    assert 409 in batch.inner_statuses
    assert _row(rows, name, "POST", "table").statuses == {201: 1}


def test_queue_operations_are_forwarded_and_counted(proxy: StorageProxy,
                                                    azurite_connection_string: str) -> None:
    name = f"proxy-{uuid.uuid4().hex[:12]}"
    queues = QueueServiceClient.from_connection_string(proxy.connection_string(), retry_total=0)
    direct = QueueClient.from_connection_string(azurite_connection_string, name)
    queue = queues.create_queue(name)
    for text in ("one", "two", "three"):
        queue.send_message(text)
    assert [m.content for m in queue.peek_messages(max_messages=5)] == ["one", "two", "three"]
    first = queue.receive_message(visibility_timeout=30)
    assert first is not None and first.content == "one"
    queue.delete_message(first)
    second = queue.receive_message(visibility_timeout=30)
    assert second is not None and second.content == "two"
    queue.update_message(second, content="two again", visibility_timeout=0)
    assert queue.get_queue_properties().approximate_message_count == 2
    assert sorted(m.content for m in direct.peek_messages(max_messages=5)) == ["three",
                                                                                "two again"]
    queue.clear_messages()
    assert direct.get_queue_properties().approximate_message_count == 0
    queue.delete_queue()

    rows = proxy.snapshot()
    assert _tally(rows, name) == {
        ("PUT", "create"): 1, ("POST", "send"): 3, ("GET", "peek"): 1, ("GET", "receive"): 2,
        ("DELETE", "delete"): 1, ("PUT", "update"): 1, ("GET", "properties"): 1,
        ("DELETE", "clear"): 1, ("DELETE", "delete-queue"): 1,
    }
    assert total_requests(rows) == 12
    assert _row(rows, name, "POST", "send").statuses == {201: 3}


def test_a_chunked_request_body_is_forwarded_with_its_signature_intact(
        proxy: StorageProxy, azurite_connection_string: str) -> None:
    name = f"proxy-{uuid.uuid4().hex[:12]}"
    seen: list[RequestInfo] = []
    proxy.fault = lambda info: seen.append(info) or None  # an observer that never faults
    queue = QueueClient.from_connection_string(proxy.connection_string(), name, retry_total=0)
    queue.create_queue()
    # An iterable body: the SDK's transport sends it chunked (and signs no Content-Length).
    request = HttpRequest("POST", f"{queue.url}/messages", content=iter([
        b"<QueueMessage><MessageText>", b"chunked ", b"body", b"</MessageText></QueueMessage>"]))
    response = queue._client.send_request(request)
    assert response.status_code == 201, response.text()
    assert [i.chunked for i in seen] == [False, True]
    direct = QueueClient.from_connection_string(azurite_connection_string, name)
    assert [m.content for m in direct.peek_messages()] == ["chunked body"]
    direct.delete_queue()


def test_the_fault_hook_answers_without_forwarding(proxy: StorageProxy,
                                                   azurite_connection_string: str) -> None:
    table_name = f"Proxy{uuid.uuid4().hex[:12]}"
    queue_name = f"proxy-{uuid.uuid4().hex[:12]}"
    direct_tables = TableServiceClient.from_connection_string(azurite_connection_string)
    direct_tables.create_table(table_name)
    direct_queue = QueueClient.from_connection_string(azurite_connection_string, queue_name)
    direct_queue.create_queue()
    decided: list[tuple[str, str, str]] = []

    def hook(info: RequestInfo) -> Fault | None:
        decided.append((info.resource, info.method, info.kind))
        if info.kind in ("insert", "send"):
            return Fault(503, b'{"odata.error": {"code": "ServerBusy"}}',
                         {"Content-Type": "application/json"})
        return None

    proxy.fault = hook
    table = TableServiceClient.from_connection_string(
        proxy.connection_string(), retry_total=0).get_table_client(table_name)
    queue = QueueClient.from_connection_string(proxy.connection_string(), queue_name,
                                               retry_total=0)
    with pytest.raises(HttpResponseError) as failed_insert:
        table.create_entity({"PartitionKey": "p", "RowKey": "1"})
    assert failed_insert.value.status_code == 503
    with pytest.raises(HttpResponseError) as failed_send:
        queue.send_message("never stored")
    assert failed_send.value.status_code == 503
    with pytest.raises(ResourceNotFoundError):  # forwarded: a point read is not faulted
        table.get_entity("p", "1")
    assert direct_queue.get_queue_properties().approximate_message_count == 0
    assert list(direct_tables.get_table_client(table_name).list_entities()) == []

    proxy.fault = None
    table.create_entity({"PartitionKey": "p", "RowKey": "1"})
    queue.send_message("stored")
    assert [m.content for m in direct_queue.peek_messages()] == ["stored"]
    assert decided == [(table_name, "POST", "insert"), (queue_name, "POST", "send"),
                       (table_name, "GET", "entity")]

    rows = proxy.snapshot()
    insert = _row(rows, table_name, "POST", "insert")
    assert (insert.requests, insert.faulted, insert.statuses) == (2, 1, {503: 1, 201: 1})
    send = _row(rows, queue_name, "POST", "send")
    assert (send.requests, send.faulted, send.statuses) == (2, 1, {503: 1, 201: 1})
    assert _row(rows, table_name, "GET", "entity").statuses == {404: 1}
    direct_tables.delete_table(table_name)
    direct_queue.delete_queue()


def test_snapshot_with_reset_starts_a_new_count(proxy: StorageProxy) -> None:
    name = f"proxy-{uuid.uuid4().hex[:12]}"
    queue = QueueClient.from_connection_string(proxy.connection_string(), name, retry_total=0)
    queue.create_queue()
    assert total_requests(proxy.snapshot(reset=True)) == 1
    assert proxy.snapshot() == []
    queue.send_message("x")
    assert _tally(proxy.snapshot(), name) == {("POST", "send"): 1}
    queue.delete_queue()


class _Upstream(BaseHTTPRequestHandler):
    """A stand-in upstream whose answers Azurite never gives: chunked and large bodies."""

    protocol_version = "HTTP/1.1"
    big = bytes(range(256)) * 8192  # 2 MiB: above the proxy's buffering limit

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.endswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for piece in (b"first,", b"second,", self.big):
                self.wfile.write(f"{len(piece):X}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.big)))
            self.end_headers()
            self.wfile.write(self.big)


def test_chunked_and_large_answers_are_streamed_on_a_kept_alive_connection() -> None:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    upstream.daemon_threads = True
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    try:
        port = int(upstream.server_address[1])
        with StorageProxy({"queue": ("127.0.0.1", port)}) as running:
            conn = http.client.HTTPConnection("127.0.0.1", running.ports["queue"], timeout=30)
            conn.request("GET", "/devstoreaccount1/q/messages/chunked")
            first = conn.getresponse()
            assert first.status == 200 and first.getheader("Transfer-Encoding") == "chunked"
            assert first.read() == b"first,second," + _Upstream.big
            sock = conn.sock
            conn.request("GET", "/devstoreaccount1/q/messages/large")
            second = conn.getresponse()
            assert second.getheader("Content-Length") == str(len(_Upstream.big))
            assert second.read() == _Upstream.big
            assert conn.sock is sock  # the same client connection served both
            conn.close()
            assert _tally(running.snapshot(), "q") == {("GET", "message"): 2}
    finally:
        upstream.shutdown()
        upstream.server_close()


def test_the_command_line_proxy_serves_its_counts(upstreams: dict[str, tuple[str, int]]) -> None:
    table, queue_upstream = upstreams["table"], upstreams["queue"]
    args = [sys.executable, "-m", "localdev.storage_proxy",
            "--table", f"{table[0]}:{table[1]}",
            "--queue", f"{queue_upstream[0]}:{queue_upstream[1]}"]
    child = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        ports = json.loads(child.stdout.readline())
        conn = connection_string(ports["queue"], ports["table"])
        name = f"proxy-{uuid.uuid4().hex[:12]}"
        queue = QueueClient.from_connection_string(conn, name, retry_total=0)
        queue.create_queue()
        queue.send_message("x")
        with httpx.Client(base_url=f"http://127.0.0.1:{ports['control']}", timeout=10) as api:
            assert api.get("/health").json()["status"] == "ok"
            rows = parse_rows(api.get("/counts", params={"reset": "1"}).json())
            assert _tally(rows, name) == {("PUT", "create"): 1, ("POST", "send"): 1}
            assert api.get("/counts").json() == {"rows": []}
            queue.delete_queue()
            assert api.post("/reset").status_code == 200
            assert api.get("/counts").json() == {"rows": []}
    finally:
        child.terminate()
        child.wait(timeout=10)
