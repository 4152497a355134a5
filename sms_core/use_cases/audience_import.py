"""Audiences of any size: a file uploaded in parts, then imported in the background.

1. `POST /api/audiences/uploads` makes an upload; `PUT /api/audiences/uploads/{id}/parts/{n}`
   sends part n (at most 4 MiB; a part sent again replaces itself).
2. `POST /api/audiences` with `{"name", "uploadId", "parts"}` joins the parts into the file,
   saves the audience as `importing` and puts an `import` job on `sms-campaigns`: a 202, at
   once, whatever the file's size. A retry of that request finds the audience it made.
3. The job reads the file as a stream of lines (`Uploads.lines`), parses it with the same rules
   and line numbers as a CSV in a request body, and writes the members a block of 10,000 at a
   time. After each block it saves its position (members written, the byte and line the next
   row starts at, the header) with the audience, under its ETag: a redelivered or crashed job
   goes on from there, rereading nothing before it, and of two jobs at once the one whose save
   fails stops. A job handles `IMPORT_SLICE` rows, then hands on to a new job, so no single
   invocation runs long whatever the file's size.
4. The end: `ready` with the size and columns, or `failed` with the line and reason of the
   first bad row (a file that is not UTF-8, or has no member, fails too); the file is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Protocol

from sms_core.errors import FieldError, NotFound, RequestInvalid, StorageUnavailable
from sms_core.models.campaign_views import AudiencePublic, UploadPartPublic, UploadPublic
from sms_core.models.campaigns import MAX_UPLOAD_PART_BYTES, MAX_UPLOAD_PARTS, FanoutJob
from sms_core.models.records import AudienceRecord, MemberRecord
from sms_core.rules.audience_csv import AudienceCsvReader, CsvAudienceError, CsvPosition
from sms_core.use_cases.ports import AudienceImports, Jobs, Uploads

log = logging.getLogger(__name__)

IMPORT_BLOCK = 10_000  # members written between two saved positions (one member partition)
IMPORT_SLICE = 20 * IMPORT_BLOCK  # members one job imports before handing on to the next


class ImportDeps(Protocol):
    """The ports uploading and importing an audience file need."""

    @property
    def uploads(self) -> Uploads: ...
    @property
    def audiences(self) -> AudienceImports: ...
    @property
    def campaign_jobs(self) -> Jobs: ...


def new_upload(deps: ImportDeps) -> UploadPublic:
    """`POST /api/audiences/uploads`: an empty upload to send parts to."""
    return UploadPublic.of(deps.uploads.create(), MAX_UPLOAD_PART_BYTES)


def put_upload_part(deps: ImportDeps, upload_id: str, part: str, data: bytes) -> UploadPartPublic:
    """`PUT /api/audiences/uploads/{id}/parts/{n}`: store one part of the file."""
    if not (part.isdigit() and int(part) < MAX_UPLOAD_PARTS):
        raise RequestInvalid(f"No part '{part}': parts are numbered 0 to {MAX_UPLOAD_PARTS - 1}.",
                             [FieldError("n", f"a part number from 0 to {MAX_UPLOAD_PARTS - 1}")])
    if not data:
        raise RequestInvalid("The part is empty.", [FieldError("body", "a part has bytes")])
    if len(data) > MAX_UPLOAD_PART_BYTES:
        raise RequestInvalid("The part is too long.", [FieldError(
            "body", f"at most {MAX_UPLOAD_PART_BYTES} bytes a part; send more parts")])
    deps.uploads.get(upload_id)
    deps.uploads.put_part(upload_id, int(part), data)
    return UploadPartPublic(upload_id=upload_id, part=int(part), bytes=len(data))


def start_import(deps: ImportDeps, name: str, upload_id: str, parts: int) -> AudiencePublic:
    """`POST /api/audiences` with an upload: the audience, `importing`, and its job queued.

    A retried request (the same upload) answers with the audience the first one made."""
    try:
        upload = deps.uploads.get(upload_id)
    except NotFound as exc:
        raise RequestInvalid(str(exc), [FieldError("uploadId", "no such upload")]) from None
    if upload.audience_id is not None:
        return AudiencePublic.of(deps.audiences.get(upload.audience_id))
    size = deps.uploads.commit(upload_id, parts)
    info = deps.audiences.create_importing(name, upload_id, size)
    owner = deps.uploads.claim(upload_id, info.id)
    if owner != info.id:  # a concurrent retry claimed it first; this row stays importing
        return AudiencePublic.of(deps.audiences.get(owner))
    deps.campaign_jobs.enqueue(FanoutJob(kind="import", audience=info.id), 0)
    log.info("audience %s importing upload %s: %d bytes in %d part(s)", info.id, upload_id,
             size, parts)
    return AudiencePublic.of(info)


def import_audience(deps: ImportDeps, audience_id: str) -> None:
    """The `import` job: go on reading the audience's file from its saved position."""
    try:
        info = deps.audiences.get(audience_id)
    except NotFound:
        return  # deleted meanwhile
    if info.status != "importing" or info.upload_id is None:
        if info.upload_id is not None:
            deps.uploads.delete(info.upload_id)  # a finished import's file, if still there
        return
    resume = (CsvPosition(info.header, info.delimiter, info.next_line)
              if info.header is not None and info.next_line else None)
    lines = deps.uploads.lines(info.upload_id, info.bytes_read if resume else 0)
    reader = AudienceCsvReader(lines, resume=resume)
    block: list[MemberRecord] = []
    done = info.size
    try:
        for row in reader.rows():
            block.append(MemberRecord(row.to, row.attributes))
            if len(block) == IMPORT_BLOCK:
                saved = _write_block(deps, info, block, reader.position(), lines.offset)
                if saved is None:
                    return  # another job saved first: it goes on
                info, block = saved, []
                if info.size - done >= IMPORT_SLICE:
                    deps.campaign_jobs.enqueue(FanoutJob(kind="import", audience=info.id), 0)
                    return
    except CsvAudienceError as exc:
        _finish(deps, info, error=(exc.line, exc.message))
        return
    except UnicodeDecodeError:
        # The bytes are in the row that starts here (or on the header, before any row).
        line = reader.position().line if reader.header is not None else 1
        _finish(deps, info, error=(line, "the file is not UTF-8 text: save it as "
                                         "'CSV UTF-8' and upload it again"))
        return
    if block:
        saved = _write_block(deps, info, block, reader.position(), lines.offset)
        if saved is None:
            return
        info = saved
    if info.size == 0:
        _finish(deps, info, error=(info.next_line or 1,
                                   "the file has a header but no member"))
        return
    _finish(deps, info, error=None)


