"""`make run`: start the whole local stack and supervise it until Ctrl-C or SIGTERM.

Starts, in order, and waits for each to accept connections:

1. Azurite (Queues 10001, Tables 10002, persisted in .localdev/azurite), unless
   `AzureWebJobsStorage` is set: then that storage is used;
2. the ACS emulator (`python -m localdev.acs_emulator`, port 7072 or `ACS_EMULATOR_PORT`),
   unless `ACS_CONNECTION_STRING` is set: then that ACS endpoint is used;
3. the function host (`python -m localdev.func_host`, port 7071 or `FUNCTIONS_PORT`).

Ctrl-C or SIGTERM stops every child (the function host first, so in-flight invocations finish
against live storage) and exits 0. If a child dies, the rest are stopped and the exit code is 1.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from localdev.azurite import Azurite, start_azurite
from localdev.func_host import DEFAULT_FUNCTION_KEY, DEFAULT_MASTER_KEY

ROOT = Path(__file__).resolve().parent.parent
STATE_DIR = ROOT / ".localdev"

DEFAULT_ACS_ACCESS_KEY = "bG9jYWwtYWNzLWVtdWxhdG9yLWtleQ=="  # the emulator's public dev key
DEFAULT_SENDER = "+18005550100"
AZURITE_BLOB_PORT = 10000
AZURITE_QUEUE_PORT = 10001
AZURITE_TABLE_PORT = 10002
EXAMPLE_NUMBER = "+14255550123"


class StackError(Exception):
    """A part of the stack could not start."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM arrived while the stack was starting."""


