"""Running a function: binding its parameters (the trigger, `context`, `func.Out` holders),
sync functions on the host's worker threads and `async def` ones on its one event loop, within
host.json's functionTimeout; and counting the invocations in flight so the host can wait for them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import azure.functions as func

from localdev.func_host.config import DEFAULT_FUNCTION_TIMEOUT_S, format_timespan
from localdev.func_host.errors import FunctionTimeoutError
from localdev.func_host.indexing import FunctionDef

# The host's one logger: every module of the package logs as "localdev.func_host".
log = logging.getLogger("localdev.func_host")


# --------------------------------------------------------------------------------------------
# What a function receives besides its trigger


class Out(func.Out[Any]):
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


# --------------------------------------------------------------------------------------------
# Workers


class Workers:
    """Daemon threads for invocations and trigger work, one per concurrent job, reused when idle.

    Unbounded, unlike ThreadPoolExecutor: HTTP invocations never were bounded, and a sync
    invocation that ran past functionTimeout keeps its thread until it returns. Daemon threads,
    so such a hung invocation does not also hold the interpreter at exit.
    """

    def __init__(self, name: str, idle_s: float = 30.0) -> None:
        self._name = name
        self._idle_s = idle_s
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._jobs = queue.SimpleQueue()
        # Waiting threads nobody has counted on yet; a submit claims one or starts a thread.
        self._free = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run fn(*args) on a worker thread."""
        future: Future[Any] = Future()
        with self._lock:
            self._jobs.put((future, fn, args))
            if self._free:
                self._free -= 1
                return future
        threading.Thread(target=self._work, name=f"{self._name}-{next(self._ids)}",
                         daemon=True).start()
        return future

    def _work(self) -> None:
        job = self._jobs.get()
        while True:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del job, future, fn, args  # do not keep the last job's objects alive while idle
            with self._lock:
                self._free += 1
            while True:
                try:
                    job = self._jobs.get(timeout=self._idle_s)
                    break
                except queue.Empty:
                    with self._lock:
                        if self._free:
                            self._free -= 1
                            return


# --------------------------------------------------------------------------------------------
# Invocations


class Invoker:
    """Invokes the functions of every trigger (HTTP, queue, timer) and counts the invocations in
    flight, so that stopping the host can wait for them."""

    def __init__(self, workers: Workers) -> None:
        self.workers = workers
        # host.json's functionTimeout (None: unlimited); the host sets it when it loads host.json.
        self.function_timeout_s: float | None = DEFAULT_FUNCTION_TIMEOUT_S
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()

    def invoke(self, fn: FunctionDef, trigger: Any) -> tuple[Any, dict[str, Out]]:
        """Call a function with its bound arguments; returns (return value, output holders).

        Raises FunctionTimeoutError when functionTimeout passes first: the caller then treats
        the invocation as failed, and whatever the function does later is ignored (a sync
        function cannot be stopped; an async one is cancelled).
        """
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {}
        outs: dict[str, Out] = {}
        for pname, kind in fn.params:
            if kind == "trigger":
                kwargs[pname] = trigger
            elif kind == "context":
                kwargs[pname] = InvocationContext(invocation_id, fn.name, str(fn.directory))
            else:
                outs[pname] = kwargs[pname] = Out()
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("Executing 'Functions.%s' (Id=%s)", fn.name, invocation_id)
        started = time.monotonic()
        with self._inflight_cond:
            self._inflight += 1
        try:
            future: Future[Any] = (
                asyncio.run_coroutine_threadsafe(fn.main(**kwargs), self._event_loop())
                if fn.is_async else self.workers.submit(lambda: fn.main(**kwargs))
            )
        except BaseException:
            self._invocation_ended(None)
            raise
        future.add_done_callback(self._invocation_ended)
        limit = self.function_timeout_s
        try:
            return future.result(timeout=limit), outs
        except TimeoutError:
            if future.done():
                raise  # the function's own TimeoutError
            future.cancel()
            log.error("Timeout value of %s was exceeded by function: Functions.%s (Id: '%s')",
                      format_timespan(limit or 0), fn.name, invocation_id)
            raise FunctionTimeoutError(f"{fn.name} ran past functionTimeout") from None
        finally:
            if debug:
                log.debug("Executed 'Functions.%s' (Id=%s, Duration=%.1f ms)", fn.name,
                          invocation_id, (time.monotonic() - started) * 1000)

    def _invocation_ended(self, _future: Future[Any] | None) -> None:
        with self._inflight_cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._inflight_cond.notify_all()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The host's one event loop for `async def` functions, as the Python worker has."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="func-host-asyncio",
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    def wait_idle(self, deadline: float) -> bool:
        """Wait until no invocation runs, up to `deadline` (a time.monotonic() value).

        Returns False when some still run at the deadline.
        """
        finished = True
        with self._inflight_cond:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("stopping with %d invocation(s) still running", self._inflight)
                    finished = False
                    break
                self._inflight_cond.wait(left)
        return finished

    def stop_loop(self) -> None:
        """Stop the event loop of `async def` functions, if one was started."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
