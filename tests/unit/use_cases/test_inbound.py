"""Inbound SMS (`receive_inbound`): keywords, the opt-out lifecycle, replies, relay to the app."""

from __future__ import annotations

import pytest

from sms_core.errors import FieldError, RequestInvalid, StorageUnavailable
from sms_core.models.events import InvalidInbound
from sms_core.models.messages import MessageStatus
from sms_core.use_cases.delivery_reports import reconcile_reports
from sms_core.use_cases.inbound import receive_inbound
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, inbound, run_jobs, send


def reply_of(deps: FakeDeps, keyword: str) -> str:
    match = deps.keywords.match(keyword)
    assert match is not None
    return match.reply


def test_stop_opts_out_tells_the_app_and_confirms_once(deps: FakeDeps) -> None:
    stop = inbound("STOP", inbound_id="in-1")
    result = receive_inbound(deps, [stop])
    assert (result.processed, result.invalid) == (1, [])
    assert deps.optouts.is_opted_out(SENDER, ALICE)
    (changed,) = deps.app_events.of_type("optout.changed")
    assert changed["id"] == "optout-in-1"
    assert {k: changed["data"][k] for k in ("from", "to", "optedOut", "source", "keyword")} == {
        "from": SENDER, "to": ALICE, "optedOut": True, "source": "keyword", "keyword": "STOP"}
    (received,) = deps.app_events.of_type("sms.received")
    assert received["id"] == "received-in-1"
    assert (received["data"]["message"], received["data"]["keyword"],
            received["data"]["keywordKind"]) == ("STOP", "STOP", "opt_out")
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [reply_of(deps, "STOP")]
    (entry,) = deps.optouts.history(SENDER, ALICE)
    assert (entry.keyword, entry.text, entry.inbound_message_id) == ("STOP", "STOP", "in-1")
    totals = deps.analytics.totals()
    assert (totals["inbound"], totals["optOuts"]) == (1, 1)


def test_after_stop_nothing_else_reaches_the_person(deps: FakeDeps) -> None:
    receive_inbound(deps, [inbound("stop please")])
    (entry,) = send(deps, to=ALICE, message="Big sale!").messages
    assert entry.status == MessageStatus.BLOCKED
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [reply_of(deps, "STOP")]


def test_a_redelivered_stop_changes_nothing_and_replies_nothing_more(deps: FakeDeps) -> None:
    stop = inbound("STOP", inbound_id="in-2")
    receive_inbound(deps, [stop])
    published, messages = list(deps.app_events.published), deps.messages.all()
    receive_inbound(deps, [stop])  # Event Grid delivers it again
    assert deps.app_events.published == published
    assert deps.messages.all() == messages
    assert len(deps.gateway.calls) == 1  # the one confirmation, sent as it was accepted
    assert len(deps.optouts.history(SENDER, ALICE)) == 1
    assert deps.analytics.totals()["inbound"] == 1


def test_a_stop_redelivered_after_a_crash_half_way_replies_once(deps: FakeDeps) -> None:
    stop = inbound("STOP", inbound_id="in-3")
    receive_inbound(deps, [stop])
    deps.inbound.done.discard("in-3")  # the first run died before marking it done
    receive_inbound(deps, [stop])
    assert len(deps.app_events.of_type("optout.changed")) == 1
    assert {e["id"] for e in deps.app_events.of_type("sms.received")} == {"received-in-3"}
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [reply_of(deps, "STOP")]
    assert len(deps.optouts.history(SENDER, ALICE)) == 1  # keyed by the inbound id
    assert deps.analytics.totals()["optOuts"] == 1


def test_start_and_unstop_opt_back_in(deps: FakeDeps) -> None:
    for n, keyword in enumerate(("START", "UNSTOP")):
        receive_inbound(deps, [inbound("STOP", inbound_id=f"stop-{n}")])
        assert deps.optouts.is_opted_out(SENDER, ALICE)
        receive_inbound(deps, [inbound(keyword, inbound_id=f"start-{n}")])
        assert not deps.optouts.is_opted_out(SENDER, ALICE)
        back_in = deps.app_events.of_type("optout.changed")[-1]
        assert back_in["id"] == f"optout-start-{n}"
        assert (back_in["data"]["optedOut"], back_in["data"]["keyword"]) == (False, keyword)
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [reply_of(deps, "STOP"), reply_of(deps, "START")] * 2
    assert deps.analytics.totals()["optIns"] == 2


