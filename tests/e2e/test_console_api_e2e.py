"""The API the console needs, over HTTP on the running stack: the segment counter, the audience
rule counter, the message search and the conversation list; bad input is a 400 problem naming
the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_bad_input_e2e import fields, problem
from tests.e2e.test_send_e2e import conforms
from tests.numbers import unique_number


def ok(r: Any, schema: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    conforms(r.json(), schema)
    return dict(r.json())


# -- POST /api/segments ------------------------------------------------------------------------

def test_the_segment_counter_marks_the_characters_forcing_ucs2(stack: Stack) -> None:
    body = ok(stack.api.post("/segments", json={"message": "Café ☕ ç ☕ ê"}), "Segments")
    assert body == {"characters": 12, "segments": 1, "encoding": "UCS-2",
                    "ucs2Characters": ["☕", "ç", "ê"]}
    blank = ok(stack.api.post("/segments", json={"message": ""}), "Segments")
    assert (blank["segments"], blank["encoding"]) == (0, "GSM-7")
    long = ok(stack.api.post("/segments", json={"message": "{" * 81}), "Segments")
    assert (long["characters"], long["segments"], long["encoding"]) == (81, 2, "GSM-7")


@pytest.mark.parametrize(("body", "field"), [
    ('{"message": "\\ud800"}', "message"), ('{"message": 7}', "message"), ("{}", "message"),
    ('{"message": "a", "extra": 1}', "extra")])
def test_a_bad_segment_draft_is_a_400_naming_the_field(stack: Stack, body: str,
                                                       field: str) -> None:
    r = stack.api.post("/segments", content=body, headers={"Content-Type": "application/json"})
    assert field in fields(r)


# -- GET /api/audiences/{id}/count -------------------------------------------------------------

def _audience(stack: Stack) -> str:
    r = stack.api.post("/audiences", json={"name": "console count", "recipients": [
        {"to": unique_number(), "vars": {"city": "Seattle", "plan": "pro"}},
        {"to": unique_number(), "vars": {"city": "Portland"}},
        {"to": unique_number(), "vars": {"city": "Seattle"}}]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_the_rule_builder_counts_matching_members(stack: Stack) -> None:
    audience_id = _audience(stack)
    path = f"/audiences/{audience_id}/count"
    assert ok(stack.api.get(path), "AudienceCount") == {"members": 3, "matching": 3}
    assert ok(stack.api.get(path, params={"filter": "city = 'Seattle'"}),
              "AudienceCount") == {"members": 3, "matching": 2}
    assert ok(stack.api.get(path, params={"filter": "city = 'Seattle' and plan is empty"}),
              "AudienceCount") == {"members": 3, "matching": 1}


@pytest.mark.parametrize("rule", ["town = 'Seattle'", "city =", "(city = 'a'", "x" * 2001])
def test_a_bad_count_rule_is_a_400_naming_filter(stack: Stack, rule: str) -> None:
    r = stack.api.get(f"/audiences/{_audience(stack)}/count", params={"filter": rule})
    assert fields(r) == ["filter"]


def test_counting_an_unknown_audience_is_a_404(stack: Stack) -> None:
    problem(stack.api.get("/audiences/a20260101000000abcdef012345/count"), 404)
