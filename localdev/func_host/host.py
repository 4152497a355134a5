"""`FunctionHost`: the host's lifecycle (start, stop with a deadline) and its wiring: host.json
applied, the app indexed, each function's trigger set up (HTTP route, queue poller, timer) and
the functions listed at start-up."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from localdev.func_host.config import (
    DEFAULT_FUNCTION_KEY,
    DEFAULT_MASTER_KEY,
    DEFAULT_STORAGE_SETTING,
    HostConfig,
    resolve_settings,
    storage_connection,
)
from localdev.func_host.errors import FunctionLoadError
from localdev.func_host.http import HttpDispatcher, HttpServer, make_route
from localdev.func_host.indexing import (
    DEFAULT_SCRIPT_FILE,
    FunctionDef,
    index_function_app,
    is_disabled,
    load_function,
)
from localdev.func_host.invocation import Invoker, Workers
from localdev.func_host.queues import QueueClients, QueuePoller, receive_visibility_s
from localdev.func_host.timers import Schedule, TimerScheduler, TimerState, TimerStatusStore

# The host's one logger: every module of the package logs as "localdev.func_host".
log = logging.getLogger("localdev.func_host")

_HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"


def _host_id(root: Path) -> str:
    """The id under which the host keeps its timer status: the `AzureFunctionsWebHost__hostid`
    app setting, else the root folder's name plus a hash of its path (at most 32 characters)."""
    configured = os.environ.get(_HOST_ID_SETTING)
    if configured:
        return configured
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:19] or "app"
    return f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


