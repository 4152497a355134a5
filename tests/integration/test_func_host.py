"""The local function host (localdev.func_host) against throwaway v2 function apps and Azurite.

Each app (a `function_app.py` with a `func.FunctionApp`, blueprints in a sub-package, a host.json)
is written into a temporary directory; the host runs in-process on a free port and is exercised
through HTTP and real Storage queues and tables.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.queue import QueueClient

from localdev.azurite import free_port, wait_for_port
from localdev.func_host import (
    TIMER_STATUS_TABLE,
    FunctionHost,
    FunctionLoadError,
    compile_route,
    resolve_constraint,
)
from tests.deadlines import wait_until

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-function-key"
MASTER = "test-master-key"
MAX_DEQUEUE_COUNT = 3

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
            "maxDequeueCount": MAX_DEQUEUE_COUNT,
        },
    },
}

# The app every module-scoped test shares: file path -> source. Outputs go to <app root>/out.
APP: dict[str, str] = {
    "function_app.py": """
        import asyncio
        import json

        import azure.functions as func

        from fh_blueprints import http_bp, trigger_bp
        from fh_shared.helpers import shout

        app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
        app.register_functions(http_bp)
        app.register_functions(trigger_bp)


        @app.route(route="items/{category}/{id:int?}", methods=["GET", "POST"])
        def fh_echo(req: func.HttpRequest) -> func.HttpResponse:
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
                                     mimetype="application/json", headers={"X-Echo": "1"})


        @app.route(route="items/special", methods=[func.HttpMethod.GET])
        def fh_literal(req: func.HttpRequest) -> str:
            return "literal"


        @app.route(route="files/{*path}")
        def fh_files(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(f"{req.method} {req.route_params.get('path', '<none>')}")


        @app.route(auth_level=func.AuthLevel.FUNCTION)
        def fh_secret(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
            return func.HttpResponse(json.dumps({
                "function_name": context.function_name,
                "invocation_id": context.invocation_id,
                "directory": context.function_directory,
            }), mimetype="application/json")


        @app.route(auth_level=func.AuthLevel.ADMIN)
        def fh_admin(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse("admin")


        @app.route()
        def fh_boom(req: func.HttpRequest) -> func.HttpResponse:
            raise RuntimeError("boom")


        @app.route(binding_arg_name="res")
        def fh_named_out(req: func.HttpRequest, res: func.Out[func.HttpResponse]) -> None:
            res.set(func.HttpResponse("named", status_code=201))


        @app.route()
        async def fh_async(req: func.HttpRequest) -> func.HttpResponse:
            await asyncio.sleep(0)
            return func.HttpResponse("async ok")


        # Functions import the app's shared packages by absolute name (root on sys.path).
        @app.route()
        def fh_uses_core(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(shout("shared"))


        @app.route(route="things/{n:int:min(1)}")
        def fh_things_by_number(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(f"number {req.route_params['n']}")


        @app.route(route="things/{name:alpha}")
        def fh_things_by_name(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(f"name {req.route_params['name']}")


        @app.route(route="bad/{x:slug}")
        def fh_bad_route(req: func.HttpRequest) -> str:
            return "never routed"


        @app.route()
        def fh_disabled(req: func.HttpRequest) -> str:
            return "should not run"


        @app.blob_trigger(arg_name="blob", path="x/{name}", connection="AzureWebJobsStorage")
        def fh_unsupported(blob: func.InputStream) -> None:
            pass
    """,
    "fh_shared/__init__.py": "",
    "fh_shared/helpers.py": """
        def shout(s: str) -> str:
            return s.upper()
    """,
    "fh_blueprints/__init__.py": """
        from fh_blueprints.http import bp as http_bp
        from fh_blueprints.triggers import bp as trigger_bp

        __all__ = ["http_bp", "trigger_bp"]
    """,
    "fh_blueprints/http.py": """
        import azure.functions as func

        bp = func.Blueprint()


        @bp.route(route="entry/{who}")
        def fh_entry(req: func.HttpRequest) -> func.HttpResponse:
            return func.HttpResponse(f"hi {req.route_params['who']} from {__name__}")
    """,
    "fh_blueprints/triggers.py": """
        import json
        from pathlib import Path

        import azure.functions as func

        OUT = Path(__file__).resolve().parent.parent / "out"
        bp = func.Blueprint()


        @bp.queue_trigger(arg_name="msg", queue_name="%FH_ECHO_QUEUE%",
                          connection="AzureWebJobsStorage")
        def fh_queue_echo(msg: func.QueueMessage) -> None:
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


        @bp.queue_trigger(arg_name="msg", queue_name="%FH_FAIL_QUEUE%",
                          connection="AzureWebJobsStorage")
        def fh_always_fails(msg: func.QueueMessage) -> None:
            OUT.mkdir(exist_ok=True)
            with (OUT / "failures.txt").open("a") as f:
                f.write(f"{msg.id} {msg.dequeue_count}\\n")
            raise ValueError("always fails")


        @bp.timer_trigger(arg_name="timer", schedule="%FH_TICK_SCHEDULE%")
        def fh_ticker(timer: func.TimerRequest) -> None:
            OUT.mkdir(exist_ok=True)
            with (OUT / "ticks.txt").open("a") as f:
                f.write(f"{timer.past_due}\\n")


        @bp.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *", run_on_startup=True)
        def fh_on_startup(timer: func.TimerRequest, context: func.Context) -> None:
            OUT.mkdir(exist_ok=True)
            (OUT / "startup.txt").write_text(context.function_name)
    """,
}


def write_app(root: Path, files: dict[str, str], host_json: dict[str, Any]) -> Path:
    """Write host.json and the app's files (paths relative to the root) into root."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "host.json").write_text(json.dumps(host_json))
    for rel, code in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code).lstrip())
    return root


def http_app(source: str) -> dict[str, str]:
    """A function_app.py whose `app` is anonymous by default, followed by `source`."""
    header = ("import azure.functions as func\n\n"
              "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n")
    return {"function_app.py": header + textwrap.dedent(source)}


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll until predicate() is truthy; fail after the deadline."""
    return wait_until(predicate, timeout, what or repr(predicate))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.fixture(scope="module")
def queues() -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    return {"echo": f"fh-echo-{suffix}", "fail": f"fh-fail-{suffix}"}


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_app(tmp_path_factory.mktemp("funcapp"), APP, HOST_JSON)


@pytest.fixture(scope="module")
def host(app_root: Path, azurite_connection_string: str,
         queues: dict[str, str]) -> Iterator[FunctionHost]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FH_ECHO_QUEUE", queues["echo"])
        mp.setenv("FH_FAIL_QUEUE", queues["fail"])
        mp.setenv("FH_TICK_SCHEDULE", "* * * * * *")
        mp.setenv("AzureWebJobs.fh_disabled.Disabled", "true")
        h = FunctionHost(app_root, host="127.0.0.1", port=0,
                         storage_connection_string=azurite_connection_string, function_key=KEY,
                         master_key=MASTER)
        h.start()
        try:
            yield h
        finally:
            h.stop(timeout=10)


@pytest.fixture(scope="module")
def client(host: FunctionHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.base_url, timeout=10) as c:
        yield c


@pytest.fixture
def start_host() -> Iterator[Callable[..., FunctionHost]]:
    """Start hosts for apps of the test's own; all are stopped at the end."""
    started: list[FunctionHost] = []

    def start(root: Path, **kwargs: Any) -> FunctionHost:
        h = FunctionHost(root, port=0, function_key=KEY, master_key=MASTER, **kwargs)
        started.append(h)
        h.start()
        return h

    yield start
    for h in started:
        h.stop(timeout=10)


def queue_client(conn: str, name: str) -> QueueClient:
    return QueueClient.from_connection_string(conn, name)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def queue_exists(client: QueueClient) -> bool:
    try:
        client.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


def peek(client: QueueClient) -> list[str]:
    """The visible messages' texts ([] while the host has not created the queue yet)."""
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


# ---------------------------------------------------------------------------------------------
# Loading


def test_indexes_the_function_app_and_reports_unloadable_functions(host: FunctionHost) -> None:
    assert {"fh_echo", "fh_secret", "fh_entry", "fh_queue_echo", "fh_ticker"} <= set(host.functions)
    assert "blobTrigger" in host.load_errors["fh_unsupported"]
    assert "unknown route constraint 'slug'" in host.load_errors["fh_bad_route"]
    assert host.load_errors["fh_disabled"] == "disabled"
    assert not {"fh_unsupported", "fh_bad_route", "fh_disabled"} & set(host.functions)


@pytest.mark.parametrize(("code", "error"), [
    ("import azure.functions as func\nraise RuntimeError('broken app')\n",
     "import of function_app failed: RuntimeError('broken app')"),
    ("import azure.functions as func\n", "exactly one FunctionApp at module level, found 0"),
    ("import azure.functions as func\napp = func.FunctionApp()\nother = func.FunctionApp()\n",
     "exactly one FunctionApp at module level, found 2"),
    ("import azure.functions as func\napp = func.FunctionApp()\n\n"
     "@app.function_name('twice')\n@app.route(route='a')\ndef one(req): return 'a'\n\n"
     "@app.function_name('twice')\n@app.route(route='b')\ndef two(req): return 'b'\n",
     "Function twice does not have a unique function name"),
], ids=["import-error", "no-app", "two-apps", "duplicate-name"])
def test_app_that_cannot_be_indexed_is_a_load_error(
    tmp_path: Path, start_host: Callable[..., FunctionHost], capsys: pytest.CaptureFixture[str],
    code: str, error: str,
) -> None:
    write_app(tmp_path, {"function_app.py": code}, {"version": "2.0"})
    h = start_host(tmp_path)
    assert error in h.load_errors["function_app.py"]
    assert h.functions == {}
    assert "function_app.py: NOT LOADED" in capsys.readouterr().out
    assert httpx.get(f"{h.base_url}/admin/host/status", timeout=10).status_code == 200


def test_script_file_name_setting(tmp_path: Path, start_host: Callable[..., FunctionHost],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    files = http_app("""
        @app.route()
        def hello(req: func.HttpRequest) -> str:
            return f"from {__name__}"
    """)
    write_app(tmp_path, {"main_app.py": files["function_app.py"]}, {"version": "2.0"})
    monkeypatch.setenv("PYTHON_SCRIPT_FILE_NAME", "main_app.py")
    h = start_host(tmp_path)
    assert httpx.get(f"{h.base_url}/api/hello", timeout=10).text == "from main_app"


def test_each_app_root_imports_its_own_packages(tmp_path: Path,
                                                start_host: Callable[..., FunctionHost]) -> None:
    hosts = []
    for name in ("first", "second"):
        root = write_app(tmp_path / name, {
            **http_app("""
                from fh_pkg.which import WHICH

                @app.route()
                def which(req: func.HttpRequest) -> str:
                    return WHICH
            """),
            "fh_pkg/__init__.py": "",
            "fh_pkg/which.py": f"WHICH = {name!r}\n",
        }, {"version": "2.0"})
        hosts.append(start_host(root))
    # The second host re-imported function_app and fh_pkg; the first keeps its own functions.
    assert [httpx.get(f"{h.base_url}/api/which", timeout=10).text for h in hosts] == [
        "first", "second"]


# ---------------------------------------------------------------------------------------------
# Routes and constraints


def test_route_templates_compile_with_precedence() -> None:
    literal = compile_route("items/special").rank
    constrained = compile_route("items/{id:int}").rank
    param = compile_route("items/{category}").rank
    catch_all = compile_route("items/{*rest}").rank
    assert literal < constrained < param < catch_all
    route = compile_route("a/{x:int}/{y=7}")
    assert route.match("/A/1") == {"x": "1", "y": "7"}
    assert route.match("/a/1/2") == {"x": "1", "y": "2"}
    assert route.match("/a/1/2/3") is None and route.match("/a/one") is None
    # Complex segments match right to left, as ASP.NET does.
    assert compile_route("f/{name}.{ext?}").match("/f/a.b.c") == {"name": "a.b", "ext": "c"}
    assert compile_route("f/{name}.{ext?}").match("/f/abc") == {"name": "abc"}
    # Braces in a regex constraint are doubled in a template.
    phone = compile_route(r"p/{n:regex(^\d{{3}}-\d{{4}}$)}")
    assert phone.match("/p/555-0123") == {"n": "555-0123"} and phone.match("/p/55-0123") is None


CONSTRAINTS: dict[str, tuple[list[str], list[str]]] = {
    # constraint: (values that match, values that do not)
    "int": (["123", "-123", "+7", " 42 ", "2147483647", "-2147483648"],
            ["2147483648", "1.0", "12a", "١٢", "1_000", "0x10"]),
    "long": (["9223372036854775807", "-9223372036854775808"], ["9223372036854775808", "1e3"]),
    "bool": (["true", "FALSE", " True "], ["yes", "1", "t"]),
    "datetime": (["2016-12-31", "2016-12-31 7:32pm", "2016-12-31T19:32:05.5Z", "12/31/2016",
                  "31 December 2016", "Dec 31, 2016", "19:32", "2016-12-31T10:00:00+01:00"],
                 ["2016-02-30", "2016-13-01", "24:00", "7", "tomorrow"]),
    "decimal": (["49.99", "-1,000.01", "1,000.01-", ".5", "5."],
                ["1e5", ".", ",5", "79228162514264337593543950336", "NaN"]),
    "double": (["1.234", "-1,001.01e8", "1e400", "NaN", "-Infinity"], ["1e", "e5", "1.2.3"]),
    "float": (["1.234", "-1,001.01e8"], ["abc"]),
    "guid": (["CD2C1638-1638-72D5-1638-DEADBEEF1638", "cd2c1638163872d51638deadbeef1638",
              "{CD2C1638-1638-72D5-1638-DEADBEEF1638}", "(cd2c1638-1638-72d5-1638-deadbeef1638)",
              "{0xCD2C1638,0x1638,0x72D5,{0x16,0x38,0xDE,0xAD,0xBE,0xEF,0x16,0x38}}"],
             ["CD2C1638-1638-72D5-1638-DEADBEEF163", "gd2c1638163872d51638deadbeef1638",
              "{CD2C1638-1638-72D5-1638-DEADBEEF1638", "CD2C1638_1638_72D5_1638_DEADBEEF1638"]),
    "alpha": (["Rick", "abcXYZ"], ["abc1", "Ärger", "a-b"]),
    "minlength(4)": (["Rick", "Rickard"], ["Ric"]),
    "maxlength(8)": (["MyFile", "12345678"], ["123456789"]),
    "length(12)": (["somefile.txt"], ["somefile.tx"]),
    "length(2,3)": (["ab", "abc", "😀"], ["a", "abcd"]),  # .NET counts UTF-16 code units
    "min(18)": (["18", "19"], ["17", "x"]),
    "max(120)": (["120", "-5"], ["121"]),
    "range(18,120)": (["18", "91", "120"], ["17", "121", "abc"]),
    "regex(^\\d{3}-\\d{4}$)": (["555-0123"], ["555-01234", "x555-0123"]),
    "regex(^a+$)": (["aaa", "AAA"], ["aab"]),  # case-insensitive, as the host compiles it
}


@pytest.mark.parametrize("constraint", list(CONSTRAINTS))
def test_route_constraints_follow_aspnet_core(constraint: str) -> None:
    check = resolve_constraint(constraint)
    good, bad = CONSTRAINTS[constraint]
    assert [v for v in good if not check(v)] == []
    assert [v for v in bad if check(v)] == []


def test_chained_constraints_and_invalid_ones() -> None:
    route = compile_route("n/{n:int:min(1):max(10)}")
    assert [v for v in ("0", "1", "10", "11", "x") if route.match(f"/n/{v}")] == ["1", "10"]
    for template in ("a/{x:slug}", "a/{x:int(5)}", "a/{x:min}", "a/{x:length(3,2)}",
                     "a/{x:regex(()}", "a//b", "a/{x}/{X}", "a/{*x}/b"):
        with pytest.raises(FunctionLoadError):
            compile_route(template)


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
    assert client.get("/api/files/a/b/c.txt").text == "GET a/b/c.txt"
    assert client.get("/api/files").text == "GET <none>"


def test_unknown_route_is_404_problem(client: httpx.Client) -> None:
    for path in ("/api/nope", "/nope", "/api", "/apix/fh_boom"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json() == {"type": "about:blank", "title": "Not Found", "status": 404}


def test_methods_are_route_constraints(client: httpx.Client) -> None:
    # Only GET and POST route to items/...: any other method finds no route (not 405).
    for method in ("DELETE", "TRACE", "PROPFIND"):
        r = client.request(method, "/api/items/books/1")
        assert r.status_code == 404, method
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == 404
        assert "allow" not in r.headers
    # The literal route only allows GET, but the parameter route takes the POST.
    assert client.post("/api/items/special").json()["route"] == {"category": "special"}
    # A route without `methods` takes every method, unknown ones included.
    for method in ("TRACE", "PROPFIND", "PATCH"):
        r = client.request(method, "/api/files/x")
        assert r.status_code == 200 and r.text == f"{method} x"
    assert client.request("PROPFIND", "/api/nope").status_code == 404


def test_value_failing_a_constraint_falls_through_to_another_route(client: httpx.Client) -> None:
    assert client.get("/api/things/5").text == "number 5"
    assert client.get("/api/things/abc").text == "name abc"
    for path in ("/api/things/0", "/api/things/abc1", "/api/things/-5"):
        assert client.get(path).status_code == 404, path  # neither min(1) nor alpha


def _unauthorized_problem(r: httpx.Response, detail_names: str) -> None:
    # Azure's own 401 may have an empty body; the local host says what is missing.
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (body["status"], body["title"]) == (401, "Unauthorized")
    assert "x-functions-key" in body["detail"] and "code" in body["detail"]
    assert detail_names in body["detail"]


def test_function_auth_level(client: httpx.Client, app_root: Path) -> None:
    _unauthorized_problem(client.get("/api/fh_secret"), "no function key")
    _unauthorized_problem(client.get("/api/fh_secret", headers={"x-functions-key": "nope"}),
                          "not a key of this app")
    _unauthorized_problem(client.get("/api/fh_secret", params={"code": "nope"}),
                          "not a key of this app")

    by_header = client.get("/api/fh_secret", headers={"x-functions-key": KEY})
    assert by_header.status_code == 200
    by_query = client.get("/api/fh_secret", params={"code": KEY})
    assert by_query.status_code == 200
    assert client.get("/api/fh_secret", params={"code": MASTER}).status_code == 200
    ctx = by_header.json()
    assert ctx["function_name"] == "fh_secret"
    assert ctx["directory"] == str(app_root)  # the v2 worker reports the app root
    assert ctx["invocation_id"] != by_query.json()["invocation_id"]


def test_admin_auth_level_needs_the_master_key(client: httpx.Client) -> None:
    assert client.get("/api/fh_admin").status_code == 401
    _unauthorized_problem(client.get("/api/fh_admin", headers={"x-functions-key": KEY}),
                          "master key")
    assert client.get("/api/fh_admin", params={"code": KEY}).status_code == 401
    r = client.get("/api/fh_admin", headers={"x-functions-key": MASTER})
    assert r.status_code == 200 and r.text == "admin"


def test_unauthorized_request_is_refused_before_its_body_is_read(host: FunctionHost) -> None:
    # A 90 MB body is announced but never sent: the 401 can only come if the host does not
    # wait for it.
    with socket.create_connection((host.host, host.port), timeout=20) as sock:
        sock.sendall(b"POST /api/fh_secret HTTP/1.1\r\nHost: local\r\n"
                     b"Content-Length: 90000000\r\n\r\n" + b"x" * 4096)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"HTTP/1.1 401 Unauthorized"
    assert b"Connection: close" in head


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


def test_blueprint_in_a_sub_package(client: httpx.Client) -> None:
    assert client.get("/api/entry/ann").text == "hi ann from fh_blueprints.http"


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
    wait_for(lambda: queue_exists(q), what="queue created by the host")
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
    wait_for(lambda: queue_exists(q), what="queue created by the host")
    body = f"fail-once {uuid.uuid4()}"
    q.send_message(b64(body))
    rec = wait_for(lambda: _records(app_root).get(body), what="retried message processed")
    assert rec["dequeue_count"] == 2


def test_invalid_base64_goes_straight_to_poison(host: FunctionHost, app_root: Path,
                                               queues: dict[str, str],
                                               azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    poison = queue_client(azurite_connection_string, queues["echo"] + "-poison")
    wait_for(lambda: queue_exists(poison), what="poison queue created by the host")
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
    wait_for(lambda: queue_exists(poison), what="poison queue created by the host")
    original = b64(json.dumps({"job": str(uuid.uuid4())}))
    sent = q.send_message(original)

    def poisoned() -> list[str]:
        return [m.content for m in poison.peek_messages(max_messages=32)
                if m.content == original]

    assert wait_for(poisoned, what="message in the poison queue") == [original]
    attempts = [line.split() for line in lines(app_root / "out" / "failures.txt")
                if line.startswith(sent.id)]
    assert [int(count) for _, count in attempts] == [1, 2, 3]  # maxDequeueCount is 3
    wait_for(lambda: q.get_queue_properties().approximate_message_count == 0,
             what="original deleted from the queue")


def test_many_queue_messages_all_processed(host: FunctionHost, app_root: Path,
                                           queues: dict[str, str],
                                           azurite_connection_string: str) -> None:
    q = queue_client(azurite_connection_string, queues["echo"])
    wait_for(lambda: queue_exists(q), what="queue created by the host")
    bodies = [f"bulk {i} {uuid.uuid4()}" for i in range(25)]
    for body in bodies:
        q.send_message(b64(body))
    wait_for(lambda: set(bodies) <= set(_records(app_root)), what="all bulk messages processed")


def test_message_already_past_max_dequeue_count_is_poisoned_without_running(
    tmp_path: Path, start_host: Callable[..., FunctionHost], azurite_connection_string: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"fh-crashed-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("FH_CRASHED_QUEUE", name)
    write_app(tmp_path, {"function_app.py": """
        from pathlib import Path
        import azure.functions as func

        app = func.FunctionApp()

        @app.queue_trigger(arg_name="msg", queue_name="%FH_CRASHED_QUEUE%",
                           connection="AzureWebJobsStorage")
        def fh_crashed(msg: func.QueueMessage) -> None:
            (Path(__file__).resolve().parent / "called").touch()
    """}, HOST_JSON)
    q = queue_client(azurite_connection_string, name)
    q.create_queue()
    original = b64("came back after crashes")
    q.send_message(original)
    # Received max + 1 times by hosts that died before finishing (never counted as failures).
    for _ in range(MAX_DEQUEUE_COUNT + 1):
        msg = q.receive_message(visibility_timeout=30)
        assert msg is not None
        q.update_message(msg, visibility_timeout=0)
    start_host(tmp_path, storage_connection_string=azurite_connection_string)
    poison = queue_client(azurite_connection_string, f"{name}-poison")
    wait_for(lambda: peek(poison) == [original], what="message in the poison queue")
    assert not (tmp_path / "called").exists()
    wait_for(lambda: q.get_queue_properties().approximate_message_count == 0,
             what="original deleted from the queue")


# ---------------------------------------------------------------------------------------------
# Timers


def test_timer_fires_every_second(host: FunctionHost, app_root: Path) -> None:
    ticks = app_root / "out" / "ticks.txt"
    wait_for(lambda: len(lines(ticks)) >= 2, what="two timer ticks")
    assert set(lines(ticks)) <= {"True", "False"}


def test_timer_run_on_startup(host: FunctionHost, app_root: Path) -> None:
    startup = app_root / "out" / "startup.txt"
    wait_for(startup.exists, what="runOnStartup invocation")
    assert startup.read_text() == "fh_on_startup"


def test_missed_timer_occurrence_runs_once_at_startup_as_past_due(
    tmp_path: Path, start_host: Callable[..., FunctionHost], azurite_connection_string: str,
) -> None:
    write_app(tmp_path, {"function_app.py": """
        from pathlib import Path
        import azure.functions as func

        app = func.FunctionApp()

        @app.timer_trigger(arg_name="timer", schedule="0 0 0 1 1 *")
        def fh_yearly(timer: func.TimerRequest) -> None:
            with (Path(__file__).resolve().parent / "runs.txt").open("a") as f:
                f.write(f"{timer.past_due}\\n")
    """}, {"version": "2.0"})
    table = TableClient.from_connection_string(azurite_connection_string, TIMER_STATUS_TABLE)
    first = start_host(tmp_path, storage_connection_string=azurite_connection_string)

    def status() -> dict[str, Any] | None:
        try:
            return dict(table.get_entity(first.host_id, "fh_yearly"))
        except ResourceNotFoundError:
            return None

    initial = wait_for(status, what="the initial schedule status")
    assert initial["Last"] == "" and datetime.fromisoformat(initial["Next"]) > datetime.now(UTC)
    assert first.stop(timeout=10)

    # The host was down over two New Years: the recorded Next is a year ago.
    year = datetime.now(UTC).year
    last = datetime(year - 2, 1, 1, tzinfo=UTC).isoformat()
    table.upsert_entity({**initial, "Last": last, "LastUpdated": last,
                         "Next": datetime(year - 1, 1, 1, tzinfo=UTC).isoformat()},
                        mode=UpdateMode.REPLACE)
    second = start_host(tmp_path, storage_connection_string=azurite_connection_string)
    assert second.host_id == first.host_id
    updated = wait_for(lambda: (s := status()) is not None and s["Last"] != last and s,
                       what="the status recorded after the past-due run")
    assert lines(tmp_path / "runs.txt") == ["True"]  # once, however many occurrences were missed
    assert datetime.fromisoformat(updated["Next"]) > datetime.now(UTC)


# ---------------------------------------------------------------------------------------------
# functionTimeout

TIMEOUT_APP = {"function_app.py": """
    import time
    from pathlib import Path
    import azure.functions as func

    ROOT = Path(__file__).resolve().parent
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


    def wait_for_release(name: str) -> None:
        deadline = time.monotonic() + 30
        while not (ROOT / name).exists() and time.monotonic() < deadline:
            time.sleep(0.01)


    @app.route()
    def fh_sleepy(req: func.HttpRequest) -> func.HttpResponse:
        wait_for_release("release-http")
        (ROOT / "http-finished").touch()
        return func.HttpResponse("late")


    @app.route()
    def fh_quick(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("quick")


    @app.queue_trigger(arg_name="msg", queue_name="%FH_TIMEOUT_QUEUE%",
                       connection="AzureWebJobsStorage")
    def fh_slow_queue(msg: func.QueueMessage) -> None:
        if msg.dequeue_count == 1:
            wait_for_release("release-queue")
            (ROOT / "queue-late").touch()
        else:
            (ROOT / f"queue-attempt-{msg.dequeue_count}").touch()
"""}


@pytest.fixture
def timeout_host(tmp_path: Path, start_host: Callable[..., FunctionHost],
                 azurite_connection_string: str,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[FunctionHost]:
    monkeypatch.setenv("FH_TIMEOUT_QUEUE", f"fh-timeout-{uuid.uuid4().hex[:10]}")
    write_app(tmp_path, TIMEOUT_APP, {**HOST_JSON, "functionTimeout": "00:00:01"})
    h = start_host(tmp_path, storage_connection_string=azurite_connection_string)
    try:
        yield h
    finally:
        # Let the functions the host stopped waiting for return before the host stops.
        (tmp_path / "release-http").touch()
        (tmp_path / "release-queue").touch()


def test_http_invocation_past_function_timeout_is_500(
    timeout_host: FunctionHost, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = http.client.HTTPConnection(timeout_host.host, timeout_host.port, timeout=30)
    try:
        conn.request("GET", "/api/fh_sleepy")
        r = conn.getresponse()
        assert (r.status, r.read()) == (500, b"")  # the function is still waiting for release
        assert "Timeout value of 00:00:01 was exceeded by function: Functions.fh_sleepy" in (
            caplog.text)
        (tmp_path / "release-http").touch()
        wait_for((tmp_path / "http-finished").exists, what="the late function to return")
        # Its late result wrote nothing: the next answer on the connection is the next request's.
        conn.request("GET", "/api/fh_quick")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"quick")
    finally:
        conn.close()


def test_queue_invocation_past_function_timeout_is_a_failed_attempt(
    timeout_host: FunctionHost, tmp_path: Path, azurite_connection_string: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = os.environ["FH_TIMEOUT_QUEUE"]
    q = queue_client(azurite_connection_string, name)
    wait_for(lambda: queue_exists(q), what="queue created by the host")
    q.send_message(b64("slow"))
    # The first attempt still runs; the message came back (visibilityTimeout 0) and ran again.
    wait_for((tmp_path / "queue-attempt-2").exists, what="the second attempt")
    assert "was exceeded by function: Functions.fh_slow_queue" in caplog.text
    (tmp_path / "release-queue").touch()
    wait_for((tmp_path / "queue-late").exists, what="the first attempt to return")
    wait_for(lambda: q.get_queue_properties().approximate_message_count == 0,
             what="message deleted by the second attempt")
    assert peek(queue_client(azurite_connection_string, f"{name}-poison")) == []
    assert not (tmp_path / "queue-attempt-3").exists()


# ---------------------------------------------------------------------------------------------
# Lifecycle and CLI (an HTTP-only app, no storage needed)

SLOW_APP = http_app("""
    import time
    from pathlib import Path

    ROOT = Path(__file__).resolve().parent


    @app.route()
    def fh_slow(req: func.HttpRequest) -> func.HttpResponse:
        (ROOT / "started").touch()
        deadline = time.monotonic() + 30
        while not (ROOT / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return func.HttpResponse("finished")


    @app.route(auth_level=func.AuthLevel.FUNCTION)
    def fh_hello(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("hello")
""")


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


def test_cli_prints_keys_serves_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    write_app(tmp_path, SLOW_APP, {"version": "2.0"})
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LOCAL_FUNCTION_KEY", "LOCAL_MASTER_KEY", "AzureWebJobsStorage")}
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
        r = httpx.get(f"http://127.0.0.1:{port}/api/fh_hello",
                      headers={"x-functions-key": "local-master-key"}, timeout=10)
        assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "Function key: local-dev-key" in out and "Master key: local-master-key" in out
    assert "fh_hello: httpTrigger" in out and "fh_slow: httpTrigger" in out

