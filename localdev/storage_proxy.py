"""A counting reverse proxy for Azurite's Table and Queue services.

One listener per upstream port (`table`, `queue`), each a threaded HTTP/1.1 server that forwards
every request unchanged to its upstream over a keep-alive connection of its own (one per client
connection), and tallies it by **(service, resource, method, kind)**:

- *resource* is the table or queue name (`""` for service-level requests such as listing queues);
  for an entity-group transaction (`POST /<account>/$batch`) the table named by the operations
  inside its multipart body;
- *kind* says what the request is. Tables: `batch` (an entity-group transaction; its operations
  are counted too), `entity` (a request on one entity: point read, replace/upsert, merge,
  delete), `query` (GET on a table), `insert` (POST to a table), `table` (create, delete or list
  tables), `service`. Queues: `send`, `receive`, `peek`, `clear` (on `/messages`), `delete`,
  `update` (on `/messages/<id>`), `properties` (`?comp=metadata`), `create`, `delete-queue`,
  `service`.

Each tally holds the request count, the response statuses (for a transaction also the statuses
inside its multipart answer, e.g. a 412 of a lost `If-Match`), the operations of transactions and
how many requests a fault hook answered. `snapshot()` and `reset()` are thread-safe.

An optional fault hook (a callable given each request's `RequestInfo`) can answer a request itself
with a `Fault` (e.g. a 503, or a dropped connection) instead of forwarding it; tests use it to
fail storage on purpose.

Bodies: a request body is read whole and forwarded with its own framing (`Content-Length`, or
re-chunked when it came chunked, so a Shared Key signature stays valid); `Expect: 100-continue`
is answered by the proxy. A response is forwarded with its `Content-Length`, or re-chunked when it
came chunked or close-delimited; large bodies are streamed.

In-process: `StorageProxy({"table": ("127.0.0.1", 10002), "queue": ("127.0.0.1", 10001)})` as a
context manager. As a process (so it does not share a measuring client's GIL):

    python -m localdev.storage_proxy --table 127.0.0.1:10002 --queue 127.0.0.1:10001 \\
        --table-port 0 --queue-port 0 --control-port 0

prints one JSON line with its ports (`{"table": ..., "queue": ..., "control": ...}`) and serves a
control API on the control port: `GET /health`, `GET /counts` (`?reset=1` also resets, atomically)
-> `{"rows": [...]}`, `POST /reset`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from localdev.azurite import connection_string

SERVICES = ("table", "queue", "blob")
# Never forwarded: they describe one connection, not the request (RFC 9110 section 7.6.1).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                         "te", "trailer", "upgrade", "expect", "proxy-authenticate",
                         "proxy-authorization"})
_STREAM_ABOVE = 1 << 20  # a response body longer than this is streamed, not buffered
_PIECE = 64 * 1024
_BATCH_REQUEST_LINE = re.compile(
    rb"^(GET|POST|PUT|PATCH|MERGE|DELETE) (\S+) HTTP/1\.[01]\r?$", re.MULTILINE)
_BATCH_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3})", re.MULTILINE)
_CLIENT_IDLE_TIMEOUT_S = 120.0
_UPSTREAM_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class RequestInfo:
    """One request as the proxy read it (what a fault hook decides on)."""

    service: str  # "table" | "queue" | "blob"
    method: str
    path: str  # without the query
    query: str
    resource: str
    kind: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    batch_ops: int = 0  # operations inside an entity-group transaction
    chunked: bool = False  # the body came with Transfer-Encoding: chunked


@dataclass(frozen=True)
class Fault:
    """An answer the proxy gives instead of forwarding the request."""

    status: int = 503
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    # Close the connection without any answer instead, as a server does whose keep-alive timeout
    # ran out while the request was on its way (the client sees "Connection aborted").
    drop: bool = False


FaultHook = Callable[[RequestInfo], "Fault | None"]


@dataclass(frozen=True)
class CountKey:
    """What a tally is kept per."""

    service: str
    resource: str
    method: str
    kind: str


@dataclass
class CountRow:
    """The tally of one key."""

    key: CountKey
    requests: int = 0
    batch_ops: int = 0
    faulted: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    inner_statuses: dict[int, int] = field(default_factory=dict)

    def copy(self) -> CountRow:
        """An independent copy."""
        return CountRow(self.key, self.requests, self.batch_ops, self.faulted,
                        dict(self.statuses), dict(self.inner_statuses))

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly form (the control API's row)."""
        return {"service": self.key.service, "resource": self.key.resource,
                "method": self.key.method, "kind": self.key.kind, "requests": self.requests,
                "batch_ops": self.batch_ops, "faulted": self.faulted,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "inner_statuses": {str(k): v for k, v in sorted(self.inner_statuses.items())}}

    @staticmethod
    def from_json(row: Mapping[str, Any]) -> CountRow:
        """The inverse of `as_json`."""
        return CountRow(CountKey(str(row["service"]), str(row["resource"]), str(row["method"]),
                                 str(row["kind"])),
                        int(row["requests"]), int(row["batch_ops"]), int(row["faulted"]),
                        {int(k): int(v) for k, v in row["statuses"].items()},
                        {int(k): int(v) for k, v in row["inner_statuses"].items()})


