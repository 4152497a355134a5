"""Start and stop Azurite (Tables, Queues and Blobs) from the project's own node_modules.

Used by `make run` (fixed default ports) and by the test session (free ports, in-memory).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite"

# The well-known development account every Azurite ships with (public, not a secret).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def connection_string(queue_port: int, table_port: int, host: str = "127.0.0.1",
                      blob_port: int | None = None) -> str:
    """The storage connection string for an Azurite listening on these ports (the blob
    endpoint only when a blob port is given)."""
    blob = f"BlobEndpoint=http://{host}:{blob_port}/{DEV_ACCOUNT};" if blob_port else ""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"{blob}QueueEndpoint=http://{host}:{queue_port}/{DEV_ACCOUNT};"
        f"TableEndpoint=http://{host}:{table_port}/{DEV_ACCOUNT};"
    )


def wait_for_port(port: int, deadline_s: float, host: str = "127.0.0.1") -> bool:
    """Poll until something accepts TCP connections on the port, or the deadline passes."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass
class Azurite:
    """A running Azurite process serving Queues, Tables and Blobs."""

    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes]
    workdir: str
    _own_workdir: bool = field(default=False)
    blob_port: int | None = None

    @property
    def connection_string(self) -> str:
        return connection_string(self.queue_port, self.table_port, blob_port=self.blob_port)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove a temporary workspace."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


KEEP_ALIVE_S = 600  # seconds an idle keep-alive connection stays open (Azurite's default: 5)


def start_azurite(
    queue_port: int | None = None,
    table_port: int | None = None,
    workdir: str | None = None,
    in_memory: bool = True,
    log_path: str | None = None,
    blob_port: int | None = None,
) -> Azurite:
    """Start Azurite's queue, table and blob services and wait until they accept
    connections (blobs hold uploaded audiences)."""
    if not AZURITE_BIN.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE_BIN}: run `npm ci` (make does).")
    queue_port = queue_port or free_port()
    table_port = table_port or free_port()
    blob_port = blob_port or free_port()
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="azurite-")
    os.makedirs(workdir, exist_ok=True)
    args = [
        str(AZURITE_BIN),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
        "--disableTelemetry",
        "--blobPort", str(blob_port),
        "--queuePort", str(queue_port),
        "--tablePort", str(table_port),
    ]
    # Azurite closes a keep-alive connection after 5 idle seconds by default; a client reusing
    # it at that moment gets "Connection reset by peer", and azure-core does not retry a POST
    # (an entity-group transaction). The app copes (a failed write is retried or answered
    # 503), but a local stack, a test or a bench pass paused a few seconds should not be
    # reset at random: connections stay open for 10 idle minutes instead.
    for service in ("blob", "queue", "table"):
        args += [f"--{service}KeepAliveTimeout", str(KEEP_ALIVE_S)]
    # Azurite refuses --location together with --inMemoryPersistence.
    args += ["--inMemoryPersistence"] if in_memory else ["--location", workdir]
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    az = Azurite(queue_port, table_port, proc, workdir, own, blob_port)
    if not all(wait_for_port(port, 60) for port in (queue_port, table_port, blob_port)):
        az.stop()
        raise RuntimeError("Azurite did not start within 60 s")
    return az
