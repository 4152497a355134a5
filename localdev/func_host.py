"""A local Azure Functions host for the folder-per-function Python app (programming model v1).

Azure Functions Core Tools cannot be installed here, so this module stands in for `func start`:
it reads `host.json` and every `<folder>/function.json` under the app root and runs the
functions in-process with the semantics of the Functions runtime v4 host:

- HTTP triggers under `extensions.http.routePrefix` (default `api`), route templates
  (`{name}`, `{name?}`, `{name:constraint}`, `{name=default}`, `{*rest}`), `methods`, and
  `authLevel` (`function`/`admin`: header `x-functions-key` or query `code`, else 401);
- queue triggers with `extensions.queues` (`batchSize`, `newBatchThreshold`,
  `visibilityTimeout`, `maxDequeueCount`, `maxPollingInterval`, `messageEncoding`) and the
  `<queue>-poison` queue;
- timer triggers with 6-field NCRONTAB (or 5-field, or a `hh:mm:ss` TimeSpan) and `runOnStartup`;
- `%SETTING%` indirection in queue names and schedules, resolved from the environment.

Functions receive real `azure.functions` objects (`HttpRequest`, `QueueMessage`,
`TimerRequest`, `Context`). Each function folder is imported as a package named after the
folder, with the app root first on `sys.path` (as the Python worker does), so functions can
`from sms_core import ...`.

Run it with `python -m localdev.func_host --root . --port 7071`, or embed `FunctionHost` in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hmac
import http
import importlib
import inspect
import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote

import azure.functions as func
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.functions.timer import TimerRequest as FuncTimerRequest

log = logging.getLogger("localdev.func_host")

DEFAULT_FUNCTION_KEY = "local-dev-key"
"""The key `authLevel: function` routes accept locally unless LOCAL_FUNCTION_KEY is set.

