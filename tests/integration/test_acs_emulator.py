"""The ACS emulator against the real azure-communication-sms SDK, raw signed HTTP and Azurite,
and its handset replies against a throwaway webhook standing in for the app."""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.communication.sms import SmsClient
from azure.communication.sms._generated.models import (
    SendMessageRequest,
    SmsRecipient,
    SmsSendOptions,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from localdev.acs_emulator import (
    DEFAULT_ACCESS_KEY,
    DLR_QUEUE,
    EMULATOR_TOPIC,
    ROUTES,
    AcsEmulator,
    EmulatorState,
    NoInboundWebhook,
    Outcome,
    SendResult,
    segment_count,
    sign_request,
    verify_hmac,
)
from tests.deadlines import deadline

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "acs"
EVENTGRID_FIXTURES = ROOT / "tests" / "fixtures" / "eventgrid"
KEY = base64.b64encode(b"test-key-for-the-acs-emulator").decode()
API = "/sms?api-version=2021-03-07"
MESSAGE_ID = re.compile(r"Outgoing_\d{14}[0-9a-f-]{36}_noam")
INCOMING_ID = re.compile(r"Incoming_\d{14}[0-9a-f-]{36}")
ISO_7 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")

# Numbers unique to this session (Azurite and its DLR queue are shared by the whole session).
_run = random.randrange(1000, 9999)
_seq = itertools.count(1)


def number(suffix: str | None = None) -> str:
    """A fresh E.164 number; `suffix` forces its ending (e.g. "0000", unreachable)."""
    n = f"+1{_run:04d}{next(_seq):06d}"
    if suffix is not None:
        return n[: -len(suffix)] + suffix
    return n if not n.endswith("0000") else number()


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def rfc1123(ts: datetime) -> str:
    return ts.strftime("%a, %d %b %Y %H:%M:%S GMT")


# --------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator(azurite_connection_string: str) -> Iterator[AcsEmulator]:
    emu = AcsEmulator(
        port=0,
        access_key_b64=KEY,
        storage_connection_string=azurite_connection_string,
        dlr_delay_s=0.05,
    )
    emu.start()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def sms(emulator: AcsEmulator) -> SmsClient:
    return SmsClient(emulator.endpoint, AzureKeyCredential(KEY))


@pytest.fixture
def http(emulator: AcsEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.endpoint, timeout=10) as client:
        yield client


@pytest.fixture
def dlr_queue(azurite_connection_string: str) -> Iterator[QueueClient]:
    with QueueClient.from_connection_string(azurite_connection_string, DLR_QUEUE) as q:
        yield q


def signed_post(
    http: httpx.Client,
    emulator: AcsEmulator,
    body: dict[str, Any] | bytes,
    *,
    key: str = KEY,
    path: str = API,
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = sign_request("POST", path, f"{emulator.host}:{emulator.port}", raw, key)
    headers["Content-Type"] = "application/json"
    return http.post(path, content=raw, headers=headers)


def send_body(sender: str, to: list[str], message: str = "Hello") -> dict[str, Any]:
    return {
        "from": sender,
        "smsRecipients": [{"to": t} for t in to],
        "message": message,
        "smsSendOptions": {"enableDeliveryReport": False},
    }


def inbox(http: httpx.Client, to: str) -> list[dict[str, Any]]:
    resp = http.get(f"/emulator/handsets/{to}/inbox")
    assert resp.status_code == 200
    messages: list[dict[str, Any]] = resp.json()["messages"]
    return messages


def requests_from(http: httpx.Client, sender: str) -> list[dict[str, Any]]:
    return [r for r in http.get("/emulator/requests").json() if r["from"] == sender]


def wait_for_reports(
    queue: QueueClient, message_ids: set[str], deadline_s: float = 20.0
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Collect (raw text, event) per messageId from the DLR queue, deleting only ours."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    end = deadline(deadline_s)
    while time.monotonic() < end and set(found) != message_ids:
        try:
            # Other tests' reports become visible again after a second; ours are deleted.
            messages = list(queue.receive_messages(messages_per_page=32, visibility_timeout=1))
        except ResourceNotFoundError:
            messages = []  # the emulator creates the queue with its first report
        for msg in messages:
            text = str(msg.content)
            event = json.loads(base64.b64decode(text, validate=True))
            message_id = event.get("data", {}).get("messageId")
            if message_id in message_ids:
                found[message_id] = (text, event)
                queue.delete_message(msg)
        if set(found) != message_ids:
            time.sleep(0.05)
    assert set(found) == message_ids, f"delivery reports missing: {message_ids - set(found)}"
    return found


# --------------------------------------------------------------------------------------------
# HMAC: the verifier against the SDK's own signature
# --------------------------------------------------------------------------------------------


def test_sign_request_reproduces_the_sdk_vector() -> None:
    v = load("hmac-sha256.sms-send.sdk-1.1.0.vector.json")
    headers = sign_request(
        v["method"],
        v["pathAndQuery"],
        v["host"],
        v["body"].encode(),
        v["accessKeyBase64"],
        date=v["xMsDate"],
    )
    expected = v["expectedHeaders"]
    assert headers["x-ms-content-sha256"] == expected["x-ms-content-sha256"]
    assert headers["Authorization"] == expected["Authorization"]


def test_verifier_accepts_the_sdk_vector() -> None:
    v = load("hmac-sha256.sms-send.sdk-1.1.0.vector.json")
    headers = {**v["expectedHeaders"], "Host": v["host"]}
    at = datetime(2019, 3, 26, 16, 10, tzinfo=UTC)
    assert (
        verify_hmac(
            "POST", v["pathAndQuery"], headers, v["body"].encode(), v["accessKeyBase64"], now=at
        )
        is None
    )


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("body", "Denied"),
        ("key", "Denied"),
        ("host", "Denied"),
        ("path", "Denied"),
        ("date_skew", "Denied"),
        ("no_auth", "Unauthorized"),
        ("bearer", "Unauthorized"),
    ],
)
def test_verifier_rejects(change: str, code: str) -> None:
    v = load("hmac-sha256.sms-send.sdk-1.1.0.vector.json")
    headers: dict[str, str] = {**v["expectedHeaders"], "Host": v["host"]}
    body = v["body"].encode()
    key = v["accessKeyBase64"]
    path = v["pathAndQuery"]
    at = datetime(2019, 3, 26, 16, 6, 51, tzinfo=UTC)
    if change == "body":
        body = body.replace(b"Hello", b"Jello")
    elif change == "key":
        key = DEFAULT_ACCESS_KEY
    elif change == "host":
        headers["Host"] = v["host"] + ":443"
    elif change == "path":
        path = "/sms?api-version=2026-01-23"
    elif change == "date_skew":
        at += timedelta(minutes=16)
    elif change == "no_auth":
        del headers["Authorization"]
    elif change == "bearer":
        headers["Authorization"] = "Bearer eyJ0eXAi"
    failure = verify_hmac("POST", path, headers, body, key, now=at)
    assert failure is not None
    assert failure.code == code
    if change == "body":
        # ACS's own wording (azure-rest-api-specs SmsSend 401 example).
        assert failure.message == (
            "Request 'x-ms-content-sha256' differs from generated content hash."
        )


def test_verifier_accepts_date_instead_of_x_ms_date() -> None:
    body = b'{"a": 1}'
    date = rfc1123(datetime.now(UTC))
    signed = sign_request("POST", API, "h:1", body, KEY, date=date)
    headers = {
        "Date": date,
        "Host": "h:1",
        "x-ms-content-sha256": signed["x-ms-content-sha256"],
        "Authorization": signed["Authorization"].replace("x-ms-date;", "date;"),
    }
    assert verify_hmac("POST", API, headers, body, KEY) is None


# --------------------------------------------------------------------------------------------
# Pure state: segments, rate bucket with a pinned clock, outcomes
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "segments"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),
        ("{" * 81, 2),
        ("\u00e9" * 160, 1),
        ("\u0107" * 70, 1),
        ("\u0107" * 71, 2),
        ("\U0001f600" * 35, 1),
        ("\U0001f600" * 36, 2),
    ],
)
def test_segment_count(message: str, segments: int) -> None:
    assert segment_count(message) == segments


