"""Inbound SMS against real parts: verbatim Event Grid samples, keywords, the opt-out lifecycle,
replies through the real SDK and emulator, events for the app, conversations."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from localdev.acs_emulator import AcsEmulator
from sms_core.adapters.app_events import AppEventQueue
from sms_core.bootstrap import Services
from sms_core.errors import RequestInvalid
from sms_core.models.messages import MessageStatus, SendRequest
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.sending import accept_send
from sms_http.event_grid import abuse_protection_handshake, inbound_post
from tests.integration.conftest import (
    SENDER,
    make_services,
    new_number,
    queue_every_send,
    take_jobs,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventgrid"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def events_queue(services: Services) -> QueueClient:
    """A private `sms-events` stand-in for this test."""
    name = f"events-{uuid.uuid4().hex[:12]}"
    services.storage.queue_service().create_queue(name)
    queue = services.storage.queue(name)
    services.__dict__["app_events"] = AppEventQueue(queue, None)
    return queue


def app_events(queue: QueueClient) -> list[dict[str, Any]]:
    return [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]


def sms_event(frm: str, to: str, text: str, event_id: str | None = None,
              pascal: bool = False) -> bytes:
    """An SMSReceived event shaped like the docs sample (numbers without '+')."""
    event = fixture("eventgrid-schema.sms-received.docs-2022-pascalcase.json" if pascal
                    else "eventgrid-schema.sms-received.docs-2025.json")[0]
    eid = event_id or f"Incoming_{uuid.uuid4().hex}"
    data = event["data"]
    keys = {k.lower(): k for k in data}
    data[keys["messageid"]] = eid
    data[keys["from"]] = frm.lstrip("+")
    data[keys["to"]] = to.lstrip("+")
    data[keys["message"]] = text
    data[keys["receivedtimestamp"]] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    event["id"] = eid
    return json.dumps([event]).encode()


def run_jobs(services: Services) -> None:
    for _ in range(20):
        jobs = take_jobs(services)
        if not jobs:
            return
        for job in jobs:
            dispatch(services, job)


def test_subscription_validation_handshake_answers_the_code(services: Services) -> None:
    event = (FIXTURES / "eventgrid-subscription-validation-event.docs.json").read_bytes()
    answer = inbound_post(services, event)
    assert answer.status == 200
    assert answer.body == fixture("eventgrid-subscription-validation-response.docs.json")


def test_cloudevents_options_handshake() -> None:
    answer = abuse_protection_handshake({"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert answer.status == 200
    assert answer.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    assert answer.headers["WebHook-Allowed-Rate"] == "*"
    with pytest.raises(RequestInvalid):  # a 400 problem naming the header
        abuse_protection_handshake({})


@pytest.mark.parametrize("name", [
    "eventgrid-schema.sms-received.docs-2025.json",
    "eventgrid-schema.sms-received.docs-2022-pascalcase.json",
    "eventgrid-schema.sms-received.spec-example-with-segmentcount.json",
    "cloudevents-schema.sms-received.spec-example.json",
])
def test_verbatim_samples_are_relayed_and_recorded(services: Services, events_queue: QueueClient,
                                                   name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    # Each test run needs its own inbound id: the sample's id is fixed.
    text = raw.decode().replace("Incoming_20200918002745d29ebbea",
                                f"Incoming_{uuid.uuid4().hex[:20]}")
    answer = inbound_post(services, text.encode())
    assert answer.status == 200 and answer.body == {"received": 1, "invalid": 0}
    (event,) = app_events(events_queue)
    assert event["type"] == "sms.received"
    data = event["data"]
    assert data["from"] == "+15555555555" and data["to"] == "+15555555555"
    assert data["message"].startswith("Great to connect with")
    assert data["keyword"] is None and data["receivedAt"].startswith("2020-09-18T00:27:45")
    messages, _ = services.conversations.page("+15555555555", "+15555555555", 200)
    assert data["id"] in [m.message_id for m in messages]


def test_stop_opts_out_replies_once_and_blocks_later_sends(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient) -> None:
    person = new_number()
    stop = sms_event(person, SENDER, "Stop. Thank you")
    inbound_post(services, stop)
    inbound_post(services, stop)  # Event Grid delivers it again
    assert services.optouts.is_opted_out(SENDER, person)
    run_jobs(services)
    inbox = emulator.state.inbox(person)
    assert [m["message"] for m in inbox] == [
        "You have successfully been unsubscribed to messages from this number. "
        "Reply START to resubscribe."]
    history = services.optouts.history(SENDER, person)
    assert len(history) == 1 and history[0].keyword == "STOP"
    assert history[0].text == "Stop. Thank you" and history[0].source == "keyword"
    types = [e["type"] for e in app_events(events_queue)]
    assert types.count("optout.changed") == 1 and types.count("sms.received") == 1

    resp = accept_send(services, SendRequest.model_validate({"to": person, "message": "Promo"}))
    assert resp.messages[0].status == MessageStatus.BLOCKED
    run_jobs(services)
    assert len(emulator.state.inbox(person)) == 1


def test_start_resubscribes_and_messages_flow_again(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient) -> None:
    person = new_number()
    inbound_post(services, sms_event(person, SENDER, "STOP"))
    inbound_post(services, sms_event(person, SENDER, "unstop", pascal=True))
    assert not services.optouts.is_opted_out(SENDER, person)
    resp = accept_send(services, SendRequest.model_validate({"to": person, "message": "Back"}))
    assert resp.messages[0].status == MessageStatus.QUEUED
    run_jobs(services)
    texts = [m["message"] for m in emulator.state.inbox(person)]
    assert texts[-1] == "Back"
    assert "re-subscribed" in texts[1]
    changes = [e["data"]["optedOut"] for e in app_events(events_queue)
               if e["type"] == "optout.changed"]
    assert changes == [True, False]


def test_french_stop_gets_the_french_reply(services: Services, emulator: AcsEmulator,
                                           events_queue: QueueClient) -> None:
    person = new_number()
    inbound_post(services, sms_event(person, SENDER, "ARRÊT"))
    run_jobs(services)
    (reply,) = emulator.state.inbox(person)
    assert reply["message"] != ("You have successfully been unsubscribed to messages from this "
                                "number. Reply START to resubscribe.")
    assert services.optouts.history(SENDER, person)[0].keyword in ("ARRET", "ARRÊT")


def test_help_replies_with_help_text_but_not_to_an_opted_out_person(
        azurite_connection_string: str, emulator: AcsEmulator) -> None:
    services = make_services(azurite_connection_string, emulator,
                             SMS_HELP_TEXT="Acme alerts. Reply STOP to cancel.")
    services.__dict__["app_events"] = AppEventQueue(services.storage.queue("sms-events"), None)
    person, other = new_number(), new_number()
    inbound_post(services, sms_event(person, SENDER, "help"))
    services.optouts.opt_out(SENDER, other, source="api")
    inbound_post(services, sms_event(other, SENDER, "HELP"))
    run_jobs(services)
    assert [m["message"] for m in emulator.state.inbox(person)] == [
        "Acme alerts. Reply STOP to cancel."]
    assert emulator.state.inbox(other) == []


def test_auto_reply_off_sends_nothing(azurite_connection_string: str,
                                      emulator: AcsEmulator) -> None:
    services = make_services(azurite_connection_string, emulator, SMS_AUTO_REPLY="false")
    services.__dict__["app_events"] = AppEventQueue(services.storage.queue("sms-events"), None)
    person = new_number()
    inbound_post(services, sms_event(person, SENDER, "STOP"))
    assert services.optouts.is_opted_out(SENDER, person)
    assert take_jobs(services) == []


def test_stop_while_200_messages_are_queued_stops_all_of_them(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient) -> None:
    queue_every_send(services)  # the 200 wait on sms-outbound (the sender is busy)
    person = new_number()
    for i in range(200):
        accept_send(services, SendRequest.model_validate(
            {"to": person, "message": f"Update {i}"}))
    inbound_post(services, sms_event(person, SENDER, "STOP"))
    run_jobs(services)
    inbox = [m["message"] for m in emulator.state.inbox(person)]
    assert inbox == ["You have successfully been unsubscribed to messages from this number. "
                     "Reply START to resubscribe."]


def test_ordinary_message_is_relayed_without_action(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient) -> None:
    person = new_number()
    inbound_post(services, sms_event(person, SENDER, "I am stopping by at 5"))
    assert not services.optouts.is_opted_out(SENDER, person)
    assert take_jobs(services) == []
    (event,) = app_events(events_queue)
    assert event["data"]["message"] == "I am stopping by at 5" and event["data"]["keyword"] is None


@pytest.mark.parametrize("body", [b"{not json", b"", b'[{"eventType": 5}]'])
def test_malformed_payload_is_a_400(services: Services, body: bytes) -> None:
    with pytest.raises(RequestInvalid):
        inbound_post(services, body)


def test_unknown_event_types_are_acknowledged(services: Services) -> None:
    body = json.dumps([{"id": "1", "eventType": "Microsoft.Storage.BlobCreated", "data": {}}])
    assert inbound_post(services, body.encode()).status == 200


def test_conversation_pages_both_directions_in_time_order(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient) -> None:
    person = new_number()
    accept_send(services, SendRequest.model_validate({"to": person, "message": "Hi there"}))
    run_jobs(services)
    for i in range(4):
        inbound_post(services, sms_event(person, SENDER, f"reply {i}"))
    seen, token, pages = [], None, 0
    while True:
        page, token = services.conversations.page(SENDER, person, 2, token)
        seen += page
        pages += 1
        if not token:
            break
    assert pages == 3
    assert [e.direction for e in seen] == ["outbound"] + ["inbound"] * 4
    assert [e.text for e in seen] == ["Hi there", "reply 0", "reply 1", "reply 2", "reply 3"]
    assert [e.at for e in seen] == sorted(e.at for e in seen)


@pytest.mark.parametrize("filler", ["x", "\U0001f600"], ids=["ascii", "emoji"])
def test_a_stop_longer_than_a_table_property_is_honoured_and_kept_cut(
        services: Services, emulator: AcsEmulator, events_queue: QueueClient,
        filler: str) -> None:
    # 40,000 characters: more than a Table string property (32K UTF-16 units) and, relayed,
    # more than a queue message holds (64 KiB). Event Grid delivers such texts.
    person = new_number()
    text = "STOP. " + filler * 40_000
    answer = inbound_post(services, sms_event(person, SENDER, text))
    assert answer.status == 200 and answer.body == {"received": 1, "invalid": 0}
    assert services.optouts.is_opted_out(SENDER, person)
    run_jobs(services)
    assert len(emulator.state.inbox(person)) == 1  # the opt-out confirmation
    (entry,) = [m for m in services.conversations.page(SENDER, person, 10)[0]
                if m.direction == "inbound"]
    assert entry.text.startswith("STOP. " + filler * 100)
    assert entry.text.endswith(f"[cut: {len(text)} characters in all]")
    assert entry.length == len(text)
    (received,) = [e for e in app_events(events_queue) if e["type"] == "sms.received"]
    assert received["data"]["message"] == entry.text
    assert received["data"]["messageLength"] == len(text)
    assert received["data"]["keyword"] == "STOP"
