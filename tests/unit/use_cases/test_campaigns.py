"""Campaigns: prepare, review, confirm, fan out, cancel, list (`campaigns`, `campaign_runs`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sms_core.errors import Conflict, ProviderThrottled, RequestInvalid
from sms_core.models.campaign_views import CampaignPublic, PreparedCampaignPublic
from sms_core.models.campaigns import FanoutJob, SendConfirmation
from sms_core.models.messages import DispatchJob, MessageStatus
from sms_core.models.queries import PageQuery
from sms_core.models.records import MemberRecord
from sms_core.use_cases.campaign_runs import CHUNK_ROWS, handle_fanout_job, run_due
from sms_core.use_cases.campaigns import (
    cancel_campaign,
    confirm_send,
    get_campaign,
    list_campaigns,
    prepare_campaign,
    review_campaign,
)
from sms_core.use_cases.dispatch import dispatch
from sms_http.requests import campaign_request
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL, DAVE, campaign, run_jobs


def confirm(deps: FakeDeps, prepared: PreparedCampaignPublic,
            token: str | None = None) -> CampaignPublic:
    return confirm_send(deps, prepared.id, SendConfirmation.model_validate(
        {"confirmationToken": token or prepared.confirmation_token}))


def run_campaign_jobs(deps: FakeDeps) -> None:
    """Everything on `sms-campaigns`, then everything on `sms-outbound`."""
    for job, _delay in deps.campaign_jobs.take(FanoutJob):
        handle_fanout_job(deps, job)
    run_jobs(deps)


def test_prepare_counts_every_recipient_exactly_and_sends_nothing(deps: FakeDeps) -> None:
    deps.optouts.opt_out(SENDER, CAROL, source="keyword", keyword="STOP")
    prepared = prepare_campaign(deps, campaign(audience={"recipients": [
        {"to": ALICE, "vars": {"name": "Alice"}},
        {"to": "bogus", "vars": {"name": "X"}},
        {"to": BOB},  # no name: the template cannot be filled
        {"to": "+1 425 555 0101", "vars": {"name": "Alice again"}},
        {"to": CAROL, "vars": {"name": "Carol"}},
        {"to": DAVE, "vars": {"name": "Dave"}}]})).public()
    assert prepared["status"] == "prepared" and prepared["confirmationToken"]
    preview = prepared["preview"]
    assert preview["recipients"] == {"total": 6, "valid": 2, "invalid": 2, "duplicates": 1,
                                     "optedOut": 1, "deferred": 0}
    assert [(r["index"], r["to"]) for r in preview["invalidRows"]] == [(1, "bogus"), (2, BOB)]
    assert "name" in preview["invalidRows"][1]["reason"]
    assert [s["message"] for s in preview["samples"]] == [
        "Hi Alice, 20% off today", "Hi Dave, 20% off today"]
    assert preview["segments"] == {"min": 1, "max": 1, "total": 2}
    assert preview["encoding"] == "GSM-7"
    assert prepared["runs"] == [] and prepared["counts"]["queued"] == 0
    assert deps.gateway.calls == [] and deps.messages.all() == []
    assert deps.jobs.enqueued == [] and deps.campaign_jobs.enqueued == []


def test_a_request_that_cannot_be_prepared_saves_nothing(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        prepare_campaign(deps, campaign(template="Hi {{name"))
    assert [e.field for e in exc.value.errors] == ["template"]
    with pytest.raises(RequestInvalid) as exc:
        prepare_campaign(deps, campaign(template=None, templateId="tnope"))
    assert [e.field for e in exc.value.errors] == ["templateId"]
    assert list_campaigns(deps.campaigns, PageQuery(10, None)).campaigns == []


def test_confirm_with_a_wrong_token_is_a_conflict_and_starts_nothing(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    with pytest.raises(Conflict):
        confirm(deps, prepared, token="not-the-token")
    assert get_campaign(deps, prepared.id).status == "prepared"
    assert deps.messages.all() == [] and deps.jobs.enqueued == []


def test_a_review_shows_the_same_preview_with_a_new_token_and_the_old_one_lapses(
        deps: FakeDeps) -> None:
    """A campaign prepared earlier (another session) is sent after a review of it."""
    prepared = prepare_campaign(deps, campaign())
    reviewed = review_campaign(deps, prepared.id)
    assert reviewed.status == "prepared" and reviewed.preview == prepared.preview
    assert reviewed.confirmation_token != prepared.confirmation_token
    with pytest.raises(Conflict, match="latest review"):
        confirm(deps, prepared)
    assert deps.messages.all() == []
    assert confirm(deps, reviewed).status == "sending"
    with pytest.raises(Conflict, match="sending; only a prepared campaign"):
        review_campaign(deps, prepared.id)
    # The send's retry with the reviewed token still answers, and starts nothing new.
    assert confirm(deps, reviewed).run_count == 1


def test_a_canceled_campaign_is_not_reviewed(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    cancel_campaign(deps, prepared.id)
    with pytest.raises(Conflict, match="canceled"):
        review_campaign(deps, prepared.id)


def test_confirm_fires_the_first_chunk_and_the_messages_go_out(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    view = confirm(deps, prepared).public()
    assert view["status"] == "sending" and view["runCount"] == 1
    (run,) = view["runs"]
    assert run["status"] == "sending" and run["counts"]["queued"] == 2
    # The request wrote the first chunk itself; its job waits, then finds it done.
    ((chunk_job, delay),) = deps.campaign_jobs.decoded(FanoutJob)
    assert (chunk_job.kind, chunk_job.chunk, delay) == ("chunk", 0, 30)
    assert len(deps.jobs.dispatch_jobs()) == 1
    run_campaign_jobs(deps)
    assert deps.gateway.texts_to(ALICE) == ["Hi Alice, 20% off today"]
    assert deps.gateway.texts_to(DAVE) == ["Hi Dave, 20% off today"]
    # ACS gets the campaign's tag after the route its delivery reports come back by.
    assert {c.tag.rsplit("|", 1)[1] for c in deps.gateway.calls if c.tag} == {"spring"}
    done = get_campaign(deps, prepared.id).public()
    assert done["status"] == "completed" and done["runs"][0]["status"] == "completed"
    assert done["counts"]["sent"] == 2 and done["counts"]["queued"] == 0


def test_confirming_again_starts_nothing_new(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    confirm(deps, prepared)
    jobs, messages = list(deps.jobs.enqueued), deps.messages.all()
    again = confirm(deps, prepared)
    assert again.run_count == 1 and len(again.runs) == 1
    assert deps.jobs.enqueued == jobs and deps.messages.all() == messages


def test_an_opt_out_after_preparation_wins(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    deps.optouts.opt_out(SENDER, DAVE, source="keyword", keyword="STOP")
    confirm(deps, prepared)
    run_campaign_jobs(deps)
    assert deps.gateway.texts_to(DAVE) == []
    assert get_campaign(deps, prepared.id).counts.blocked == 1


def test_a_scheduled_campaign_fires_when_due(deps: FakeDeps) -> None:
    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    prepared = prepare_campaign(deps, campaign(schedule={"sendAt": at.isoformat()}))
    view = confirm(deps, prepared).public()
    assert view["status"] == "scheduled" and view["nextRunAt"] == at.isoformat()
    ((fire, delay),) = deps.campaign_jobs.decoded(FanoutJob)
    assert fire.kind == "fire" and 7190 < delay <= 7200
    assert deps.messages.all() == []
    assert run_due(deps, now=at - timedelta(minutes=1)) == 0
    assert run_due(deps, now=at) == 1
    run_campaign_jobs(deps)
    assert len(deps.gateway.delivered) == 2


@pytest.mark.parametrize("at", ["0496-09-26T00:02:24Z", "0001-01-01T00:00:00Z",
                                (datetime.now(UTC) - timedelta(minutes=2)).isoformat()])
def test_a_campaign_send_at_more_than_a_minute_ago_is_a_400(deps: FakeDeps, at: str) -> None:
    with pytest.raises(RequestInvalid) as info:
        prepare_campaign(deps, campaign(schedule={"sendAt": at}))
    assert [(e.field, e.message) for e in info.value.errors] == [
        ("schedule.sendAt", "is in the past (more than 60 seconds ago)")]
    assert list_campaigns(deps.campaigns, PageQuery(10, None)).campaigns == []


def test_a_campaign_send_at_within_the_last_minute_starts_now(deps: FakeDeps) -> None:
    at = datetime.now(UTC) - timedelta(seconds=30)
    prepared = prepare_campaign(deps, campaign(schedule={"sendAt": at.isoformat()}))
    starts = prepared.public()["preview"]["estimate"]["startsAt"]
    assert datetime.fromisoformat(starts) >= at + timedelta(seconds=29)
    assert confirm(deps, prepared).public()["status"] == "sending"  # as one without sendAt
    run_due(deps)
    run_campaign_jobs(deps)
    assert len(deps.gateway.delivered) == 2


def test_cancel_stops_the_messages_that_have_not_left(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    confirm(deps, prepared)
    view = cancel_campaign(deps, prepared.id).public()
    assert view["status"] == "canceled"
    assert view["counts"]["canceled"] == 2 and view["runs"][0]["status"] == "canceled"
    run_campaign_jobs(deps)
    assert deps.gateway.calls == []
    assert {r.status for r in deps.messages.all()} == {MessageStatus.CANCELED}
    assert {e["data"]["status"] for e in deps.app_events.of_type("sms.status")} == {"canceled"}


def test_a_canceled_schedule_never_fires(deps: FakeDeps) -> None:
    at = datetime.now(UTC) + timedelta(hours=2)
    prepared = prepare_campaign(deps, campaign(schedule={"sendAt": at.isoformat()}))
    confirm(deps, prepared)
    cancel_campaign(deps, prepared.id)
    run_campaign_jobs(deps)  # the delayed fire job arrives anyway
    assert run_due(deps, now=at + timedelta(minutes=1)) == 0
    assert deps.messages.all() == [] and deps.gateway.calls == []
    assert deps.campaigns.scheduled() == []
    with pytest.raises(Conflict):
        confirm(deps, prepared)


def test_a_completed_campaign_cannot_be_canceled(deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign())
    confirm(deps, prepared)
    run_campaign_jobs(deps)
    assert get_campaign(deps, prepared.id).status == "completed"
    with pytest.raises(Conflict):
        cancel_campaign(deps, prepared.id)


def test_list_pages_through_the_campaigns_by_id(deps: FakeDeps) -> None:
    ids = sorted(prepare_campaign(deps, campaign(name=f"c{n}")).id for n in range(3))
    first = list_campaigns(deps.campaigns, PageQuery(2, None)).public()
    assert [c["id"] for c in first["campaigns"]] == ids[:2] and first["next"] == ids[1]
    second = list_campaigns(deps.campaigns, PageQuery(2, first["next"])).public()
    assert [c["id"] for c in second["campaigns"]] == ids[2:] and second["next"] is None
    assert first["campaigns"][0]["recipients"]["valid"] == 2
    assert "confirmationToken" not in first["campaigns"][0]


@pytest.mark.parametrize("after", ["garbage", "c2026", "c20260101000000abcdef12345g",
                                   "C20260101000000ABCDEF123456", " c20260101000000abcdef123456"])
def test_a_malformed_after_cursor_is_a_400_naming_it(deps: FakeDeps, after: str) -> None:
    prepare_campaign(deps, campaign())
    with pytest.raises(RequestInvalid) as info:
        list_campaigns(deps.campaigns, PageQuery(10, after))
    assert [e.field for e in info.value.errors] == ["after"]


def test_an_after_cursor_of_this_api_pages_on(deps: FakeDeps) -> None:
    # Ids made in the same second order by their random part: sort them as the listing does.
    first, second = sorted(prepare_campaign(deps, campaign()).id for _ in range(2))
    page = list_campaigns(deps.campaigns, PageQuery(10, first)).public()
    assert [c["id"] for c in page["campaigns"]] == [second]


def test_a_saved_template_and_a_filtered_saved_audience(deps: FakeDeps) -> None:
    template = deps.templates.create("promo", "Hello {{name}}", ["name"])
    audience = deps.audiences.create("vip", [MemberRecord(ALICE, {"name": "Alice", "tier": "gold"}),
                                             MemberRecord(BOB, {"name": "Bob", "tier": "silver"})])
    prepared = prepare_campaign(deps, campaign(
        template=None, templateId=template.id,
        audience={"audienceId": audience.id, "filter": "tier = 'gold'"}))
    assert prepared.template_id == template.id
    assert prepared.preview.recipients.total == 1
    confirm(deps, prepared)
    run_campaign_jobs(deps)
    assert deps.gateway.delivered == [(ALICE, "Hello Alice")]


@pytest.mark.parametrize("rule", ["plann = 'pro'", "not plann = 'free'",
                                  "tier = 'gold' or `Plann` is empty"])
def test_a_filter_naming_an_unknown_column_is_a_400_listing_the_known_ones(
        deps: FakeDeps, rule: str) -> None:
    audience = deps.audiences.create("vip", [
        MemberRecord(ALICE, {"name": "Alice", "tier": "gold", "plan": "pro"}),
        MemberRecord(BOB, {"name": "Bob", "tier": "silver"})])
    with pytest.raises(RequestInvalid) as info:
        prepare_campaign(deps, campaign(audience={"audienceId": audience.id, "filter": rule}))
    ((field, message),) = [(e.field, e.message) for e in info.value.errors]
    assert field == "audience.filter"
    assert "unknown column 'plann'" in message.lower()
    assert "name, plan, tier" in message  # the known ones
    assert list_campaigns(deps.campaigns, PageQuery(10, None)).campaigns == []


def test_a_filter_over_a_csv_upload_names_an_unknown_column_too(deps: FakeDeps) -> None:
    request = campaign_request(f"to,name,City\n{ALICE},Alice,Seattle\n".encode(), "text/csv",
                               {"name": "From CSV", "template": "Hi {{name}}",
                                "filter": "town = 'Seattle'"})
    with pytest.raises(RequestInvalid) as info:
        prepare_campaign(deps, request)
    assert [(e.field, e.message) for e in info.value.errors] == [(
        "audience.filter", "unknown column 'town'; the audience's columns are: City, name")]


def test_a_filter_column_matches_in_any_case_and_a_blank_column_is_known(
        deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign(audience={
        "recipients": [{"to": ALICE, "vars": {"name": "Alice", "City": "Seattle", "plan": ""}},
                       {"to": DAVE, "vars": {"name": "Dave"}}],
        "filter": "city = 'seattle' and plan is empty"}))
    assert prepared.preview.recipients.total == 1


def test_a_csv_upload_is_prepared_like_json(deps: FakeDeps) -> None:
    request = campaign_request(f"to,name\n{ALICE},Alice\n{BOB},\n".encode(), "text/csv",
                               {"name": "From CSV", "template": "Hi {{name}}"})
    prepared = prepare_campaign(deps, request).public()
    counts = prepared["preview"]["recipients"]
    assert (counts["total"], counts["valid"], counts["invalid"]) == (2, 1, 1)
    assert prepared["preview"]["invalidRows"][0]["line"] == 3


def test_recipients_in_their_quiet_hours_wait_until_the_window_ends(deps: FakeDeps) -> None:
    local_now = datetime.now(ZoneInfo("America/Los_Angeles"))  # the zone of +1 425 numbers
    start, end = local_now - timedelta(hours=1), local_now + timedelta(hours=1)
    prepared = prepare_campaign(deps, campaign(quietHours={
        "start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}))
    assert prepared.preview.recipients.deferred == 2
    confirm(deps, prepared)
    records = deps.messages.all()
    assert {r.status for r in records} == {MessageStatus.SCHEDULED}
    (due,) = {r.send_at for r in records}  # when the window ends, in their zone
    assert due is not None and local_now < due <= end
    ((job, _),) = deps.jobs.take(DispatchJob)
    assert job.not_before == due
    dispatch(deps, job)  # too early: the job goes back on the queue
    assert deps.gateway.calls == []
    ((_, delay),) = deps.jobs.decoded(DispatchJob)
    assert 0 < delay <= 3600


def test_a_large_campaign_fans_out_in_chunks_each_exactly_once(deps: FakeDeps) -> None:
    numbers = [f"+1425555{2000 + i:04d}" for i in range(CHUNK_ROWS + 1)]
    prepared = prepare_campaign(deps, campaign(template="Hello!", audience={
        "recipients": [{"to": n} for n in numbers]}))
    confirm(deps, prepared)
    chunk_jobs = [job for job, _ in deps.campaign_jobs.take(FanoutJob)]
    assert sorted(j.chunk for j in chunk_jobs) == [0, 1]
    for job in chunk_jobs * 2:  # every chunk job redelivered once
        handle_fanout_job(deps, job)
    assert sorted(r.to for r in deps.messages.all()) == sorted(numbers)
    jobs = deps.jobs.dispatch_jobs()
    assert sorted(i for j in jobs for i in j.indices) == list(range(CHUNK_ROWS + 1))
    assert max(len(j.indices) for j in jobs) == 100
    assert get_campaign(deps, prepared.id).counts.queued == CHUNK_ROWS + 1


def test_a_message_caught_in_a_throttled_call_is_canceled_when_it_comes_back(
        deps: FakeDeps) -> None:
    prepared = prepare_campaign(deps, campaign(template="Hello from us"))  # one ACS call
    confirm(deps, prepared)
    deps.gateway.fail_next(ProviderThrottled("busy", retry_after=5))
    ((job, _),) = deps.jobs.take(DispatchJob)
    dispatch(deps, job)  # claimed, then throttled: back on the queue
    cancel_campaign(deps, prepared.id)
    assert {r.cancel_requested for r in deps.messages.all()} == {True}
    run_jobs(deps)
    assert len(deps.gateway.calls) == 1 and deps.gateway.delivered == []
    assert {r.status for r in deps.messages.all()} == {MessageStatus.CANCELED}
    assert get_campaign(deps, prepared.id).counts.canceled == 2


def test_the_answers_keep_their_json_shape(deps: FakeDeps) -> None:
    """Key order, left-out optionals, nulls and time formats, as openapi.yaml and README show."""
    summary_keys = ["id", "name", "status", "from", "template", "createdAt", "updatedAt",
                    "runCount", "recipients"]
    view_keys = ["preview", "counts", "runs"]
    prepared = prepare_campaign(deps, campaign(tag=None, audience={"recipients": [
        {"to": ALICE, "vars": {"name": "Alice"}}, {"to": "bogus", "vars": {"name": "X"}}]}))
    body = prepared.public()
    assert list(body) == [*summary_keys, *view_keys, "confirmationToken"]
    assert body["createdAt"] == prepared.created_at.isoformat()
    assert body["createdAt"].endswith("+00:00")
    assert body["preview"]["invalidRows"] == [
        {"index": 1, "to": "bogus", "reason": "'bogus' is not a phone number"}]  # no line
    assert body["preview"]["estimate"]["deferredUntil"] is None
    assert body["preview"]["estimate"]["startsAt"].endswith("+00:00")
    # The preview is stored as it is answered.
    assert deps.campaigns.get(prepared.id).preview == body["preview"]
    nobody = prepare_campaign(deps, campaign(audience={"recipients": [{"to": "bogus"}]}))
    assert nobody.public()["preview"]["encoding"] is None

    at = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    later = prepare_campaign(deps, campaign(schedule={"sendAt": at.isoformat()},
                                            quietHours={"start": "22:00", "end": "07:00"}))
    scheduled = confirm(deps, later).public()
    assert list(scheduled) == [*summary_keys, "tag", "schedule", "quietHours", "nextRunAt",
                               *view_keys]
    assert scheduled["schedule"] == {"sendAt": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    assert scheduled["quietHours"] == {"start": "22:00", "end": "07:00"}
    assert scheduled["nextRunAt"] == at.isoformat()

    now = confirm(deps, prepared).public()
    (run,) = now["runs"]
    assert list(run) == ["id", "status", "startedAt", "finishedAt", "counts"]
    assert run["finishedAt"] is None and run["startedAt"].endswith("+00:00")
    assert list(run["counts"]) == ["queued", "sent", "delivered", "failed", "blocked",
                                   "canceled", "expired"]
    listed = list_campaigns(deps.campaigns, PageQuery(10, None)).public()
    assert list(listed) == ["campaigns", "next"] and listed["next"] is None
    assert {tuple(c) for c in listed["campaigns"]} == {
        tuple(summary_keys), (*summary_keys, "tag"),
        (*summary_keys, "tag", "schedule", "quietHours", "nextRunAt")}
