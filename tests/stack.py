"""The whole local stack for end-to-end and browser tests: the function host (a child process
running the real function folders), the ACS emulator, and the session's Azurite.

`start_stack` starts it and stops it on exit; tests/e2e/conftest.py and
tests/browser/conftest.py each hold it in a package-scoped fixture, so a package's host stops
before other test packages run: it consumes the contract queues (`sms-outbound`,
`sms-delivery-reports`) and must not take other tests' messages. A stack starts on empty queues:
what an earlier package left on them (a canceled 10,000-recipient campaign leaves 10,000 status
events for the app webhook) is that package's, and a new host working through it would answer
this package's requests late.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from localdev.acs_emulator import DEFAULT_ACCESS_KEY, AcsEmulator
from localdev.azurite import free_port
from sms_core.bootstrap import Services
from sms_core.settings import load_settings
from tests.deadlines import wait_until

ROOT = Path(__file__).resolve().parents[1]
FUNCTION_KEY = "e2e-test-key"
SENDER = "+18005550100"


class AppWebhook(BaseHTTPRequestHandler):
    """The app's webhook endpoint: records every signed event the bundle posts."""

    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        AppWebhook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


WEBHOOK_SECRET = "e2e-webhook-secret"
# Background preparation from 601 members, 400 a job: a test audience of about a thousand crosses
# every chunk boundary, where the defaults (10,000 and 10,000) would need ten thousand members,
# and their import, preparation and fan-out on the shared host would slow every later test.
PREPARE_INLINE_MAX = 600
PREPARE_CHUNK = 400


@dataclass
class Stack:
    """Handles on the running stack."""

    api: httpx.Client  # base URL .../api, function key preset
    anonymous: httpx.Client  # base URL .../api, no key
    emulator: AcsEmulator
    services: Services  # direct access to the same storage, for arranging state
    log_path: Path  # the host's stdout and stderr: JSON log lines (SMS_LOG_FORMAT=json)

    def wait_for(self, check: Callable[[], Any], deadline_s: float = 30.0,
                 what: str = "condition", explain: Callable[[], Any] | None = None) -> Any:
        """Poll `check` until it returns something truthy, or fail after the (load-scaled)
        deadline, saying what `explain` reports of the state then."""
        return wait_until(check, deadline_s, what, explain)

    def status_of(self, message_id: str) -> str:
        return str(self.api.get(f"/messages/{message_id}").json()["status"])

    def log_lines(self) -> list[dict[str, Any]]:
        """The host's JSON log lines so far (the few lines before the app loaded are text)."""
        lines = []
        for text in self.log_path.read_text("utf-8", errors="replace").splitlines():
            if text.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(text))
        return lines


def _empty_queues(services: Services) -> None:
    """Clear every queue of the session's storage (jobs due later included)."""
    queues = services.storage.queue_service()
    for queue in queues.list_queues():
        queues.get_queue_client(queue.name).clear_messages()


@contextlib.contextmanager
def start_stack(azurite_connection_string: str, log_dir: Path) -> Iterator[Stack]:
    """The running stack on `azurite_connection_string`, the host's log in `log_dir`."""
    webhook = ThreadingHTTPServer(("127.0.0.1", 0), AppWebhook)
    threading.Thread(target=webhook.serve_forever, daemon=True).start()
    port = free_port()
    emulator = AcsEmulator(port=0, access_key_b64=DEFAULT_ACCESS_KEY,
                           storage_connection_string=azurite_connection_string,
                           dlr_delay_s=0.2, rate_per_minute=100_000,
                           inbound_webhook_url=f"http://127.0.0.1:{port}/api/inbound"
                                               f"?code={FUNCTION_KEY}")
    emulator.start()
    env = {**os.environ, "AzureWebJobsStorage": azurite_connection_string,
           "ACS_CONNECTION_STRING": emulator.connection_string, "SMS_DEFAULT_FROM": SENDER,
           "SMS_SENDER_RATE_PER_MINUTE": "100000", "LOCAL_FUNCTION_KEY": FUNCTION_KEY,
           "SMS_APP_WEBHOOK_URL": f"http://127.0.0.1:{webhook.server_address[1]}/sms-events",
           "SMS_APP_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "SMS_CAMPAIGN_PREPARE_INLINE_MAX": str(PREPARE_INLINE_MAX),
           "SMS_CAMPAIGN_PREPARE_CHUNK": str(PREPARE_CHUNK),
           # JSON lines, as in Azure: tests read fields (correlationId) instead of wording.
           "SMS_LOG_FORMAT": "json"}
    services = Services(load_settings(AzureWebJobsStorage=azurite_connection_string,
                                      ACS_CONNECTION_STRING=emulator.connection_string))
    _empty_queues(services)
    log = log_dir / "host.log"
    with open(log, "wb") as out:
        host = subprocess.Popen(
            [sys.executable, "-m", "localdev.func_host", "--root", str(ROOT), "--port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/api"
    api = httpx.Client(base_url=base, headers={"x-functions-key": FUNCTION_KEY}, timeout=30)
    anonymous = httpx.Client(base_url=base, timeout=30)
    stack = Stack(api, anonymous, emulator, services, log)
    try:
        def healthy() -> bool:
            if host.poll() is not None:
                pytest.fail(f"function host exited: {log.read_text()[-3000:]}")
            try:
                return anonymous.get("/health").status_code == 200
            except httpx.HTTPError:
                return False
        stack.wait_for(healthy, 90, "the function host to answer /api/health")
        services.ensure_resources()
        yield stack
    finally:
        host.terminate()
        try:
            host.wait(timeout=20)
        except subprocess.TimeoutExpired:
            host.kill()
        api.close()
        anonymous.close()
        emulator.stop()
        webhook.shutdown()
