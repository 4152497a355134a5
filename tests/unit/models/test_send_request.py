"""Request validation for POST /api/messages: every bad input names its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel

from sms_core.adapters.event_grid import decode_payload
from sms_core.errors import RequestInvalid
from sms_core.models.campaigns import (
    AudienceRequest,
    CampaignRequest,
    SendConfirmation,
    TemplateRequest,
)
from sms_core.models.messages import SendRequest, parse_model
from sms_core.models.optouts import OptOutRequest
from sms_http.problems import problem_for


def parse(body: object) -> SendRequest:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return parse_model(SendRequest, raw)  # type: ignore[no-any-return]


def fields_of(body: object) -> dict[str, str]:
    with pytest.raises(RequestInvalid) as info:
        parse(body)
    return {e.field: e.message for e in info.value.errors}


def test_single_recipient_and_defaults() -> None:
    req = parse({"to": "+14255550123", "message": "hi"})
    assert req.recipients == ["+14255550123"]
    assert req.delivery_report is True
    assert req.from_ is None and req.send_at is None


def test_list_of_recipients_keeps_order() -> None:
    req = parse({"from": "+18005550100", "to": ["+14255550124", "+14255550123"],
                 "message": "hi", "tag": "t", "deliveryReport": False})
    assert req.recipients == ["+14255550124", "+14255550123"]
    assert req.from_ == "+18005550100" and req.tag == "t" and req.delivery_report is False


@pytest.mark.parametrize(("body", "field", "fragment"), [
    (b"{not json", "body", "malformed JSON"),
    (b"", "body", "JSON object"),
    ([1, 2], "body", "JSON object"),
    ({"message": "hi"}, "to", "required"),
    ({"to": "+14255550123"}, "message", "required"),
    ({"to": "+14255550123", "message": ""}, "message", "empty"),
    ({"to": "+14255550123", "message": "   \n"}, "message", "empty"),
    ({"to": "+14255550123", "message": "x" * 2049}, "message", "2048"),
    ({"to": [], "message": "hi"}, "to", "at least one"),
    ({"to": ["+14255550123"] * 10_001, "message": "hi"}, "to", "at most 10000"),
    ({"to": 14255550123, "message": "hi"}, "to", ""),
    ({"to": ["+14255550123", 5], "message": "hi"}, "to[1]", ""),
    ({"to": "+14255550123", "message": 5}, "message", "string"),
    ({"to": "+14255550123", "message": "hi", "deliveryReport": "yes"}, "deliveryReport", ""),
    ({"to": "+14255550123", "message": "hi", "mesage": "typo"}, "mesage", "unknown field"),
    ({"to": "+14255550123", "message": "hi", "sendAt": "2030-01-01T10:00:00"}, "sendAt",
     "UTC offset"),
    ({"to": "+14255550123", "message": "hi", "sendAt": "tomorrow"}, "sendAt", ""),
    ({"to": "+14255550123", "message": "hi", "sendAt": 1700000000}, "sendAt", "ISO-8601"),
    ({"to": "+14255550123", "message": "hi", "tag": "x" * 257}, "tag", "256"),
    ({"to": "+14255550123", "message": "hi", "sendAt": "0496-09-26T00:02:24Z"}, "sendAt",
     "in the past"),
    ({"to": "+14255550123", "message": "hi", "sendAt": "0001-01-01T00:00:00Z"}, "sendAt",
     "in the past"),
    ({"to": "+14255550123", "message": "hi",
      "sendAt": (datetime.now(UTC) - timedelta(minutes=2)).isoformat()}, "sendAt",
     "in the past"),
])
def test_bad_input_names_the_field(body: object, field: str, fragment: str) -> None:
    errors = fields_of(body)
    assert field in errors, errors
    assert fragment in errors[field]


def test_exactly_2048_characters_and_10000_recipients_are_fine() -> None:
    assert len(parse({"to": "+14255550123", "message": "x" * 2048}).message) == 2048
    assert len(parse({"to": ["+14255550123"] * 10_000, "message": "hi"}).recipients) == 10_000


def test_send_at_is_normalised_to_utc_and_bounded() -> None:
    local = (datetime.now(UTC) + timedelta(hours=1)).astimezone(timezone(timedelta(hours=2)))
    req = parse({"to": "+14255550123", "message": "hi", "sendAt": local.isoformat()})
    assert req.send_at is not None and req.send_at.utcoffset() == timedelta(0)
    too_far = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    assert "30 days" in fields_of({"to": "+14255550123", "message": "hi", "sendAt": too_far})[
        "sendAt"]


def test_problem_lists_every_field_error() -> None:
    with pytest.raises(RequestInvalid) as info:
        parse({"to": [], "message": ""})
    p = problem_for(info.value)
    assert p.status == 400
    assert {e["field"] for e in p.body["errors"]} == {"to", "message"}
    assert p.body["title"] and p.body["detail"] and p.body["type"]


def test_fingerprint_ignores_key_order_and_whitespace() -> None:
    a = parse('{"to": "+14255550123", "message": "hi"}')
    b = parse('{ "message":"hi","to":"+14255550123" }')
    c = parse('{"to": "+14255550123", "message": "hi!"}')
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


DEEP_BODIES = ["[" * 10_000, '{"a":' * 10_000, '{"to": ' + "[" * 10_000,
               '{"to": "+14255550123", "message": "hi", "tag": ' + '{"a":' * 10_000]


@pytest.mark.parametrize("body", DEEP_BODIES, ids=["arrays", "objects", "in-to", "in-tag"])
@pytest.mark.parametrize("model", [SendRequest, CampaignRequest, AudienceRequest,
                                   TemplateRequest, SendConfirmation, OptOutRequest],
                         ids=lambda m: m.__name__)
def test_deeply_nested_json_is_a_400_naming_the_body(model: type[BaseModel], body: str) -> None:
    for raw in (body, body.encode()):
        with pytest.raises(RequestInvalid) as info:
            parse_model(model, raw)
        assert [e.field for e in info.value.errors] == ["body"]
        assert "nested" in info.value.errors[0].message
        assert problem_for(info.value).status == 400


@pytest.mark.parametrize("body", [*DEEP_BODIES[:2], '[{"data": ' + "[" * 100 + "]" * 100 + "}]"],
                         ids=["arrays", "objects", "kept-verbatim"])
def test_a_deeply_nested_webhook_payload_is_a_400_naming_the_body(body: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        decode_payload(body)
    assert [e.field for e in info.value.errors] == ["body"]
    assert "nested" in info.value.errors[0].message