def test_rate_bucket_refills_with_time() -> None:
    now = [100.0]
    state = EmulatorState(rate_per_minute=60, clock=lambda: now[0])

    def send(sender: str, recipients: int) -> SendResult:
        return state.send(json.dumps(send_body(sender, ["+14255550123"] * recipients)).encode())

    assert send("+18005550100", 60).status == 202
    limited = send("+18005550100", 2)
    assert (limited.status, limited.headers["Retry-After"]) == (429, "2")
    now[0] += 2.0  # 60 a minute is one a second
    assert send("+18005550100", 2).status == 202
    assert send("+18005550100", 1).status == 429
    assert send("+18005550101", 1).status == 202  # every sender has its own bucket
    assert [r["status"] for r in state.requests()] == [202, 429, 202, 429, 202]


def test_state_reports_only_when_asked_and_reset_forgets() -> None:
    state = EmulatorState()
    body = send_body("+18005550100", ["+14255550123", "+14255550000"])
    assert state.send(json.dumps(body).encode()).reports == []
    body["smsSendOptions"] = {"enableDeliveryReport": True, "tag": "t"}
    reports = state.send(json.dumps(body).encode()).reports
    assert [(r.to, r.delivery_status) for r in reports] == [
        ("+14255550123", "Delivered"),
        ("+14255550000", "Failed"),
    ]
    state.set_outcome(
        "14255550123", Outcome("Failed", "4005: Message is blocked by Destination carrier.")
    )
    assert state.send(json.dumps(body).encode()).reports[0].delivery_status == "Failed"
    assert len(state.inbox("+14255550123")) == 3
    state.reset()
    assert state.inbox("+14255550123") == []
    assert state.requests() == []
    assert state.send(json.dumps(body).encode()).reports[0].delivery_status == "Delivered"


# --------------------------------------------------------------------------------------------
# Over HTTP with the real SDK
# --------------------------------------------------------------------------------------------


def test_send_reaches_the_handset_inbox(sms: SmsClient, http: httpx.Client) -> None:
    sender, to = number(), number()
    [result] = sms.send(sender, to, "Hello from the emulator", tag="greeting")
    assert result.successful
    assert result.http_status_code == 202
    assert MESSAGE_ID.fullmatch(result.message_id)
    for spelling in (to, to.lstrip("+"), to.replace("+", "%2B")):
        [received] = inbox(http, spelling)
        assert received["messageId"] == result.message_id
        assert received["from"] == sender
        assert received["to"] == to
        assert received["message"] == "Hello from the emulator"
        assert received["tag"] == "greeting"
    body = http.get(f"/emulator/handsets/{to}/inbox").json()
    assert body["number"] == to
    [logged] = requests_from(http, sender)
    assert logged["recipients"] == [to]
    assert logged["status"] == 202


def test_any_api_version_is_accepted_and_a_missing_one_is_400(
    emulator: AcsEmulator, http: httpx.Client
) -> None:
    sender, to = number(), number()
    ok = signed_post(http, emulator, send_body(sender, [to]), path="/sms?api-version=2026-01-23")
    assert ok.status_code == 202
    assert ok.json()["value"][0]["successful"] is True
    missing = signed_post(http, emulator, send_body(sender, [to]), path="/sms")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "ApiVersionUnspecified"
    assert len(inbox(http, to)) == 1


def test_wrong_key_is_401_and_nothing_is_sent(emulator: AcsEmulator, http: httpx.Client) -> None:
    sender, to = number(), number()
    client = SmsClient(emulator.endpoint, AzureKeyCredential(DEFAULT_ACCESS_KEY))
    with pytest.raises(ClientAuthenticationError) as info:
        client.send(sender, to, "Hello")
    assert info.value.status_code == 401
    raw = signed_post(http, emulator, send_body(sender, [to]), key=DEFAULT_ACCESS_KEY)
    assert raw.status_code == 401
    error = raw.json()["error"]
    assert error["code"] == "Denied"
    assert error["message"]
    assert inbox(http, to) == []
    assert requests_from(http, sender) == []