@dataclass
class Child:
    """A supervised child process."""

    name: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self, deadline_s: float = 15.0) -> None:
        """SIGTERM, wait up to the deadline, then SIGKILL."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=deadline_s)
        except subprocess.TimeoutExpired:
            print(f"{self.name} did not stop within {deadline_s:.0f} s; killing it", flush=True)
            self.process.kill()
            self.process.wait(timeout=5)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port (so a later successful connect is ours)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) != 0


def wait_ready(child: Child, deadline_s: float, stop: threading.Event) -> None:
    """Poll until the child accepts connections; fail early if it exits or on a stop signal."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if stop.is_set():
            raise Interrupted
        code = child.process.poll()
        if code is not None:
            raise StackError(f"{child.name} exited with code {code} while starting")
        try:
            with socket.create_connection(("127.0.0.1", child.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{child.name} did not accept connections on port {child.port} "
                     f"within {deadline_s:.0f} s")


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise StackError(f"{name} must be a port number, not {value!r}") from None


def _describe_storage(conn: str) -> str:
    """The endpoints of a connection string, without its account key."""
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    queue, table = parts.get("QueueEndpoint"), parts.get("TableEndpoint")
    if queue or table:
        return f"queues {queue}, tables {table}"
    return f"account {parts.get('AccountName', '?')} (from AzureWebJobsStorage)"


class Stack:
    """The running parts of the local stack, stopped in reverse start order."""

    def __init__(self) -> None:
        self.azurite: Azurite | None = None
        self.children: list[Child] = []

    def spawn(self, name: str, args: list[str], port: int, env: dict[str, str]) -> Child:
        """Start a Python child in its own session.

        Its own session: a Ctrl-C in the terminal reaches only this supervisor, which then stops
        the children in order instead of all of them at once.
        """
        if not port_is_free(port):
            raise StackError(f"port {port} for the {name} is already in use "
                             f"(another `make run`? set the port variable to move it)")
        proc = subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, env=env,
                                start_new_session=True)
        child = Child(name, proc, port)
        self.children.append(child)
        return child

    def dead_child(self) -> str | None:
        """A description of the first part that has exited, if any."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                return f"{child.name} exited with code {code}"
        if self.azurite is not None and self.azurite.process.poll() is not None:
            return f"Azurite exited with code {self.azurite.process.returncode}"
        return None

    def stop(self) -> None:
        """Stop the function host, then the emulator, then Azurite."""
        for child in reversed(self.children):
            child.stop()
        if self.azurite is not None:
            self.azurite.stop()


def start_stack(stack: Stack, stop: threading.Event) -> str:
    """Start every part, each ready before the next; returns the banner to print.

    A stop signal is noticed between steps and while waiting for a child, never in the middle of
    spawning one, so nothing is left running untracked.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"  # children's logs appear as they happen
    functions_port = _env_port("FUNCTIONS_PORT", 7071)
    emulator_port = _env_port("ACS_EMULATOR_PORT", 7072)
    key = env.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
    env["LOCAL_FUNCTION_KEY"] = key
    env["SMS_DEFAULT_FROM"] = env.get("SMS_DEFAULT_FROM") or DEFAULT_SENDER

    storage = env.get("AzureWebJobsStorage")
    if storage:
        storage_note = f"{_describe_storage(storage)} (AzureWebJobsStorage, Azurite not started)"
    else:
        for port in (AZURITE_BLOB_PORT, AZURITE_QUEUE_PORT, AZURITE_TABLE_PORT):
            if not port_is_free(port):
                raise StackError(f"port {port} for Azurite is already in use (an Azurite "
                                 f"from another run?); stop it or set AzureWebJobsStorage")
        STATE_DIR.mkdir(exist_ok=True)
        print("Starting Azurite...", flush=True)
        stack.azurite = start_azurite(
            queue_port=AZURITE_QUEUE_PORT, table_port=AZURITE_TABLE_PORT,
            blob_port=AZURITE_BLOB_PORT,
            workdir=str(STATE_DIR / "azurite"), in_memory=False,
            log_path=str(STATE_DIR / "azurite.log"),
        )
        storage = stack.azurite.connection_string
        if stop.is_set():
            raise Interrupted
        storage_note = (f"Azurite {_describe_storage(storage)} "
                        f"(data in .localdev/azurite, log .localdev/azurite.log)")
    env["AzureWebJobsStorage"] = storage

    functions_url = f"http://127.0.0.1:{functions_port}"
    acs = env.get("ACS_CONNECTION_STRING")
    emulator_url: str | None = None
    if acs:
        acs_note = f"{acs.split(';')[0].removeprefix('endpoint=')} (ACS_CONNECTION_STRING)"
    else:
        access_key = DEFAULT_ACS_ACCESS_KEY
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        acs = f"endpoint={emulator_url}/;accesskey={access_key}"
        # Where the emulator posts SMSReceived events once it relays handset replies.
        env["ACS_EMULATOR_INBOUND_WEBHOOK_URL"] = f"{functions_url}/api/inbound?code={key}"
        print("Starting the ACS emulator...", flush=True)
        emulator = stack.spawn(
            "ACS emulator",
            ["localdev.acs_emulator", "--host", "127.0.0.1", "--port", str(emulator_port),
             "--storage", storage, "--access-key", access_key],
            emulator_port, env,
        )
        wait_ready(emulator, 30, stop)
        acs_note = f"{emulator_url} (emulator; ACS_CONNECTION_STRING={acs})"
    env["ACS_CONNECTION_STRING"] = acs

    print("Starting the function host...", flush=True)
    host = stack.spawn(
        "function host",
        ["localdev.func_host", "--root", str(ROOT), "--host", "127.0.0.1",
         "--port", str(functions_port)],
        functions_port, env,
    )
    wait_ready(host, 60, stop)

    auth = f'-H "x-functions-key: {key}"'
    lines = [
        "",
        "Local stack is running (Ctrl-C to stop)",
        f"  Console:      {functions_url}/api/console  (open it in a browser; it asks for the "
        f"function key below)",
        f"  API:          {functions_url}/api",
        f"  ACS:          {acs_note}",
        f"  Storage:      {storage_note}",
        f"  Function key: {key}  (header x-functions-key or query ?code=; "
        f"set LOCAL_FUNCTION_KEY to change)",
        f"  Master key:   {env.get('LOCAL_MASTER_KEY') or DEFAULT_MASTER_KEY}  (admin routes "
        f"and every function; set LOCAL_MASTER_KEY to change)",
        "",
        "Send an SMS:",
        f"  curl -s -X POST {functions_url}/api/messages {auth} "
        f"-H \"content-type: application/json\" "
        f"-d '{{\"to\": \"{EXAMPLE_NUMBER}\", \"message\": \"Hello from Azure Functions\"}}'",
        "Read its status (the id is messages[0].id in the answer):",
        f"  curl -s {functions_url}/api/messages/<id> {auth}",
    ]
    if emulator_url:
        lines += [
            "Read what the handset received:",
            f"  curl -s {emulator_url}/emulator/handsets/{EXAMPLE_NUMBER}/inbox",
            f"The emulator's control API: curl -s {emulator_url}/emulator",
        ]
    json_lines = env.get("SMS_LOG_FORMAT", "").strip().lower() == "json"
    lines += [
        "",
        "Below, the log: a line per request, dispatch, delivery report, campaign run step and",
        "inbound text; a send's lines, up to its delivery report, name the same batch id"
        + (" (correlationId)." if json_lines
           else ".\nSMS_LOG_FORMAT=json makes them JSON lines, as in Azure."),
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    """Run the stack; 0 after Ctrl-C/SIGTERM, 1 when a part fails to start or dies."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only a flag: raising here could land between spawning a child and tracking it.
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    stack = Stack()
    code = 0
    try:
        banner = start_stack(stack, stop)
        print(banner, flush=True)
        while not stop.wait(0.5):
            dead = stack.dead_child()
            if dead:
                print(f"\n{dead}; stopping the local stack", file=sys.stderr, flush=True)
                code = 1
                break
    except StackError as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        code = 1
    except RuntimeError as exc:  # start_azurite: not installed or did not start
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        code = 1
    except Interrupted:
        code = 0
    finally:
        # A second Ctrl-C while stopping must not abandon the children.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping the local stack...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
