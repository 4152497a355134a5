"""HTTP triggers: the server and its connection handling (keep-alive, `Expect: 100-continue`,
body limits), the dispatch of a request (route prefix, routes in precedence order, methods as
constraints, keys checked before the body is read) and a function's result as the response."""

from __future__ import annotations

import contextlib
import hmac
import http
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func

from localdev.func_host.errors import FunctionLoadError, FunctionTimeoutError
from localdev.func_host.indexing import FunctionDef
from localdev.func_host.invocation import Invoker
from localdev.func_host.routing import RoutePattern, compile_route

# The host's one logger: every module of the package logs as "localdev.func_host".
log = logging.getLogger("localdev.func_host")

_AUTH_LEVELS = frozenset({"anonymous", "function", "admin", "system"})
_MAX_BODY = 100 * 1024 * 1024  # the Azure Functions HTTP request limit
# An unread body up to this size is read and dropped to keep the connection; a larger one closes it.
_DRAIN_LIMIT = 64 * 1024
# Framing headers are computed by the host; a function cannot set them.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_METHOD_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass
class HttpRoute:
    """An HTTP trigger's compiled route."""

    function: FunctionDef
    pattern: RoutePattern
    methods: frozenset[str] | None  # None: every method
    auth_level: str


def make_route(fn: FunctionDef) -> HttpRoute:
    """An HTTP trigger's route: its template compiled, its methods and authLevel checked."""
    t = fn.trigger
    auth_level = str(t.get("authLevel") or "function").lower()
    if auth_level not in _AUTH_LEVELS:
        raise FunctionLoadError(f"authLevel {auth_level!r} is not supported")
    methods = t.get("methods")
    return HttpRoute(
        function=fn,
        pattern=compile_route(str(t.get("route") or fn.name)),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        auth_level=auth_level,
    )