@pytest.mark.parametrize("count", [0, 101])
def test_recipient_count_outside_1_to_100_is_400(
    emulator: AcsEmulator, http: httpx.Client, count: int
) -> None:
    sender = number()
    recipients = [number() for _ in range(count)]
    resp = signed_post(http, emulator, send_body(sender, recipients))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "BadRequest"
    assert all(inbox(http, to) == [] for to in recipients[:3])
    [logged] = requests_from(http, sender)
    assert logged["status"] == 400
    assert len(logged["recipients"]) == count


def test_one_hundred_recipients_are_accepted(emulator: AcsEmulator, http: httpx.Client) -> None:
    sender = number()
    recipients = [number() for _ in range(100)]
    resp = signed_post(http, emulator, send_body(sender, recipients))
    assert resp.status_code == 202
    assert [item["to"] for item in resp.json()["value"]] == recipients
    assert len(inbox(http, recipients[-1])) == 1


@pytest.mark.parametrize(("length", "status"), [(2048, 202), (2049, 400)])
def test_message_length_limit(
    emulator: AcsEmulator, http: httpx.Client, length: int, status: int
) -> None:
    sender, to = number(), number()
    resp = signed_post(http, emulator, send_body(sender, [to], "x" * length))
    assert resp.status_code == status
    if status == 400:
        assert resp.json()["error"]["code"] == "BadRequest"
        assert inbox(http, to) == []


def test_empty_message_and_missing_from_are_400(emulator: AcsEmulator, http: httpx.Client) -> None:
    to = number()
    assert signed_post(http, emulator, send_body(number(), [to], "")).status_code == 400
    no_from = send_body(number(), [to])
    del no_from["from"]
    assert signed_post(http, emulator, no_from).status_code == 400
    assert signed_post(http, emulator, b"not json").status_code == 400
    assert inbox(http, to) == []


def test_sender_rate_limit_is_429_with_retry_after_and_nothing_sent(
    emulator: AcsEmulator, http: httpx.Client
) -> None:
    sender = number()
    assert (
        http.put(f"/emulator/senders/{sender}/rate", json={"ratePerMinute": 3}).status_code == 200
    )
    first = [number() for _ in range(3)]
    assert signed_post(http, emulator, send_body(sender, first)).status_code == 202
    late = number()
    resp = signed_post(http, emulator, send_body(sender, [late]))
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.json()["error"]["code"] == "TooManyRequests"
    assert inbox(http, late) == []
    assert [r["status"] for r in requests_from(http, sender)] == [202, 429]
    # Setting the rate again refills the bucket.
    http.put(f"/emulator/senders/{sender}/rate", json={"ratePerMinute": 3})
    assert signed_post(http, emulator, send_body(sender, [late])).status_code == 202
    assert (
        http.put(f"/emulator/senders/{sender}/rate", json={"ratePerMinute": 0}).status_code == 400
    )


def test_repeatability_id_is_accepted_once(sms: SmsClient, http: httpx.Client) -> None:
    sender, to = number(), number()
    request_id = "0f6c1a3e-1d6a-4b8e-9c57-1f8d0f3a9a11"
    first_sent = rfc1123(datetime.now(UTC))

    def send() -> Any:
        request = SendMessageRequest(
            from_property=sender,
            sms_recipients=[
                SmsRecipient(
                    to=to,
                    repeatability_request_id=request_id,
                    repeatability_first_sent=first_sent,
                )
            ],
            message="Exactly once",
            sms_send_options=SmsSendOptions(enable_delivery_report=False),
        )
        [item] = sms._sms_service_client.sms.send(request).value
        return item

    first, second = send(), send()
    assert first.successful
    assert first.http_status_code == 202
    assert first.repeatability_result == "accepted"
    assert second.successful is False
    assert second.http_status_code == 400
    assert second.repeatability_result == "rejected"
    assert second.message_id == first.message_id
    assert [m["messageId"] for m in inbox(http, to)] == [first.message_id]


def test_repeatability_id_without_first_sent_is_rejected(
    emulator: AcsEmulator, http: httpx.Client
) -> None:
    sender, to = number(), number()
    body = send_body(sender, [to])
    body["smsRecipients"][0]["repeatabilityRequestId"] = "b0c5f1d2-6d7e-4e39-8d0e-4c7a5b0f2e31"
    [item] = signed_post(http, emulator, body).json()["value"]
    assert item["httpStatusCode"] == 400
    assert item["repeatabilityResult"] == "rejected"
    assert "repeatability-first-sent" in item["errorMessage"]
    assert inbox(http, to) == []


def test_invalid_number_among_valid_is_a_per_item_400(sms: SmsClient, http: httpx.Client) -> None:
    sender, a, b = number(), number(), number()
    results = sms.send(sender, [a, "+1234", b, "14255550123"], "Mixed")
    assert [r.to for r in results] == [a, "+1234", b, "14255550123"]
    assert [r.http_status_code for r in results] == [202, 400, 202, 400]
    assert [r.successful for r in results] == [True, False, True, False]
    assert results[1].error_message == "Invalid To phone number format."
    assert results[1].message_id is None
    assert len(inbox(http, a)) == 1
    assert len(inbox(http, b)) == 1


def test_steered_send_error_then_cleared(sms: SmsClient, http: httpx.Client) -> None:
    sender, to = number(), number()
    put = http.put(
        f"/emulator/outcomes/{to}",
        json={"sendError": {"httpStatusCode": 503, "errorMessage": "ServiceUnavailable"}},
    )
    assert put.status_code == 200
    [failed] = sms.send(sender, to, "Try me")
    assert (failed.http_status_code, failed.successful) == (503, False)
    assert failed.error_message == "ServiceUnavailable"
    assert inbox(http, to) == []
    assert http.delete(f"/emulator/outcomes/{to}").json()["removed"] is True
    [ok] = sms.send(sender, to, "Try me")
    assert ok.successful
    assert len(inbox(http, to)) == 1