def test_start_from_someone_who_never_opted_out_changes_no_state(deps: FakeDeps) -> None:
    receive_inbound(deps, [inbound("START")])
    assert deps.app_events.of_type("optout.changed") == []
    assert not deps.optouts.is_opted_out(SENDER, ALICE)


def test_help_answers_with_the_help_text_and_changes_nothing(deps: FakeDeps) -> None:
    receive_inbound(deps, [inbound("HELP")])
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [deps.settings.help_text]
    assert deps.app_events.of_type("optout.changed") == []
    (received,) = deps.app_events.of_type("sms.received")
    assert received["data"]["keywordKind"] == "help"


def test_ordinary_text_is_relayed_and_answered_by_nobody(deps: FakeDeps) -> None:
    text = "I am stopping by at 5"
    receive_inbound(deps, [inbound(text, inbound_id="in-4")])
    assert not deps.optouts.is_opted_out(SENDER, ALICE)
    assert deps.jobs.enqueued == []
    (received,) = deps.app_events.of_type("sms.received")
    assert (received["data"]["message"], received["data"]["keyword"]) == (text, None)
    (entry,) = deps.conversations.page(SENDER, ALICE)[0]
    assert (entry.direction, entry.message_id, entry.text, entry.keyword) == (
        "inbound", "in-4", text, None)


def test_with_auto_reply_off_stop_still_opts_out_but_nothing_is_sent() -> None:
    deps = FakeDeps.build(SMS_AUTO_REPLY=False)
    receive_inbound(deps, [inbound("STOP"), inbound("HELP")])
    assert deps.optouts.is_opted_out(SENDER, ALICE)
    assert deps.messages.all() == [] and deps.jobs.enqueued == []
    assert len(deps.app_events.of_type("sms.received")) == 2


def test_an_invalid_inbound_event_is_kept_and_reported(deps: FakeDeps) -> None:
    error = RequestInvalid("SMSReceived event ev-9 is incomplete.",
                           [FieldError("data.from", "required")])
    raw = {"id": "ev-9", "eventType": "Microsoft.Communication.SMSReceived",
           "data": {"to": SENDER, "message": "hi"}}
    result = receive_inbound(deps, [InvalidInbound("ev-9", raw, error), inbound("hello")])
    assert result.processed == 1 and result.invalid == [error]
    (kept,) = deps.provider_ids.unmatched()
    assert (kept.provider_id, kept.event_id, kept.event, kept.report) == (
        "invalid-inbound", "ev-9", raw, None)
    assert reconcile_reports(deps).invalid_inbound == 1
    assert len(deps.provider_ids.unmatched()) == 1  # kept for a person to look at


def test_a_reply_within_24_hours_of_our_message_counts_as_a_response(deps: FakeDeps) -> None:
    send(deps, to=ALICE, message="Are you coming?", tag="invite")
    run_jobs(deps)
    receive_inbound(deps, [inbound("Yes!")])
    assert deps.analytics.totals(tag="invite")["responses"] == 1
    assert deps.analytics.totals()["inbound"] == 1


def test_a_stop_is_in_force_even_when_its_conversation_row_cannot_be_written(
        deps: FakeDeps, monkeypatch: pytest.MonkeyPatch) -> None:
    def outage(entries: object) -> None:
        raise StorageUnavailable("Conversation storage failed: the service did not answer")
    stop = inbound("STOP", inbound_id="in-1")
    with monkeypatch.context() as m:
        m.setattr(deps.conversations, "record", outage)
        with pytest.raises(StorageUnavailable):  # a 503: Event Grid delivers it again
            receive_inbound(deps, [stop])
    assert deps.optouts.is_opted_out(SENDER, ALICE)  # before the row was tried
    receive_inbound(deps, [stop])  # the redelivery finishes the work, once
    assert len(deps.app_events.of_type("optout.changed")) == 1
    assert len(deps.app_events.of_type("sms.received")) == 1
    run_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == [reply_of(deps, "STOP")]


def test_a_text_longer_than_storage_holds_is_kept_cut_with_its_length(deps: FakeDeps) -> None:
    text = "STOP. " + "x" * 40_000
    receive_inbound(deps, [inbound(text, inbound_id="in-1")])
    assert deps.optouts.is_opted_out(SENDER, ALICE)
    (entry,) = [e for e in deps.conversations.page(SENDER, ALICE)[0]
                if e.direction == "inbound"]
    assert entry.text.endswith(f"[cut: {len(text)} characters in all]")
    assert entry.length == len(text) and len(entry.text) <= 4096
    (received,) = deps.app_events.of_type("sms.received")
    assert (received["data"]["message"], received["data"]["messageLength"]) == (
        entry.text, len(text))