class Counts:
    """Thread-safe tallies of requests per `CountKey`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[CountKey, CountRow] = {}

    def record(self, info: RequestInfo, status: int, *, faulted: bool = False,
               inner_statuses: list[int] | None = None) -> None:
        """Count one request and its answer."""
        key = CountKey(info.service, info.resource, info.method, info.kind)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = CountRow(key)
            row.requests += 1
            row.batch_ops += info.batch_ops
            row.faulted += 1 if faulted else 0
            row.statuses[status] = row.statuses.get(status, 0) + 1
            for inner in inner_statuses or ():
                row.inner_statuses[inner] = row.inner_statuses.get(inner, 0) + 1

    def snapshot(self, reset: bool = False) -> list[CountRow]:
        """Copies of every tally (sorted by key); with `reset`, cleared in the same step."""
        with self._lock:
            rows = [r.copy() for r in self._rows.values()]
            if reset:
                self._rows.clear()
        return sorted(rows, key=lambda r: (r.key.service, r.key.resource, r.key.method,
                                           r.key.kind))

    def reset(self) -> None:
        """Forget every tally."""
        with self._lock:
            self._rows.clear()


def total_requests(rows: list[CountRow]) -> int:
    """All requests of a snapshot."""
    return sum(r.requests for r in rows)


# -- classifying a request ----------------------------------------------------------------------


def _table_name_of(url: bytes) -> str:
    """The table a request path (or a batch operation's absolute URL) names."""
    path = unquote(urlsplit(url.decode("latin-1")).path)
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2:  # /<account>/<table>(...)
        return parts[1].split("(", 1)[0]
    return ""


def _classify_table(method: str, parts: list[str], body: bytes) -> tuple[str, str, int]:
    """(resource, kind, batch operations) of a Table service request."""
    if not parts:
        return "", "service", 0
    head = parts[0]
    if head == "$batch":
        ops = _BATCH_REQUEST_LINE.findall(body)
        tables = sorted({_table_name_of(url) for _, url in ops})
        return "+".join(tables), "batch", len(ops)
    name, _, keys = head.partition("(")
    if name == "Tables":
        keys = keys.rstrip(")").strip("'")
        if not keys and method == "POST":
            try:
                keys = str(json.loads(body or b"{}").get("TableName", ""))
            except (ValueError, AttributeError):
                keys = ""
        return keys, "table", 0
    if keys.rstrip(")"):
        return name, "entity", 0
    return name, ("query" if method in ("GET", "HEAD") else "insert"), 0


def _classify_queue(method: str, parts: list[str], query: str) -> tuple[str, str]:
    """(resource, kind) of a Queue service request."""
    if not parts:
        return "", "service"
    name = parts[0]
    params = parse_qs(query)
    if len(parts) == 1:
        if params.get("comp") == ["metadata"]:
            return name, "properties" if method in ("GET", "HEAD") else "set-metadata"
        if params.get("comp") == ["acl"]:
            return name, "acl"
        return name, {"PUT": "create", "DELETE": "delete-queue"}.get(method, "queue")
    if len(parts) == 2:  # /<queue>/messages
        if method == "POST":
            return name, "send"
        if method == "DELETE":
            return name, "clear"
        return name, "peek" if params.get("peekonly") == ["true"] else "receive"
    return name, {"DELETE": "delete", "PUT": "update"}.get(method, "message")


def classify(service: str, method: str, target: str, headers: Mapping[str, str],
             body: bytes, chunked: bool = False) -> RequestInfo:
    """A request's `RequestInfo`: what the proxy counts it as."""
    split = urlsplit(target)
    # Azurite's URLs are path-style: the first segment is the account.
    parts = [p for p in unquote(split.path).split("/") if p][1:]
    ops = 0
    if service == "table":
        resource, kind, ops = _classify_table(method, parts, body)
    elif service == "queue":
        resource, kind = _classify_queue(method, parts, split.query)
    else:  # blob: the container, and what the `comp` parameter names (block, blocklist, ...)
        comp = parse_qs(split.query).get("comp", [""])[0]
        resource, kind = (parts[0] if parts else ""), comp or method.lower()
    return RequestInfo(service, method, split.path, split.query, resource, kind, headers, body,
                       ops, chunked)


# -- the proxy ----------------------------------------------------------------------------------


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: str, upstream: tuple[str, int],
                 proxy: StorageProxy) -> None:
        self.service = service
        self.upstream = upstream
        self.proxy = proxy
        super().__init__(address, _ProxyHandler)

    def server_bind(self) -> None:
        # Small request/answer exchanges: no Nagle delay on the accepted sockets either.
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle upstream connection was closed by the other side (or is unusable)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)  # an idle keep-alive socket is readable only at EOF (or on junk)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _CLIENT_IDLE_TIMEOUT_S
    server: _ProxyServer
    _upstream: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self._upstream is not None:
                self._upstream.close()
                self._upstream = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request would cost more than the forwarding

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_MERGE = do_OPTIONS = do_GET

    # -- request ------------------------------------------------------------------------------

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(65537)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline(65537)  # the CRLF after the chunk

    def _proxy(self) -> None:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if chunked:
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        listed = {h.strip().lower() for h in self.headers.get("Connection", "").split(",")}
        headers = [(k, v) for k, v in self.headers.items()
                   if k.lower() not in _HOP_BY_HOP and k.lower() not in listed]
        info = classify(self.server.service, self.command, self.path,
                        {k.lower(): v for k, v in headers}, body, chunked)
        proxy = self.server.proxy
        hook = proxy.fault
        fault = hook(info) if hook is not None else None
        if fault is not None:
            proxy.counts.record(info, 0 if fault.drop else fault.status, faulted=True)
            if fault.drop:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self._answer_fault(fault)  # counted before the answer is on its way
            return
        try:
            response = self._forward(headers, body, chunked)
        except (OSError, http.client.HTTPException) as exc:
            proxy.counts.record(info, 502)
            self.close_connection = True
            self._answer_fault(Fault(502, f"storage proxy: upstream failed: {exc!r}".encode()))
            return
        batch = info.kind == "batch"

        def counted(answer: bytes) -> None:
            # Before the client has the answer: once it does, the request is in the counts.
            proxy.counts.record(info, response.status, inner_statuses=[
                int(s) for s in _BATCH_STATUS_LINE.findall(answer)] if batch else None)

        try:
            self._relay(response, counted, buffer_all=batch)
        except (OSError, http.client.HTTPException):
            self._drop_upstream()
            self.close_connection = True  # the client saw a truncated answer: close it too

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """The upstream connection and whether it is reused."""
        if self._upstream is not None and not _dropped(self._upstream):
            return self._upstream, True
        self._drop_upstream()
        host, port = self.server.upstream
        conn = http.client.HTTPConnection(host, port, timeout=_UPSTREAM_TIMEOUT_S)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._upstream = conn
        return conn, False

    def _drop_upstream(self) -> None:
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _forward(self, headers: list[tuple[str, str]], body: bytes, chunked: bool
                 ) -> http.client.HTTPResponse:
        for attempt in (1, 2):
            conn, reused = self._connection()
            try:
                conn.putrequest(self.command, self.path, skip_host=True,
                                skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if chunked:
                    conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders(message_body=body if (body or chunked) else None,
                                encode_chunked=chunked)
                return conn.getresponse()
            except ConnectionError:  # RemoteDisconnected, a reset or a broken pipe
                # A reused connection the upstream closed as we sent: nothing was processed
                # (no answer started), so the request is sent once more on a new connection.
                self._drop_upstream()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    # -- response -----------------------------------------------------------------------------

    def _relay(self, response: http.client.HTTPResponse, counted: Callable[[bytes], None], *,
               buffer_all: bool) -> None:
        """Forward the upstream's answer, calling `counted` (with the body when it is read
        whole) before the first byte goes to the client."""
        no_body = (self.command == "HEAD" or response.status in (204, 304)
                   or 100 <= response.status < 200)
        length_header = response.getheader("Content-Length")
        lines = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
        listed = {h.strip().lower() for h in (response.getheader("Connection") or "").split(",")}
        for name, value in response.getheaders():
            low = name.lower()
            if low in _HOP_BY_HOP or low in listed or low == "content-length":
                continue
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if self.close_connection:
            lines.append(b"Connection: close\r\n")
        if no_body:
            if length_header is not None:
                lines.append(f"Content-Length: {length_header}\r\n".encode("latin-1"))
            response.read()
            self._after(response)
            counted(b"")
            self.wfile.write(b"".join(lines) + b"\r\n")
            return
        length = int(length_header) if length_header is not None and not response.chunked \
            else None
        if buffer_all or (length is not None and length <= _STREAM_ABOVE):
            body = response.read()
            self._after(response)
            counted(body)
            lines.append(f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1"))
            self.wfile.write(b"".join(lines) + body)
            return
        counted(b"")
        if length is not None:
            lines.append(f"Content-Length: {length}\r\n\r\n".encode("latin-1"))
            self.wfile.write(b"".join(lines))
            for piece in iter(lambda: response.read1(_PIECE), b""):
                self.wfile.write(piece)
            self._after(response)
            return
        # Chunked or close-delimited: re-chunked to the client, streamed.
        lines.append(b"Transfer-Encoding: chunked\r\n\r\n")
        self.wfile.write(b"".join(lines))
        for piece in iter(lambda: response.read1(_PIECE), b""):
            self.wfile.write(f"{len(piece):X}\r\n".encode("ascii") + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self._after(response)

    def _after(self, response: http.client.HTTPResponse) -> None:
        if response.will_close:
            self._drop_upstream()

    def _answer_fault(self, fault: Fault) -> None:
        lines = [f"HTTP/1.1 {fault.status} {http.client.responses.get(fault.status, 'Error')}"
                 "\r\n".encode("latin-1")]
        names = {k.lower() for k in fault.headers}
        for name, value in fault.headers.items():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        if "content-type" not in names and fault.body:
            lines.append(b"Content-Type: text/plain; charset=utf-8\r\n")
        if self.close_connection:
            lines.append(b"Connection: close\r\n")
        lines.append(f"Content-Length: {len(fault.body)}\r\n\r\n".encode("latin-1"))
        self.wfile.write(b"".join(lines) + (b"" if self.command == "HEAD" else fault.body))


class StorageProxy:
    """Counting reverse proxies in front of storage services, one listener per service.

    `upstreams` maps a service (`table`, `queue`) to its (host, port); `ports` optionally fixes
    the listening ports (0 or missing: a free one). `fault` may be set at any time.
    """

    def __init__(self, upstreams: Mapping[str, tuple[str, int]], *, host: str = "127.0.0.1",
                 ports: Mapping[str, int] | None = None, fault: FaultHook | None = None) -> None:
        unknown = set(upstreams) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {SERVICES}")
        self.host = host
        self.upstreams = dict(upstreams)
        self.fault: FaultHook | None = fault
        self.counts = Counts()
        self._wanted = dict(ports or {})
        self._servers: dict[str, _ProxyServer] = {}
        self._threads: list[threading.Thread] = []

    @property
    def ports(self) -> dict[str, int]:
        """The listening port of each service (once started)."""
        return {name: int(s.server_address[1]) for name, s in self._servers.items()}

    def connection_string(self) -> str:
        """A storage connection string (Azurite's development account) through the proxy."""
        ports = self.ports
        return connection_string(ports["queue"], ports["table"], self.host,
                                 blob_port=ports.get("blob"))

    def snapshot(self, reset: bool = False) -> list[CountRow]:
        """The tallies so far (see `Counts.snapshot`)."""
        return self.counts.snapshot(reset)

    def reset(self) -> None:
        """Forget every tally."""
        self.counts.reset()

    def start(self) -> None:
        """Bind every listener and serve each from a daemon thread."""
        for service, upstream in self.upstreams.items():
            server = _ProxyServer((self.host, self._wanted.get(service, 0)), service, upstream,
                                  self)
            self._servers[service] = server
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"storage-proxy-{service}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop listening (connections being served are abandoned: daemon threads)."""
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> StorageProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- control API (the CLI) ----------------------------------------------------------------------


class _ControlServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], proxy: StorageProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _ControlHandler)


class _ControlHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ControlServer

    @property
    def proxy(self) -> StorageProxy:
        return self.server.proxy

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        if split.path == "/health":
            self._json(200, {"status": "ok", "ports": self.proxy.ports})
        elif split.path == "/counts":
            reset = parse_qs(split.query).get("reset") == ["1"]
            rows = self.proxy.snapshot(reset=reset)
            self._json(200, {"rows": [r.as_json() for r in rows]})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if urlsplit(self.path).path == "/reset":
            self.proxy.reset()
            self._json(200, {"reset": True})
        else:
            self._json(404, {"error": "not found"})


def control_server(proxy: StorageProxy, host: str, port: int) -> ThreadingHTTPServer:
    """A control API server for `proxy` (not started)."""
    return _ControlServer((host, port), proxy)


def _address(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host or "127.0.0.1"), int(port)


def parse_rows(payload: Mapping[str, Any]) -> list[CountRow]:
    """The rows of a control API `GET /counts` answer."""
    return [CountRow.from_json(r) for r in payload["rows"]]


def main(argv: list[str] | None = None) -> int:
    """Run the proxy until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m localdev.storage_proxy",
                                     description="Counting reverse proxy for Azurite.")
    parser.add_argument("--host", default="127.0.0.1", help="where to listen")
    parser.add_argument("--table", type=_address, help="the Table service upstream host:port")
    parser.add_argument("--queue", type=_address, help="the Queue service upstream host:port")
    parser.add_argument("--blob", type=_address, help="the Blob service upstream host:port")
    parser.add_argument("--table-port", type=int, default=0)
    parser.add_argument("--queue-port", type=int, default=0)
    parser.add_argument("--blob-port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    upstreams = {name: getattr(args, name) for name in SERVICES if getattr(args, name)}
    if not upstreams:
        parser.error("give at least one of --table and --queue")
    proxy = StorageProxy(upstreams, host=args.host,
                         ports={"table": args.table_port, "queue": args.queue_port,
                                "blob": args.blob_port})
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    proxy.start()
    control = control_server(proxy, args.host, args.control_port)
    threading.Thread(target=control.serve_forever, kwargs={"poll_interval": 0.2},
                     name="storage-proxy-control", daemon=True).start()
    print(json.dumps({**proxy.ports, "control": int(control.server_address[1])}), flush=True)
    while not stopping.wait(0.5):
        pass
    control.shutdown()
    control.server_close()
    proxy.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