It is a fixed, documented development value, not a secret: the local host only listens on
loopback by default.
"""

DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"

# The real host receives with a 10-minute invisibility and renews it while the function runs;
# a fixed 10 minutes covers any local invocation (functionTimeout is 5 minutes).
RECEIVE_VISIBILITY_S = 600

# Azurite's well-known endpoints, for the `UseDevelopmentStorage=true` shorthand that
# local.settings.json files commonly carry (the Azure SDK does not understand it).
_DEV_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)

_SUPPORTED_BINDINGS = {"httpTrigger", "http", "queueTrigger", "timerTrigger"}
_MAX_BODY = 100 * 1024 * 1024  # the Azure Functions HTTP request limit
# Framing headers are computed by the host; a function cannot set them.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_SETTING_REF = re.compile(r"%([^%]+)%")

# Module names imported for a function app root, so a second host (another test's app with the
# same folder names) can re-import them from its own root instead of reusing stale modules.
_APP_MODULES: dict[str, Path] = {}
_IMPORT_LOCK = threading.Lock()


class FunctionLoadError(Exception):
    """A function folder that cannot be loaded (bad function.json, import error, ...)."""


# --------------------------------------------------------------------------------------------
# host.json


def parse_timespan(value: str | float | int | None, default: float) -> float:
    """Seconds in a .NET TimeSpan string (`[d.]hh:mm:ss[.fff]`), as host.json writes durations."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)\s*", value)
    if not m:
        raise ValueError(f"not a TimeSpan (expected hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = m.groups()
    return (int(days or 0) * 86400) + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the Functions v4 defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    max_polling_interval_s: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueueOptions:
        """Read the options, applying the host's defaults and limits."""
        # The host caps batchSize at 32 (one Get Messages call returns at most 32).
        batch = max(1, min(32, int(raw.get("batchSize", 16))))
        threshold = int(raw.get("newBatchThreshold", batch // 2))
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(
                f"extensions.queues.messageEncoding must be base64 or none: {encoding}"
            )
        return cls(
            batch_size=batch,
            new_batch_threshold=max(0, threshold),
            visibility_timeout_s=parse_timespan(raw.get("visibilityTimeout"), 0.0),
            max_dequeue_count=max(1, int(raw.get("maxDequeueCount", 5))),
            max_polling_interval_s=max(0.1, parse_timespan(raw.get("maxPollingInterval"), 60.0)),
            message_encoding=encoding,
        )


_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    functions: frozenset[str] | None = None
    function_timeout_s: float | None = 300.0
    log_level: int = logging.INFO

    @classmethod
    def load(cls, root: Path) -> HostConfig:
        """Read `<root>/host.json` (missing file: all defaults)."""
        path = root / "host.json"
        raw: dict[str, Any] = json.loads(path.read_text("utf-8-sig")) if path.exists() else {}
        extensions = raw.get("extensions") or {}
        prefix = str((extensions.get("http") or {}).get("routePrefix", "api")).strip("/")
        only = raw.get("functions")
        timeout = raw.get("functionTimeout")
        level_name = str(((raw.get("logging") or {}).get("logLevel") or {}).get("default", ""))
        return cls(
            route_prefix=prefix,
            queues=QueueOptions.from_json(extensions.get("queues") or {}),
            functions=frozenset(only) if isinstance(only, list) else None,
            # "-1" means unlimited on dedicated plans.
            function_timeout_s=(
                None if timeout in (None, "-1", -1) else parse_timespan(timeout, 300)
            ),
            log_level=_LOG_LEVELS.get(level_name.lower(), logging.INFO),
        )


def resolve_settings(value: str) -> str:
    """Replace `%NAME%` with the app setting NAME, as the host does for binding expressions."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise FunctionLoadError(f"app setting {name!r} (referenced as %{name}%) is not set")
        return os.environ[name]

    return _SETTING_REF.sub(sub, value)


# --------------------------------------------------------------------------------------------
# Function definitions


@dataclass
class FunctionDef:
    """One loaded function: its entry point and how its parameters are bound."""

    name: str
    directory: Path
    main: Callable[..., Any]
    trigger: dict[str, Any]
    # (parameter name, kind) with kind in {"trigger", "context", "out"}.
    params: list[tuple[str, str]]
    http_out: str | None
    is_async: bool

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


@dataclass
class HttpRoute:
    """A compiled HTTP trigger route."""

    function: FunctionDef
    template: str
    regex: re.Pattern[str]
    group_names: list[tuple[str, str]]  # (regex group, route parameter)
    defaults: dict[str, str]
    methods: frozenset[str] | None
    auth_level: str
    rank: tuple[int, ...]


_ROUTE_TOKEN = re.compile(r"\{([^{}]*)\}")
_ROUTE_PARAM = re.compile(
    r"(?P<star>\*{1,2})?(?P<name>[A-Za-z_]\w*)(?::(?P<constraint>[^=?]*))?"
    r"(?P<optional>\?)?(?:=(?P<default>.*))?"
)


def compile_route(template: str) -> tuple[re.Pattern[str], list[tuple[str, str]],
                                          dict[str, str], tuple[int, ...]]:
    """Compile an ASP.NET-style route template into a case-insensitive regex.

    Returns the regex (matched against the path after the route prefix, with a leading slash and
    no trailing slash), the group-to-parameter names, default values and a precedence rank
    (lower sorts first: literal segments beat parameters, as ASP.NET routing orders them).
    """
    groups: list[tuple[str, str]] = []
    defaults: dict[str, str] = {}
    ranks: list[int] = []
    pattern = ""
    segments = [s for s in template.strip().strip("/").split("/") if s != ""]
    for i, seg in enumerate(segments):
        whole = _ROUTE_TOKEN.fullmatch(seg)
        if whole:
            m = _ROUTE_PARAM.fullmatch(whole.group(1).strip())
            if not m:
                raise FunctionLoadError(f"unsupported route parameter {seg!r} in {template!r}")
            group = f"g{len(groups)}"
            groups.append((group, m["name"]))
            if m["default"] is not None:
                defaults[m["name"]] = m["default"]
            if m["star"]:
                if i != len(segments) - 1:
                    raise FunctionLoadError(f"catch-all must be the last segment: {template!r}")
                pattern += f"(?:/(?P<{group}>.*))?"
                ranks.append(5)
            elif m["optional"] or m["default"] is not None:
                pattern += f"(?:/(?P<{group}>[^/]+))?"
                ranks.append(4)
            else:
                pattern += f"/(?P<{group}>[^/]+)"
                # A constrained parameter takes precedence over a bare one in ASP.NET.
                ranks.append(2 if m["constraint"] else 3)
            continue
        if "{" not in seg:
            pattern += "/" + re.escape(seg)
            ranks.append(0)
            continue
        # A segment mixing literals and parameters, e.g. "{name}.{ext}".
        part = "/"
        for j, piece in enumerate(_ROUTE_TOKEN.split(seg)):
            if j % 2 == 0:
                part += re.escape(piece)
                continue
            m = _ROUTE_PARAM.fullmatch(piece.strip())
            if not m or m["star"] or m["optional"]:
                raise FunctionLoadError(f"unsupported route segment {seg!r} in {template!r}")
            group = f"g{len(groups)}"
            groups.append((group, m["name"]))
            part += f"(?P<{group}>[^/]+?)"
        pattern += part
        ranks.append(1)
    return re.compile(f"^{pattern}$", re.IGNORECASE), groups, defaults, tuple(ranks)


class _Out(func.Out[Any]):
    """The value holder for a named output binding (`func.Out[func.HttpResponse]`)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class InvocationContext(func.Context):
    """The `context` argument: invocation id, function name and directory."""

    _tls = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


def _import_entry_point(root: Path, directory: Path, script_file: str,
                        entry_point: str) -> Callable[..., Any]:
    """Import `scriptFile` as `<folder>[.<module>]` with the app root on sys.path."""
    script = (directory / script_file).resolve()
    if not script.is_file():
        raise FunctionLoadError(f"scriptFile {script_file!r} not found")
    try:
        rel = script.relative_to(root)
    except ValueError:
        raise FunctionLoadError(f"scriptFile {script_file!r} is outside the app root") from None
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if not parts:
        raise FunctionLoadError("a function's scriptFile cannot be the app root's __init__.py")
    module_name = ".".join(parts)
    top = parts[0]
    with _IMPORT_LOCK:
        existing = sys.modules.get(top)
        owner = _APP_MODULES.get(top)
        if existing is not None and owner is None:
            file = getattr(existing, "__file__", None)
            if file is None or not Path(file).resolve().is_relative_to(root / top):
                raise FunctionLoadError(
                    f"folder name {top!r} clashes with the already imported module {top!r}"
                )
        if owner is not None and owner != root:
            # Same folder name from another app root (tests build many apps): import afresh.
            for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                del sys.modules[name]
        importlib.invalidate_caches()
        try:
            module: ModuleType = importlib.import_module(module_name)
        except Exception as exc:
            raise FunctionLoadError(f"import of {module_name} failed: {exc!r}") from exc
        _APP_MODULES[top] = root
    entry = getattr(module, entry_point, None)
    if not callable(entry):
        raise FunctionLoadError(f"entryPoint {entry_point!r} not found in {module_name}")
    return entry  # type: ignore[no-any-return]


def load_function(root: Path, directory: Path) -> FunctionDef:
    """Read a function folder's function.json and import its entry point."""
    name = directory.name
    try:
        spec = json.loads((directory / "function.json").read_text("utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise FunctionLoadError(f"function.json unreadable: {exc}") from exc
    bindings: list[dict[str, Any]] = list(spec.get("bindings") or [])
    for b in bindings:
        if b.get("type") not in _SUPPORTED_BINDINGS:
            raise FunctionLoadError(
                f"binding type {b.get('type')!r} is not supported by the local host"
            )
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise FunctionLoadError(f"expected exactly one trigger binding, found {len(triggers)}")
    trigger = triggers[0]
    http_outs = [b for b in bindings if b.get("type") == "http" and b.get("direction") == "out"]
    http_out = str(http_outs[0].get("name", "$return")) if http_outs else None

    main = _import_entry_point(
        root, directory, str(spec.get("scriptFile") or "__init__.py"),
        str(spec.get("entryPoint") or "main"),
    )
    by_name = {str(b.get("name")): b for b in bindings}
    params: list[tuple[str, str]] = []
    for pname, param in inspect.signature(main).parameters.items():
        bound = by_name.get(pname)
        if bound is trigger:
            params.append((pname, "trigger"))
        elif bound is not None and bound.get("direction") == "out":
            params.append((pname, "out"))
        elif pname == "context" and bound is None:
            params.append((pname, "context"))
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
        ):
            raise FunctionLoadError(f"parameter {pname!r} of main has no binding in function.json")
    if not any(kind == "trigger" for _, kind in params):
        raise FunctionLoadError(
            f"main has no parameter named {trigger.get('name')!r} (the trigger binding)"
        )
    return FunctionDef(
        name=name,
        directory=directory,
        main=main,
        trigger=trigger,
        params=params,
        http_out=http_out,
        is_async=inspect.iscoroutinefunction(main),
    )


def _is_disabled(directory: Path) -> bool:
    """`"disabled": true` in function.json or the `AzureWebJobs.<name>.Disabled` app setting."""
    if os.environ.get(f"AzureWebJobs.{directory.name}.Disabled", "").lower() in ("1", "true"):
        return True
    try:
        spec = json.loads((directory / "function.json").read_text("utf-8-sig"))
    except (OSError, ValueError):
        return False
    disabled = spec.get("disabled", False)
    if isinstance(disabled, str):
        return os.environ.get(disabled, disabled).lower() in ("1", "true")
    return bool(disabled)


# --------------------------------------------------------------------------------------------
# Timer schedules


class Schedule:
    """An NCRONTAB (6 or 5 fields, UTC) or TimeSpan (`hh:mm:ss`) timer schedule."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._interval: timedelta | None = None
        fields = expression.split()
        if len(fields) == 1 and ":" in expression:
            self._interval = timedelta(seconds=parse_timespan(expression, 0))
            if self._interval <= timedelta(0):
                raise FunctionLoadError(f"timer interval must be positive: {expression!r}")
            return
        if len(fields) not in (5, 6):
            raise FunctionLoadError(f"NCRONTAB needs 6 fields (sec min hour day month dow): "
                                    f"{expression!r}")
        from croniter import croniter  # imported here: only apps with timers need it

        # NCrontab requires both day-of-month and day-of-week to match (day_or=False), unlike
        # Vixie cron; its 6-field form puts seconds first.
        self._seconds_first = len(fields) == 6
        if not croniter.is_valid(expression, second_at_beginning=self._seconds_first):
            raise FunctionLoadError(f"invalid NCRONTAB expression {expression!r}")
        self._croniter = croniter

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after `when` (UTC)."""
        if self._interval is not None:
            return when + self._interval
        it = self._croniter(self.expression, when, ret_type=datetime, day_or=False,
                            second_at_beginning=self._seconds_first)
        nxt: datetime = it.get_next(datetime)
        return nxt


@dataclass
class _TimerState:
    function: FunctionDef
    schedule: Schedule
    run_on_startup: bool
    next_due: datetime
    last: datetime | None = None
    running: bool = False


# --------------------------------------------------------------------------------------------
# HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: FunctionHost) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Without TCP_NODELAY a small response waits for the client's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away; nothing to report
        log.error("HTTP connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "localdev-func-host"
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes a line to stderr per request, which costs more than the request.
        pass

    def dispatch(self) -> None:
        self.server.app._handle_http(self)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = dispatch

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > _MAX_BODY:
                    raise OverflowError
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > _MAX_BODY:
            raise OverflowError
        return self.rfile.read(length) if length else b""

    def respond(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """Write status line, headers and body in one send (no Nagle/delayed-ACK stall)."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        for k, v in headers:
            # A header value with a line break would let a function inject headers.
            lines.append(f"{k}: {v}".replace("\r", " ").replace("\n", " "))
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head if self.command == "HEAD" else head + body)


def _problem(status: int, title: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status}).encode()
    return status, [("Content-Type", "application/problem+json")], body


def _http_result(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a function's return value to (status, headers, body) like the Python worker."""
    if isinstance(value, func.HttpResponse):
        headers = [(k, v) for k, v in value.headers.items() if k.lower() not in _HOP_HEADERS]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = value.mimetype
            if mimetype.startswith("text/"):
                mimetype = f"{mimetype}; charset={value.charset}"
            headers.append(("Content-Type", mimetype))
        return int(value.status_code), headers, value.get_body() or b""
    if value is None:
        return 204, [], b""
    if isinstance(value, str):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], value.encode()
    if isinstance(value, bytes | bytearray):
        return 200, [("Content-Type", "application/octet-stream")], bytes(value)
    raise TypeError(f"an HTTP function must return func.HttpResponse, str or bytes, "
                    f"not {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Queue polling


class _QueuePoller:
    """One queue trigger: fetch batches, run them on the shared pool, retry or poison failures."""

    def __init__(self, app: FunctionHost, function: FunctionDef, queue_name: str,
                 client: Any, poison: Any, options: QueueOptions) -> None:
        self.app = app
        self.function = function
        self.queue_name = queue_name
        self.client = client
        self.poison = poison
        self.options = options
        self.running = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(
            target=self._run, name=f"queue-poller-{queue_name}", daemon=True
        )

    # The poller loop -------------------------------------------------------------------------

    def _run(self) -> None:
        stop = self.app._stop_event
        failures = 0
        while not stop.is_set() and not self._ensure_queues(failures):
            failures += 1
            stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        failures = 0
        delay = 0.1
        opts = self.options
        while not stop.is_set():
            with self.cond:
                # Fetch again only when the running count drops to newBatchThreshold, so at most
                # batchSize + newBatchThreshold messages of this queue run at once.
                while self.running > opts.new_batch_threshold and not stop.is_set():
                    self.cond.wait(0.5)
            if stop.is_set():
                break
            try:
                pages = self.client.receive_messages(
                    messages_per_page=opts.batch_size, visibility_timeout=RECEIVE_VISIBILITY_S
                ).by_page()
                messages = list(next(pages, []))
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "queue %s: receive failed (retrying): %r", self.queue_name, exc)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if failures:
                log.info("queue %s: receiving again", self.queue_name)
                failures = 0
            if not messages:
                stop.wait(delay)
                delay = min(delay * 2, opts.max_polling_interval_s)
                continue
            delay = 0.1
            with self.cond:
                self.running += len(messages)
            for msg in messages:
                try:
                    self.app._submit(self._process, msg)
                except RuntimeError:  # the pool shut down: the host is stopping
                    self._release(msg)
                    self._done()

    def _ensure_queues(self, failures: int) -> bool:
        from azure.core.exceptions import ResourceExistsError

        try:
            for client in (self.client, self.poison):
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
        except Exception as exc:
            level = logging.WARNING if failures == 0 else logging.DEBUG
            log.log(level, "queue %s: cannot create the queue (retrying): %r", self.queue_name, exc)
            return False
        return True

    # One message -----------------------------------------------------------------------------

    def _done(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify()

    def _process(self, msg: Any) -> None:
        try:
            if self.app._stop_event.is_set():
                self._release(msg)
                return
            text: str = msg.content if msg.content is not None else ""
            try:
                body = self._decode(text)
            except ValueError:
                # The real host moves a message it cannot decode straight to the poison queue.
                log.error("%s: message %s on %s is not valid base64; moving it to %s-poison",
                          self.function.name, msg.id, self.queue_name, self.queue_name)
                self._poison(msg)
                return
            trigger = FuncQueueMessage(  # type: ignore[no-untyped-call]
                id=msg.id,
                body=body,
                dequeue_count=msg.dequeue_count,
                expiration_time=msg.expires_on,
                insertion_time=msg.inserted_on,
                time_next_visible=msg.next_visible_on,
                pop_receipt=msg.pop_receipt,
            )
            try:
                self.app._invoke(self.function, trigger)
            except Exception:
                log.error("%s failed on message %s (dequeue count %s)", self.function.name,
                          msg.id, msg.dequeue_count, exc_info=True)
                self._failed(msg)
                return
            try:
                self.client.delete_message(msg.id, msg.pop_receipt)
            except Exception as exc:
                # The message reappears after its invisibility and runs again (at-least-once).
                log.error("queue %s: delete of %s failed: %r", self.queue_name, msg.id, exc)
        finally:
            self._done()

    def _decode(self, text: str) -> bytes:
        if self.options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            # .NET's base64 decoder ignores whitespace; Python's strict mode does not.
            return base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error as exc:
            raise ValueError(str(exc)) from exc

    def _failed(self, msg: Any) -> None:
        if (msg.dequeue_count or 0) >= self.options.max_dequeue_count:
            log.error("%s: message %s reached maxDequeueCount (%d); moving it to %s-poison",
                      self.function.name, msg.id, self.options.max_dequeue_count, self.queue_name)
            self._poison(msg)
            return
        try:
            self.client.update_message(
                msg.id, msg.pop_receipt,
                visibility_timeout=round(self.options.visibility_timeout_s),
            )
        except Exception as exc:
            log.error("queue %s: cannot make %s visible again (it will be after %d s): %r",
                      self.queue_name, msg.id, RECEIVE_VISIBILITY_S, exc)

    def _poison(self, msg: Any) -> None:
        try:
            # The original text, untouched: base64 stays base64, as the real host copies it.
            self.poison.send_message(msg.content)
        except Exception as exc:
            # Keep the original: it will be retried and poisoned later, never dropped.
            log.error("queue %s: cannot write %s to the poison queue: %r", self.queue_name,
                      msg.id, exc)
            return
        try:
            self.client.delete_message(msg.id, msg.pop_receipt)
        except Exception as exc:
            log.error("queue %s: delete of poisoned %s failed: %r", self.queue_name, msg.id, exc)

    def _release(self, msg: Any) -> None:
        """Make a fetched but unprocessed message visible again (the host is stopping)."""
        with contextlib.suppress(Exception):
            self.client.update_message(msg.id, msg.pop_receipt, visibility_timeout=0)


def _storage_connection(setting: str, default: str | None) -> str | dict[str, str] | None:
    """The connection string (or identity-based service URI) behind a `connection` setting."""
    if setting == DEFAULT_STORAGE_SETTING and default:
        value: str | None = default
    else:
        value = os.environ.get(setting) or os.environ.get(f"AzureWebJobs{setting}")
    if value:
        return _DEV_STORAGE if value.strip().lower() == "usedevelopmentstorage=true" else value
    # Identity-based connections: <setting>__queueServiceUri or <setting>__accountName.
    uri = os.environ.get(f"{setting}__queueServiceUri")
    account = os.environ.get(f"{setting}__accountName")
    if uri or account:
        return {"account_url": uri or f"https://{account}.queue.core.windows.net"}
    return None


class _QueueClients:
    """Creates QueueClients that share one HTTP connection pool sized for the workers."""

    def __init__(self, pool_size: int) -> None:
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._transport_cls = RequestsTransport
        self._credential: Any = None

    def client(self, connection: str | dict[str, str], queue_name: str) -> Any:
        from azure.storage.queue import QueueClient

        # No message encode/decode policy: the host sees the raw text and decodes it itself.
        transport = self._transport_cls(session=self.session, session_owner=False)
        if isinstance(connection, str):
            return QueueClient.from_connection_string(
                connection, queue_name, transport=transport
            )
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return QueueClient(connection["account_url"], queue_name, credential=self._credential,
                           transport=transport)

    def close(self) -> None:
        self.session.close()


# --------------------------------------------------------------------------------------------
# The host


class FunctionHost:
    """Runs a folder-per-function Python app: HTTP server, queue pollers and timer scheduler.

    `start()` returns once the HTTP port is bound; everything runs on background threads.
    `stop()` stops accepting work and waits for in-flight invocations up to a deadline.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_connection_string: str | None = None,
        function_key: str = DEFAULT_FUNCTION_KEY,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.storage_connection_string = storage_connection_string
        self.function_key = function_key
        self.config = HostConfig()
        self.functions: dict[str, FunctionDef] = {}
        self.load_errors: dict[str, str] = {}
        self._routes: list[HttpRoute] = []
        self._pollers: list[_QueuePoller] = []
        self._timers: list[_TimerState] = []
        self._stop_event = threading.Event()
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._timer_cond = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._clients: _QueueClients | None = None
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._added_sys_path = False
        self._key_bytes = function_key.encode()

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server (the bound port when started with 0)."""
        return f"http://{self.host}:{self.port}"

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load host.json and the functions, bind the HTTP port and start the background work."""
        self.config = HostConfig.load(self.root)
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
            self._added_sys_path = True
        self._load_all()

        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._setup_triggers()
        self._print_functions()

        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="func-host-http", daemon=True,
        )
        self._server_thread.start()
        for poller in self._pollers:
            poller.thread.start()
        if self._timers:
            self._scheduler = threading.Thread(target=self._schedule_loop, name="func-host-timers",
                                               daemon=True)
            self._scheduler.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop HTTP, pollers and timers; wait up to `timeout` s for in-flight invocations.

        Returns False when invocations were still running at the deadline (their threads cannot
        be cancelled; the caller decides whether to exit anyway).
        """
        if self._stop_event.is_set():
            return True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        with self._timer_cond:
            self._timer_cond.notify_all()
        if self._server is not None:
            # shutdown() waits for serve_forever to exit: only call it if that loop runs.
            if self._server_thread is not None and self._server_thread.is_alive():
                self._server.shutdown()
            self._server.server_close()
        for poller in self._pollers:
            with poller.cond:
                poller.cond.notify_all()
            if poller.thread.is_alive():
                poller.thread.join(max(0.1, min(10.0, deadline - time.monotonic())))
        if self._scheduler is not None:
            self._scheduler.join(max(0.1, deadline - time.monotonic()))
        if self._pool is not None:
            # Queued messages still run _process, which releases them without invoking.
            self._pool.shutdown(wait=False)
        finished = True
        with self._inflight_cond:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("stopping with %d invocation(s) still running", self._inflight)
                    finished = False
                    break
                self._inflight_cond.wait(left)
        if self._pool is not None:
            # Let queued work release its messages (each a single quick storage call).
            for poller in self._pollers:
                with poller.cond:
                    while poller.running > 0 and time.monotonic() < deadline:
                        poller.cond.wait(max(0.01, deadline - time.monotonic()))
        if self._server is not None:
            # Unblock idle keep-alive connections so their threads end now.
            with self._server.connections_lock:
                conns = list(self._server.connections)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._clients is not None:
            self._clients.close()
        if self._added_sys_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.root))
            self._added_sys_path = False
        return finished

    def __enter__(self) -> FunctionHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Loading ---------------------------------------------------------------------------------

    def _load_all(self) -> None:
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not (directory / "function.json").is_file():
                continue
            name = directory.name
            if self.config.functions is not None and name not in self.config.functions:
                continue
            if _is_disabled(directory):
                self.load_errors[name] = "disabled"
                continue
            try:
                self.functions[name] = load_function(self.root, directory)
            except FunctionLoadError as exc:
                self.load_errors[name] = str(exc)
                log.error("function %s not loaded: %s", name, exc)

    def _setup_triggers(self) -> None:
        opts = self.config.queues
        queue_fns: list[tuple[FunctionDef, str, str | dict[str, str]]] = []
        for fn in list(self.functions.values()):
            try:
                t = fn.trigger
                if fn.trigger_type == "httpTrigger":
                    self._routes.append(self._make_route(fn))
                elif fn.trigger_type == "queueTrigger":
                    queue = resolve_settings(str(t.get("queueName") or "")).strip().lower()
                    if not queue:
                        raise FunctionLoadError("queueTrigger needs a queueName")
                    setting = str(t.get("connection") or DEFAULT_STORAGE_SETTING)
                    conn = _storage_connection(setting, self.storage_connection_string)
                    if conn is None:
                        raise FunctionLoadError(
                            f"storage connection setting {setting!r} is not set"
                        )
                    queue_fns.append((fn, queue, conn))
                elif fn.trigger_type == "timerTrigger":
                    schedule = Schedule(resolve_settings(str(t.get("schedule") or "")))
                    self._timers.append(_TimerState(
                        function=fn, schedule=schedule,
                        run_on_startup=bool(t.get("runOnStartup", False)),
                        next_due=schedule.next_after(datetime.now(UTC)),
                    ))
            except (FunctionLoadError, ValueError) as exc:
                self.load_errors[fn.name] = str(exc)
                del self.functions[fn.name]
                log.error("function %s not loaded: %s", fn.name, exc)
        # Route precedence: literal segments first, then constrained, bare, optional, catch-all.
        self._routes.sort(key=lambda r: (r.rank, r.template.lower()))

        per_queue = opts.batch_size + opts.new_batch_threshold
        workers = per_queue * len(queue_fns) + len(self._timers) + 1
        self._pool = ThreadPoolExecutor(max_workers=max(4, workers),
                                        thread_name_prefix="func-worker")
        if queue_fns:
            self._clients = _QueueClients(pool_size=max(10, workers + len(queue_fns)))
            for fn, queue, conn in queue_fns:
                client = self._clients.client(conn, queue)
                poison = self._clients.client(conn, f"{queue}-poison")
                self._pollers.append(_QueuePoller(self, fn, queue, client, poison, opts))

    def _make_route(self, fn: FunctionDef) -> HttpRoute:
        t = fn.trigger
        template = str(t.get("route") or fn.name)
        regex, groups, defaults, rank = compile_route(template)
        methods = t.get("methods")
        return HttpRoute(
            function=fn,
            template=template,
            regex=regex,
            group_names=groups,
            defaults=defaults,
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=str(t.get("authLevel") or "function").lower(),
            rank=rank,
        )

    def _print_functions(self) -> None:
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        routes = {r.function.name: r for r in self._routes}
        pollers = {p.function.name: p for p in self._pollers}
        timers = {t.function.name: t for t in self._timers}
        print(f"Functions in {self.root}:", flush=True)
        for name in sorted(set(self.functions) | set(self.load_errors)):
            if name in routes:
                r = routes[name]
                methods = ",".join(sorted(r.methods)) if r.methods else "ALL"
                path = "/".join(s for s in (prefix.strip("/"), r.template.strip("/")) if s)
                line = (f"httpTrigger [{methods}] {self.base_url}/{path} "
                        f"(authLevel {r.auth_level})")
            elif name in pollers:
                p = pollers[name]
                line = f"queueTrigger {p.queue_name} (poison: {p.queue_name}-poison)"
            elif name in timers:
                tm = timers[name]
                startup = ", runOnStartup" if tm.run_on_startup else ""
                line = f"timerTrigger {tm.schedule.expression!r} (UTC{startup})"
            elif self.load_errors.get(name) == "disabled":
                line = "disabled"
            else:
                line = f"NOT LOADED: {self.load_errors.get(name, 'unknown trigger')}"
            print(f"  {name}: {line}", flush=True)

    # Invocation ------------------------------------------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._pool is not None
        self._pool.submit(fn, *args)

    def _invoke(self, fn: FunctionDef, trigger: Any) -> tuple[Any, dict[str, _Out]]:
        """Call a function with its bound arguments; returns (return value, output holders)."""
        with self._inflight_cond:
            self._inflight += 1
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {}
        outs: dict[str, _Out] = {}
        for pname, kind in fn.params:
            if kind == "trigger":
                kwargs[pname] = trigger
            elif kind == "context":
                kwargs[pname] = InvocationContext(invocation_id, fn.name, str(fn.directory))
            else:
                outs[pname] = kwargs[pname] = _Out()
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.monotonic()
        if debug:
            log.debug("Executing %s (id %s)", fn.name, invocation_id)
        try:
            result = fn.main(**kwargs)
            if fn.is_async:
                result = self._run_async(result)
            return result, outs
        finally:
            elapsed = time.monotonic() - started
            if debug:
                log.debug("Executed %s (id %s, %.1f ms)", fn.name, invocation_id, elapsed * 1000)
            limit = self.config.function_timeout_s
            if limit is not None and elapsed > limit:
                log.warning("%s ran %.0f s, over functionTimeout (%.0f s); Azure would have "
                            "cancelled it", fn.name, elapsed, limit)
            with self._inflight_cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._inflight_cond.notify_all()

    def _run_async(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run an `async def main` on the host's one event loop, as the Python worker does."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="func-host-asyncio",
                                 daemon=True).start()
                self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    # HTTP ------------------------------------------------------------------------------------

    def _handle_http(self, h: _Handler) -> None:
        if self._stop_event.is_set():
            h.close_connection = True
            h.respond(*_problem(503, "Service Unavailable"))
            return
        path, _, query = h.path.partition("?")
        path = path.split("#", 1)[0]
        if path.rstrip("/").lower() == "/admin/host/status":
            h.respond(200, [("Content-Type", "application/json")], b'{"state":"Running"}')
            return
        rel = self._strip_prefix(path)
        route, route_params, allowed = self._match(rel, h.command) if rel is not None else (
            None, {}, set())
        if route is None:
            h.close_connection = h.close_connection or not self._drain(h)
            if allowed:
                status, problem_headers, problem = _problem(405, "Method Not Allowed")
                problem_headers.append(("Allow", ", ".join(sorted(allowed))))
                h.respond(status, problem_headers, problem)
            else:
                h.respond(*_problem(404, "Not Found"))
            return
        try:
            body = h.read_body()
        except OverflowError:
            h.close_connection = True
            h.respond(*_problem(413, "Payload Too Large"))
            return
        except ValueError:
            h.close_connection = True
            h.respond(*_problem(400, "Bad Request"))
            return
        params = self._query_params(query)
        if route.auth_level != "anonymous" and not self._authorized(h, params):
            h.respond(401, [], b"")
            return
        headers: dict[str, str] = {}
        for k, v in h.headers.items():
            lk = k.lower()
            headers[lk] = f"{headers[lk]}, {v}" if lk in headers else v
        host_header = headers.get("host") or f"{self.host}:{self.port}"
        req = func.HttpRequest(
            h.command, f"http://{host_header}{h.path}", headers=headers, params=params,
            route_params=route_params, body=body,
        )
        fn = route.function
        try:
            result, outs = self._invoke(fn, req)
            if fn.http_out and fn.http_out != "$return" and fn.http_out in outs:
                result = outs[fn.http_out].get()
            status, resp_headers, resp_body = _http_result(result)
        except Exception:
            log.error("%s failed", fn.name, exc_info=True)
            status, resp_headers, resp_body = 500, [], b""
        h.respond(status, resp_headers, resp_body)

    def _strip_prefix(self, path: str) -> str | None:
        """The path below the route prefix (leading slash, no trailing slash), or None."""
        prefix = self.config.route_prefix
        if prefix:
            plen = len(prefix) + 1
            if path[1:plen].lower() != prefix.lower() or path[plen:plen + 1] not in ("", "/"):
                return None
            path = path[plen:]
        return path.rstrip("/")

    def _match(self, rel: str, method: str) -> tuple[HttpRoute | None, dict[str, str], set[str]]:
        allowed: set[str] = set()
        for route in self._routes:
            m = route.regex.match(rel)
            if m is None:
                continue
            if route.methods is not None and method not in route.methods:
                allowed |= route.methods
                continue
            params = dict(route.defaults)
            for group, name in route.group_names:
                value = m.group(group)
                if value is not None:
                    params[name] = unquote(value)
            return route, params, set()
        return None, {}, allowed

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        if query:
            for k, v in parse_qsl(query, keep_blank_values=True):
                # Repeated keys reach the worker joined with commas (ASP.NET StringValues).
                params[k] = f"{params[k]},{v}" if k in params else v
        return params

    def _authorized(self, h: _Handler, params: dict[str, str]) -> bool:
        supplied = h.headers.get("x-functions-key") or params.get("code")
        if not supplied:
            return False
        return hmac.compare_digest(supplied.encode(), self._key_bytes)

    @staticmethod
    def _drain(h: _Handler) -> bool:
        """Read and discard an unused request body so the connection stays usable."""
        try:
            h.read_body()
        except (ValueError, OverflowError):
            return False
        return True

    # Timers ----------------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        now = datetime.now(UTC)
        with self._timer_cond:
            for t in self._timers:
                if t.run_on_startup:
                    self._fire_timer(t, now, now)
        while not self._stop_event.is_set():
            with self._timer_cond:
                now = datetime.now(UTC)
                wait = 1.0
                for t in self._timers:
                    if t.running:
                        continue
                    if t.next_due <= now:
                        self._fire_timer(t, t.next_due, now)
                    else:
                        wait = min(wait, (t.next_due - now).total_seconds())
                self._timer_cond.wait(max(0.005, wait))

    def _fire_timer(self, t: _TimerState, scheduled: datetime, now: datetime) -> None:
        """Start one timer invocation on the pool (caller holds the timer condition)."""
        t.running = True
        # Late by more than a second (e.g. the previous run overran): tell the function.
        past_due = (now - scheduled) > timedelta(seconds=1)
        request = FuncTimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": (t.last or scheduled).isoformat(),
                "Next": t.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )

        def run() -> None:
            try:
                self._invoke(t.function, request)
            except Exception:
                log.error("%s failed", t.function.name, exc_info=True)
            finally:
                with self._timer_cond:
                    t.running = False
                    t.last = scheduled
                    # Like the real host: the next occurrence after now, no catch-up storm.
                    t.next_due = t.schedule.next_after(datetime.now(UTC))
                    self._timer_cond.notify_all()

        try:
            self._submit(run)
        except RuntimeError:
            t.running = False  # the pool shut down: stopping


# --------------------------------------------------------------------------------------------
# CLI


def _load_local_settings(root: Path) -> None:
    """Export local.settings.json `Values` that the environment does not already set.

    Mirrors Core Tools, with the environment taking precedence so `make run` can override.
    """
    path = root / "local.settings.json"
    if not path.exists():
        return
    try:
        values = json.loads(path.read_text("utf-8-sig")).get("Values") or {}
    except ValueError as exc:
        raise SystemExit(f"{path}: invalid JSON: {exc}") from exc
    for key, value in values.items():
        os.environ.setdefault(str(key), str(value))


def main(argv: list[str] | None = None) -> int:
    """`python -m localdev.func_host --root . --host 127.0.0.1 --port 7071`."""
    parser = argparse.ArgumentParser(description="Local Azure Functions host (Python, v1 model)")
    parser.add_argument("--root", default=".", help="function app root (holds host.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port")
    parser.add_argument("--log-level", default=None,
                        help="DEBUG, INFO, ... (default: host.json logging.logLevel.default)")
    args = parser.parse_args(argv)

    root = Path(args.root).resolve()
    if not (root / "host.json").is_file():
        print(f"no host.json in {root}", file=sys.stderr)
        return 2
    _load_local_settings(root)
    level = (logging.getLevelName(args.log_level.upper()) if args.log_level
             else HostConfig.load(root).log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Azure SDK logs every HTTP call at INFO; the poller alone would flood the console.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))

    key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
    host = FunctionHost(
        root, host=args.host, port=args.port,
        storage_connection_string=os.environ.get(DEFAULT_STORAGE_SETTING),
        function_key=key,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        host.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Function key: {key} (header x-functions-key or query ?code=; "
          f"set LOCAL_FUNCTION_KEY to change it)", flush=True)
    print(f"Host running at {host.base_url} (Ctrl-C to stop)", flush=True)
    while not stop.wait(0.5):
        pass
    print("Stopping the function host...", flush=True)
    if not host.stop():
        # Worker threads of a hung invocation would keep the interpreter alive at exit.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