def test_stats_count_send_calls_and_accepted_recipients() -> None:
    state = EmulatorState()
    assert state.stats() == {"accepted": 0, "requests": 0}
    # One call, two recipients, one of them an invalid number (a per-item 400): one accepted.
    state.send(json.dumps(send_body("+18005550100", ["+14255550123", "12345"])).encode())
    assert state.stats() == {"accepted": 1, "requests": 1}
    assert state.send(b"not json").status == 400  # logged, nothing accepted
    assert state.stats() == {"accepted": 1, "requests": 2}
    state.reset()
    assert state.stats() == {"accepted": 0, "requests": 0}


def test_stats_route_counts_sdk_sends(sms: SmsClient, http: httpx.Client) -> None:
    before = http.get("/emulator/stats").json()
    assert set(before) == {"accepted", "requests"}
    results = sms.send(number(), [number(), number()], "Count me")
    assert all(r.successful for r in results)
    after = http.get("/emulator/stats").json()
    assert after["accepted"] - before["accepted"] == 2
    assert after["requests"] - before["requests"] == 1
    assert http.post("/emulator/stats").status_code == 405


def test_control_api_errors_and_reset(emulator: AcsEmulator, http: httpx.Client) -> None:
    assert http.get("/emulator/health").json() == {"status": "ok"}
    assert http.get("/emulator/nothing").status_code == 404
    assert http.post("/emulator/health").status_code == 405
    bad = http.put(f"/emulator/outcomes/{number()}", json={"sendError": {"httpStatusCode": 202}})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "BadRequest"
    # Reset last: it wipes what earlier tests in this module left behind, which they no longer need.
    sender, to = number(), number()
    assert signed_post(http, emulator, send_body(sender, [to])).status_code == 202
    assert http.post("/emulator/reset").status_code == 200
    assert inbox(http, to) == []
    assert http.get("/emulator/requests").json() == []


# --------------------------------------------------------------------------------------------
# Delivery reports through Azurite
# --------------------------------------------------------------------------------------------


def test_delivery_reports_land_base64_in_the_queue(sms: SmsClient, dlr_queue: QueueClient) -> None:
    sender = number()
    delivered, unreachable = number(), number("0000")
    results = sms.send(
        sender,
        [delivered, unreachable],
        "Report back",
        enable_delivery_report=True,
        tag="campaign-7",
    )
    ids = {r.to: r.message_id for r in results}
    assert all(r.successful for r in results)
    found = wait_for_reports(dlr_queue, set(ids.values()))

    sample = load("sms-delivery-report-received.eventgrid-schema.docs-2025.json")["events"][0]
    text, event = found[ids[delivered]]
    assert json.loads(base64.b64decode(text).decode("utf-8")) == event
    assert isinstance(event, dict)  # one event per queue message, not an array
    assert set(event) == set(sample)
    assert set(event["data"]) == set(sample["data"])
    assert set(event["data"]["deliveryAttempts"][0]) == set(sample["data"]["deliveryAttempts"][0])
    assert event["id"] == ids[delivered]
    assert event["eventType"] == "Microsoft.Communication.SMSDeliveryReportReceived"
    assert (event["dataVersion"], event["metadataVersion"]) == ("1.0", "1")
    assert event["subject"] == f"/phonenumber/{sender.lstrip('+')}"
    data = event["data"]
    assert data["messageId"] == ids[delivered]
    assert data["from"] == sender.lstrip("+")
    assert data["to"] == delivered
    assert (data["deliveryStatus"], data["deliveryStatusDetails"]) == ("Delivered", "No error.")
    assert data["Tag"] == "campaign-7"
    attempt = data["deliveryAttempts"][0]
    assert (attempt["segmentsSucceeded"], attempt["segmentsFailed"]) == (1, 0)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", data["receivedTimestamp"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["eventTime"])

    failed = found[ids[unreachable]][1]["data"]
    assert failed["deliveryStatus"] == "Failed"
    assert failed["deliveryStatusDetails"] == "4006: The Destination/To number isn't reachable."
    attempt = failed["deliveryAttempts"][0]
    assert (attempt["segmentsSucceeded"], attempt["segmentsFailed"]) == (0, 1)


def test_steered_delivery_outcome(
    sms: SmsClient, http: httpx.Client, dlr_queue: QueueClient
) -> None:
    sender, to = number(), number()
    details = "4005: Message is blocked by Destination carrier."
    http.put(
        f"/emulator/outcomes/{to}",
        json={"deliveryStatus": "Failed", "deliveryStatusDetails": details},
    )
    [result] = sms.send(sender, to, "\u00a1Hola! " + "\u20ac" * 200, enable_delivery_report=True)
    assert result.successful  # accepted by ACS; the failure arrives with the report
    event = wait_for_reports(dlr_queue, {result.message_id})[result.message_id][1]
    assert (event["data"]["deliveryStatus"], event["data"]["deliveryStatusDetails"]) == (
        "Failed",
        details,
    )
    assert "Tag" not in event["data"]
    assert event["data"]["deliveryAttempts"][0]["segmentsFailed"] == 3


# --------------------------------------------------------------------------------------------
# Without storage, and as a process
# --------------------------------------------------------------------------------------------


def test_without_storage_sends_still_work() -> None:
    with AcsEmulator(port=0, access_key_b64=KEY, storage_connection_string=None) as emu:
        to = number()
        [result] = SmsClient(emu.endpoint, AzureKeyCredential(KEY)).send(
            number(), to, "No reports here", enable_delivery_report=True
        )
        assert result.successful
        assert emu.state.inbox(to)[0]["messageId"] == result.message_id
        assert emu.connection_string == f"endpoint={emu.endpoint}/;accesskey={KEY}"


