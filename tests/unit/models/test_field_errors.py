"""Validation errors in our own words, one per bad value, at the public (camelCase) path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from sms_core.errors import RequestInvalid
from sms_core.models.campaigns import CampaignRequest, TemplateRequest
from sms_core.models.messages import SendRequest, parse_model
from sms_core.models.optouts import OptOutRequest

A = "+14255550123"
CAMPAIGN: dict[str, Any] = {"name": "c", "template": "Hi", "audience": {"recipients": [{"to": A}]}}


def errors(model: type[BaseModel], body: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(RequestInvalid) as info:
        parse_model(model, json.dumps(body))
    found = [(e.field, e.message) for e in info.value.errors]
    for _, message in found:  # none of pydantic's own wording
        for leak in ("Input should", "after validation", "Value error", "Field required",
                     "Extra inputs", "String should", "List should"):
            assert leak not in message
    assert info.value.detail == "The request is invalid: " + "; ".join(
        f"{f}: {m}" for f, m in found)
    return found


def campaign(**changes: Any) -> dict[str, Any]:
    return {**CAMPAIGN, **changes}


@pytest.mark.parametrize(("model", "body", "expected"), [
    (OptOutRequest, {"from": A, "recipients": [{"to": A}] * 101},
     [("recipients", "at most 100 items (got 101)")]),
    (OptOutRequest, {"from": A, "recipients": []}, [("recipients", "at least 1 item")]),
    (SendRequest, {"to": A, "message": "hi", "tag": "x" * 300},
     [("tag", "at most 256 characters (got 300)")]),
    (CampaignRequest, campaign(name=""), [("name", "must not be empty")]),
    (TemplateRequest, {"name": "t", "text": "x" * 3000},
     [("text", "at most 2048 characters (got 3000)")]),
    (SendRequest, {"to": A}, [("message", "required")]),
    (CampaignRequest, campaign(quietHours={"start": "21:00"}), [("quietHours.end", "required")]),
    (SendRequest, {"to": A, "message": "hi", "mesage": "hi"}, [("mesage", "unknown field")]),
    (SendRequest, {"to": A, "message": 5}, [("message", "must be a string")]),
    (SendRequest, {"to": A, "message": "hi", "deliveryReport": "maybe"},
     [("deliveryReport", "must be true or false")]),
    (CampaignRequest, campaign(schedule=5), [("schedule", "must be an object")]),
    (CampaignRequest, campaign(audience={"recipients": "all"}),
     [("audience.recipients", "must be a list")]),
    (SendRequest, {"to": A, "message": "hi", "sendAt": "tomorrow"},
     [("sendAt", "must be a date and time in ISO 8601 with a UTC offset, "
                 "e.g. 2030-01-31T09:00:00+01:00")]),
    (SendRequest, {"to": A, "message": "hi", "sendAt": "2030-02-30T09:00:00Z"},
     [("sendAt", "must be a date and time in ISO 8601 with a UTC offset, "
                 "e.g. 2030-01-31T09:00:00+01:00")]),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_each_error_type_is_worded_our_way(model: type[BaseModel], body: dict[str, Any],
                                           expected: list[tuple[str, str]]) -> None:
    assert errors(model, body) == expected


def test_one_bad_template_variable_is_one_error() -> None:
    bad = campaign(audience={"recipients": [{"to": A, "vars": {"name": [1], "int": None}}]})
    assert errors(CampaignRequest, bad) == [
        ("audience.recipients[0].vars.name", "must be a string, a number or true or false"),
        ("audience.recipients[0].vars.int", "must be a string, a number or true or false")]


def test_a_recipient_of_the_wrong_type_is_one_error() -> None:
    assert errors(SendRequest, {"to": 5, "message": "hi"}) == [
        ("to", "must be a string or a list")]


def test_a_bad_entry_of_a_recipient_list_is_named_by_its_index() -> None:
    assert errors(SendRequest, {"to": [A, 5, A], "message": "hi"}) == [
        ("to[1]", "must be a string")]


def test_our_own_rules_keep_their_words() -> None:
    assert errors(CampaignRequest, campaign(schedule={"cron": "* * *"})) == [(
        "schedule.cron", "cron must be 5 fields: minute hour day-of-month month day-of-week, "
                         "e.g. '0 9 * * 1' (Mondays at 09:00)")]
