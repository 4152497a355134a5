"""The benchmark's own stack: Azurite, the ACS emulator and the function host, on free ports.

Started the way tests/e2e/conftest.py starts it (Azurite from `localdev.azurite.start_azurite`
on free ports, the function host as a `python -m localdev.func_host` child), except that Azurite
persists to a temporary folder instead of memory (see `Stack.start`) and the emulator is a child
process too, so it does not share the bench client's GIL. Figure 8 starts a second stack of its
own with the emulator's delivery reports on (`Stack(delivery_reports=True)`, as `make run`
starts it) and a counting storage proxy (`Stack.start_proxy`). Every child is stopped on
`close()` (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx

from bench.measure import CpuMeter
from localdev.acs_emulator import DEFAULT_ACCESS_KEY
from localdev.azurite import Azurite, connection_string, free_port, start_azurite
from localdev.storage_proxy import CountRow, parse_rows

ROOT = Path(__file__).resolve().parent.parent
SENDER = "+18005550100"
FUNCTION_KEY = "bench-function-key"
# Pacing must never hold a message back. Settings caps SMS_SENDER_RATE_PER_MINUTE at 1,000,000
# (a larger value fails validation and every function would answer 500), which is 16,667/s.
SENDER_RATE_PER_MINUTE = 1_000_000
EMULATOR_RATE_PER_MINUTE = 100_000_000
START_DEADLINE_S = 90.0


def function_names(app_settings: Mapping[str, str]) -> list[str]:
    """Every function of the app, indexed as the host does (the app checks its settings as it
    loads, so it loads with the stack's)."""
    from localdev.func_host import index_function_app

    with mock.patch.dict(os.environ, app_settings):
        return sorted(name for f in index_function_app(ROOT) if (name := f.get_function_name()))


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set size) of a process from /proc, in KiB; None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return next((int(line.split()[1]) for line in status.splitlines()
                 if line.startswith("VmHWM:")), None)


@dataclass
class Child:
    """A child process of the stack, with its log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def problem(self) -> str | None:
        """None while the process runs, else a message with the end of its log."""
        if self.process.poll() is None:
            return None
        return f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"

    def log_tail(self, chars: int = 3000) -> str:
        """The last `chars` characters of the log."""
        try:
            return self.log_path.read_text("utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def peak_rss_kib(self) -> int | None:
        """VmHWM (peak resident set size) in KiB; None once the process is gone."""
        return peak_rss_kib(self.process.pid)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@dataclass
class Host:
    """A running function host."""

    child: Child
    base_url: str  # http://127.0.0.1:<port>/api


@dataclass
class Proxy:
    """A running `python -m localdev.storage_proxy` in front of the stack's Azurite."""

    child: Child
    table_port: int
    queue_port: int
    control_port: int
    blob_port: int | None = None  # with `start_proxy(blobs=True)`

    @property
    def connection_string(self) -> str:
        """A storage connection string whose Table and Queue (and, when proxied, Blob)
        endpoints are the proxy's."""
        return connection_string(self.queue_port, self.table_port, blob_port=self.blob_port)

    def snapshot(self, reset: bool = False) -> list[CountRow]:
        """The proxy's counts so far; with `reset`, cleared in the same step."""
        resp = httpx.get(f"http://127.0.0.1:{self.control_port}/counts",
                         params={"reset": "1"} if reset else None, timeout=10)
        resp.raise_for_status()
        return parse_rows(resp.json())

    def reset(self) -> None:
        """Forget every count."""
        httpx.post(f"http://127.0.0.1:{self.control_port}/reset", timeout=10).raise_for_status()


def _wait_until_ok(url: str, child: Child, what: str, deadline_s: float = START_DEADLINE_S
                   ) -> None:
    end = time.monotonic() + deadline_s
    with httpx.Client(timeout=5) as client:
        while True:
            problem = child.problem()
            if problem is not None:
                raise RuntimeError(f"{what} did not start: {problem}")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > end:
                raise RuntimeError(f"{what} did not answer {url} within {deadline_s:.0f} s:\n"
                                   f"{child.log_tail()}")
            time.sleep(0.1)


