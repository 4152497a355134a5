"""Reading a message with its history (`get_message`)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sms_core.errors import NotFound, RequestInvalid
from sms_core.models.messages import SegmentsRequest, parse_model
from sms_core.use_cases.delivery_reports import apply_delivery_reports
from sms_core.use_cases.messages import get_message, segment_count
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, report, sent


def test_a_message_shows_its_status_and_whole_history(deps: FakeDeps) -> None:
    msg = sent(deps, message="Hello there", tag="t")
    apply_delivery_reports(deps, [report(msg.provider_message_id, "Delivered")])
    view = get_message(deps.messages, msg.id).public()
    assert (view["from"], view["to"], view["message"], view["status"], view["tag"]) == (
        SENDER, ALICE, "Hello there", "delivered", "t")
    assert view["providerMessageId"] == msg.provider_message_id
    assert [h["status"] for h in view["history"]] == ["queued", "sent", "delivered"]


@pytest.mark.parametrize("message_id", ["nope", "20260101000000abcdef012345-00000"])
def test_an_unknown_id_is_not_found(deps: FakeDeps, message_id: str) -> None:
    with pytest.raises(NotFound):
        get_message(deps.messages, message_id)


@pytest.mark.parametrize(("text", "expected"), [
    ("", {"characters": 0, "segments": 0, "encoding": "GSM-7", "ucs2Characters": []}),
    ("Hello", {"characters": 5, "segments": 1, "encoding": "GSM-7", "ucs2Characters": []}),
    ("a" * 161, {"characters": 161, "segments": 2, "encoding": "GSM-7", "ucs2Characters": []}),
    ("€" * 80, {"characters": 80, "segments": 1, "encoding": "GSM-7", "ucs2Characters": []}),
    ("Café ☕ ç ☕ ê", {"characters": 12, "segments": 1, "encoding": "UCS-2",
                      "ucs2Characters": ["☕", "ç", "ê"]}),
    ("😀" * 35, {"characters": 35, "segments": 1, "encoding": "UCS-2",
                "ucs2Characters": ["😀"]}),
])
def test_a_draft_is_counted_with_the_characters_forcing_ucs2(text: str,
                                                             expected: dict[str, Any]) -> None:
    body = parse_model(SegmentsRequest, json.dumps({"message": text}))
    assert segment_count(body.message).public() == expected


@pytest.mark.parametrize("body", [
    '{"message": "\\ud800"}', '{"message": "a\\u0000b"}', '{"message": 5}', '{}',
    '{"message": null}', f'{{"message": "{"a" * 2049}"}}', '{"message": "a", "to": "x"}',
    '[]', '{"message": "a"', ""])
def test_a_draft_that_is_no_sms_text_is_a_400_naming_the_field(body: str) -> None:
    with pytest.raises(RequestInvalid) as exc:
        parse_model(SegmentsRequest, body)
    assert exc.value.errors
    assert all(e.field in ("message", "to", "body") for e in exc.value.errors)
