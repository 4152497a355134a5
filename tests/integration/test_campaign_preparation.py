"""Background preparation of large saved audiences against Azurite and the ACS emulator.

Sizes are made small (chunks of 40 members, buckets of about 30 claims, snapshot blocks of 50
rows, fan-out chunks of 25) so a few hundred members cross every boundary: the preview must be
exactly the one the request computes for the same audience, whatever order the jobs run in, and
however often they are redelivered or crash; the run then sends from several block batches.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from localdev.acs_emulator import AcsEmulator
from sms_core.adapters import campaign_store
from sms_core.bootstrap import Services
from sms_core.errors import Conflict
from sms_core.models import records
from sms_core.models.campaigns import FanoutJob
from sms_core.models.records import CampaignRecord, MemberRecord, RecipientRecord
from sms_core.use_cases import campaign_preparation, campaign_runs
from sms_core.use_cases.campaign_jobs import handle_campaign_job
from sms_core.use_cases.campaign_preparation import resume_preparations
from sms_core.use_cases.campaigns import cancel_campaign, confirm_send, review_campaign
from sms_core.use_cases.dispatch import dispatch
from sms_http.requests import send_confirmation
from tests.integration.conftest import SENDER, new_number, take_jobs
from tests.integration.test_campaigns import (
    campaign_services,
    drain,
    prepare,
    send,
    take_fanout,
    texts,
    view_of,
)


@pytest.fixture
def services(azurite_connection_string: str, emulator: AcsEmulator) -> Services:
    return campaign_services(azurite_connection_string, emulator)


def prepared_inline_up_to(services: Services, members: int) -> None:
    """SMS_CAMPAIGN_PREPARE_INLINE_MAX for the use cases `services` runs."""
    services.settings = services.settings.model_copy(  # type: ignore[misc]
        update={"campaign_prepare_inline_max": members})


@pytest.fixture
def small_parts(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    services.settings = services.settings.model_copy(  # type: ignore[misc]
        update={"campaign_prepare_inline_max": 50, "campaign_prepare_chunk": 40})
    monkeypatch.setattr(campaign_preparation, "BUCKET_CLAIMS", 30)
    for module in (records, campaign_store):
        monkeypatch.setattr(module, "SNAPSHOT_BLOCK", 50)
    monkeypatch.setattr(campaign_runs, "CHUNK_ROWS", 25)


def mixed_audience(services: Services, size: int = 230) -> tuple[str, list[str]]:
    """A saved audience with everything a preview counts, spread over every chunk: invalid
    numbers, a missing variable, duplicates far apart, opt-outs, UCS-2 names, filtered-out
    members. Returns its id and the opted-out numbers."""
    people = [new_number() for _ in range(size)]
    members = []
    for i, number in enumerate(people):
        attrs = {"name": f"P{i}", "tier": "gold" if i % 7 else "lead"}
        if i % 23 == 5:
            number = "12345"  # invalid
        if i % 31 == 9:
            attrs.pop("name")  # the template's variable is missing
        if i % 19 == 3:
            attrs["name"] = f"Zoë{i}"  # UCS-2
        if i % 17 == 11 and i > 40:
            number = people[i - 40]  # the same person, a chunk earlier
        members.append(MemberRecord(number, attrs))
    opted = [people[i] for i in (2, 90, 181) if i < size]
    for number in opted:
        services.optouts.opt_out(SENDER, number, source="api", reason="test")
    info = services.audiences.create("mixed", members)
    return info.id, opted


def run_jobs(services: Services, *, redeliver: bool = False, shuffle: bool = False,
             limit: int = 200) -> int:
    """Run the preparation jobs on the queue until none is left (each twice when
    `redeliver`, in random order when `shuffle`); how many ran."""
    ran = 0
    rng = random.Random(7)
    while True:
        jobs = [j for j in take_fanout(services) if j.kind in ("prepare", "bucket")]
        if not jobs:
            return ran
        if shuffle:
            rng.shuffle(jobs)
        for job in jobs:
            for _ in range(2 if redeliver else 1):
                handle_campaign_job(services, job)
                ran += 1
        assert ran < limit, "the preparation never ended"


def body(audience_id: str, **extra: Any) -> dict[str, Any]:
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    return {"template": "Hi {{name}}, sale today", "audience": {"audienceId": audience_id,
            **extra}, "schedule": {"sendAt": when.isoformat()},
            "quietHours": {"start": "21:00", "end": "08:00"}}


def snapshot(services: Services, campaign_id: str) -> list[tuple[str, str, str | None]]:
    campaign = services.campaigns.get(campaign_id)
    rows: list[RecipientRecord] = []
    for e in services.campaigns._r.query_entities(
            "PartitionKey ge @lo and PartitionKey lt @hi",
            parameters={"lo": campaign_id, "hi": campaign_id + "/"}):
        if "|" not in str(e["RowKey"]):
            rows.append(campaign_store._recipient_row(e))
    assert campaign.layout == 2
    return sorted((r.to, r.verdict, r.reason) for r in rows)


def test_a_large_audience_prepares_in_the_background_to_the_preview_the_request_gives(
        services: Services, small_parts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    audience_id, _ = mixed_audience(services)
    spec = body(audience_id, filter="tier = 'gold'")
    prepared_inline_up_to(services, 10_000)
    inline = prepare(services, **spec)  # in the request, as for any small audience
    prepared_inline_up_to(services, 50)

    out = prepare(services, **spec)
    assert out["status"] == "preparing" and out["preview"] is None and out["confirmationToken"]
    assert out["preparation"]["rowsTotal"] == 230 and out["preparation"]["rowsRead"] == 0
    assert sorted(j.chunk for j in take_fanout(services)) == [0, 1, 2, 3, 4, 5]
    services.campaign_jobs.enqueue_many(  # the request enqueued 6 chunk jobs; put them back
        [FanoutJob(kind="prepare", campaign=out["id"], chunk=n) for n in range(6)])
    assert run_jobs(services, redeliver=True, shuffle=True) == 2 * (6 + 8)  # 230 / 30 buckets

    done = view_of(services, out["id"])
    assert done["status"] == "prepared"
    assert done["preview"] == inline["preview"]
    counts = done["preview"]["recipients"]
    assert counts["total"] == sum(1 for i in range(230) if i % 7) and counts["duplicates"] > 3
    assert counts["optedOut"] == 2 and counts["invalid"] > 5
    assert done["preview"]["ucs2Characters"] == ["ë"]
    assert done["preparation"]["stage"] == "done" and done["preparation"]["counts"] == counts
    assert snapshot(services, out["id"]) == snapshot(services, inline["id"])
    assert not claims_of(services, out["id"])  # gone once the preview is made


def test_progress_while_preparing_and_no_send_before_the_preview(
        services: Services, small_parts: None) -> None:
    audience_id, _ = mixed_audience(services, 120)
    out = prepare(services, **body(audience_id))
    jobs = sorted(take_fanout(services), key=lambda j: j.chunk)
    assert sorted(j.chunk for j in jobs) == [0, 1, 2]
    handle_campaign_job(services, jobs[0])
    partway = view_of(services, out["id"])
    assert partway["status"] == "preparing" and partway["preparation"]["stage"] == "chunks"
    assert partway["preparation"]["rowsRead"] == 40
    assert partway["preparation"]["counts"]["total"] == 40
    with pytest.raises(Conflict, match="still being prepared"):
        confirm_send(services, out["id"], send_confirmation(json.dumps(
            {"confirmationToken": out["confirmationToken"]})))
    with pytest.raises(Conflict):
        review_campaign(services, out["id"])
    for job in jobs[1:]:
        handle_campaign_job(services, job)
    run_jobs(services)
    assert view_of(services, out["id"])["status"] == "prepared"


def test_a_chunk_that_crashes_after_its_rows_is_done_again_and_counted_once(
        services: Services, small_parts: None, monkeypatch: pytest.MonkeyPatch) -> None:
    audience_id, _ = mixed_audience(services, 100)
    spec = body(audience_id)  # one sendAt for both: the estimate starts there
    prepared_inline_up_to(services, 10_000)
    expected = prepare(services, **spec)["preview"]
    prepared_inline_up_to(services, 50)
    out = prepare(services, **spec)
    real_mark = services.preparations.mark
    crashed: list[int] = []

    def crash_once(campaign_id: str, stage: str, part: int, tally: dict[str, Any]) -> None:
        if stage == "chunk" and part == 1 and not crashed:
            crashed.append(part)
            raise RuntimeError("the process died after writing the rows")
        real_mark(campaign_id, stage, part, tally)

    monkeypatch.setattr(services.preparations, "mark", crash_once)
    jobs = sorted(take_fanout(services), key=lambda j: j.chunk)
    for job in jobs:
        try:
            handle_campaign_job(services, job)
        except RuntimeError:
            handle_campaign_job(services, job)  # the queue delivers it again
    run_jobs(services)
    assert crashed == [1]
    assert view_of(services, out["id"])["preview"] == expected


def test_lost_jobs_are_enqueued_again_by_the_timer(services: Services,
                                                   small_parts: None) -> None:
    audience_id, _ = mixed_audience(services, 90)
    out = prepare(services, **body(audience_id))
    jobs = sorted(take_fanout(services), key=lambda j: j.chunk)
    handle_campaign_job(services, jobs[0])  # the others are lost (say, went to poison)
    assert resume_preparations(services) == 0  # not yet: it may only be slow
    later = datetime.now(UTC) + timedelta(seconds=campaign_preparation.STALL_S + 1)
    assert resume_preparations(services, later) == 1
    assert sorted(j.chunk for j in take_fanout(services)) == [1, 2]
    for job in jobs[1:]:
        handle_campaign_job(services, job)
    run_jobs(services)
    assert view_of(services, out["id"])["status"] == "prepared"


def test_a_campaign_canceled_while_preparing_stops_and_leaves_no_claims(
        services: Services, small_parts: None) -> None:
    audience_id, _ = mixed_audience(services, 120)
    out = prepare(services, **body(audience_id))
    jobs = sorted(take_fanout(services), key=lambda j: j.chunk)
    handle_campaign_job(services, jobs[0])
    assert claims_of(services, out["id"])
    assert cancel_campaign(services, out["id"]).status == "canceled"
    assert not claims_of(services, out["id"])
    for job in jobs[1:]:
        handle_campaign_job(services, job)
    assert run_jobs(services) == 0
    assert not claims_of(services, out["id"])
    assert view_of(services, out["id"])["status"] == "canceled"


def claims_of(services: Services, campaign_id: str) -> list[Any]:
    return list(services.campaigns._r.query_entities(
        "PartitionKey ge @lo and PartitionKey lt @hi",
        parameters={"lo": f"{campaign_id}.n", "hi": f"{campaign_id}.o"}))


def test_a_filter_that_selects_nobody_fails_the_preparation(services: Services,
                                                            small_parts: None) -> None:
    audience_id, _ = mixed_audience(services, 60)
    out = prepare(services, **body(audience_id, filter="tier = 'platinum'"))
    run_jobs(services)
    failed = view_of(services, out["id"])
    assert failed["status"] == "failed" and failed["preview"] is None
    assert failed["preparation"]["error"] == "the filter matches none of the 60 members"
    with pytest.raises(Conflict, match="could not be prepared"):
        confirm_send(services, out["id"], send_confirmation(json.dumps(
            {"confirmationToken": out["confirmationToken"]})))


def test_a_campaign_of_many_blocks_sends_each_valid_recipient_once(
        services: Services, emulator: AcsEmulator, small_parts: None) -> None:
    people = [new_number() for _ in range(180)]
    info = services.audiences.create("blocks", [MemberRecord(n, {"name": f"B{i}"})
                                                for i, n in enumerate(people)])
    out = prepare(services, template="Hello {{name}}", audience={"audienceId": info.id})
    run_jobs(services, redeliver=True)
    prepared = view_of(services, out["id"])
    assert prepared["preview"]["recipients"]["valid"] == 180
    sent = send(services, out)
    drain(services, 60)
    for i, n in enumerate(people):
        assert texts(emulator, n) == [f"Hello B{i}"]
    view = view_of(services, out["id"])
    run = services.campaigns.run(out["id"], sent["runs"][0]["id"])
    assert run is not None and run.blocks == 4  # 180 rows in blocks of 50
    assert view["status"] == "completed"
    assert view["counts"]["sent"] + view["counts"]["delivered"] == 180
    # Chunks of 25 dealt to the 4 batches in turn: 0 and 4, 1 and 5, 2 and 6, 3 and 7 (5 rows).
    assert [sum(services.messages.status_counts(b).values()) for b in run.batches] == [
        50, 50, 50, 30]


def test_a_campaign_prepared_before_blocks_still_sends_from_its_one_partition(
        services: Services, emulator: AcsEmulator) -> None:
    people = [new_number() for _ in range(3)]
    now = datetime.now(UTC)
    token, token_hash = services.campaigns.new_token()
    old = CampaignRecord(
        id=records.new_campaign_id(), name="old", sender=SENDER, template="Old",
        status="prepared", created_at=now, updated_at=now, total=3, valid=3,
        preview=prepare(services, template="Old", audience={"recipients": [
            {"to": n} for n in people]})["preview"], token_hash=token_hash)
    services.campaigns.create(old, [RecipientRecord(i, n, "valid", body="Old", segments=1)
                                    for i, n in enumerate(people)])
    assert services.campaigns._r.get_entity(old.id, "00002")["To"] == people[2]
    send(services, {"id": old.id, "confirmationToken": token})
    drain(services)
    assert all(texts(emulator, n) == ["Old"] for n in people)


def test_a_cancel_reaches_the_waiting_messages_of_every_block(
        services: Services, emulator: AcsEmulator, small_parts: None) -> None:
    people = [new_number() for _ in range(130)]
    info = services.audiences.create("cancel blocks", [MemberRecord(n, {}) for n in people])
    out = prepare(services, template="Not today", audience={"audienceId": info.id})
    run_jobs(services)
    sent = send(services, out)
    for job in take_fanout(services):  # fan out every chunk, dispatch nothing
        handle_campaign_job(services, job)
    run = services.campaigns.run(out["id"], sent["runs"][0]["id"])
    assert run is not None and run.blocks == 3
    cancel_campaign(services, out["id"])
    # A run of more than one chunk: its messages are canceled by a job per chunk.
    sweeps = take_fanout(services)
    assert sorted((j.kind, j.chunk) for j in sweeps) == [("cancel", n) for n in range(6)]
    for job in [*sweeps, sweeps[0]]:  # one redelivered
        handle_campaign_job(services, job)
    assert [services.messages.status_counts(b) for b in run.batches] == [
        {"canceled": 50}, {"canceled": 50}, {"canceled": 30}]
    drain(services)
    assert all(texts(emulator, n) == [] for n in people)
    assert view_of(services, out["id"])["counts"]["canceled"] == 130


def test_a_cancel_in_the_middle_of_the_fan_out_stops_every_message_not_yet_sent(
        services: Services, emulator: AcsEmulator, small_parts: None) -> None:
    """Canceled with some chunks written and some of their messages sent, the others still on
    the queue: what had left is all that ever arrives, in every block, whatever runs after."""
    people = [new_number() for _ in range(230)]
    info = services.audiences.create("cancel midway", [MemberRecord(n, {}) for n in people])
    out = prepare(services, template="Last call", audience={"audienceId": info.id})
    run_jobs(services)
    sent = send(services, out)
    # The confirming request wrote chunk 0 itself; its job waits out a grace period.
    chunks = [j for j in take_fanout(services) if j.kind == "chunk"]
    assert sorted(j.chunk for j in chunks) == list(range(1, 10))  # 230 rows in chunks of 25
    chunks.sort(key=lambda j: j.chunk)
    for job in chunks[:3]:  # chunks 1-3: with chunk 0, in 4 of the 5 block batches
        handle_campaign_job(services, job)
    dispatch_jobs = take_jobs(services)
    for job in dispatch_jobs[:2]:
        dispatch(services, job)
    before = sum(len(texts(emulator, n)) for n in people)
    assert before == sum(len(j.indices) for j in dispatch_jobs[:2]) > 0

    assert cancel_campaign(services, out["id"]).status == "canceled"
    for job in dispatch_jobs[2:] + dispatch_jobs[:1]:  # the rest, and one redelivered
        dispatch(services, job)
    for job in [*chunks[3:], *chunks[:2], FanoutJob(kind="chunk", campaign=out["id"],
                                                    run=chunks[0].run, chunk=0)]:
        # the chunks not yet run, two again, and chunk 0's delayed job
        handle_campaign_job(services, job)
    drain(services)
    assert sum(len(texts(emulator, n)) for n in people) == before
    view = view_of(services, out["id"])
    assert view["status"] == "canceled"
    assert view["counts"].get("canceled", 0) == 4 * 25 - before
    run = services.campaigns.run(out["id"], sent["runs"][0]["id"])
    assert run is not None
    assert sum(sum(services.messages.status_counts(b).values()) for b in run.batches) == 100
