"""Audience uploads: a file sent in parts through the app, kept as one blob, read as a stream.

An upload is a row in the Audiences table (PK `upload`, RK the upload id) and a block blob of
the same name in the `audience-uploads` container. Each part (`PUT .../parts/{n}`, at most
`MAX_UPLOAD_PART_BYTES`) is staged as block `n` of that blob: a part sent again replaces its
block, so a client retries a part without asking. Committing lists the blocks 0..n-1 in order
(every one must have been staged); the blob is then read back as a stream of text lines for the
CSV parser, a few MiB at a time, never whole, and deleted once its audience is imported.

Why through the app rather than a SAS URL for the browser: the same key (or sign-in) that
guards the API guards the upload, no CORS rule or token leaves the app, and the app's identity
is the only one that writes the container.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient

from sms_core.adapters.azure_errors import storage_errors
from sms_core.errors import FieldError, NotFound, RequestInvalid
from sms_core.models.records import UploadRecord, new_batch_id

UPLOAD_PK = "upload"
UPLOAD_TTL = timedelta(days=1)
_STORAGE = storage_errors("Upload")


def _block_id(part: int) -> str:
    # Block ids are base64 and, within a blob, all of one length.
    return base64.b64encode(f"part-{part:06d}".encode()).decode()


class UploadStore:
    """Uploads of audience files (see the module docstring)."""

    def __init__(self, table: TableClient, container: Callable[[], ContainerClient]) -> None:
        # The container is built on first use: a stack without blob storage still runs.
        self._t = table
        self._container = container

    def create(self) -> UploadRecord:
        """A new, empty upload."""
        now = datetime.now(UTC)
        info = UploadRecord("u" + new_batch_id(), now, now + UPLOAD_TTL)
        with _STORAGE:
            self._t.create_entity({"PartitionKey": UPLOAD_PK, "RowKey": info.id,
                                   "CreatedAt": info.created_at, "ExpiresAt": info.expires_at})
        return info

    def get(self, upload_id: str) -> UploadRecord:
        """The upload, or NotFound (also once it expired)."""
        if not upload_id.isalnum() or len(upload_id) > 64:
            raise NotFound(f"No upload with id '{upload_id}'.")
        with _STORAGE:
            try:
                e = self._t.get_entity(UPLOAD_PK, upload_id)
            except ResourceNotFoundError:
                raise NotFound(f"No upload with id '{upload_id}'.") from None
        info = UploadRecord(e["RowKey"], e["CreatedAt"], e["ExpiresAt"], e.get("AudienceId"))
        if info.audience_id is None and info.expires_at < datetime.now(UTC):
            raise NotFound(f"The upload '{upload_id}' expired; start a new one.")
        return info

    def put_part(self, upload_id: str, part: int, data: bytes) -> None:
        """Stage part `part` (0-based) of the upload; the same part again replaces it."""
        with _STORAGE:
            self._blob(upload_id).stage_block(_block_id(part), data, length=len(data))

    def commit(self, upload_id: str, parts: int) -> int:
        """Make parts 0..parts-1 the file, in order; its size in bytes. A part not staged is a
        400 naming `parts`; committing the same parts again (a retry) is the same file."""
        blob = self._blob(upload_id)
        wanted = [_block_id(n) for n in range(parts)]
        with _STORAGE:
            try:
                committed, uncommitted = blob.get_block_list("all")
            except ResourceNotFoundError:  # nothing staged yet
                committed, uncommitted = [], []
            if [b.id for b in committed] == wanted:
                return sum(int(b.size) for b in committed)
            staged = {b.id: int(b.size) for b in uncommitted}
            missing = [n for n, block in enumerate(wanted) if block not in staged]
            if missing:
                raise RequestInvalid(
                    f"Part {missing[0]} of {parts} was not uploaded.",
                    [FieldError("parts", f"part {missing[0]} was not uploaded "
                                         f"({len(missing)} part(s) missing)")])
            blob.commit_block_list([BlobBlock(block_id=b) for b in wanted])
        return sum(staged[b] for b in wanted)

    def claim(self, upload_id: str, audience_id: str) -> str:
        """Record that the upload becomes `audience_id`, unless it already became another
        audience: the id it became (so a retried import request finds the first one)."""
        with _STORAGE:
            e = self._t.get_entity(UPLOAD_PK, upload_id)
            if e.get("AudienceId"):
                return str(e["AudienceId"])
            e["AudienceId"] = audience_id
            try:
                self._t.update_entity(e, mode=UpdateMode.REPLACE, etag=e.metadata["etag"],
                                      match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                return str(self._t.get_entity(UPLOAD_PK, upload_id)["AudienceId"])
        return audience_id

    def lines(self, upload_id: str, start: int = 0) -> LineSource:
        """The committed file from byte `start` on, as text lines with their endings (for
        `csv`, as `newline=""` gives them), read a few MiB at a time."""
        with _STORAGE:
            stream = self._blob(upload_id).download_blob(offset=start or None,
                                                         max_concurrency=1)
        return LineSource(_translated(stream.chunks()), start)

    def delete(self, upload_id: str) -> None:
        """Remove the upload's file (its row stays, so a retried import finds its audience)."""
        with _STORAGE, contextlib.suppress(ResourceNotFoundError):
            self._blob(upload_id).delete_blob()

    def _blob(self, upload_id: str) -> BlobClient:
        return self._container().get_blob_client(upload_id)


def _translated(chunks: Iterator[bytes]) -> Iterator[bytes]:
    with _STORAGE:
        yield from chunks


class LineSource:
    """Lines of UTF-8 text over byte chunks, split as universal newlines (`\n`, `\r\n`,
    `\r`) and kept with their endings; `offset` is the position in the file after the last
    line handed out, so a reading can resume at a row boundary. Bytes that are not UTF-8
    raise UnicodeDecodeError at their line."""

    def __init__(self, chunks: Iterator[bytes], offset: int = 0) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._pos = 0  # where the next line starts in the buffer
        self._done = False
        self.offset = offset

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        while (end := self._line_end()) is None:
            chunk = None if self._done else next(self._chunks, None)
            if chunk is None:
                self._done = True
                if self._pos >= len(self._buffer):
                    raise StopIteration
                continue  # the last line, without a line break, or a `\r` that ends it
            self._buffer = self._buffer[self._pos:] + chunk
            self._pos = 0
        line = self._buffer[self._pos:end]
        self._pos = end
        self.offset += len(line)
        return line.decode("utf-8")

    def _line_end(self) -> int | None:
        """Where the next line ends (after its line break), or None when the buffer holds no
        whole line yet (a `\r` at its end may be the start of `\r\n`)."""
        buffer, pos = self._buffer, self._pos
        n, r = buffer.find(b"\n", pos), buffer.find(b"\r", pos)
        if r != -1 and (n == -1 or r < n):
            if r + 1 < len(buffer):
                return r + 2 if buffer[r + 1] == 0x0A else r + 1
            return r + 1 if self._done else None
        if n != -1:
            return n + 1
        return len(buffer) if self._done and pos < len(buffer) else None