def test_cli_serves_and_exits_cleanly_on_sigterm() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AzureWebJobsStorage"}
    env["PYTHONPATH"] = str(ROOT)
    # localdev/run.py hands the emulator the app's inbound webhook this way.
    env["ACS_EMULATOR_INBOUND_WEBHOOK_URL"] = "http://127.0.0.1:9/api/inbound?code=k"
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdev.acs_emulator", "--port", "0", "--dlr-delay", "0.1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        endpoint = match.group(1)
        assert httpx.get(f"{endpoint}/emulator/health", timeout=10).json() == {"status": "ok"}
        webhook = httpx.get(f"{endpoint}/emulator/webhook", timeout=10).json()
        assert (webhook["url"], webhook["schema"]) == (
            "http://127.0.0.1:9/api/inbound?code=k",
            "eventgrid",
        )
        [result] = SmsClient(endpoint, AzureKeyCredential(DEFAULT_ACCESS_KEY)).send(
            number(), number(), "Default key works"
        )
        assert result.successful
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------------------
# Handset replies: SMSReceived through "Event Grid" to a throwaway webhook
# --------------------------------------------------------------------------------------------


def load_eventgrid(name: str) -> Any:
    return json.loads((EVENTGRID_FIXTURES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Received:
    """One request the webhook got; header names lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def kind(self) -> str:
        if self.method == "OPTIONS":
            return "options"
        return self.headers.get("aeg-event-type", "")

    def json(self) -> Any:
        return json.loads(self.body)


class FakeWebhook:
    """The app's inbound webhook played by an http.server on a free port.

    It records every request, answers the handshakes as ``handshake`` says, and answers
    notifications with ``statuses`` in turn, then 200. Handshake behaviours: "ok" (echo the code
    as the docs sample does; grant the requesting origin), "ok-pascal" (``ValidationResponse``;
    grant ``*``), "wrong-code" (200 with another code; 200 without WebHook-Allowed-Origin),
    "404" (404; 405 to OPTIONS, what the CloudEvents spec says a non-participant answers).
    """

    def __init__(self, statuses: Iterable[int] = (), handshake: str = "ok") -> None:
        self.statuses = deque(statuses)
        self.handshake = handshake
        self._received: list[Received] = []
        self._cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook._answer(self, hook._record(self, "POST"))

            def do_OPTIONS(self) -> None:
                hook._answer(self, hook._record(self, "OPTIONS"))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/inbound?code=k"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def received(self, kind: str | None = None) -> list[Received]:
        with self._cond:
            return [r for r in self._received if kind is None or r.kind == kind]

    def wait_for(self, kind: str, count: int, deadline_s: float = 10.0) -> list[Received]:
        """The first ``count`` requests of a kind, waiting up to the deadline for them."""
        with self._cond:
            arrived = self._cond.wait_for(
                lambda: sum(r.kind == kind for r in self._received) >= count, deadline_s
            )
        got = self.received(kind)
        assert arrived, f"{count} {kind} request(s) expected, got {len(got)}"
        return got

    def _record(self, handler: BaseHTTPRequestHandler, method: str) -> Received:
        length = int(handler.headers.get("Content-Length") or 0)
        received = Received(
            method,
            handler.path,
            {k.lower(): v for k, v in handler.headers.items()},
            handler.rfile.read(length) if length else b"",
        )
        with self._cond:
            self._received.append(received)
            self._cond.notify_all()
        return received

    def _answer(self, handler: BaseHTTPRequestHandler, req: Received) -> None:
        status, headers, body = self._response(req)
        payload = b"" if body is None else json.dumps(body).encode()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _response(self, req: Received) -> tuple[int, dict[str, str], Any]:
        if req.kind == "options":
            consent = load_eventgrid("docs.cloudevents-abuse-protection-handshake.headers.json")
            granted = dict(consent["responseConsent"]["headers"])
            if self.handshake == "ok":
                granted["WebHook-Allowed-Origin"] = req.headers["webhook-request-origin"]
            elif self.handshake == "ok-pascal":
                granted["WebHook-Allowed-Origin"] = "*"
            elif self.handshake == "wrong-code":
                del granted["WebHook-Allowed-Origin"]
            else:
                return 405, {"Allow": "POST"}, None
            return consent["responseConsent"]["status"], granted, None
        if req.kind == "SubscriptionValidation":
            code = req.json()[0]["data"]["validationCode"]
            if self.handshake == "ok":
                answer = load_eventgrid("eventgrid-subscription-validation-response.docs.json")
                return 200, {}, {**answer, "validationResponse": code}
            if self.handshake == "ok-pascal":
                return 200, {}, {"ValidationResponse": code}
            if self.handshake == "wrong-code":
                return 200, {}, {"validationResponse": str(uuid.uuid4())}
            return 404, {}, {"error": "no such route"}
        with self._cond:
            status = self.statuses.popleft() if self.statuses else 200
        return status, {}, None


@pytest.fixture
def make_hook() -> Iterator[Callable[..., FakeWebhook]]:
    hooks: list[FakeWebhook] = []

    def make(statuses: Iterable[int] = (), handshake: str = "ok") -> FakeWebhook:
        hook = FakeWebhook(statuses, handshake)
        hooks.append(hook)
        return hook

    yield make
    for hook in hooks:
        hook.close()


@pytest.fixture
def relay() -> Iterator[AcsEmulator]:
    """An emulator of its own (no storage) with fast retries: 10, 20, 40 ms; four attempts."""
    with AcsEmulator(
        port=0,
        access_key_b64=KEY,
        storage_connection_string=None,
        webhook_max_attempts=4,
        webhook_retry_base_s=0.01,
    ) as emu:
        yield emu


@pytest.fixture
def relay_http(relay: AcsEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=relay.endpoint, timeout=10) as client:
        yield client


def subscribe(http: httpx.Client, url: str, schema: str = "eventgrid") -> None:
    resp = http.put("/emulator/webhook", json={"url": url, "schema": schema})
    assert resp.status_code == 200
    assert resp.json() == {"url": url, "schema": schema, "validated": False, "pending": 0}


def reply(http: httpx.Client, handset: str, to: str, message: str, **opts: Any) -> httpx.Response:
    return http.post(
        f"/emulator/handsets/{handset}/reply", json={"to": to, "message": message, **opts}
    )


def attempts_of(http: httpx.Client, event_id: str) -> list[dict[str, Any]]:
    resp = http.get("/emulator/webhook/deliveries")
    assert resp.status_code == 200
    return [a for a in resp.json() if a["eventId"] == event_id]


def wait_for_attempts(
    http: httpx.Client,
    event_id: str,
    done: Callable[[list[dict[str, Any]]], bool],
    deadline_s: float = 10.0,
) -> list[dict[str, Any]]:
    """Poll the delivery log until ``done`` holds for the event's attempts."""
    end = deadline(deadline_s)
    while True:
        attempts = attempts_of(http, event_id)
        if done(attempts):
            return attempts
        assert time.monotonic() < end, f"delivery attempts so far: {attempts}"
        time.sleep(0.02)


@pytest.mark.parametrize("casing", ["camel", "pascal"])
def test_reply_handshakes_once_then_posts_an_event_grid_array(
    relay: AcsEmulator,
    relay_http: httpx.Client,
    make_hook: Callable[..., FakeWebhook],
    casing: str,
) -> None:
    hook = make_hook(handshake="ok" if casing == "camel" else "ok-pascal")
    subscribe(relay_http, hook.url)
    handset, ours = number(), number()
    first = reply(relay_http, handset, ours, "STOP", casing=casing)
    assert first.status_code == 202
    result = first.json()
    assert set(result) == {"messageId", "webhookStatus", "delivered"}
    assert INCOMING_ID.fullmatch(result["messageId"])
    assert (result["webhookStatus"], result["delivered"]) == (200, True)
    # The handset number as a path segment may lack its '+', as on the inbox route.
    second = reply(relay_http, handset.lstrip("+"), ours, "START", casing=casing)
    assert second.status_code == 202

    # One handshake, first, shaped like the docs' SubscriptionValidationEvent.
    [validation] = hook.received("SubscriptionValidation")
    assert hook.received()[0] == validation
    assert validation.method == "POST"
    [handshake_event] = validation.json()
    sample = load_eventgrid("eventgrid-subscription-validation-event.docs.json")[0]
    assert set(handshake_event) == set(sample)
    assert set(handshake_event["data"]) == set(sample["data"])
    assert handshake_event["eventType"] == sample["eventType"]
    uuid.UUID(handshake_event["data"]["validationCode"])
    assert handshake_event["data"]["validationUrl"].startswith(relay.endpoint)

    notifications = hook.wait_for("Notification", 2)
    assert len(hook.received()) == 3
    headers = notifications[0].headers
    assert headers["content-type"] == "application/json"
    assert (headers["aeg-delivery-count"], headers["aeg-subscription-name"]) == ("0", "SMSRECEIVED")
    assert notifications[0].path == "/api/inbound?code=k"
    batch = notifications[0].json()
    assert isinstance(batch, list)
    [event] = batch
    if casing == "camel":
        sample = load_eventgrid("eventgrid-schema.sms-received.docs-2025.json")[0]
    else:
        sample = load_eventgrid("eventgrid-schema.sms-received.spec-example-with-segmentcount.json")
    assert set(event) == set(sample)
    assert set(event["data"]) == set(sample["data"])

    def key(name: str) -> str:
        return name if casing == "camel" else name[0].upper() + name[1:]

    data = event["data"]
    assert event["id"] == data[key("messageId")] == result["messageId"]
    assert data[key("from")] == handset.lstrip("+")  # ACS drops the '+' of both numbers
    assert data[key("to")] == ours.lstrip("+")
    assert (data[key("message")], data[key("segmentCount")]) == ("STOP", 1)
    assert ISO_7.fullmatch(data[key("receivedTimestamp")])
    assert event["subject"] == f"/phonenumber/{ours.lstrip('+')}"
    assert event["topic"] == EMULATOR_TOPIC
    assert event["eventType"] == "Microsoft.Communication.SMSReceived"
    assert (event["dataVersion"], event["metadataVersion"]) == ("1.0", "1")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["eventTime"])
    [later] = notifications[1].json()
    assert later["data"][key("message")] == "START"
    assert later["id"] == second.json()["messageId"] != event["id"]

    assert relay_http.get("/emulator/webhook").json()["validated"] is True
    [attempt] = attempts_of(relay_http, event["id"])
    assert (attempt["attempt"], attempt["status"]) == (1, 200)
    assert "deadLettered" not in attempt
    sent = relay_http.get(f"/emulator/handsets/{handset}/sent").json()
    assert sent["number"] == handset
    assert [(m["from"], m["to"], m["message"]) for m in sent["messages"]] == [
        (handset, ours, "STOP"),
        (handset, ours, "START"),
    ]
    assert sent["messages"][0]["messageId"] == event["id"]
    assert relay.state.inbox(handset) == []  # a reply is not something the handset received

    # Reset forgets replies and the delivery log, not the (validated) subscription.
    assert relay_http.post("/emulator/reset").status_code == 200
    assert relay_http.get(f"/emulator/handsets/{handset}/sent").json()["messages"] == []
    assert relay_http.get("/emulator/webhook/deliveries").json() == []
    assert relay_http.get("/emulator/webhook").json()["validated"] is True


@pytest.mark.parametrize("casing", ["camel", "pascal"])
def test_cloudevents_reply_handshakes_with_options_then_posts_one_event(
    relay_http: httpx.Client, make_hook: Callable[..., FakeWebhook], casing: str
) -> None:
    hook = make_hook()
    subscribe(relay_http, hook.url)  # Event Grid schema, overridden by the reply below
    handset, ours = number(), number()
    resp = reply(
        relay_http, handset, ours, "Stop \u00e9 \u0107", schema="cloudevents", casing=casing
    )
    assert resp.status_code == 202
    assert resp.json()["delivered"] is True

    consent = load_eventgrid("docs.cloudevents-abuse-protection-handshake.headers.json")
    [options] = hook.received("options")
    assert hook.received()[0] == options
    [origin_header] = consent["request"]["headers"]
    assert options.headers[origin_header.lower()] == "eventgrid.azure.net"
    assert hook.received("SubscriptionValidation") == []

    [delivery] = hook.wait_for("Notification", 1)
    assert delivery.method == "POST"
    assert delivery.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert delivery.headers["webhook-request-origin"] == "eventgrid.azure.net"
    assert delivery.headers["origin"] == "eventgrid.azure.net"
    event = delivery.json()
    assert isinstance(event, dict)  # a single event, not an array
    sample = load_eventgrid("cloudevents-schema.sms-received.spec-example.json")
    assert set(event) == set(sample)
    if casing == "camel":
        expected_keys = set(
            load_eventgrid("eventgrid-schema.sms-received.docs-2025.json")[0]["data"]
        )
    else:
        expected_keys = set(sample["data"]) | {"SegmentCount"}  # the spec example predates it
    assert set(event["data"]) == expected_keys
    assert (event["specversion"], event["type"]) == ("1.0", "Microsoft.Communication.SMSReceived")
    assert event["source"] == EMULATOR_TOPIC
    assert event["id"] == resp.json()["messageId"]
    assert event["subject"] == f"/phonenumber/{ours.lstrip('+')}"
    assert ISO_7.fullmatch(event["time"])
    from_key = "from" if casing == "camel" else "From"
    assert event["data"][from_key] == handset.lstrip("+")

    # Validated per URL and schema: a second CloudEvents reply skips OPTIONS, while the first
    # Event Grid schema reply to the same URL still needs its own handshake.
    assert reply(relay_http, handset, ours, "again", schema="cloudevents").status_code == 202
    assert reply(relay_http, handset, ours, "and again").status_code == 202
    hook.wait_for("Notification", 3)
    assert len(hook.received("options")) == 1
    assert len(hook.received("SubscriptionValidation")) == 1


@pytest.mark.parametrize(
    ("schema", "handshake", "webhook_status"),
    [
        ("eventgrid", "wrong-code", 200),
        ("eventgrid", "404", 404),
        ("cloudevents", "wrong-code", 200),
        ("cloudevents", "404", 405),
    ],
)
def test_failed_handshake_is_502_and_nothing_is_delivered(
    relay: AcsEmulator,
    relay_http: httpx.Client,
    make_hook: Callable[..., FakeWebhook],
    schema: str,
    handshake: str,
    webhook_status: int,
) -> None:
    hook = make_hook(handshake=handshake)
    subscribe(relay_http, hook.url, schema)
    handset, ours = number(), number()
    resp = reply(relay_http, handset, ours, "STOP")
    assert resp.status_code == 502
    body = resp.json()
    assert body["error"]["code"] == "WebhookValidationFailed"
    assert body["error"]["message"]
    assert body["webhook"]["status"] == webhook_status
    assert INCOMING_ID.fullmatch(body["messageId"])
    # The handshake was the only request, and nothing is scheduled: the subscription was not
    # created. The handset did send the message.
    kind = "options" if schema == "cloudevents" else "SubscriptionValidation"
    assert [r.kind for r in hook.received()] == [kind]
    assert attempts_of(relay_http, body["messageId"]) == []
    assert relay.webhook_backlog == 0
    assert relay_http.get("/emulator/webhook").json()["validated"] is False
    assert relay.state.sent(handset)[0]["messageId"] == body["messageId"]
    # A failed handshake is not remembered: the next reply tries again.
    assert reply(relay_http, handset, ours, "STOP").status_code == 502
    assert [r.kind for r in hook.received()] == [kind, kind]


def test_unreachable_webhook_is_502(relay_http: httpx.Client) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    subscribe(relay_http, f"http://127.0.0.1:{port}/api/inbound")
    resp = reply(relay_http, number(), number(), "STOP")
    assert resp.status_code == 502
    webhook = resp.json()["webhook"]
    assert webhook["status"] is None
    assert "ConnectError" in webhook["error"]
    assert relay_http.get("/emulator/webhook/deliveries").json() == []


def test_validation_url_validates_by_hand(
    relay_http: httpx.Client, make_hook: Callable[..., FakeWebhook]
) -> None:
    hook = make_hook(handshake="wrong-code")
    subscribe(relay_http, hook.url)
    assert reply(relay_http, number(), number(), "STOP").status_code == 502
    [validation] = hook.received("SubscriptionValidation")
    validation_url = validation.json()[0]["data"]["validationUrl"]
    assert httpx.get(validation_url, timeout=10).json() == {
        "validated": True,
        "url": hook.url,
        "schema": "eventgrid",
    }
    assert httpx.get(validation_url, timeout=10).status_code == 404  # used up
    resp = reply(relay_http, number(), number(), "STOP")
    assert resp.status_code == 202
    assert resp.json()["delivered"] is True
    assert len(hook.received("SubscriptionValidation")) == 1


def test_webhook_500_is_retried_in_the_background_until_delivered(
    relay_http: httpx.Client, make_hook: Callable[..., FakeWebhook]
) -> None:
    hook = make_hook(statuses=[500, 500])
    subscribe(relay_http, hook.url)
    resp = reply(relay_http, number(), number(), "STOP")
    assert resp.status_code == 202
    result = resp.json()
    assert (result["webhookStatus"], result["delivered"]) == (500, False)
    attempts = wait_for_attempts(
        relay_http, result["messageId"], lambda a: any(x["status"] == 200 for x in a)
    )
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert not any("deadLettered" in a for a in attempts)
    notifications = hook.wait_for("Notification", 3)
    assert [n.headers["aeg-delivery-count"] for n in notifications] == ["0", "1", "2"]
    assert len({n.body for n in notifications}) == 1  # the same event each time
    assert len(hook.received("SubscriptionValidation")) == 1  # no handshake for a retry


def test_retries_stop_at_max_attempts_then_dead_letter(
    relay: AcsEmulator, relay_http: httpx.Client, make_hook: Callable[..., FakeWebhook]
) -> None:
    hook = make_hook(statuses=[503] * 10)
    subscribe(relay_http, hook.url)
    message_id = reply(relay_http, number(), number(), "STOP").json()["messageId"]
    attempts = wait_for_attempts(
        relay_http, message_id, lambda a: any(x.get("deadLettered") for x in a)
    )
    assert [(a["attempt"], a["status"]) for a in attempts] == [(n, 503) for n in (1, 2, 3, 4)]
    assert [a.get("deadLettered", False) for a in attempts] == [False, False, False, True]
    assert len(hook.received("Notification")) == 4  # webhook_max_attempts


@pytest.mark.parametrize("status", [400, 413])
def test_400_and_413_are_dead_lettered_without_retry(
    relay: AcsEmulator,
    relay_http: httpx.Client,
    make_hook: Callable[..., FakeWebhook],
    status: int,
) -> None:
    hook = make_hook(statuses=[status])
    subscribe(relay_http, hook.url)
    resp = reply(relay_http, number(), number(), "STOP")
    result = resp.json()
    assert (resp.status_code, result["webhookStatus"], result["delivered"]) == (202, status, False)
    # Decided on the synchronous attempt: dead-lettered, nothing left to retry.
    [attempt] = attempts_of(relay_http, result["messageId"])
    assert (attempt["attempt"], attempt["status"], attempt["deadLettered"]) == (1, status, True)
    assert relay.webhook_backlog == 0
    assert len(hook.received("Notification")) == 1


def test_deliveries_2_delivers_the_same_event_twice(make_hook: Callable[..., FakeWebhook]) -> None:
    hook = make_hook()
    with AcsEmulator(
        port=0, access_key_b64=KEY, storage_connection_string=None, inbound_webhook_url=hook.url
    ) as emu:
        result = emu.reply(number(), number(), "STOP", deliveries=2)
        assert result["webhookStatus"] == 200
        assert result["delivered"] is True
        first, second = hook.wait_for("Notification", 2)
        assert first.json()[0]["id"] == second.json()[0]["id"] == result["messageId"]
        assert first.body == second.body
        # At-least-once: the duplicate carries the next delivery count, as a redelivery would.
        assert [first.headers["aeg-delivery-count"], second.headers["aeg-delivery-count"]] == [
            "0",
            "1",
        ]
        assert len(hook.received("SubscriptionValidation")) == 1
        assert [a["attempt"] for a in emu.webhook_deliveries()] == [1, 2]


def test_reply_errors(relay: AcsEmulator, relay_http: httpx.Client) -> None:
    handset, ours = number(), number()
    unsubscribed = reply(relay_http, handset, ours, "STOP")
    assert unsubscribed.status_code == 409
    assert unsubscribed.json()["error"]["code"] == "NoInboundWebhook"
    with pytest.raises(NoInboundWebhook):
        relay.reply(handset, ours, "STOP")
    assert relay.state.sent(handset) == []  # rejected before anything was sent
    relay.configure_webhook("http://127.0.0.1:9/api/inbound")
    for bad in (
        {"to": ours, "message": ""},
        {"to": ours},
        {"to": "+12", "message": "STOP"},
        {"to": ours, "message": "STOP", "casing": "snake"},
        {"to": ours, "message": "STOP", "schema": "xml"},
        {"to": ours, "message": "STOP", "deliveries": 0},
        {"to": ours, "message": "STOP", "deliveries": True},
    ):
        resp = relay_http.post(f"/emulator/handsets/{handset}/reply", json=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["code"] == "BadRequest"
    assert reply(relay_http, "12", ours, "STOP").status_code == 400
    assert relay_http.post(f"/emulator/handsets/{handset}/reply", content=b"[]").status_code == 400
    assert relay_http.put("/emulator/webhook", json={"url": "ftp://x/y"}).status_code == 400
    assert (
        relay_http.put("/emulator/webhook", json={"url": "http://h/", "schema": "x"}).status_code
        == 400
    )
    assert relay_http.put("/emulator/webhook", json={"schema": "eventgrid"}).status_code == 400
    cleared = relay_http.put("/emulator/webhook", json={"url": None})
    assert cleared.json() == {"url": None, "schema": "eventgrid", "validated": False, "pending": 0}
    assert relay_http.get("/emulator/webhook/validate?id=nope").status_code == 404


def test_forced_throttle_answers_429_then_lets_calls_through() -> None:
    from localdev.acs_emulator import EmulatorState

    state = EmulatorState(rate_per_minute=1000)
    state.throttle_next("+18005550100", calls=2, retry_after_s=3)
    body = json.dumps({"from": "+18005550100", "smsRecipients": [{"to": "+14255550123"}],
                       "message": "hi"}).encode()
    first, second, third = (state.send(body) for _ in range(3))
    assert (first.status, second.status, third.status) == (429, 429, 202)
    assert first.headers["Retry-After"] == "3"
    assert state.inbox("+14255550123") and len(state.inbox("+14255550123")) == 1


def test_get_emulator_lists_every_control_endpoint(emulator: AcsEmulator) -> None:
    answer = httpx.get(f"{emulator.endpoint}/emulator", timeout=10)
    assert answer.status_code == 200
    listed = answer.json()["endpoints"]
    assert all(e["purpose"] for e in listed)
    served = {(method, pattern.pattern.replace("(?P<number>[^/]+)", "{number}")
               .removesuffix("/?")) for method, pattern, _ in ROUTES}
    assert {(e["method"], e["path"].split("?")[0]) for e in listed} == served
    assert len(listed) == len(served)
