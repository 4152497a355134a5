"""The API the console needs, over HTTP on the running stack: the segment counter, the audience
rule counter, the message search and the conversation list; bad input is a 400 problem naming
the parameter."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_bad_input_e2e import fields, problem
from tests.e2e.test_campaigns_e2e import campaign, confirm, prepare
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


# -- GET /api/messages -------------------------------------------------------------------------

def _send(stack: Stack, to: list[str], tag: str) -> list[str]:
    r = stack.api.post("/messages", json={"to": to, "message": "console search", "tag": tag})
    assert r.status_code == 202, r.text
    return [m["id"] for m in r.json()["messages"]]


def _pages(stack: Stack, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(50):
        page = ok(stack.api.get("/messages", params={
            **params, **({"continuationToken": token} if token else {})}), "MessageList")
        found += page["messages"]
        token = page["continuationToken"]
        if token is None:
            return found
    raise AssertionError("the pages never ended")


def test_the_search_finds_the_last_days_messages_by_tag_newest_first_paged(
        stack: Stack) -> None:
    tag = f"console-{unique_number()[-7:]}"
    first = _send(stack, [unique_number(), unique_number()], tag)
    second = _send(stack, [unique_number(), unique_number(), unique_number()], tag)
    _send(stack, [unique_number()], tag + "-other")
    found = _pages(stack, tag=tag, limit="2")
    ids = [m["id"] for m in found]
    # Two requests in the same second order by their random part, newest batch first.
    batches = sorted({i.rsplit("-", 1)[0] for i in first + second}, reverse=True)
    assert ids == sorted(first + second,
                         key=lambda i: (batches.index(i.rsplit("-", 1)[0]), i))
    assert {m["tag"] for m in found} == {tag}
    assert all(m["message"] == "console search" for m in found)


def test_the_search_finds_a_campaign_runs_messages_by_tag(stack: Stack) -> None:
    """A run's batch starts with its time like every batch: the time search reads it."""
    tag = f"run-{unique_number()[-7:]}"
    people = [unique_number() for _ in range(3)]
    prepared = prepare(stack, template="Hi {{name}}, the run", tag=tag, audience={
        "recipients": [{"to": p, "vars": {"name": f"P{i}"}} for i, p in enumerate(people)]})
    confirm(stack, prepared)
    stack.wait_for(lambda: all(stack.emulator.state.inbox(p) for p in people), 60,
                   "the run's texts at the handsets")
    found = _pages(stack, tag=tag, limit="2")
    assert sorted(m["to"] for m in found) == sorted(people)
    assert {m["message"] for m in found} == {"Hi P0, the run", "Hi P1, the run",
                                             "Hi P2, the run"}
    assert campaign(stack, prepared["id"])["runCount"] == 1


def test_the_search_by_recipient_reads_their_conversation(stack: Stack) -> None:
    person = unique_number()
    tag = f"console-{unique_number()[-7:]}"
    (sent_id,) = _send(stack, [person], tag)
    stack.wait_for(lambda: [m["id"] for m in ok(
        stack.api.get("/messages", params={"to": person}), "MessageList")["messages"]]
        == [sent_id], what="the sent message listed for its recipient")
    assert ok(stack.api.get("/messages", params={"to": person, "status": "canceled"}),
              "MessageList") == {"messages": [], "continuationToken": None}
    assert ok(stack.api.get("/messages", params={"to": unique_number()}),
              "MessageList") == {"messages": [], "continuationToken": None}


@pytest.mark.parametrize(("params", "field"), [
    ({"limit": "0"}, "limit"), ({"limit": "500"}, "limit"), ({"status": "bogus"}, "status"),
    ({"since": "yesterday"}, "since"), ({"until": "2026-01-01T00:00:00"}, "until"),
    ({"since": "2026-01-01T00:00:00Z", "until": "2026-03-01T00:00:00Z"}, "since"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"to": "12"}, "to"), ({"from": "+"}, "from"),
    ({"continuationToken": "garbage"}, "continuationToken"),
    ({"continuationToken": "eyJiIjoiMSIsImkiOjEsInMiOjF9"}, "continuationToken"),
])
def test_a_bad_search_parameter_is_a_400_naming_it(stack: Stack, params: dict[str, str],
                                                   field: str) -> None:
    assert fields(stack.api.get("/messages", params=params)) == [field]


# -- GET /api/conversations --------------------------------------------------------------------

def test_the_conversation_list_shows_a_reply_and_the_opt_out(stack: Stack) -> None:
    ours = unique_number()
    person, other = unique_number(), unique_number()
    for to in (other, person):
        r = stack.api.post("/messages", json={"from": ours, "to": to, "message": "Hello"})
        assert r.status_code == 202, r.text
    r = stack.api.post("/optouts/add", json={"from": ours, "recipients": [{"to": other}]})
    assert r.status_code == 200, r.text

    def listed() -> list[tuple[str, str, str, bool]]:
        page = ok(stack.api.get("/conversations", params={"from": ours}), "ConversationList")
        return [(c["number"], c["lastMessage"], c["lastDirection"], c["optedOut"])
                for c in page["conversations"]]

    stack.wait_for(lambda: len(listed()) == 2, what="both conversations listed")
    stack.emulator.reply(person, ours, "Thanks!")
    stack.wait_for(lambda: listed()[0] == (person, "Thanks!", "inbound", False),
                   what="the reply on top", explain=listed)
    assert listed()[1] == (other, "Hello", "outbound", True)
    first = ok(stack.api.get("/conversations", params={"from": ours, "limit": "1"}),
               "ConversationList")
    assert [c["number"] for c in first["conversations"]] == [person]
    second = ok(stack.api.get("/conversations", params={
        "from": ours, "limit": "1", "continuationToken": first["continuationToken"]}),
        "ConversationList")
    assert [c["number"] for c in second["conversations"]] == [other]


@pytest.mark.parametrize(("params", "field"), [
    ({"from": "+"}, "from"), ({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
    ({"continuationToken": "garbage"}, "continuationToken")])
def test_a_bad_conversation_list_parameter_is_a_400_naming_it(
        stack: Stack, params: dict[str, str], field: str) -> None:
    assert fields(stack.api.get("/conversations", params=params)) == [field]
