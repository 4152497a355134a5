"""Saved audiences and templates: the reusable parts a campaign picks by id.

Audiences table: PK `audience`, RK audience id for the audience itself (one partition, so a
listing is a range read); PK audience id, RK the 5-digit member index for its members, written
with entity-group transactions. Templates table: PK `template`, RK template id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.message_store import ENTITY_GROUP_LIMIT
from sms_core.adapters.table_batches import write_new_rows
from sms_core.concurrency import run_all
from sms_core.errors import NotFound
from sms_core.models.records import AudienceRecord, MemberRecord, TemplateRecord, new_batch_id

AUDIENCE_PK = "audience"
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
        info = AudienceRecord("a" + new_batch_id(), name, len(members), list(columns),
                            datetime.now(UTC))
        rows = [{"PartitionKey": info.id, "RowKey": f"{i:05d}", "To": m.to,
                 "Attributes": json.dumps(m.attributes, ensure_ascii=False)}
                for i, m in enumerate(members)]
        with _AUDIENCE_STORAGE:
            write_new_rows(self._t, rows)
            self._t.create_entity({"PartitionKey": AUDIENCE_PK, "RowKey": info.id,
                                   "Name": name, "Size": info.size,
                                   "Columns": json.dumps(info.columns),
                                   "CreatedAt": info.created_at})
        return info

    def get(self, audience_id: str) -> AudienceRecord:
        """The audience, or NotFound."""
        return _audience(_get_row(self._t, AUDIENCE_PK, audience_id, "audience"))

    @_AUDIENCE_STORAGE
    def all(self) -> list[AudienceRecord]:
        """Every saved audience, oldest first."""
        return [_audience(e) for e in self._t.query_entities(
            "PartitionKey eq @pk", parameters={"pk": AUDIENCE_PK})]

    def members(self, audience_id: str) -> list[MemberRecord]:
        """All members of an audience in their saved order (one partition query)."""
        self.get(audience_id)
        with _AUDIENCE_STORAGE:
            rows = self._t.query_entities("PartitionKey eq @pk", parameters={"pk": audience_id},
                                          select=["To", "Attributes"])
            return [MemberRecord(e["To"], json.loads(e["Attributes"])) for e in rows]

    def delete(self, audience_id: str) -> None:
        """Delete an audience: invisible at once, its member rows removed after."""
        self.get(audience_id)
        with _AUDIENCE_STORAGE:
            self._t.delete_entity(AUDIENCE_PK, audience_id)
            keys = [e["RowKey"] for e in self._t.query_entities(
                "PartitionKey eq @pk", parameters={"pk": audience_id}, select=["RowKey"])]
            chunks = [keys[i:i + ENTITY_GROUP_LIMIT]
                      for i in range(0, len(keys), ENTITY_GROUP_LIMIT)]
            run_all(lambda c: self._t.submit_transaction(
                [("delete", {"PartitionKey": audience_id, "RowKey": k}) for k in c]), chunks)


def _audience(e: Any) -> AudienceRecord:
    return AudienceRecord(e["RowKey"], e["Name"], int(e["Size"]), json.loads(e["Columns"]),
                        e["CreatedAt"])


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