class PauseWatch:
    """Pings Azurite every 250 ms from a thread and records the pings that took over 0.5 s.

    Azurite is one Node.js process: a pause there (its own GC, a periodic save) stalls every
    request of both our code and the floor. A figure whose run saw a pause says so.
    """

    THRESHOLD_S = 0.5

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pauses: list[float] = []
        self._thread = threading.Thread(target=self._run, name="azurite-pauses", daemon=True)

    def start(self) -> None:
        """Start pinging."""
        self._thread.start()

    def stop(self) -> None:
        """Stop pinging."""
        self._stop.set()
        self._thread.join(timeout=35)

    def mark(self) -> int:
        """A position to pass to `since`."""
        with self._lock:
            return len(self._pauses)

    def since(self, mark: int) -> list[float]:
        """Pause lengths (s) recorded after `mark`."""
        with self._lock:
            return [round(p, 2) for p in self._pauses[mark:]]

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
            try:
                # Unauthenticated: Azurite answers 403 at once, which is all a ping needs.
                conn.request("GET", "/devstoreaccount1/Tables")
                conn.getresponse().read()
            except OSError:
                continue
            finally:
                conn.close()
            took = time.perf_counter() - started
            if took > self.THRESHOLD_S:
                with self._lock:
                    self._pauses.append(took)


