"""The local function host (localdev.func_host) against a throwaway function app and Azurite.

The app is written into a temporary directory with its own host.json; the host runs in-process
on a free port and is exercised through HTTP (httpx) and real Storage queues.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.queue import QueueClient

from localdev.azurite import free_port, wait_for_port
from localdev.func_host import FunctionHost, compile_route

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-function-key"

HOST_JSON = {
    "version": "2.0",
    "extensions": {
        "http": {"routePrefix": "api"},
        "queues": {
            "messageEncoding": "base64",
            "batchSize": 4,
            "newBatchThreshold": 2,
            "maxPollingInterval": "00:00:00.200",
            "visibilityTimeout": "00:00:00",
            "maxDequeueCount": 3,
        },
    },
}


def _http(name: str, *, auth: str = "anonymous", route: str | None = None,
          methods: list[str] | None = None, out: str = "$return") -> dict[str, Any]:
    trigger: dict[str, Any] = {"type": "httpTrigger", "direction": "in", "name": "req",
                               "authLevel": auth}
    if route is not None:
        trigger["route"] = route
    if methods is not None:
        trigger["methods"] = methods
    return {"scriptFile": "__init__.py",
            "bindings": [trigger, {"type": "http", "direction": "out", "name": out}]}


# Each function: (function.json, __init__.py). Outputs go to <app root>/out.
APP: dict[str, tuple[dict[str, Any], str]] = {
    "fh_echo": (
        _http("fh_echo", route="items/{category}/{id:int?}", methods=["get", "post"]),
        """
        import json
        import azure.functions as func

        def main(req: func.HttpRequest) -> func.HttpResponse:
            payload = {
                "fn": "echo",
                "method": req.method,
                "route": dict(req.route_params),
                "params": dict(req.params),
                "body": req.get_body().decode(),
                "x_test": req.headers.get("X-Test"),
                "url": req.url,
            }
            return func.HttpResponse(json.dumps(payload), status_code=200,
                                     mimetype="application/json",
                                     headers={"X-Echo": "1"})
        """,
    ),
    "fh_literal": (
        _http("fh_literal", route="items/special", methods=["get"]),
        """
        import azure.functions as func

        def main(req: func.HttpRequest) -> str:
            return "literal"
        """,
    ),
    "fh_files": (
        _http("fh_files", route="files/{*path}"),
        """
        import azure.functions as func

        def main(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(req.route_params.get("path", "<none>"))
        """,
    ),
    "fh_secret": (
        _http("fh_secret", auth="function"),
        """
        import json
        import azure.functions as func

        def main(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            return func.HttpResponse(json.dumps({
                "function_name": context.function_name,
                "invocation_id": context.invocation_id,
                "directory": context.function_directory,
            }), mimetype="application/json")
        """,
    ),
    "fh_boom": (
        _http("fh_boom"),
        """
        import azure.functions as func

        def main(req: func.HttpRequest) -> func.HttpResponse:
            raise RuntimeError("boom")
        """,
    ),
    "fh_named_out": (
        _http("fh_named_out", out="res"),
        """
        import azure.functions as func

        def main(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
            res.set(func.HttpResponse("named", status_code=201))
        """,
    ),
    "fh_async": (
        _http("fh_async"),
        """
        import asyncio
        import azure.functions as func

        async def main(req: func.HttpRequest) -> func.HttpResponse:
            await asyncio.sleep(0)
            return func.HttpResponse("async ok")
        """,
    ),
    "fh_uses_core": (
        _http("fh_uses_core"),
        # Functions import the app's shared packages by absolute name (root on sys.path).
        """
        import azure.functions as func
        from fh_shared.helpers import shout

        def main(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(shout("shared"))
        """,
    ),
    "fh_entry": (
        dict(_http("fh_entry", route="entry/{who}"), scriptFile="handler.py",
             entryPoint="handle"),
        """
        import azure.functions as func

        def handle(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(f"hi {req.route_params['who']} from {__name__}")
        """,
    ),
    "fh_queue_echo": (
        {"scriptFile": "__init__.py", "bindings": [
            {"type": "queueTrigger", "direction": "in", "name": "msg",
             "queueName": "%FH_ECHO_QUEUE%", "connection": "AzureWebJobsStorage"}]},
        """
        import json
        from pathlib import Path
        import azure.functions as func

        OUT = Path(__file__).resolve().parent.parent / "out"

        def main(msg: func.QueueMessage) -> None:
            text = msg.get_body().decode()
            if text.startswith("fail-once") and msg.dequeue_count == 1:
                raise RuntimeError("first attempt fails")
            OUT.mkdir(exist_ok=True)
            record = {
                "id": msg.id,
                "body": text,
                "dequeue_count": msg.dequeue_count,
                "has_times": msg.insertion_time is not None
                and msg.expiration_time is not None,
                "pop_receipt": bool(msg.pop_receipt),
            }
            (OUT / f"queue-{msg.id}.json").write_text(json.dumps(record))
        """,
    ),
    "fh_always_fails": (
        {"bindings": [
            {"type": "queueTrigger", "direction": "in", "name": "msg",
             "queueName": "%FH_FAIL_QUEUE%"}]},
        """
        from pathlib import Path
        import azure.functions as func

        OUT = Path(__file__).resolve().parent.parent / "out"

        def main(msg: func.QueueMessage) -> None:
            OUT.mkdir(exist_ok=True)
            with (OUT / "failures.txt").open("a") as f:
                f.write(f"{msg.id} {msg.dequeue_count}\\n")
            raise ValueError("always fails")
        """,
    ),
    "fh_ticker": (
        {"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer",
                       "schedule": "%FH_TICK_SCHEDULE%"}]},
        """
        from pathlib import Path
        import azure.functions as func

        OUT = Path(__file__).resolve().parent.parent / "out"

        def main(timer: func.TimerRequest) -> None:
            OUT.mkdir(exist_ok=True)
            with (OUT / "ticks.txt").open("a") as f:
                f.write(f"{timer.past_due}\\n")
        """,
    ),
    "fh_on_startup": (
        {"bindings": [{"type": "timerTrigger", "direction": "in", "name": "timer",
                       "schedule": "0 0 0 1 1 *", "runOnStartup": True}]},
        """
        from pathlib import Path
        import azure.functions as func

        OUT = Path(__file__).resolve().parent.parent / "out"

        def main(timer: func.TimerRequest, context: func.Context) -> None:
            OUT.mkdir(exist_ok=True)
            (OUT / "startup.txt").write_text(context.function_name)
        """,
    ),
    "fh_unsupported": (
        {"bindings": [{"type": "blobTrigger", "direction": "in", "name": "blob",
                       "path": "x/{name}"}]},
        "def main(blob):\n    pass\n",
    ),
    "fh_disabled": (
        dict(_http("fh_disabled"), disabled=True),
        "def main(req):\n    return 'should not run'\n",
    ),
}


def write_app(root: Path, functions: dict[str, tuple[dict[str, Any], str]],
              host_json: dict[str, Any]) -> None:
    """Write host.json and one folder per function (function.json + __init__.py)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "host.json").write_text(json.dumps(host_json))
    for name, (spec, code) in functions.items():
        folder = root / name
        folder.mkdir()
        (folder / "function.json").write_text(json.dumps(spec))
        # A folder without __init__.py works too (namespace package), as with the real worker.
        script = str(spec.get("scriptFile") or "__init__.py")
        (folder / script).write_text(textwrap.dedent(code).lstrip())


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll until predicate() is truthy; fail after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def queues() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {"echo": f"fh-echo-{suffix}", "fail": f"fh-fail-{suffix}"}


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("funcapp")
    write_app(root, APP, HOST_JSON)
    shared = root / "fh_shared"
    shared.mkdir()
    (shared / "__init__.py").write_text("")
    (shared / "helpers.py").write_text("def shout(s: str) -> str:\n    return s.upper()\n")
    return root


@pytest.fixture(scope="module")
def host(app_root: Path, azurite_connection_string: str,
         queues: dict[str, str]) -> Iterator[FunctionHost]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FH_ECHO_QUEUE", queues["echo"])
        mp.setenv("FH_FAIL_QUEUE", queues["fail"])
        mp.setenv("FH_TICK_SCHEDULE", "* * * * * *")
        h = FunctionHost(app_root, host="127.0.0.1", port=0,
                         storage_connection_string=azurite_connection_string, function_key=KEY)
        h.start()
        try:
            yield h
        finally:
            h.stop(timeout=10)


@pytest.fixture(scope="module")
def client(host: FunctionHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url, timeout=10) as c:
        yield c


def queue_client(conn: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(conn, name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---------------------------------------------------------------------------------------------
# Loading


def test_loads_functions_and_reports_unloadable_ones(host: FunctionHost) -> None:
    assert {"fh_echo", "fh_secret", "fh_queue_echo", "fh_ticker"} <= set(host.functions)
    assert "blobTrigger" in host.load_errors["fh_unsupported"]
    assert host.load_errors["fh_disabled"] == "disabled"
    assert "fh_unsupported" not in host.functions


def test_route_templates_compile_with_precedence() -> None:
    literal = compile_route("items/special")[3]
    param = compile_route("items/{category}")[3]
    catch_all = compile_route("items/{*rest}")[3]
    assert literal < param < catch_all
    regex, groups, defaults, _ = compile_route("a/{x:int}/{y=7}")
    assert regex.match("/A/1") and regex.match("/a/1/2") and not regex.match("/a/1/2/3")
    assert [n for _, n in groups] == ["x", "y"] and defaults == {"y": "7"}


# ---------------------------------------------------------------------------------------------
# HTTP


def test_host_status(client: httpx.Client) -> None:
    r = client.get("/admin/host/status")
    assert r.status_code == 200 and r.json() == {"state": "Running"}


def test_route_params_query_body_and_headers(client: httpx.Client, host: FunctionHost) -> None:
    r = client.post("/api/items/books/42?q=hello%20world&q=again&empty=",
                    content=b"payload", headers={"X-Test": "yes"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-echo"] == "1"
    data = r.json()
    assert data["method"] == "POST"
    assert data["route"] == {"category": "books", "id": "42"}
    assert data["params"] == {"q": "hello world,again", "empty": ""}
    assert data["body"] == "payload"
    assert data["x_test"] == "yes"
    assert data["url"].endswith("/api/items/books/42?q=hello%20world&q=again&empty=")


def test_optional_param_and_case_insensitive_path(client: httpx.Client) -> None:
    r = client.get("/API/Items/Books/")
    assert r.status_code == 200
    assert r.json()["route"] == {"category": "Books"}


def test_percent_encoded_route_values_are_decoded(client: httpx.Client) -> None:
    r = client.get("/api/items/%2B14255550123")
    assert r.json()["route"] == {"category": "+14255550123"}
    r = client.get("/api/items/+14255550123")
    assert r.json()["route"] == {"category": "+14255550123"}


def test_literal_route_beats_parameter(client: httpx.Client) -> None:
    r = client.get("/api/items/special")
    assert r.status_code == 200
    assert r.text == "literal"
    assert r.headers["content-type"].startswith("text/plain")


def test_catch_all(client: httpx.Client) -> None:
    assert client.get("/api/files/a/b/c.txt").text == "a/b/c.txt"
    assert client.get("/api/files").text == "<none>"


def test_unknown_route_is_404_problem(client: httpx.Client) -> None:
    for path in ("/api/nope", "/nope", "/api", "/apix/fh_boom"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_wrong_method_is_405_problem(client: httpx.Client) -> None:
    r = client.delete("/api/items/books/1")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    # The literal route only allows GET, but the parameter route takes the POST.
    assert client.post("/api/items/special").json()["route"] == {"category": "special"}


def test_function_auth_level(client: httpx.Client) -> None:
    missing = client.get("/api/fh_secret")
    assert missing.status_code == 401 and missing.content == b""
    wrong = client.get("/api/fh_secret", headers={"x-functions-key": "nope"})
    assert wrong.status_code == 401 and wrong.content == b""
    assert client.get("/api/fh_secret", params={"code": "nope"}).status_code == 401

    by_header = client.get("/api/fh_secret", headers={"x-functions-key": KEY})
    assert by_header.status_code == 200
    by_query = client.get("/api/fh_secret", params={"code": KEY})
    assert by_query.status_code == 200
    ctx = by_header.json()
    assert ctx["function_name"] == "fh_secret"
    assert ctx["directory"].endswith("fh_secret")
    assert ctx["invocation_id"] != by_query.json()["invocation_id"]


def test_exception_is_500_with_empty_body(client: httpx.Client) -> None:
    r = client.get("/api/fh_boom")
    assert r.status_code == 500 and r.content == b""
    # The connection and the host survive.
    assert client.get("/admin/host/status").status_code == 200


def test_named_http_output_binding(client: httpx.Client) -> None:
    r = client.get("/api/fh_named_out")
    assert r.status_code == 201 and r.text == "named"


def test_async_function(client: httpx.Client) -> None:
    assert client.get("/api/fh_async").text == "async ok"


def test_function_imports_shared_package_from_app_root(client: httpx.Client) -> None:
    assert client.get("/api/fh_uses_core").text == "SHARED"


def test_script_file_and_entry_point(client: httpx.Client) -> None:
    assert client.get("/api/entry/ann").text == "hi ann from fh_entry.handler"


def test_disabled_function_is_not_routed(client: httpx.Client) -> None:
    assert client.get("/api/fh_disabled").status_code == 404


def test_keep_alive_and_concurrent_requests(host: FunctionHost) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with httpx.Client(base_url=host.base_url, timeout=10) as c:
                for i in range(20):
                    r = c.get(f"/api/items/c{i}")
                    assert r.status_code == 200 and r.json()["route"]["category"] == f"c{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors


# ---------------------------------------------------------------------------------------------
# Queues


def _records(app_root: Path) -> dict[str, dict[str, Any]]:
    out = app_root / "out"
    records = {}
    for p in out.glob("queue-*.json") if out.exists() else []:
        try:
            rec = json.loads(p.read_text())
        except ValueError:
            continue  # being written
        records[rec["body"]] = rec
    return records


def test_queue_trigger_decodes_base64(host: FunctionHost, app_root: Path, queues: dict[str, str],
                                      azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    wait_for(lambda: q.get_queue_properties(), what="queue created by the host")
    body = json.dumps({"to": "+14255550123", "note": "héllo"})
    sent = q.send_message(b64(body))
    rec = wait_for(lambda: _records(app_root).get(body), what="queue message processed")
    assert rec["id"] == sent.id
    assert rec["dequeue_count"] == 1
    assert rec["has_times"] and rec["pop_receipt"]
    # Deleted on success.
    wait_for(lambda: q.get_queue_properties().approximate_message_count == 0,
             what="message deleted")


def test_queue_retry_increments_dequeue_count(host: FunctionHost, app_root: Path,
                                              queues: dict[str, str],
                                              azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    wait_for(lambda: q.get_queue_properties(), what="queue created by the host")
    body = f"fail-once {uuid.uuid4()}"
    q.send_message(b64(body))
    rec = wait_for(lambda: _records(app_root).get(body), what="retried message processed")
    assert rec["dequeue_count"] == 2


def test_invalid_base64_goes_straight_to_poison(host: FunctionHost, app_root: Path,
                                               queues: dict[str, str],
                                               azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    poison = queue_client(azurite_connection_string, queues["echo"] + "-poison")
    wait_for(lambda: poison.get_queue_properties(), what="poison queue created by the host")
    text = f"not base64 {uuid.uuid4()}!"
    q.send_message(text)

    def poisoned() -> list[str]:
        return [m.content for m in poison.peek_messages(max_messages=32) if m.content == text]

    assert wait_for(poisoned, what="message in the poison queue") == [text]
    assert text not in _records(app_root)


def test_failing_message_lands_in_poison_after_max_dequeue_count(
    host: FunctionHost, app_root: Path, queues: dict[str, str], azurite_connection_string: str
) -> None:
    q = queue_client(azurite_connection_string, queues["fail"])
    poison = queue_client(azurite_connection_string, queues["fail"] + "-poison")
    wait_for(lambda: poison.get_queue_properties(), what="poison queue created by the host")
    original = b64(json.dumps({"job": str(uuid.uuid4())}))
    sent = q.send_message(original)

    def poisoned() -> list[str]:
        return [m.content for m in poison.peek_messages(max_messages=32)
                if m.content == original]

    assert wait_for(poisoned, what="message in the poison queue") == [original]
    attempts = [line.split() for line in (app_root / "out" / "failures.txt").read_text()
                .splitlines() if line.startswith(sent.id)]
    assert [int(count) for _, count in attempts] == [1, 2, 3]  # maxDequeueCount is 3
    wait_for(lambda: q.get_queue_properties().approximate_message_count == 0,
             what="original deleted from the queue")


def test_many_queue_messages_all_processed(host: FunctionHost, app_root: Path,
                                           queues: dict[str, str],
                                           azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    wait_for(lambda: q.get_queue_properties(), what="queue created by the host")
    bodies = [f"bulk {i} {uuid.uuid4()}" for i in range(25)]
    for body in bodies:
        q.send_message(b64(body))
    wait_for(lambda: set(bodies) <= set(_records(app_root)), what="all bulk messages processed")


# ---------------------------------------------------------------------------------------------
# Timers


def test_timer_fires_every_second(host: FunctionHost, app_root: Path) -> None:
    ticks = app_root / "out" / "ticks.txt"
    wait_for(lambda: ticks.exists() and len(ticks.read_text().splitlines()) >= 2,
             what="two timer ticks")
    assert set(ticks.read_text().split()) <= {"True", "False"}


def test_timer_run_on_startup(host: FunctionHost, app_root: Path) -> None:
    startup = app_root / "out" / "startup.txt"
    wait_for(startup.exists, what="runOnStartup invocation")
    assert startup.read_text() == "fh_on_startup"


# ---------------------------------------------------------------------------------------------
# Lifecycle and CLI (an HTTP-only app, no storage needed)

SLOW_APP: dict[str, tuple[dict[str, Any], str]] = {
    "fh_slow": (
        _http("fh_slow"),
        """
        import time
        from pathlib import Path
        import azure.functions as func

        ROOT = Path(__file__).resolve().parent.parent

        def main(req: func.HttpRequest) -> func.HttpResponse:
            (ROOT / "started").touch()
            deadline = time.monotonic() + 30
            while not (ROOT / "release").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            return func.HttpResponse("finished")
        """,
    ),
    "fh_hello": (
        _http("fh_hello", auth="function"),
        """
        import azure.functions as func

        def main(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("hello")
        """,
    ),
}


def test_stop_waits_for_in_flight_requests(tmp_path: Path) -> None:
    write_app(tmp_path, SLOW_APP, {"version": "2.0"})
    h = FunctionHost(tmp_path, port=0, storage_connection_string=None, function_key=KEY)
    h.start()
    result: dict[str, httpx.Response] = {}

    def call() -> None:
        result["r"] = httpx.get(f"{h.base_url}/api/fh_slow", timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    wait_for((tmp_path / "started").exists, what="slow function started")
    stopper = threading.Thread(target=h.stop, kwargs={"timeout": 30})
    stopper.start()
    wait_for(lambda: h._stop_event.is_set(), what="stop requested")
    assert stopper.is_alive()  # still waiting for the in-flight invocation
    (tmp_path / "release").touch()
    stopper.join(30)
    caller.join(30)
    assert not stopper.is_alive()
    assert result["r"].status_code == 200 and result["r"].text == "finished"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{h.base_url}/admin/host/status", timeout=2)


def test_cli_prints_key_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    write_app(tmp_path, SLOW_APP, {"version": "2.0"})
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_FUNCTION_KEY", "AzureWebJobsStorage")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.func_host", "--root", str(tmp_path),
         "--port", str(port)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert wait_for_port(port, 30), "the CLI host did not listen"
        r = httpx.get(f"http://127.0.0.1:{port}/api/fh_hello",
                      headers={"x-functions-key": "local-dev-key"}, timeout=10)
        assert r.status_code == 200 and r.text == "hello"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "local-dev-key" in out
    assert "fh_hello: httpTrigger" in out and "fh_slow: httpTrigger" in out
