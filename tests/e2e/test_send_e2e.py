"""End to end over HTTP: POST /api/messages through the local host, the emulator's handsets,
delivery reports back through the queue, statuses through GET /api/messages/{id}."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from tests.e2e.conftest import ROOT, SENDER, Stack
from tests.numbers import unique_number

OPENAPI = yaml.safe_load((ROOT / "openapi.yaml").read_text())


def number() -> str:
    return unique_number()


def conforms(body: Any, schema_name: str) -> None:
    """The body matches the openapi.yaml schema of that name."""
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    jsonschema.validate(body, schema)


def test_health_is_anonymous(stack: Stack) -> None:
    r = stack.anonymous.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    conforms(r.json(), "Health")


def test_send_reaches_the_handset_and_is_delivered(stack: Stack) -> None:
    to = number()
    r = stack.api.post("/messages", json={"to": to, "message": "Hello from Azure Functions"})
    assert r.status_code == 202, r.text
    conforms(r.json(), "SendResponse")
    (entry,) = r.json()["messages"]
    assert entry["status"] == "queued" and entry["to"] == to
    stack.wait_for(lambda: stack.emulator.state.inbox(to), what="the handset to receive it")
    assert [m["message"] for m in stack.emulator.state.inbox(to)] == [
        "Hello from Azure Functions"]
    stack.wait_for(lambda: stack.status_of(entry["id"]) == "delivered", what="delivered")
    msg = stack.api.get(f"/messages/{entry['id']}").json()
    conforms(msg, "Message")
    assert [h["status"] for h in msg["history"]] == ["queued", "sent", "delivered"]
    assert msg["providerMessageId"] == stack.emulator.state.inbox(to)[0]["messageId"]
    assert msg["from"] == SENDER


def test_150_recipients_each_get_it_exactly_once(stack: Stack) -> None:
    numbers = [number() for _ in range(150)]
    r = stack.api.post("/messages", json={"to": numbers, "message": "Sale starts now",
                                          "tag": "e2e-150"})
    assert r.status_code == 202
    ids = [m["id"] for m in r.json()["messages"]]
    stack.wait_for(lambda: all(stack.emulator.state.inbox(n) for n in numbers), 60,
                   "every handset to receive it")
    assert all(len(stack.emulator.state.inbox(n)) == 1 for n in numbers)
    calls = [c for c in stack.emulator.state.requests()
             if c["status"] == 202 and c["recipients"][0] in numbers]
    assert sorted(len(c["recipients"]) for c in calls) == [50, 100]
    stack.wait_for(lambda: {stack.status_of(i) for i in ids[:5] + ids[-5:]} == {"delivered"},
                   what="delivery reports")


def test_opted_out_recipient_is_blocked_and_never_reaches_acs(stack: Stack) -> None:
    out, ok = number(), number()
    stack.services.optouts.opt_out(SENDER, out, source="admin", reason="e2e")
    r = stack.api.post("/messages", json={"to": [out, ok], "message": "Promo"})
    assert [m["status"] for m in r.json()["messages"]] == ["blocked", "queued"]
    stack.wait_for(lambda: stack.emulator.state.inbox(ok), what="the other handset")
    assert stack.emulator.state.inbox(out) == []
    assert all(out not in c["recipients"] for c in stack.emulator.state.requests())


def test_idempotency_key_retry_sends_nothing_new(stack: Stack) -> None:
    to = number()
    body = {"to": to, "message": "Your code is 123456"}
    headers = {"Idempotency-Key": f"otp-{to}"}
    first = stack.api.post("/messages", json=body, headers=headers)
    stack.wait_for(lambda: stack.emulator.state.inbox(to), what="the first send")
    again = stack.api.post("/messages", json=body, headers=headers)
    assert again.status_code == 202 and again.json() == first.json()
    other = stack.api.post("/messages", json={**body, "message": "changed"}, headers=headers)
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")
    stack.wait_for(lambda: stack.status_of(first.json()["messages"][0]["id"]) == "delivered",
                   what="delivered")
    assert len(stack.emulator.state.inbox(to)) == 1


def test_throttled_sender_is_delayed_not_lost(stack: Stack) -> None:
    sender = "+18005550177"
    stack.emulator.state.throttle_next(sender, calls=1, retry_after_s=1)
    to = number()
    r = stack.api.post("/messages", json={"from": sender, "to": to, "message": "Wait for it"})
    msg_id = r.json()["messages"][0]["id"]
    stack.wait_for(lambda: stack.emulator.state.inbox(to), 60, "the throttled message")
    assert any(c["status"] == 429 and c["from"] == sender
               for c in stack.emulator.state.requests())
    assert len(stack.emulator.state.inbox(to)) == 1
    stack.wait_for(lambda: stack.status_of(msg_id) == "delivered", what="delivered")


def test_invalid_number_among_valid_ones_is_rejected_alone(stack: Stack) -> None:
    good = number()
    r = stack.api.post("/messages", json={"to": [good, "+1555"], "message": "Hi"})
    assert r.status_code == 202
    first, bad = r.json()["messages"]
    assert first["status"] == "queued" and bad["status"] == "rejected" and bad["error"]
    stack.wait_for(lambda: stack.emulator.state.inbox(good), what="the valid one")
    assert stack.status_of(bad["id"]) == "rejected"


def problem(stack: Stack, body: Any, *, raw: bytes | None = None) -> dict[str, Any]:
    r = (stack.api.post("/messages", content=raw, headers={"content-type": "application/json"})
         if raw is not None else stack.api.post("/messages", json=body))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    conforms(r.json(), "Problem")
    return r.json()


@pytest.mark.parametrize(("body", "field"), [
    ({"message": "hi"}, "to"),
    ({"to": "+15035550123"}, "message"),
    ({"to": 15035550123, "message": "hi"}, "to"),
    ({"to": "+15035550123", "message": ""}, "message"),
    ({"to": "+15035550123", "message": "x" * 2049}, "message"),
    ({"to": ["+15035550123"] * 10_001, "message": "hi"}, "to"),
    ({"to": "+15035550123", "message": "hi", "from": "not a sender!"}, "from"),
    ({"to": "+15035550123", "message": "hi", "sendAt": "2030-01-01T10:00:00"}, "sendAt"),
])
def test_bad_input_is_a_400_naming_the_field(stack: Stack, body: Any, field: str) -> None:
    before = len(stack.emulator.state.requests())
    p = problem(stack, body)
    assert field in [e["field"] for e in p["errors"]]
    assert len(stack.emulator.state.requests()) == before


def test_malformed_json_is_a_400(stack: Stack) -> None:
    p = problem(stack, None, raw=b'{"to": "+15035550123", "message": ')
    assert p["errors"][0]["field"] == "body"


@pytest.mark.parametrize("headers", [{}, {"x-functions-key": "wrong"}])
def test_missing_or_wrong_function_key_is_401(stack: Stack, headers: dict[str, str]) -> None:
    r = stack.anonymous.post("/messages", json={"to": number(), "message": "hi"},
                             headers=headers)
    assert r.status_code == 401


def test_key_in_query_string_works(stack: Stack) -> None:
    from tests.e2e.conftest import FUNCTION_KEY

    r = stack.anonymous.post(f"/messages?code={FUNCTION_KEY}",
                             json={"to": number(), "message": "hi"})
    assert r.status_code == 202


def test_unknown_message_is_404_problem(stack: Stack) -> None:
    for mid in ("20260101000000abcdef012345-00000", "nonsense"):
        r = stack.api.get(f"/messages/{mid}")
        assert r.status_code == 404
        conforms(r.json(), "Problem")


def test_analytics_over_http(stack: Stack) -> None:
    from datetime import UTC, datetime

    tag = f"e2e-analytics-{number()[-4:]}"
    to = number()
    r = stack.api.post("/messages", json={"to": to, "message": "Counted", "tag": tag})
    msg_id = r.json()["messages"][0]["id"]
    stack.wait_for(lambda: stack.status_of(msg_id) == "delivered", what="delivered")
    day = datetime.now(UTC).date().isoformat()

    def counted() -> Any:
        # The status is committed first, the figures right after it.
        body = stack.api.get("/analytics", params={"from": day, "to": day, "tag": tag}).json()
        return body if body["totals"]["delivered"] == 1 else None

    body = stack.wait_for(counted, what="the delivery to be counted")
    conforms(body, "Analytics")
    r = stack.api.get("/analytics", params={"from": day, "to": day, "tag": tag})
    assert r.status_code == 200 and r.json() == body
    totals = body["totals"]
    assert (totals["sent"], totals["delivered"], totals["deliveryRate"]) == (1, 1, 1.0)
    assert [d["date"] for d in r.json()["days"]] == [day]
    bad = stack.api.get("/analytics", params={"from": day})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "to"


def test_raw_json_delivery_report_is_read_like_a_base64_one(stack: Stack) -> None:
    import json

    to = number()
    r = stack.api.post("/messages", json={"to": to, "message": "No report asked",
                                          "deliveryReport": False})
    msg_id = r.json()["messages"][0]["id"]
    stack.wait_for(lambda: stack.status_of(msg_id) == "sent", what="sent")
    provider_id = stack.api.get(f"/messages/{msg_id}").json()["providerMessageId"]
    sample = json.loads((ROOT / "tests" / "fixtures" / "eventgrid" /
                         "eventgrid-schema.sms-delivery-report-received.docs-2025.json")
                        .read_text())[0]
    sample["data"]["messageId"] = provider_id
    # What ACS echoes: the recipient and the tag of our send call.
    (copy,) = [m for m in stack.emulator.state.inbox(to) if m["messageId"] == provider_id]
    sample["data"]["to"], sample["data"]["Tag"] = to, copy["tag"]
    raw = stack.services.storage.queue_service().get_queue_client("sms-delivery-reports")
    raw.send_message(json.dumps(sample))  # plain JSON text, no base64
    stack.wait_for(lambda: stack.status_of(msg_id) == "delivered", what="delivered")
