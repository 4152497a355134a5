"""What a message text must be to be sent: `sms_core.rules.message_text`, and the requests that
carry one (a message, a saved template, a campaign's template and its rendered messages)."""

from __future__ import annotations

import json

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.campaigns import CampaignRequest, TemplateRequest
from sms_core.models.messages import SendRequest, parse_model
from sms_core.rules.message_text import text_problem
from sms_core.use_cases.campaigns import prepare_campaign
from tests.unit.fakes import FakeDeps
from tests.unit.use_cases.steps import ALICE, DAVE

INVISIBLE = ["\x00", "\x00\x00", "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff",
             "\u200b\u200c\u200d\u2060\ufeff", " \u200b\n\t", "\u00ad", "\u2063", "\x1f"]
BROKEN = ["\ud800", "hi \udc00 there", "end \ud83d"]  # lone surrogates
CONTROLS = ["hi\x00there", "bell\x07", "esc\x1b[31m red", "del\x7f", "c1\x85"]
FINE = ["Hi", "line 1\nline 2\r\nand\ta tab", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "zero\u200bwidth inside", "\ufeffbom first", "caf\u00e9 \U0001f600"]


@pytest.mark.parametrize("text", INVISIBLE, ids=repr)
def test_a_text_of_only_invisible_characters_is_empty(text: str) -> None:
    assert text_problem(text) == "must not be empty: it has no visible character"


@pytest.mark.parametrize("text", BROKEN, ids=repr)
def test_a_lone_surrogate_is_not_text(text: str) -> None:
    problem = text_problem(text)
    assert problem is not None and "lone surrogate" in problem


@pytest.mark.parametrize("text", CONTROLS, ids=repr)
def test_a_control_character_other_than_line_breaks_and_tabs_is_refused(text: str) -> None:
    problem = text_problem(text)
    assert problem is not None and "control character" in problem


@pytest.mark.parametrize("text", FINE, ids=repr)
def test_ordinary_texts_are_fine(text: str) -> None:
    assert text_problem(text) is None


def message_errors(message_json: str) -> dict[str, str]:
    body = '{"to": "+14255550123", "message": ' + message_json + "}"
    with pytest.raises(RequestInvalid) as info:
        parse_model(SendRequest, body)
    return {e.field: e.message for e in info.value.errors}


@pytest.mark.parametrize("text", [*INVISIBLE, *BROKEN, *CONTROLS], ids=repr)
def test_a_message_that_cannot_be_sent_is_a_400_naming_message(text: str) -> None:
    assert list(message_errors(json.dumps(text))) == ["message"]


def test_a_lone_surrogate_escape_in_json_is_a_400_naming_message() -> None:
    assert "lone surrogate" in message_errors('"\\ud800"')["message"]
    emoji = parse_model(SendRequest, '{"to": "+14255550123", "message": "\\ud83d\\ude00"}')
    assert emoji.message == "\U0001f600"  # a pair is one character


@pytest.mark.parametrize("text", ["\u200b", "\x00", "\ud800 {{name}}"], ids=repr)
def test_a_template_text_that_cannot_be_sent_is_a_400_naming_it(text: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        parse_model(TemplateRequest, json.dumps({"name": "t", "text": text}))
    assert [e.field for e in info.value.errors] == ["text"]
    with pytest.raises(RequestInvalid) as info:
        parse_model(CampaignRequest, json.dumps({
            "name": "c", "template": text, "audience": {"recipients": [{"to": ALICE}]}}))
    assert [e.field for e in info.value.errors] == ["template"]


def test_a_rendered_message_that_cannot_be_sent_makes_its_row_invalid() -> None:
    deps = FakeDeps.build()
    prepared = prepare_campaign(deps, CampaignRequest.model_validate({
        "name": "c", "template": "{{name}}", "audience": {"recipients": [
            {"to": ALICE, "vars": {"name": "\u200b\u200d"}},
            {"to": DAVE, "vars": {"name": "Dave \ud800"}},
            {"to": "+14255550105", "vars": {"name": "Eve"}}]}})).public()
    rows = {r["index"]: r["reason"] for r in prepared["preview"]["invalidRows"]}
    assert rows[0] == "the rendered message must not be empty: it has no visible character"
    assert "lone surrogate" in rows[1]
    assert prepared["preview"]["recipients"]["valid"] == 1
