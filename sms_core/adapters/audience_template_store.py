"""Saved audiences and templates: the reusable parts a campaign picks by id.

Audiences table: PK `audience`, RK audience id for the audience itself (one partition, so a
listing is a range read; `Status` importing/ready/failed and the import's progress on it).
Members in blocks of 10,000 (`MEMBER_BLOCK`): PK `<audience id>.<block, 5 digits>`, RK the
8-digit member index, written with entity-group transactions; a block is a partition of its
own, so the rows of a 10,000,000-member audience spread over 1,000 partitions and no key holds
a limit. Audiences saved before blocks (no `Layout` on their row) keep their members in the
partition `<audience id>` with 5-digit keys, and are read there.
Uploads: PK `upload`, RK upload id (the parts are blocks of the blob of that name in the
`audience-uploads` container; `adapters.upload_store`). Templates table: PK `template`, RK
template id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.table_batches import delete_rows, write_new_rows
from sms_core.concurrency import run_all
from sms_core.errors import NotFound
from sms_core.models.records import AudienceRecord, MemberRecord, TemplateRecord, new_batch_id

AUDIENCE_PK = "audience"
MEMBER_BLOCK = 10_000  # members per partition
_LAYOUT_BLOCKS = 2
TEMPLATE_PK = "template"
_AUDIENCE_STORAGE = storage_errors("Audience")
_TEMPLATE_STORAGE = storage_errors("Template")


def _get_row(table: TableClient, partition: str, item_id: str, what: str) -> Any:
    """The row of a saved item by id, or NotFound (also for ids that cannot be ours)."""
    if not item_id.isalnum() or len(item_id) > 64:
        raise NotFound(f"No {what} with id '{item_id}'.")
    with storage_errors(what.capitalize()):
        try:
            return table.get_entity(partition, item_id)
        except ResourceNotFoundError:
            raise NotFound(f"No {what} with id '{item_id}'.") from None


class AudienceStore:
    """Saved audiences."""

    def __init__(self, table: TableClient) -> None:
        self._t = table

    def create(self, name: str, members: Sequence[MemberRecord]) -> AudienceRecord:
        """Save members, then the audience row (a crash leaves nothing visible)."""
        columns: dict[str, None] = {}
        for m in members:
            columns.update(dict.fromkeys(m.attributes))
        info = AudienceRecord(new_audience_id(), name, len(members), list(columns),
                              datetime.now(UTC))
        with _AUDIENCE_STORAGE:
            self.write_members(info.id, 0, members)
            self._t.create_entity(_audience_entity(info))
        return info

    def create_importing(self, name: str, upload_id: str, upload_bytes: int) -> AudienceRecord:
        """The row of an audience whose members an import will write (status `importing`)."""
        info = AudienceRecord(new_audience_id(), name, 0, [], datetime.now(UTC),
                              status="importing", upload_id=upload_id,
                              upload_bytes=upload_bytes)
        with _AUDIENCE_STORAGE:
            meta = self._t.create_entity(_audience_entity(info))
        return replace(info, etag=meta.get("etag"))

    def write_members(self, audience_id: str, first: int,
                      members: Sequence[MemberRecord]) -> None:
        """Write members `first`, `first + 1`, ... (idempotent: rewriting them is harmless),
        each block's rows in its partition's transactions, blocks side by side."""
        rows = [{"PartitionKey": _member_partition(audience_id, first + i),
                 "RowKey": f"{first + i:08d}", "To": m.to,
                 "Attributes": json.dumps(m.attributes, ensure_ascii=False)}
                for i, m in enumerate(members)]
        blocks: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            blocks.setdefault(row["PartitionKey"], []).append(row)
        with _AUDIENCE_STORAGE:
            run_all(lambda block: write_new_rows(self._t, block), list(blocks.values()))

    def save(self, info: AudienceRecord) -> AudienceRecord | None:
        """Replace the audience row if it did not change since read (its ETag); None if it
        did (another writer: read it again)."""
        with _AUDIENCE_STORAGE:
            try:
                meta = self._t.update_entity(
                    _audience_entity(info), mode=UpdateMode.REPLACE, etag=info.etag,
                    match_condition=MatchConditions.IfNotModified)
            except (ResourceModifiedError, ResourceNotFoundError):
                return None
        return replace(info, etag=meta.get("etag"))

    def get(self, audience_id: str) -> AudienceRecord:
        """The audience, or NotFound."""
        return _audience(_get_row(self._t, AUDIENCE_PK, audience_id, "audience"))

    @_AUDIENCE_STORAGE
    def all(self) -> list[AudienceRecord]:
        """Every saved audience, oldest first."""
        return [_audience(e) for e in self._t.query_entities(
            "PartitionKey eq @pk", parameters={"pk": AUDIENCE_PK})]

    def members(self, audience_id: str) -> list[MemberRecord]:
        """All members of an audience in their saved order (one query over its blocks)."""
        info = self.get(audience_id)
        with _AUDIENCE_STORAGE:
            return [MemberRecord(e["To"], json.loads(e["Attributes"]))
                    for e in self._member_rows(info, ["To", "Attributes"])]

    def each_member(self, audience_id: str) -> Iterator[MemberRecord]:
        """The members one at a time, in their saved order (read a page at a time)."""
        info = self.get(audience_id)
        with _AUDIENCE_STORAGE:
            for e in self._member_rows(info, ["To", "Attributes"]):
                yield MemberRecord(e["To"], json.loads(e["Attributes"]))

    def member_range(self, info: AudienceRecord, lo: int, hi: int
                     ) -> list[tuple[int, MemberRecord]]:
        """(index, member) of the members with index in [lo, hi), a range within one block of
        an audience saved in blocks: one range query."""
        assert info.layout == _LAYOUT_BLOCKS and lo // MEMBER_BLOCK == (hi - 1) // MEMBER_BLOCK
        with _AUDIENCE_STORAGE:
            return [(int(e["RowKey"]), MemberRecord(e["To"], json.loads(e["Attributes"])))
                    for e in self._t.query_entities(
                        "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                        parameters={"pk": _member_partition(info.id, lo), "lo": f"{lo:08d}",
                                    "hi": f"{hi:08d}"}, select=["RowKey", "To", "Attributes"])]

    def _member_rows(self, info: AudienceRecord, select: list[str]) -> Any:
        if info.layout == _LAYOUT_BLOCKS:
            return self._t.query_entities(
                "PartitionKey gt @lo and PartitionKey lt @hi",
                parameters={"lo": f"{info.id}.", "hi": f"{info.id}/"}, select=select)
        return self._t.query_entities("PartitionKey eq @pk", parameters={"pk": info.id},
                                      select=select)

    def delete(self, audience_id: str) -> None:
        """Delete an audience: invisible at once, its member rows removed after."""
        info = self.get(audience_id)
        with _AUDIENCE_STORAGE:
            self._t.delete_entity(AUDIENCE_PK, audience_id)
        self.drop_members(info)

    def drop_members(self, info: AudienceRecord) -> None:
        """Delete an audience's member rows (those of a deleted audience, or of a failed
        import, which are never read)."""
        with _AUDIENCE_STORAGE:
            keys: dict[str, list[str]] = {}
            for e in self._member_rows(info, ["PartitionKey", "RowKey"]):
                keys.setdefault(e["PartitionKey"], []).append(e["RowKey"])
            run_all(lambda item: delete_rows(self._t, *item), list(keys.items()))


def new_audience_id() -> str:
    """A fresh, time-ordered audience id."""
    return "a" + new_batch_id()


def _member_partition(audience_id: str, index: int) -> str:
    return f"{audience_id}.{index // MEMBER_BLOCK:05d}"


def _audience_entity(info: AudienceRecord) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": AUDIENCE_PK, "RowKey": info.id, "Name": info.name, "Size": info.size,
        "Columns": json.dumps(info.columns), "CreatedAt": info.created_at,
        "Layout": info.layout, "Status": info.status}
    for column, value in (("UploadId", info.upload_id), ("ErrorLine", info.error_line),
                          ("Error", info.error)):
        if value is not None:
            row[column] = value
    if info.upload_id is not None:
        row.update(BytesRead=info.bytes_read, UploadBytes=info.upload_bytes,
                   NextLine=info.next_line, Delimiter=info.delimiter)
        if info.header is not None:
            row["Header"] = json.dumps(info.header, ensure_ascii=False)
    return row


def _audience(e: Any) -> AudienceRecord:
    return AudienceRecord(
        e["RowKey"], e["Name"], int(e["Size"]), json.loads(e["Columns"]), e["CreatedAt"],
        status=e.get("Status") or "ready", upload_id=e.get("UploadId"),
        error_line=e.get("ErrorLine"), error=e.get("Error"),
        bytes_read=int(e.get("BytesRead") or 0), next_line=int(e.get("NextLine") or 0),
        header=json.loads(e["Header"]) if e.get("Header") else None,
        delimiter=e.get("Delimiter") or ",", upload_bytes=int(e.get("UploadBytes") or 0),
        etag=e.metadata.get("etag"), layout=int(e.get("Layout") or 1))


class TemplateStore:
    """Saved templates."""

    def __init__(self, table: TableClient) -> None:
        self._t = table

    def create(self, name: str, text: str, variables: Sequence[str]) -> TemplateRecord:
        """Save a template."""
        info = TemplateRecord("t" + new_batch_id(), name, text, list(variables),
                            datetime.now(UTC))
        with _TEMPLATE_STORAGE:
            self._t.create_entity({"PartitionKey": TEMPLATE_PK, "RowKey": info.id,
                                   "Name": name, "Text": text,
                                   "Variables": json.dumps(info.variables),
                                   "CreatedAt": info.created_at})
        return info

    def get(self, template_id: str) -> TemplateRecord:
        """The template, or NotFound."""
        return _template(_get_row(self._t, TEMPLATE_PK, template_id, "template"))

    @_TEMPLATE_STORAGE
    def all(self) -> list[TemplateRecord]:
        """Every saved template, oldest first."""
        return [_template(e) for e in self._t.query_entities(
            "PartitionKey eq @pk", parameters={"pk": TEMPLATE_PK})]

    def delete(self, template_id: str) -> None:
        """Delete a template (campaigns keep the text they were prepared with)."""
        self.get(template_id)
        with _TEMPLATE_STORAGE:
            self._t.delete_entity(TEMPLATE_PK, template_id)


def _template(e: Any) -> TemplateRecord:
    return TemplateRecord(e["RowKey"], e["Name"], e["Text"], json.loads(e["Variables"]),
                        e["CreatedAt"])
