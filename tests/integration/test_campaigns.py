"""Campaigns against Azurite and the ACS emulator: prepare, confirm, fan out, cancel, schedule."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.data.tables import UpdateMode

from localdev.acs_emulator import AcsEmulator
from sms_core.adapters.campaign_store import CampaignStore
from sms_core.adapters.job_queue import JobQueue
from sms_core.adapters.preparation_store import PreparationStore
from sms_core.bootstrap import Services
from sms_core.errors import Conflict, NotFound, RequestInvalid
from sms_core.models.campaigns import FanoutJob
from sms_core.models.messages import MessageStatus
from sms_core.models.records import batch_time, run_batch, run_time
from sms_core.use_cases.campaign_jobs import handle_campaign_job
from sms_core.use_cases.campaign_runs import handle_fanout_job, run_due
from sms_core.use_cases.campaigns import (
    cancel_campaign,
    confirm_send,
    get_campaign,
    prepare_campaign,
)
from sms_core.use_cases.dispatch import dispatch
from sms_http.requests import (
    audience_upload,
    campaign_request,
    page_query,
    send_confirmation,
    template_request,
)
from tests.deadlines import deadline
from tests.integration.conftest import (
    SENDER,
    make_services,
    new_number,
    take_from,
    take_jobs,
)


@pytest.fixture
def services(azurite_connection_string: str, emulator: AcsEmulator) -> Services:
    return campaign_services(azurite_connection_string, emulator)


def campaign_services(storage: str, emulator: AcsEmulator) -> Services:
    """Services with a private campaigns queue and private campaign tables."""
    s = make_services(storage, emulator)
    name = f"cmp-{uuid.uuid4().hex[:12]}"
    s.storage.queue_service().create_queue(name)
    s.campaign_jobs = JobQueue(s.storage.queue(name))  # type: ignore[misc]
    # Private campaign tables: `run_due` fires every due entry of the schedule index it reads.
    tables = [f"Cmp{uuid.uuid4().hex[:12]}", f"CmpRows{uuid.uuid4().hex[:12]}"]
    for table in tables:
        s.storage.table_service().create_table(table)
    s.campaigns = CampaignStore(*(s.storage.table(t) for t in tables))  # type: ignore[misc]
    s.preparations = PreparationStore(  # type: ignore[misc]
        *(s.storage.table(t) for t in tables))
    return s


def take_fanout(services: Services) -> list[FanoutJob]:
    return take_from(services.campaign_jobs, FanoutJob)


def _hidden(services: Services) -> int:
    # Dispatch jobs put back with a delay; a delayed `fire` of a future run is not waited for.
    return int(services.jobs._queue.get_queue_properties().approximate_message_count)


def drain(services: Services, deadline_s: float = 20, *, delayed: bool = True) -> None:
    """Run fan-out and dispatch jobs until both queues are empty (delayed jobs included
    unless `delayed` is false)."""
    end = deadline(deadline_s)
    while time.monotonic() < end:
        work = take_fanout(services)
        for job in work:  # as the campaign_fanout function does
            handle_campaign_job(services, job)
        jobs = take_jobs(services)
        for dj in jobs:
            dispatch(services, dj)
        if not work and not jobs:
            if not delayed or not _hidden(services):
                return
            time.sleep(0.1)
    raise AssertionError("queues did not drain")


def prepare(services: Services, **body: Any) -> dict[str, Any]:
    """`POST /api/campaigns`: the JSON of the 201."""
    body.setdefault("name", "spring sale")
    body.setdefault("template", "Hi {{name}}, 20% off today!")
    return prepare_campaign(services, campaign_request(json.dumps(body), None, {})).public()


def send(services: Services, prepared: dict[str, Any]) -> dict[str, Any]:
    """`POST /api/campaigns/{id}/send`: the JSON of the 202."""
    return confirm_send(services, prepared["id"], send_confirmation(
        json.dumps({"confirmationToken": prepared["confirmationToken"]}))).public()


def view_of(services: Services, campaign_id: str) -> dict[str, Any]:
    """`GET /api/campaigns/{id}`: the JSON of the answer."""
    return get_campaign(services, campaign_id).public()


def texts(emulator: AcsEmulator, number: str) -> list[str]:
    return [m["message"] for m in emulator.state.inbox(number)]


def test_preview_counts_every_exclusion_and_sends_nothing(services: Services,
                                                          emulator: AcsEmulator) -> None:
    good = [new_number() for _ in range(5)]
    opted = new_number()
    services.optouts.opt_out(SENDER, opted, source="api", reason="test")
    recipients = ([{"to": n, "vars": {"name": f"P{i}"}} for i, n in enumerate(good)]
                  + [{"to": good[0], "vars": {"name": "again"}},  # duplicate
                     {"to": "12345", "vars": {"name": "bad"}},  # invalid number
                     {"to": new_number()},  # missing variable
                     {"to": opted, "vars": {"name": "Out"}}])
    before = len(emulator.state.requests())
    out = prepare(services, audience={"recipients": recipients})
    assert out["status"] == "prepared" and out["confirmationToken"]
    assert out["preview"]["recipients"] == {"total": 9, "valid": 5, "invalid": 2,
                                            "duplicates": 1, "optedOut": 1, "deferred": 0}
    reasons = {r["index"]: r["reason"] for r in out["preview"]["invalidRows"]}
    assert set(reasons) == {6, 7} and "name" in reasons[7]
    assert out["preview"]["samples"][0] == {"to": good[0], "message": "Hi P0, 20% off today!",
                                            "segments": 1, "encoding": "GSM-7"}
    assert out["preview"]["segments"] == {"min": 1, "max": 1, "total": 5}
    assert take_fanout(services) == [] and take_jobs(services) == []
    assert len(emulator.state.requests()) == before


def test_confirmed_campaign_reaches_every_valid_recipient_once(services: Services,
                                                               emulator: AcsEmulator) -> None:
    people = [new_number() for _ in range(30)]
    out = prepare(services, audience={"recipients": [
        {"to": n, "vars": {"name": f"N{i}"}} for i, n in enumerate(people)]}, tag="spring")
    with pytest.raises(Conflict):
        confirm_send(services, out["id"], send_confirmation(json.dumps(
            {"confirmationToken": "nope"})))
    sent = send(services, out)
    assert sent["status"] == "sending"
    drain(services)
    for i, n in enumerate(people):
        assert texts(emulator, n) == [f"Hi N{i}, 20% off today!"]
    view = view_of(services, out["id"])
    assert view["status"] == "completed" and view["runs"][0]["finishedAt"] is not None
    assert view["counts"]["sent"] + view["counts"]["delivered"] == 30
    # A retried confirmation starts nothing new.
    send(services, out)
    drain(services)
    assert all(len(texts(emulator, n)) == 1 for n in people)


def test_redelivered_fanout_chunk_sends_nothing_twice(services: Services,
                                                      emulator: AcsEmulator) -> None:
    people = [new_number() for _ in range(12)]
    out = prepare(services, template="Same text for all",
                  audience={"recipients": [{"to": n} for n in people]})
    sent = send(services, out)  # the confirming request fans out the first chunk itself
    assert take_fanout(services) == []  # its job waits, in case the request had died
    run_id = sent["runs"][0]["id"]
    assert len(services.messages.pending(run_batch(out["id"], run_id))) == 12
    # Say the request crashed after writing the messages, before its dispatch jobs and marker:
    take_jobs(services)
    services.campaigns._t.delete_entity(out["id"], f"run.{run_id}.chunk.00000")
    job = FanoutJob(kind="chunk", campaign=out["id"], run=run_id, chunk=0)
    handle_fanout_job(services, job)  # the delayed job, redelivered...
    handle_fanout_job(services, job)  # ...twice
    drain(services)
    assert all(texts(emulator, n) == ["Same text for all"] for n in people)


def test_a_run_keeps_its_batch_and_one_stored_before_runs_recorded_it_keeps_the_old_one(
        services: Services) -> None:
    """Runs record their batch (time first, so the message search finds it); a run started
    by an earlier version, without one, still reads its messages where they were written."""
    out = prepare(services, template="Batch", audience={"recipients": [{"to": new_number()}]})
    (run,) = send(services, out)["runs"]
    stored = services.campaigns.run(out["id"], run["id"])
    assert stored is not None
    assert stored.batch == run_batch(out["id"], run["id"])
    assert batch_time(stored.batch) == run_time(run["id"])
    old = services.campaigns._t.get_entity(out["id"], f"run.{run['id']}")
    del old["Batch"]
    services.campaigns._t.upsert_entity(old, mode=UpdateMode.REPLACE)
    legacy = services.campaigns.run(out["id"], run["id"])
    assert legacy is not None and legacy.batch == f"{out['id']}r{run_batch('', run['id'])}"


def test_optout_after_preparation_wins(services: Services, emulator: AcsEmulator) -> None:
    late, other = new_number(), new_number()
    out = prepare(services, template="Hello", audience={"recipients": [{"to": late},
                                                                       {"to": other}]})
    assert out["preview"]["recipients"]["valid"] == 2
    services.optouts.opt_out(SENDER, late, source="keyword", keyword="STOP")
    send(services, out)
    drain(services)
    assert texts(emulator, late) == [] and texts(emulator, other) == ["Hello"]
    assert view_of(services, out["id"])["counts"]["blocked"] == 1


def test_cancel_stops_what_has_not_left(services: Services, emulator: AcsEmulator) -> None:
    people = [new_number() for _ in range(250)]
    out = prepare(services, template="Flash sale",
                  audience={"recipients": [{"to": n} for n in people]})
    send(services, out)
    for job in take_fanout(services):
        handle_fanout_job(services, job)
    jobs = take_jobs(services)
    assert len(jobs) == 3
    dispatch(services, jobs[0])  # the first job leaves
    emulator.state.throttle_next(SENDER, calls=1, retry_after_s=1)
    dispatch(services, jobs[1])  # claimed, throttled by ACS, put back for a retry
    view = cancel_campaign(services, out["id"]).public()
    assert view["status"] == "canceled"
    # The throttled job's messages are flagged, not yet canceled: it may be in an ACS call.
    assert view["counts"]["canceled"] == len(jobs[2].indices)
    dispatch(services, jobs[2])
    drain(services)  # the throttled job comes back and cancels its messages
    assert sum(len(texts(emulator, n)) for n in people) == len(jobs[0].indices)
    view = view_of(services, out["id"])
    assert view["counts"]["canceled"] == 250 - len(jobs[0].indices)
    with pytest.raises(Conflict):
        send(services, out)


def test_send_at_fires_from_the_schedule_index(services: Services,
                                               emulator: AcsEmulator) -> None:
    person = new_number()
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    out = prepare(services, template="Later", audience={"recipients": [{"to": person}]},
                  schedule={"sendAt": at.isoformat()})
    assert send(services, out)["status"] == "scheduled"
    assert take_fanout(services) == []  # beyond a queue message's wait: the timer's job
    run_due(services, at - timedelta(minutes=1))
    assert view_of(services, out["id"])["status"] == "scheduled"
    run_due(services, at + timedelta(seconds=30))
    drain(services)
    assert texts(emulator, person) == ["Later"]
    view = view_of(services, out["id"])
    assert view["status"] == "completed" and len(view["runs"]) == 1


def test_cron_runs_are_separate_deliveries(services: Services, emulator: AcsEmulator) -> None:
    person = new_number()
    out = prepare(services, template="Weekly news", audience={"recipients": [{"to": person}]},
                  schedule={"cron": "0 9 * * 1", "timezone": "Europe/Amsterdam"})
    scheduled = send(services, out)
    first = datetime.fromisoformat(scheduled["nextRunAt"])
    assert first.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%a %H:%M") == "Mon 09:00"
    run_due(services, first + timedelta(seconds=5))
    drain(services)
    view = view_of(services, out["id"])
    second = datetime.fromisoformat(view["nextRunAt"])
    assert view["status"] == "scheduled" and second - first == timedelta(days=7)
    run_due(services, second + timedelta(seconds=5))
    drain(services)
    view = view_of(services, out["id"])
    assert len(view["runs"]) == 2 and texts(emulator, person) == ["Weekly news"] * 2
    assert all(r["counts"]["sent"] + r["counts"]["delivered"] == 1 for r in view["runs"])


def test_quiet_hours_defer_to_the_recipients_morning(services: Services,
                                                     emulator: AcsEmulator) -> None:
    nl, us = "+31612345678", new_number()
    local = datetime.now(ZoneInfo("Europe/Amsterdam"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=2)
    out = prepare(services, template="Goedemorgen", audience={"recipients": [{"to": nl},
                                                                             {"to": us}]},
                  quietHours={"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")})
    assert out["preview"]["recipients"]["deferred"] == 1
    estimate = out["preview"]["estimate"]
    until = datetime.fromisoformat(estimate["deferredUntil"])
    assert until.astimezone(ZoneInfo("Europe/Amsterdam")).strftime("%H:%M") == end.strftime(
        "%H:%M")
    assert datetime.fromisoformat(estimate["finishesAt"]) > until
    send(services, out)
    drain(services, delayed=False)  # the deferred job waits for the end of the window
    assert texts(emulator, us) == ["Goedemorgen"]
    view = view_of(services, out["id"])
    assert view["counts"]["queued"] == 1 and view["status"] == "sending"
    batch = run_batch(out["id"], view["runs"][0]["id"])
    waiting = services.messages.pending(batch)
    assert [m.to for m in waiting] == [nl] and waiting[0].status == MessageStatus.SCHEDULED
    assert waiting[0].send_at is not None
    due_local = waiting[0].send_at.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert due_local.strftime("%H:%M") == end.strftime("%H:%M")


def test_bad_inputs_are_400s_naming_the_field(services: Services) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"audience": {"recipients": [{"to": new_number()}]}, "template": "Hi {{name"},
         "template"),
        ({"audience": {"recipients": [{"to": new_number()}], "filter": "city = "}},
         "audience.filter"),
        ({"audience": {"csv": "to,name\n+14255550101,Ann,extra\n"}}, "audience.csv"),
        ({"audience": {"recipients": [{"to": new_number()}]},
          "schedule": {"cron": "every day"}}, "schedule.cron"),
        ({"audience": {"recipients": [{"to": new_number()}]},
          "quietHours": {"start": "25:00", "end": "08:00"}}, "quietHours"),
        ({"audience": {"recipients": [{"to": new_number()}]}, "templateId": "tnope",
          "template": None}, "templateId"),
        ({"audience": {"audienceId": "anope"}}, "audience.audienceId"),
        ({"audience": {"recipients": [{"to": new_number()}]},
          "schedule": {"sendAt": "2020-01-01T00:00:00Z"}}, "schedule.sendAt"),
    ]
    for body, field in cases:
        with pytest.raises(RequestInvalid) as info:
            prepare(services, **body)
        fields = [e.field for e in info.value.errors]
        assert any(f.startswith(field) for f in fields), (body, fields)
    with pytest.raises(NotFound):
        get_campaign(services, "cdoesnotexist")


def test_saved_audience_with_filter_and_saved_template(services: Services,
                                                       emulator: AcsEmulator) -> None:
    from sms_core.use_cases.audiences_templates import create_audience, create_template
    seattle, free, portland = new_number(), new_number(), new_number()
    csv = (f"phone,city,plan,first_name\n{seattle},Seattle,pro,Ann\n{free},Seattle,free,Bo\n"
           f"{portland},Portland,pro,Cy\n")
    audience = create_audience(services.audiences, audience_upload(
        csv.encode(), "text/csv", {"name": "customers"})).public()
    assert audience["size"] == 3 and audience["columns"] == ["city", "plan", "first_name"]
    template = create_template(services.templates, template_request(json.dumps(
        {"name": "promo", "text": "{{First_Name}}, Seattle deals inside"}).encode())).public()
    assert template["variables"] == ["First_Name"]
    out = prepare(services, template=None, templateId=template["id"],
                  audience={"audienceId": audience["id"],
                            "filter": "city = 'seattle' and plan != 'free'"})
    assert out["preview"]["recipients"]["total"] == 1
    send(services, out)
    drain(services)
    assert texts(emulator, seattle) == ["Ann, Seattle deals inside"]
    assert texts(emulator, free) == [] and texts(emulator, portland) == []


def test_csv_upload_with_fields_in_the_query(services: Services, emulator: AcsEmulator) -> None:
    ann, bo = new_number(), new_number()
    csv = f"mobile,first_name\n{ann},Ann\n{bo},Bo\n12,Cy\n".encode()
    out = prepare_campaign(services, campaign_request(
        csv, "text/csv; charset=utf-8", {"name": "csv upload", "template": "Hello {{first_name}}",
                                         "filter": "first_name != 'Bo'",
                                         "code": "function-key"})).public()
    assert out["preview"]["recipients"] == {"total": 2, "valid": 1, "invalid": 1,
                                            "duplicates": 0, "optedOut": 0, "deferred": 0}
    assert out["preview"]["invalidRows"][0]["line"] == 4
    send(services, out)
    drain(services)
    assert texts(emulator, ann) == ["Hello Ann"] and texts(emulator, bo) == []
    bad_cases = [
        (f"mobile,first_name\n{ann},Ann,extra\n".encode(), {"name": "x", "template": "Hi"},
         "audience.csv", "line 2"),
        (b"first_name\nAnn\n", {"name": "x", "template": "Hi"}, "audience.csv", "phone"),
        (f"mobile\n{ann}\n".encode(), {"name": "x", "template": "Hi", "colour": "red"},
         "colour", "unknown query parameter"),
        (b"\xff\xfe", {"name": "x", "template": "Hi"}, "body", "UTF-8"),
    ]
    for body, params, field, words in bad_cases:
        with pytest.raises(RequestInvalid) as info:
            prepare_campaign(services, campaign_request(body, "text/csv", params))
        assert info.value.errors[0].field == field and words in info.value.errors[0].message


def test_new_rows_written_again_after_a_crash_are_not_an_error(services: Services) -> None:
    from sms_core.adapters.table_batches import write_new_rows
    table = services.storage.table(f"Rows{uuid.uuid4().hex[:12]}")
    table.create_table()
    rows = [{"PartitionKey": "p", "RowKey": f"{i:05d}", "V": i} for i in range(250)]
    write_new_rows(table, rows[:120])  # the first attempt got this far
    write_new_rows(table, [{**r, "V": -1} for r in rows])
    stored = {e["RowKey"]: e["V"] for e in table.query_entities("PartitionKey eq 'p'")}
    assert len(stored) == 250 and set(stored.values()) == {-1}


def test_bad_library_and_listing_inputs_are_4xx_naming_the_field(services: Services) -> None:
    from sms_core.use_cases.audiences_templates import create_audience, create_template
    ann = new_number()
    cases: list[tuple[Any, str]] = [
        (lambda: create_template(services.templates, template_request(
            b'{"name": "t", "text": "Hi {{ }}"}')), "text"),
        (lambda: template_request(b'{"name": "t"}'), "text"),
        (lambda: audience_upload(json.dumps(
            {"name": "a", "recipients": [{"to": ann}], "csv": "to\n" + ann}).encode(),
            "application/json", {}), "body"),
        (lambda: audience_upload(f"to\n{ann}\n".encode(), "text/csv", {}), "name"),
        (lambda: create_audience(services.audiences, audience_upload(
            b"to,city\n", "text/csv", {"name": "empty"})), "recipients"),
        (lambda: audience_upload(b'{"name": "a", "csv": "city\\nSeattle\\n"}',
                                 "application/json", {}), "csv"),
        (lambda: page_query({"limit": "0"}), "limit"),
    ]
    for call, field in cases:
        with pytest.raises(RequestInvalid) as info:
            call()
        assert info.value.errors[0].field == field, info.value.errors
    assert all(a.name not in ("a", "empty") for a in services.audiences.all())  # nothing saved
    with pytest.raises(NotFound):
        confirm_send(services, "cnope", send_confirmation(b'{"confirmationToken": "x"}'))
    with pytest.raises(RequestInvalid):
        send_confirmation(b'{"token": "x"}')
