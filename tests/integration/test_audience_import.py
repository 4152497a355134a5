"""Large audiences against Azurite's Blob and Table services: a file sent in parts, imported in
the background as a stream, resumed after a crash or a redelivery from its saved position, with
the line numbers of the whole file; the audience then prepares a campaign like any other."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sms_core.adapters.storage import UPLOADS_CONTAINER
from sms_core.bootstrap import Services
from sms_core.concurrency import run_all
from sms_core.errors import Conflict, NotFound, RequestInvalid
from sms_core.models.campaigns import FanoutJob
from sms_core.models.queries import AudienceUpload
from sms_core.use_cases import audience_import
from sms_core.use_cases.audience_import import (
    import_audience,
    new_upload,
    put_upload_part,
    start_import,
)
from sms_core.use_cases.audiences_templates import create_audience, get_audience
from sms_core.use_cases.campaigns import prepare_campaign
from sms_http.requests import campaign_request
from tests.integration.conftest import new_number


def campaign_body(body: dict[str, Any]) -> Any:
    return campaign_request(json.dumps(body).encode(), "application/json", {})


def csv_file(people: list[str], bad_at: int | None = None) -> bytes:
    lines = ["phone;first_name;note\r\n"]
    for i, p in enumerate(people):
        if i == bad_at:
            lines.append(f"{p};too;many;fields\r\n")
        lines.append(f'{p};P{i};"a\r\nnote"\r\n' if i % 3 == 0 else f"{p};P{i};-\r\n")
    return "".join(lines).encode()


def upload(services: Services, data: bytes, part_bytes: int) -> tuple[str, int]:
    """The file sent in parts of `part_bytes` (cut anywhere, mid-line included)."""
    up = new_upload(services)
    parts = [data[i:i + part_bytes] for i in range(0, len(data), part_bytes)]
    for n, part in reversed(list(enumerate(parts))):  # in any order
        put_upload_part(services, up.id, str(n), part)
    return up.id, len(parts)


def run_imports(services: Services, audience_id: str, limit: int = 50) -> int:
    """Run the audience's import jobs until none is left; how many ran."""
    for ran in range(limit):
        mine = [j for j in _take(services) if j.audience == audience_id]
        if not mine and ran:
            return ran
        import_audience(services, audience_id)
    raise AssertionError("the import never ended")