# --------------------------------------------------------------------------------------------
# The server


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: HttpDispatcher) -> None:
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
    server: HttpServer

    def setup(self) -> None:
        super().setup()
        self._expect_continue = False
        self._linger = False
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        if self._linger:
            self._lingering_close()
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes a line to stderr per request, which costs more than the request.
        pass

    def parse_request(self) -> bool:
        self._expect_continue = False
        if not super().parse_request():
            return False
        if _METHOD_TOKEN.fullmatch(self.command) is None:
            self.send_error(http.HTTPStatus.BAD_REQUEST, "Bad request method")
            return False
        # http.server answers 501 for a method without a do_<METHOD>; the real host routes every
        # method (TRACE, PROPFIND, ...), so all of them reach the same handler.
        setattr(self, f"do_{self.command}", self.dispatch)
        return True

    def handle_expect_100(self) -> bool:
        # Kestrel sends 100 Continue only once the body is read: a request refused before that
        # (401, 404, 413) never makes the client upload its body.
        self._expect_continue = True
        return True

    def dispatch(self) -> None:
        self.server.app.dispatch(self)

    def _content_length(self) -> int | None:
        """The declared body length (0: none), or None when chunked or unparseable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if length >= 0 else None

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = 0 if chunked else int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > _MAX_BODY:
            raise OverflowError
        if self._expect_continue:
            self._expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not chunked:
            return self.rfile.read(length) if length else b""
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

    def discard_body(self) -> None:
        """Skip an unread request body without buffering it.

        A small one is read and dropped so the connection stays usable; otherwise (large,
        chunked, or not sent yet because the client awaits 100 Continue) the connection closes
        after the answer.
        """
        length = self._content_length()
        if length == 0:
            return
        if length is not None and length <= _DRAIN_LIMIT and not self._expect_continue:
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    break
                length -= len(chunk)
            return
        self.close_connection = True
        self._linger = True

    def _lingering_close(self) -> None:
        # Closing a socket with unread input makes the kernel send RST, which can destroy the
        # answer before the client reads it; half-close and drop what still arrives, briefly.
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            buf = bytearray(65536)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and sock.recv_into(buf):
                pass

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


def _problem(status: int, title: str,
             detail: str | None = None) -> tuple[int, list[tuple[str, str]], bytes]:
    problem: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail is not None:
        problem["detail"] = detail
    return status, [("Content-Type", "application/problem+json")], json.dumps(problem).encode()


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
# Dispatch


class HttpDispatcher:
    """Answers each request the server reads: finds its route, checks its key, invokes the
    function and writes the response."""

    def __init__(self, invoker: Invoker, stop_event: threading.Event, *, host: str,
                 function_key: str, master_key: str) -> None:
        self.invoker = invoker
        self.stop_event = stop_event
        self.host = host
        # host.json's extensions.http.routePrefix; the host sets it when it loads host.json.
        self.route_prefix = "api"
        # In precedence order (the host sorts them once every function is loaded).
        self.routes: list[HttpRoute] = []
        self._key_bytes = function_key.encode()
        self._master_bytes = master_key.encode()

    def dispatch(self, h: _Handler) -> None:
        """Answer one request (the handler has read its request line and headers)."""
        if self.stop_event.is_set():
            h.discard_body()
            h.close_connection = True
            h.respond(*_problem(503, "Service Unavailable"))
            return
        path, _, query = h.path.partition("?")
        path = path.split("#", 1)[0]
        if path.rstrip("/").lower() == "/admin/host/status":
            h.discard_body()
            h.respond(200, [("Content-Type", "application/json")], b'{"state":"Running"}')
            return
        rel = self._strip_prefix(path)
        found = self._match(rel, h.command) if rel is not None else None
        if found is None:
            # Methods are route constraints in the real host: a path whose routes all take
            # other methods is not found either.
            h.discard_body()
            h.respond(*_problem(404, "Not Found"))
            return
        route, route_params = found
        params = self._query_params(query)
        refused = self._refusal(route.auth_level, h, params)
        if refused is not None:
            # Before the body is read: an unauthenticated caller cannot make the host buffer it.
            # Azure's own 401 may come with an empty body; this one says what was wrong.
            h.discard_body()
            h.respond(*_problem(401, "Unauthorized", refused))
            return
        try:
            body = h.read_body()
        except (OverflowError, ValueError) as exc:
            h.discard_body()  # too large or badly framed: the connection closes after the answer
            h.respond(*(_problem(413, "Payload Too Large") if isinstance(exc, OverflowError)
                        else _problem(400, "Bad Request")))
            return
        headers: dict[str, str] = {}
        for k, v in h.headers.items():
            lk = k.lower()
            headers[lk] = f"{headers[lk]}, {v}" if lk in headers else v
        host_header = headers.get("host") or f"{self.host}:{h.server.server_address[1]}"
        req = func.HttpRequest(
            h.command, f"http://{host_header}{h.path}", headers=headers, params=params,
            route_params=route_params, body=body,
        )
        fn = route.function
        try:
            result, outs = self.invoker.invoke(fn, req)
            named = [outs[n].get() for n in fn.http_outs if outs[n].get() is not None]
            status, resp_headers, resp_body = _http_result(named[0] if named else result)
        except FunctionTimeoutError:
            status, resp_headers, resp_body = 500, [], b""  # invoke() logged the timeout
        except Exception:
            log.error("%s failed", fn.name, exc_info=True)
            status, resp_headers, resp_body = 500, [], b""
        h.respond(status, resp_headers, resp_body)

    def _strip_prefix(self, path: str) -> str | None:
        """The path below the route prefix (leading slash, no trailing slash), or None."""
        prefix = self.route_prefix
        if prefix:
            plen = len(prefix) + 1
            if path[1:plen].lower() != prefix.lower() or path[plen:plen + 1] not in ("", "/"):
                return None
            path = path[plen:]
        return path.rstrip("/")

    def _match(self, rel: str, method: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The first route (in precedence order) whose template, constraints and methods match."""
        method = method.upper()
        for route in self.routes:
            if route.methods is not None and method not in route.methods:
                continue
            values = route.pattern.match(rel)
            if values is not None:
                return route, values
        return None

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        if query:
            for k, v in parse_qsl(query, keep_blank_values=True):
                # Repeated keys reach the worker joined with commas (ASP.NET StringValues).
                params[k] = f"{params[k]},{v}" if k in params else v
        return params

    def _refusal(self, auth_level: str, h: _Handler, params: dict[str, str]) -> str | None:
        """Why the request may not run (the 401's detail), or None when it may.

        `anonymous`: anyone; `function`: a function (host) key or the master key; `admin` and
        `system`: the master key. The key comes in the `x-functions-key` header or the `code`
        query parameter.
        """
        if auth_level == "anonymous":
            return None
        where = "the x-functions-key header or the code query parameter"
        which = "the master key" if auth_level != "function" else "a function key"
        supplied = h.headers.get("x-functions-key") or params.get("code")
        if not supplied:
            return f"The request has no function key: give {which} in {where}."
        key = supplied.encode()
        if hmac.compare_digest(key, self._master_bytes):
            return None
        if auth_level == "function" and hmac.compare_digest(key, self._key_bytes):
            return None
        if auth_level != "function" and hmac.compare_digest(key, self._key_bytes):
            return f"This function needs the master key in {where}, not a function key."
        return f"The key in {where} is not a key of this app."