class Stack:
    """Azurite + ACS emulator, and function hosts started on demand. Use as a context manager.

    By default the emulator writes no delivery reports. With `delivery_reports` it writes them
    to this stack's Azurite (`sms-delivery-reports`) `dlr_delay_s` after each accepted send, as
    `make run` starts it (localdev/run.py: `--storage <AzureWebJobsStorage>`, default delay).
    """

    def __init__(self, *, delivery_reports: bool = False, dlr_delay_s: float = 1.0) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="sms-bench-"))
        self.delivery_reports = delivery_reports
        self.dlr_delay_s = dlr_delay_s
        self.azurite: Azurite | None = None
        self.emulator: Child | None = None
        self.emulator_port = 0
        self.hosts: list[Host] = []
        self.proxies: list[Proxy] = []
        self.pauses: PauseWatch | None = None

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close(keep_logs=True)
            raise
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(keep_logs=exc_type is not None)

    # -- addresses ----------------------------------------------------------------------------

    @property
    def storage(self) -> str:
        """The Azurite connection string."""
        if self.azurite is None:
            raise RuntimeError("the stack is not started")
        return self.azurite.connection_string

    @property
    def emulator_url(self) -> str:
        """The emulator's base URL (also the ACS endpoint)."""
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def acs_key(self) -> str:
        """The emulator's access key (its public default)."""
        return DEFAULT_ACCESS_KEY

    @property
    def acs_connection_string(self) -> str:
        """ACS_CONNECTION_STRING for the emulator."""
        return f"endpoint={self.emulator_url}/;accesskey={self.acs_key}"

    def cpu_meter(self, host: Host | None = None, proxy: Proxy | None = None) -> CpuMeter:
        """A CPU meter over the stack's processes (and this one, the bench client)."""
        pids = {"bench": os.getpid()}
        if host is not None:
            pids["host"] = host.child.process.pid
        if proxy is not None:
            pids["proxy"] = proxy.child.process.pid
        if self.azurite is not None:
            pids["azurite"] = self.azurite.process.pid
        if self.emulator is not None:
            pids["emulator"] = self.emulator.process.pid
        return CpuMeter(pids)

    def app_settings(self, storage: str | None = None) -> dict[str, str]:
        """The function app's settings for this stack (`storage`: another AzureWebJobsStorage,
        e.g. a proxy's)."""
        return {"AzureWebJobsStorage": storage or self.storage,
                "ACS_CONNECTION_STRING": self.acs_connection_string,
                "SMS_DEFAULT_FROM": SENDER,
                "SMS_SENDER_RATE_PER_MINUTE": str(SENDER_RATE_PER_MINUTE)}

    # -- lifecycle ----------------------------------------------------------------------------

    def _spawn(self, name: str, args: Sequence[str], env: dict[str, str]) -> Child:
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as out:
            process = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                       stdout=out, stderr=subprocess.STDOUT)
        return Child(name, process, log_path)

    def start(self) -> None:
        """Start Azurite (in memory, free ports) and the emulator; wait until both answer."""
        # On disk, not in memory: the in-memory queue store keeps one extent per message and its
        # garbage collection (every 60 s) deletes them with a linear scan each, freezing all of
        # Azurite for seconds after a few thousand deletes (the dispatch figure does 2,200).
        self.azurite = start_azurite(in_memory=False, log_path=str(self.workdir / "azurite.log"))
        self.pauses = PauseWatch(self.azurite.table_port)
        self.pauses.start()
        self.emulator_port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
        # Without delivery reports: no storage, so they are not written at all (and cannot
        # interfere). With them: this Azurite, directly (Event Grid's write is not ours).
        reports = ["--storage", self.storage, "--dlr-delay", str(self.dlr_delay_s)] \
            if self.delivery_reports else ["--storage", "", "--dlr-delay", "3600"]
        self.emulator = self._spawn("acs-emulator", [
            "localdev.acs_emulator", "--port", str(self.emulator_port), *reports,
            "--rate-per-minute", str(EMULATOR_RATE_PER_MINUTE)], env)
        _wait_until_ok(f"{self.emulator_url}/emulator/health", self.emulator, "the ACS emulator")

    def start_proxy(self, name: str = "storage-proxy", *, blobs: bool = False) -> Proxy:
        """Start a counting `localdev.storage_proxy` child in front of this stack's Azurite (its
        own process: it must not share the bench client's GIL); return once it answers. With
        `blobs`, the Blob service is proxied (and counted) too."""
        if self.azurite is None:
            raise RuntimeError("the stack is not started")
        ports = [free_port() for _ in range(3)]
        blob_args: list[str] = []
        blob_port = None
        if blobs and self.azurite.blob_port:
            blob_port = free_port()
            blob_args = ["--blob", f"127.0.0.1:{self.azurite.blob_port}",
                         "--blob-port", str(blob_port)]
        child = self._spawn(name, [
            "localdev.storage_proxy", "--table", f"127.0.0.1:{self.azurite.table_port}",
            "--queue", f"127.0.0.1:{self.azurite.queue_port}", "--table-port", str(ports[0]),
            "--queue-port", str(ports[1]), "--control-port", str(ports[2]), *blob_args],
            dict(os.environ))
        proxy = Proxy(child, ports[0], ports[1], ports[2], blob_port=blob_port)
        self.proxies.append(proxy)
        _wait_until_ok(f"http://127.0.0.1:{ports[2]}/health", child, "the storage proxy")
        return proxy

    def start_host(self, name: str, *, disabled: Sequence[str] = (), wait: bool = True,
                   storage: str | None = None) -> Host:
        """Start a function host child; `disabled` function folders are switched off with
        `AzureWebJobs.<name>.Disabled` as in Azure; `storage` replaces AzureWebJobsStorage (e.g.
        a proxy's). SMS_APP_WEBHOOK_URL is never passed on. With `wait`, return once
        /api/health is 200.
        """
        port = free_port()
        # No app webhook, whatever the caller's environment says: events stay on sms-events.
        env = {k: v for k, v in os.environ.items() if k.upper() != "SMS_APP_WEBHOOK_URL"}
        env.update({**self.app_settings(storage), "LOCAL_FUNCTION_KEY": FUNCTION_KEY})
        env.update({f"AzureWebJobs.{fn}.Disabled": "true" for fn in disabled})
        child = self._spawn(name, ["localdev.func_host", "--root", str(ROOT),
                                   "--port", str(port)], env)
        host = Host(child, f"http://127.0.0.1:{port}/api")
        self.hosts.append(host)
        if wait:
            self.wait_healthy(host)
        return host

    def wait_healthy(self, host: Host) -> None:
        """Block until the host answers GET /api/health with 200 (or fail with its log)."""
        _wait_until_ok(f"{host.base_url}/health", host.child, host.child.name)

    def close(self, keep_logs: bool = False) -> None:
        """Stop every child (hosts first, then the emulator, then Azurite); the logs are removed
        unless `keep_logs` (then their folder is printed)."""
        errors: list[BaseException] = []
        if self.pauses is not None:
            self.pauses.stop()
        for part in [*(h.child for h in self.hosts), *(p.child for p in self.proxies),
                     self.emulator]:
            if part is not None:
                try:
                    part.stop()
                except BaseException as exc:  # keep stopping the others
                    errors.append(exc)
        if self.azurite is not None:
            try:
                self.azurite.stop()
            except BaseException as exc:
                errors.append(exc)
        if keep_logs or errors:
            print(f"bench: logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise errors[0]