def _take(services: Services) -> list[FanoutJob]:
    q = services.campaign_jobs._queue
    found = []
    for m in q.receive_messages(messages_per_page=32, visibility_timeout=1):
        job = FanoutJob.model_validate_json(m.content)
        if job.kind == "import":
            q.delete_message(m)
            found.append(job)
    return found


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 7 members and jobs of 21: a small file crosses blocks and jobs."""
    monkeypatch.setattr(audience_import, "IMPORT_BLOCK", 7)
    monkeypatch.setattr(audience_import, "IMPORT_SLICE", 21)


def test_a_file_in_parts_is_imported_in_the_background_and_prepares_a_campaign(
        services: Services, small_blocks: None) -> None:
    people = [new_number() for _ in range(50)]
    data = csv_file(people)
    upload_id, parts = upload(services, data, 97)
    started = start_import(services, "big", upload_id, parts)
    assert started.status == "importing" and started.size == 0
    assert started.progress is not None and started.progress.total_bytes == len(data)
    # A retried request finds the same audience.
    assert start_import(services, "big", upload_id, parts).id == started.id
    with pytest.raises(Conflict, match="still importing"):
        prepare_campaign(services, campaign_body(
            {"name": "too soon", "template": "Hi {{first_name}}",
             "audience": {"audienceId": started.id}}))

    assert run_imports(services, started.id) >= 3  # 50 members, 21 a job
    done = get_audience(services.audiences, started.id)
    assert (done.status, done.size, done.columns) == ("ready", 50, ["first_name", "note"])
    assert done.progress is not None and done.progress.bytes_read == len(data)
    members = services.audiences.members(started.id)
    assert [m.to for m in members] == people
    assert members[3].attributes == {"first_name": "P3", "note": "a\r\nnote"}
    # The file is gone once imported.
    assert not services.storage.container(UPLOADS_CONTAINER).get_blob_client(upload_id).exists()

    prepared = prepare_campaign(services, campaign_body(
        {"name": "from a file", "template": "Hi {{first_name}}",
         "audience": {"audienceId": started.id, "filter": "note = '-'"}}))
    assert prepared.preview is not None
    assert prepared.preview.recipients.valid == sum(1 for i in range(50) if i % 3)


def test_an_import_that_crashed_goes_on_from_its_saved_position(
        services: Services, small_blocks: None, monkeypatch: pytest.MonkeyPatch) -> None:
    people = [new_number() for _ in range(30)]
    upload_id, parts = upload(services, csv_file(people), 64)
    audience_id = start_import(services, "crashing", upload_id, parts).id
    real_write = services.audiences.write_members
    calls: list[int] = []

    def crash_on_the_third_block(audience: str, first: int, members: Any) -> None:
        calls.append(first)
        if len(calls) == 3:
            real_write(audience, first, members[:4])  # half written, then the process dies
            raise RuntimeError("killed")
        real_write(audience, first, members)

    monkeypatch.setattr(services.audiences, "write_members", crash_on_the_third_block)
    with pytest.raises(RuntimeError):
        import_audience(services, audience_id)
    halfway = get_audience(services.audiences, audience_id)
    assert (halfway.status, halfway.size) == ("importing", 14)  # two blocks saved
    import_audience(services, audience_id)  # the job, redelivered
    # It read on from member 14, not from the file's start.
    assert calls[3] == 14
    done = get_audience(services.audiences, audience_id)
    assert (done.status, done.size) == ("ready", 30)
    assert [m.to for m in services.audiences.members(audience_id)] == people


def test_two_jobs_at_once_write_each_member_once(services: Services,
                                                 small_blocks: None) -> None:
    people = [new_number() for _ in range(20)]
    upload_id, parts = upload(services, csv_file(people), 1000)
    audience_id = start_import(services, "twice", upload_id, parts).id
    # The job and a redelivered copy of it, side by side: one loses a save and stops.
    run_all(lambda _: import_audience(services, audience_id), range(2))
    import_audience(services, audience_id)  # and once more after the end: nothing happens
    done = get_audience(services.audiences, audience_id)
    assert (done.status, done.size) == ("ready", 20)
    assert [m.to for m in services.audiences.members(audience_id)] == people


def test_a_bad_row_fails_the_import_naming_its_line_in_the_whole_file(
        services: Services, small_blocks: None) -> None:
    people = [new_number() for _ in range(40)]
    upload_id, parts = upload(services, csv_file(people, bad_at=33), 50)
    audience_id = start_import(services, "broken", upload_id, parts).id
    run_imports(services, audience_id)
    failed = get_audience(services.audiences, audience_id)
    assert failed.status == "failed" and failed.error is not None
    # Rows 0-32 take 44 lines after the header (every third spans two).
    assert failed.error.line == 2 + 33 + 11
    assert "expected 3 fields" in failed.error.detail
    assert services.audiences.members(audience_id) == []  # the 28 written before are gone
    with pytest.raises(Conflict, match="could not be imported"):
        prepare_campaign(services, campaign_body(
            {"name": "no", "template": "Hi", "audience": {"audienceId": audience_id}}))


def test_a_file_that_is_not_utf8_or_has_no_member_fails_with_why(services: Services) -> None:
    upload_id, parts = upload(services, b"phone,name\n+14255550100,Ann\n+1425\xff\xfe,Bo\n", 8)
    audience_id = start_import(services, "latin-1", upload_id, parts).id
    import_audience(services, audience_id)
    failed = get_audience(services.audiences, audience_id)
    assert failed.error is not None and "UTF-8" in failed.error.detail
    upload_id, parts = upload(services, b"phone,name\r\n", 100)
    audience_id = start_import(services, "header only", upload_id, parts).id
    import_audience(services, audience_id)
    empty = get_audience(services.audiences, audience_id)
    assert empty.error is not None and "no member" in empty.error.detail


def test_bad_uploads_are_4xx_naming_the_field(services: Services) -> None:
    up = new_upload(services)
    put_upload_part(services, up.id, "0", b"phone\n")
    with pytest.raises(RequestInvalid) as caught:
        start_import(services, "gap", up.id, 3)
    assert caught.value.errors[0].field == "parts"
    with pytest.raises(RequestInvalid) as caught:
        put_upload_part(services, up.id, "1", b"x" * (4 * 1024 * 1024 + 1))
    assert caught.value.errors[0].field == "body"
    for part in ("-1", "x", "10000"):
        with pytest.raises(RequestInvalid) as caught:
            put_upload_part(services, up.id, part, b"x")
        assert caught.value.errors[0].field == "n"
    with pytest.raises(NotFound):
        put_upload_part(services, "unothere", "0", b"x")
    with pytest.raises(RequestInvalid) as caught:
        start_import(services, "none", "unothere", 1)
    assert caught.value.errors[0].field == "uploadId"


def test_an_audience_saved_in_a_request_is_read_from_its_blocks(services: Services) -> None:
    from sms_core.models.records import MemberRecord

    people = [new_number() for _ in range(25)]
    saved = create_audience(services.audiences, AudienceUpload(
        "inline", [MemberRecord(p, {"n": str(i)}) for i, p in enumerate(people)]))
    assert saved.status == "ready"
    assert [m.to for m in services.audiences.members(saved.id)] == people
    services.audiences.delete(saved.id)
    with pytest.raises(NotFound):
        services.audiences.members(saved.id)