def _write_block(deps: ImportDeps, info: AudienceRecord, block: list[MemberRecord],
                 at: CsvPosition, offset: int) -> AudienceRecord | None:
    """Write a block of members and save the position after it; None if another job saved
    the audience first (this one stops)."""
    deps.audiences.write_members(info.id, info.size, block)
    columns = info.columns or list(block[0].attributes)
    return deps.audiences.save(replace(
        info, size=info.size + len(block), columns=columns, bytes_read=offset,
        next_line=at.line, header=at.header, delimiter=at.delimiter))


def _finish(deps: ImportDeps, info: AudienceRecord, error: tuple[int, str] | None) -> None:
    """Ready, or failed with the line and reason; the file is deleted either way."""
    if error is None:
        final = replace(info, status="ready", bytes_read=info.upload_bytes)
    else:
        final = replace(info, status="failed", error_line=error[0], error=error[1])
    if deps.audiences.save(final) is None:
        return  # another job got there first
    assert info.upload_id is not None
    deps.uploads.delete(info.upload_id)
    if error is None:
        log.info("audience %s imported: %d member(s)", info.id, info.size)
        return
    log.info("audience %s import failed at line %d: %s", info.id, error[0], error[1])
    try:
        deps.audiences.drop_members(final)  # nothing of the file is used: free its rows
    except StorageUnavailable:
        log.warning("audience %s: the members of the failed import stay until it is deleted",
                    info.id)
