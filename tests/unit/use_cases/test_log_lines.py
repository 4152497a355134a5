"""The log tells what happened: one line per dispatch, delivery report, campaign run step and
inbound text, each with the correlation id of its batch, and no message text or full handset
number."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from sms_core.errors import ProviderThrottled
from sms_core.logs import request_scope
from sms_core.models.campaigns import FanoutJob, SendConfirmation
from sms_core.models.messages import DispatchJob
from sms_core.models.records import run_batch
from sms_core.use_cases.campaign_runs import handle_fanout_job
from sms_core.use_cases.campaigns import confirm_send, get_campaign, prepare_campaign
from sms_core.use_cases.delivery_reports import apply_delivery_reports
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.inbound import receive_inbound
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, campaign, inbound, report, run_jobs, send

TEXT = "Your code is 424242"


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == f"sms_core.use_cases.{logger}"]


def no_secrets(caplog: pytest.LogCaptureFixture, *numbers: str) -> None:
    """Neither the text nor a full handset number in any line or field."""
    every = caplog.text + " ".join(str(vars(r)) for r in caplog.records)
    assert TEXT not in every
    for number in numbers:
        assert number not in every and number.lstrip("+") not in every


def test_a_queued_dispatch_and_its_report_share_the_batch_as_correlation_id(
        deps: FakeDeps, caplog: pytest.LogCaptureFixture) -> None:
    deps.pacer.room_now = False  # queued: the dispatch job sends it
    (entry,) = send(deps, to=ALICE, message=TEXT).messages
    batch = entry.id.rpartition("-")[0]
    ((job, _),) = deps.jobs.take(DispatchJob)
    dispatch(deps, job)
    (line,) = lines(caplog, "dispatch")
    assert line.getMessage().startswith(
        f"dispatch {batch} (1 message(s), attempt 1): sent 1, failed 0, blocked 0, "
        "retried 0, deferred 0; ACS 1 call(s) in ")
    facts = vars(line)
    assert (facts["correlationId"], facts["batch"], facts["sent"], facts["acsCalls"],
            facts["inline"]) == (batch, batch, 1, 1, False)
    assert isinstance(facts["acsMs"], float)

    provider_id = deps.messages.record(entry.id).provider_message_id
    apply_delivery_reports(deps, [report(provider_id, "Delivered")])
    (line,) = lines(caplog, "delivery_reports")
    assert line.getMessage() == (
        f"delivery report Delivered for message {entry.id} (batch {batch}): delivered")
    facts = vars(line)
    assert (facts["correlationId"], facts["messageId"], facts["messageStatus"],
            facts["changed"]) == (batch, entry.id, "delivered", True)
    # Again (Event Grid redelivers): told, and that nothing changed.
    apply_delivery_reports(deps, [report(provider_id, "Delivered")])
    assert lines(caplog, "delivery_reports")[-1].getMessage().endswith(
        ": delivered (no change)")
    no_secrets(caplog, ALICE)


def test_an_inline_send_is_one_dispatch_line_of_the_accepting_request(
        deps: FakeDeps, caplog: pytest.LogCaptureFixture) -> None:
    with request_scope() as concerns:
        (entry,) = send(deps, to=BOB, message=TEXT).messages
    batch = entry.id.rpartition("-")[0]
    assert concerns == {"batch": batch}
    (line,) = lines(caplog, "dispatch")
    assert line.getMessage().startswith(f"dispatch {batch} inline (1 message(s), attempt 1)")
    assert (vars(line)["correlationId"], vars(line)["inline"]) == (batch, True)
    no_secrets(caplog, BOB)


def test_a_blocked_and_a_throttled_dispatch_say_so(deps: FakeDeps,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    deps.pacer.room_now = False
    send(deps, to=[ALICE, BOB], message=TEXT)
    ((job, _),) = deps.jobs.take(DispatchJob)
    deps.optouts.opt_out(SENDER, BOB, source="keyword", keyword="STOP")
    deps.gateway.fail_next(ProviderThrottled("slow down", 2))
    dispatch(deps, job)
    (line,) = lines(caplog, "dispatch")
    facts = vars(line)
    assert (facts["sent"], facts["blocked"], facts["retried"], facts["deferred"]) == (0, 1, 1, 0)


def test_a_report_for_a_message_not_known_yet_names_the_batch_of_its_tag(
        deps: FakeDeps, caplog: pytest.LogCaptureFixture) -> None:
    stranger = replace(report("acs-unknown", "Delivered"),
                       tag="sms1|20260101000000abcdef123456|0-0|x", to=ALICE)
    apply_delivery_reports(deps, [stranger])
    (line,) = lines(caplog, "delivery_reports")
    assert "matches no message yet: put back, try 1 of 5" in line.getMessage()
    assert vars(line)["correlationId"] == "20260101000000abcdef123456"


def test_a_campaign_run_tells_its_start_chunks_and_completion(
        deps: FakeDeps, caplog: pytest.LogCaptureFixture) -> None:
    prepared = prepare_campaign(deps, campaign())
    confirm_send(deps, prepared.id, SendConfirmation.model_validate(
        {"confirmationToken": prepared.confirmation_token}))
    for job, _delay in deps.campaign_jobs.take(FanoutJob):
        handle_fanout_job(deps, job)
    run_jobs(deps)
    view = get_campaign(deps, prepared.id)
    assert view.status == "completed"
    run_key = view.runs[0].id
    batch = run_batch(prepared.id, run_key)
    texts = [r.getMessage() for r in lines(caplog, "campaign_runs")]
    assert texts[0] == (f"campaign {prepared.id} run {run_key} started (batch {batch}): "
                        "2 recipient row(s), 1 chunk(s)")
    assert texts[1].startswith(f"campaign {prepared.id} run {run_key} chunk 1 of 1 "
                               f"(batch {batch}): 2 message(s) (2 queued) in ")
    assert texts[2].startswith(f"campaign {prepared.id} run {run_key} completed "
                               f"(batch {batch}) in ")
    assert texts[2].endswith(": 2 sent")
    assert len(texts) == 3  # the chunk's own job found it done and said nothing
    done = lines(caplog, "campaign_runs")[2]
    assert (vars(done)["correlationId"], vars(done)["campaignId"], vars(done)["counts"]) == (
        batch, prepared.id, {"sent": 2})
    assert {vars(r)["correlationId"] for r in lines(caplog, "dispatch")} == {batch}
    prepared_line, confirmed = lines(caplog, "campaigns")
    assert prepared_line.getMessage() == (
        f"campaign {prepared.id} prepared: 2 recipient row(s), 2 valid")
    assert confirmed.getMessage().startswith(f"campaign {prepared.id} confirmed: first run due ")


def test_an_inbound_text_shows_the_keyword_and_length_never_the_text_or_the_number(
        deps: FakeDeps, caplog: pytest.LogCaptureFixture) -> None:
    stop = inbound("STOP", their=ALICE)
    with request_scope() as concerns:
        receive_inbound(deps, [stop])
    assert next(iter(concerns)) == "inboundId"  # the request is about the inbound message
    (line,) = [r for r in lines(caplog, "inbound") if "from" in r.getMessage()]
    assert line.getMessage() == (
        f"inbound {stop.id} from ***{ALICE[-4:]} to {SENDER}: keyword STOP (opt_out), "
        "4 character(s)")
    facts = vars(line)
    assert (facts["correlationId"], facts["sender"], facts["recipient"], facts["keywordKind"]
            ) == (stop.id, f"***{ALICE[-4:]}", SENDER, "opt_out")
    receive_inbound(deps, [inbound(TEXT, their=BOB)])
    assert lines(caplog, "inbound")[-1].getMessage().endswith(
        f": no keyword, {len(TEXT)} character(s)")
    no_secrets(caplog, ALICE, BOB)
