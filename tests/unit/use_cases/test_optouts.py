"""The opt-out admin API (`change_optouts`, history, CSV export) in ACS's own shapes."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from sms_core.errors import RequestInvalid
from sms_core.models.optouts import OptOutHistoryPublic, OptOutRequest, OptOutResultsPublic
from sms_core.use_cases.optouts import (
    INVALID_NUMBER,
    change_optouts,
    optout_export_csv,
    optout_history,
)
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL


def request(*to: str, sender: str = SENDER) -> OptOutRequest:
    return OptOutRequest.model_validate({"from": sender, "recipients": [{"to": t} for t in to]})


def values(answer: OptOutResultsPublic | OptOutHistoryPublic) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = answer.public()["value"]
    return value


def test_add_answers_per_recipient_in_order_and_a_bad_number_is_a_400_entry(
        deps: FakeDeps) -> None:
    answer = change_optouts(deps, "add", request(ALICE, "not a number", BOB))
    assert values(answer) == [
        {"to": ALICE, "httpStatusCode": 200},
        {"to": "not a number", "httpStatusCode": 400, "errorMessage": INVALID_NUMBER},
        {"to": BOB, "httpStatusCode": 200}]
    assert deps.optouts.opted_out_among(SENDER, [ALICE, BOB, CAROL]) == {ALICE, BOB}
    events = deps.app_events.of_type("optout.changed")
    assert sorted(e["data"]["to"] for e in events) == [ALICE, BOB]
    assert all(e["data"]["source"] == "api" and e["data"]["optedOut"] for e in events)


def test_numbers_are_normalised_to_e164(deps: FakeDeps) -> None:
    (entry,) = values(change_optouts(deps, "add", request("+1 (425) 555-0101")))
    assert entry == {"to": ALICE, "httpStatusCode": 200}
    assert deps.optouts.is_opted_out(SENDER, ALICE)


def test_adding_twice_tells_the_app_once(deps: FakeDeps) -> None:
    change_optouts(deps, "add", request(ALICE))
    again = change_optouts(deps, "add", request(ALICE))
    assert values(again) == [{"to": ALICE, "httpStatusCode": 200}]
    assert len(deps.app_events.of_type("optout.changed")) == 1


def test_check_tells_who_is_opted_out(deps: FakeDeps) -> None:
    change_optouts(deps, "add", request(BOB))
    answer = change_optouts(deps, "check", request(ALICE, BOB, "12"))
    assert values(answer) == [
        {"to": ALICE, "httpStatusCode": 200, "isOptedOut": False},
        {"to": BOB, "httpStatusCode": 200, "isOptedOut": True},
        {"to": "12", "httpStatusCode": 400, "errorMessage": INVALID_NUMBER}]
    assert len(deps.app_events.published) == 1  # check changes nothing


def test_remove_opts_back_in_and_is_quiet_when_there_is_nothing_to_remove(
        deps: FakeDeps) -> None:
    change_optouts(deps, "add", request(ALICE))
    assert values(change_optouts(deps, "remove", request(ALICE))) == [
        {"to": ALICE, "httpStatusCode": 200}]
    assert not deps.optouts.is_opted_out(SENDER, ALICE)
    change_optouts(deps, "remove", request(ALICE))
    events = deps.app_events.of_type("optout.changed")
    assert [e["data"]["optedOut"] for e in events] == [True, False]


def test_an_opt_out_is_per_sender(deps: FakeDeps) -> None:
    change_optouts(deps, "add", request(ALICE))
    answer = change_optouts(deps, "check", request(ALICE, sender="+18005550199"))
    assert values(answer) == [{"to": ALICE, "httpStatusCode": 200, "isOptedOut": False}]


def test_global_scope_opts_out_of_every_sender() -> None:
    deps = FakeDeps.build(SMS_OPTOUT_SCOPE="global")
    change_optouts(deps, "add", request(ALICE))
    answer = change_optouts(deps, "check", request(ALICE, sender="+18005550199"))
    assert values(answer) == [{"to": ALICE, "httpStatusCode": 200, "isOptedOut": True}]
    (event,) = deps.app_events.of_type("optout.changed")
    assert event["data"]["scope"] == "global"


def test_an_unknown_action_or_a_bad_sender_is_a_400(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        change_optouts(deps, "delete", request(ALICE))
    assert [e.field for e in exc.value.errors] == ["action"]
    with pytest.raises(RequestInvalid) as exc:
        change_optouts(deps, "add", request(ALICE, sender="not a sender!"))
    assert [e.field for e in exc.value.errors] == ["from"]
    assert deps.app_events.published == []


def test_history_lists_every_change_oldest_first(deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, ALICE, source="keyword", keyword="STOP", text="Stop!",
                         inbound_message_id="in-1")
    change_optouts(deps, "remove", request(ALICE))
    history = values(optout_history(deps.optouts, SENDER, ALICE))
    assert [(h["action"], h["source"]) for h in history] == [
        ("opt-out", "keyword"), ("opt-in", "api")]
    first = history[0]
    assert (first["from"], first["to"], first["keyword"], first["text"],
            first["inboundMessageId"]) == (SENDER, ALICE, "STOP", "Stop!", "in-1")
    assert "keyword" not in history[1]
    assert optout_history(deps.optouts, SENDER, BOB).public() == {"value": []}


def test_export_lists_the_current_opt_outs_as_csv(deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, ALICE, source="keyword", keyword="STOP")
    deps.optouts.opt_out(SENDER, BOB, source="api")
    deps.optouts.opt_out(SENDER, CAROL, source="api")
    deps.optouts.opt_in(SENDER, CAROL, source="api")
    deps.optouts.opt_out("+18005550199", CAROL, source="api")  # another sender's list
    text = optout_export_csv(deps.optouts, SENDER)
    assert text.startswith("from,to,scope,optedOutAt,source,keyword\r\n")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [(r["from"], r["to"], r["scope"], r["source"], r["keyword"]) for r in rows] == [
        (SENDER, ALICE, "sender", "keyword", "STOP"), (SENDER, BOB, "sender", "api", "")]
    assert all(r["optedOutAt"] for r in rows)


def test_export_includes_global_opt_outs() -> None:
    deps = FakeDeps.build(SMS_OPTOUT_SCOPE="global")
    deps.optouts.opt_out(SENDER, ALICE, source="admin")
    rows = list(csv.DictReader(io.StringIO(optout_export_csv(deps.optouts, SENDER))))
    assert [(r["from"], r["to"], r["scope"]) for r in rows] == [(SENDER, ALICE, "global")]