class FunctionHost:
    """Runs a v2-model Python app: HTTP server, queue pollers and timer scheduler.

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
        master_key: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.storage_connection_string = storage_connection_string
        self.function_key = function_key
        self.master_key = master_key or os.environ.get("LOCAL_MASTER_KEY") or DEFAULT_MASTER_KEY
        self.host_id = _host_id(self.root)
        self.config = HostConfig()
        self.functions: dict[str, FunctionDef] = {}
        self.load_errors: dict[str, str] = {}
        self._stop_event = threading.Event()
        # One pool of worker threads for the invocations and trigger work of every trigger.
        self._workers = Workers("func-worker")
        self._invoker = Invoker(self._workers)
        self._http = HttpDispatcher(self._invoker, self._stop_event, host=host,
                                    function_key=function_key, master_key=self.master_key)
        self._pollers: list[QueuePoller] = []
        self._scheduler = TimerScheduler(self._invoker, self._stop_event)
        self._server: HttpServer | None = None
        self._server_thread: threading.Thread | None = None
        self._clients: QueueClients | None = None
        self._added_sys_path = False

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server (the bound port when started with 0)."""
        return f"http://{self.host}:{self.port}"

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load host.json, index the app, bind the HTTP port and start the background work."""
        self.config = HostConfig.load(self.root)
        self._invoker.function_timeout_s = self.config.function_timeout_s
        self._http.route_prefix = self.config.route_prefix
        self._added_sys_path = str(self.root) not in sys.path
        self._load_all()

        self._server = HttpServer((self.host, self.port), self._http)
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
        self._scheduler.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop HTTP, pollers and timers; wait up to `timeout` s for in-flight invocations.

        Returns False when invocations were still running at the deadline (their threads cannot
        be cancelled; the caller decides whether to exit anyway). An invocation that outran
        functionTimeout counts until its code returns.
        """
        if self._stop_event.is_set():
            return True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        self._scheduler.wake()
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
        self._scheduler.join(max(0.1, deadline - time.monotonic()))
        finished = self._invoker.wait_idle(deadline)
        # Let a timer that just ran record its status, or the next start would run it again.
        self._scheduler.wait_recorded(deadline)
        # Let fetched but unstarted messages be released (each a single quick storage call).
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
        self._invoker.stop_loop()
        if self._clients is not None:
            self._clients.close()
        self._scheduler.close()
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
        script = os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT_FILE
        try:
            indexed = index_function_app(self.root, script)
        except FunctionLoadError as exc:
            self.load_errors[script] = str(exc)
            log.error("%s not loaded: %s", script, exc)
            return
        for function in indexed:
            name = str(function.get_function_name())
            if self.config.functions is not None and name not in self.config.functions:
                continue
            if is_disabled(name):
                self.load_errors[name] = "disabled"
                continue
            try:
                self.functions[name] = load_function(self.root, function)
            except FunctionLoadError as exc:
                self.load_errors[name] = str(exc)
                log.error("function %s not loaded: %s", name, exc)

    def _setup_triggers(self) -> None:
        opts = self.config.queues
        queue_fns: list[tuple[FunctionDef, str, str | dict[str, str]]] = []
        now = datetime.now(UTC)
        timer_storage = storage_connection(DEFAULT_STORAGE_SETTING,
                                           self.storage_connection_string, "table")
        for fn in list(self.functions.values()):
            try:
                t = fn.trigger
                if fn.trigger_type == "httpTrigger":
                    self._http.routes.append(make_route(fn))
                elif fn.trigger_type == "queueTrigger":
                    queue_name = resolve_settings(str(t.get("queueName") or "")).strip().lower()
                    if not queue_name:
                        raise FunctionLoadError("queueTrigger needs a queueName")
                    setting = str(t.get("connection") or DEFAULT_STORAGE_SETTING)
                    conn = storage_connection(setting, self.storage_connection_string)
                    if conn is None:
                        raise FunctionLoadError(
                            f"storage connection setting {setting!r} is not set"
                        )
                    queue_fns.append((fn, queue_name, conn))
                elif fn.trigger_type == "timerTrigger":
                    schedule = Schedule(resolve_settings(str(t.get("schedule") or "")))
                    use_monitor = t.get("useMonitor")
                    monitored = timer_storage is not None and (
                        schedule.monitored_by_default(now) if use_monitor is None
                        else str(use_monitor).lower() == "true"
                    )
                    self._scheduler.timers.append(TimerState(
                        function=fn, schedule=schedule,
                        run_on_startup=str(t.get("runOnStartup", False)).lower() == "true",
                        monitored=monitored, next_due=schedule.next_after(now),
                    ))
            except (FunctionLoadError, ValueError) as exc:
                self.load_errors[fn.name] = str(exc)
                del self.functions[fn.name]
                log.error("function %s not loaded: %s", fn.name, exc)
        self._http.routes.sort(key=lambda r: (r.pattern.rank, r.pattern.template.lower()))
        if timer_storage is not None and any(t.monitored for t in self._scheduler.timers):
            self._scheduler.store = TimerStatusStore(timer_storage, self.host_id)
        if queue_fns:
            per_queue = opts.batch_size + opts.new_batch_threshold
            self._clients = QueueClients(pool_size=max(10, (per_queue + 1) * len(queue_fns)))
            visibility = receive_visibility_s(self.config.function_timeout_s)
            for fn, queue_name, conn in queue_fns:
                client = self._clients.client(conn, queue_name)
                poison = self._clients.client(conn, f"{queue_name}-poison")
                self._pollers.append(QueuePoller(
                    fn, queue_name, client, poison, opts, invoker=self._invoker,
                    stop_event=self._stop_event, visibility_s=visibility,
                ))

    def _print_functions(self) -> None:
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        routes = {r.function.name: r for r in self._http.routes}
        pollers = {p.function.name: p for p in self._pollers}
        timers = {t.function.name: t for t in self._scheduler.timers}
        print(f"Functions in {self.root}:", flush=True)
        for name in sorted(set(self.functions) | set(self.load_errors)):
            if name in routes:
                r = routes[name]
                methods = ",".join(sorted(r.methods)) if r.methods else "ALL"
                path = "/".join(s for s in (prefix.strip("/"), r.pattern.template.strip("/")) if s)
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
