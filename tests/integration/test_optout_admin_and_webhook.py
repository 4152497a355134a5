"""The opt-out admin API (ACS Opt-Out API shapes) and the signed app webhook, on real storage."""

from __future__ import annotations

import csv
import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from localdev.acs_emulator import AcsEmulator
from sms_core.adapters.storage import WEBHOOK_OUTBOX_QUEUE
from sms_core.adapters.webhook_poster import HttpxPoster
from sms_core.bootstrap import Services
from sms_core.errors import RequestInvalid
from sms_core.models.app_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_MAX_ATTEMPTS,
    WebhookDelivery,
    event_envelope,
    verify,
)
from sms_core.models.messages import parse_model
from sms_core.models.optouts import OptOutRequest
from sms_core.use_cases.optouts import change_optouts, optout_export_csv, optout_history
from sms_core.use_cases.webhook_delivery import deliver_webhook
from sms_http.requests import optout_pair_query
from tests.integration.conftest import make_services, new_number

OUR = "+18005550111"


def request(recipients: list[str], sender: str = OUR) -> OptOutRequest:
    body = json.dumps({"from": sender, "recipients": [{"to": r} for r in recipients]})
    return parse_model(OptOutRequest, body)  # type: ignore[no-any-return]


def test_add_check_remove_in_acs_shapes(services: Services) -> None:
    a, b = new_number(), new_number()
    added = change_optouts(services, "add", request([a, "+123"])).public()
    assert added == {"value": [
        {"to": a, "httpStatusCode": 200},
        {"to": "+123", "httpStatusCode": 400,
         "errorMessage": "Invalid recipient phone number format"}]}
    checked = change_optouts(services, "check", request([a, b])).public()
    assert checked == {"value": [{"to": a, "httpStatusCode": 200, "isOptedOut": True},
                                 {"to": b, "httpStatusCode": 200, "isOptedOut": False}]}
    change_optouts(services, "remove", request([a]))
    assert change_optouts(services, "check", request([a])).public()["value"][0][
        "isOptedOut"] is False
    history = optout_history(services.optouts, OUR, a).public()["value"]
    assert [h["action"] for h in history] == ["opt-out", "opt-in"]
    assert {h["source"] for h in history} == {"api"}


@pytest.mark.parametrize(("body", "field"), [
    ({"recipients": [{"to": "+14255550123"}]}, "from"),
    ({"from": OUR, "recipients": []}, "recipients"),
    ({"from": OUR, "recipients": [{"to": "+14255550123"}] * 101}, "recipients"),
    ({"from": OUR, "recipients": [{}]}, "recipients[0].to"),
    ({"from": OUR, "recipients": [{"to": 5}]}, "recipients[0].to"),
])
def test_bad_opt_out_requests_name_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_model(OptOutRequest, json.dumps(body))
    assert field in [e.field for e in info.value.errors]


def test_bad_sender_and_action_are_400(services: Services) -> None:
    with pytest.raises(RequestInvalid, match="from"):
        change_optouts(services, "add", request([new_number()], sender="nope!"))
    with pytest.raises(RequestInvalid, match="action"):
        change_optouts(services, "delete", request([new_number()]))
    with pytest.raises(RequestInvalid):
        optout_pair_query({"from": OUR})


def test_export_lists_current_opt_outs_as_csv(services: Services) -> None:
    sender = f"+1800555{uuid.uuid4().int % 10000:04d}"
    a, b = new_number(), new_number()
    change_optouts(services, "add", request([a, b], sender=sender))
    change_optouts(services, "remove", request([b], sender=sender))
    rows = list(csv.DictReader(io.StringIO(optout_export_csv(services.optouts, sender))))
    mine = [r for r in rows if r["scope"] == "sender"]
    assert [r["to"] for r in mine] == [a] and mine[0]["source"] == "api"


class _Receiver(BaseHTTPRequestHandler):
    statuses: list[int] = []
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def app_server() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"statuses": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/sms", handler
    server.shutdown()


def test_webhook_is_signed_and_verifiable(azurite_connection_string: str, emulator: AcsEmulator,
                                          app_server: tuple[str, type[_Receiver]]) -> None:
    url, receiver = app_server
    services = make_services(azurite_connection_string, emulator, SMS_APP_WEBHOOK_URL=url,
                             SMS_APP_WEBHOOK_SECRET="s3cret")
    event = event_envelope("sms.received", "received-1", {"message": "hi"})
    ok = deliver_webhook(services.settings, services.webhook_outbox, HttpxPoster(),
                         WebhookDelivery(event).encode())
    assert ok
    (headers, body), = receiver.received
    lower = {k.lower(): v for k, v in headers.items()}
    assert json.loads(body) == event
    assert verify("s3cret", lower[TIMESTAMP_HEADER.lower()], body,
                  lower[SIGNATURE_HEADER.lower()])
    assert not verify("wrong", lower[TIMESTAMP_HEADER.lower()], body,
                      lower[SIGNATURE_HEADER.lower()])


def test_failed_webhook_is_retried_later_then_dead_lettered(
        azurite_connection_string: str, emulator: AcsEmulator,
        app_server: tuple[str, type[_Receiver]]) -> None:
    url, receiver = app_server
    services = make_services(azurite_connection_string, emulator, SMS_APP_WEBHOOK_URL=url)
    outbox = services.storage.queue(WEBHOOK_OUTBOX_QUEUE)
    poison = services.storage.queue(f"{WEBHOOK_OUTBOX_QUEUE}-poison")
    outbox.clear_messages()
    poison.clear_messages()
    event = event_envelope("optout.changed", f"e-{uuid.uuid4().hex}", {"optedOut": True})
    receiver.statuses = [500]
    assert not deliver_webhook(services.settings, services.webhook_outbox, HttpxPoster(),
                               WebhookDelivery(event).encode())
    props = outbox.get_queue_properties()
    assert props.approximate_message_count == 1  # back on the queue, invisible for a while
    receiver.statuses = [503]
    last = WebhookDelivery(event, attempt=WEBHOOK_MAX_ATTEMPTS).encode()
    assert not deliver_webhook(services.settings, services.webhook_outbox, HttpxPoster(), last)
    (dead,) = list(poison.receive_messages())
    assert WebhookDelivery.decode(dead.content).event == event
