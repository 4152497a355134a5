"""The Campaigns and CampaignRecipients tables (keys in docs/architecture.md, "Campaigns").

Campaigns table:
- PK `campaign`, RK campaign id: the campaign (one partition, so listing is a range read);
  status changes are ETag-guarded.
- PK campaign id, RK `run.<runKey>`: one run (delivery) of the campaign; `run.<runKey>.chunk.N`
  marks fan-out chunk N of that run as done.
- PK `schedule`, RK `<dueKey>.<campaign id>`: the schedule index the timer reads by range.

CampaignRecipients table, the prepared snapshot (number, rendered text, segments, verdict):
PK `<campaign id>.<block, 5 digits>`, RK the 8-digit row index; a block holds 10,000 rows
(`SNAPSHOT_BLOCK`), so a snapshot of any size spreads over partitions of bounded size.
Campaigns prepared before blocks (`Layout` 1 on their row, or none) keep theirs in the partition
`<campaign id>` with 5-digit keys. The same table holds a background preparation's number
claims (`adapters.preparation_store`).
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.table_batches import upsert_rows, write_new_rows
from sms_core.concurrency import run_all
from sms_core.errors import NotFound, StorageUnavailable
from sms_core.models.records import (
    SNAPSHOT_BLOCK,
    CampaignRecord,
    RecipientRecord,
    RunRecord,
    legacy_run_batch,
    run_batch,
    run_key,
    token_hash,
)

CAMPAIGN_PK = "campaign"
SCHEDULE_PK = "schedule"
_JSON_PART_CHARS = 30_000  # a Table string property holds at most 32K UTF-16 characters
_CHANGE_RETRIES = 8
_STORAGE = storage_errors("Campaign")


def put_json(entity: dict[str, Any], name: str, value: Any) -> None:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    parts = [text[i:i + _JSON_PART_CHARS] for i in range(0, len(text), _JSON_PART_CHARS)]
    entity[f"{name}Parts"] = len(parts)
    for i, part in enumerate(parts):
        entity[f"{name}{i}"] = part


def get_json(entity: Any, name: str, default: Any = None) -> Any:
    count = int(entity.get(f"{name}Parts", 0) or 0)
    if not count:
        return default
    return json.loads("".join(str(entity[f"{name}{i}"]) for i in range(count)))


def _campaign_entity(item: CampaignRecord) -> dict[str, Any]:
    """The Table entity of a campaign."""
    e: dict[str, Any] = {
        "PartitionKey": CAMPAIGN_PK, "RowKey": item.id, "Name": item.name,
        "From": item.sender, "Template": item.template, "Status": item.status,
        "CreatedAt": item.created_at, "UpdatedAt": item.updated_at, "Total": item.total,
        "Valid": item.valid, "TokenHash": item.token_hash,
        "DeliveryReport": item.delivery_report, "Runs": item.runs}
    optional = {"TemplateId": item.template_id, "Tag": item.tag, "LastRun": item.last_run,
                "NextRunAt": item.next_run_at}
    e.update({k: v for k, v in optional.items() if v is not None})
    put_json(e, "Preview", item.preview)
    if item.schedule is not None:
        e["Schedule"] = json.dumps(item.schedule)
    if item.quiet_hours is not None:
        e["QuietHours"] = json.dumps(item.quiet_hours)
    if item.layout != 1:
        e.update(Layout=item.layout, Span=item.span)
    if item.preparation is not None:
        e["Preparation"] = json.dumps(item.preparation)
    return e

def _campaign(e: Any) -> CampaignRecord:
    """A campaign from its Table entity, keeping its ETag."""
    return CampaignRecord(
        id=e["RowKey"], name=e["Name"], sender=e["From"], template=e["Template"],
        status=e["Status"], created_at=e["CreatedAt"], updated_at=e["UpdatedAt"],
        total=int(e["Total"]), valid=int(e["Valid"]), preview=get_json(e, "Preview", {}),
        token_hash=e["TokenHash"], template_id=e.get("TemplateId"), tag=e.get("Tag"),
        delivery_report=bool(e.get("DeliveryReport", True)),
        schedule=json.loads(e["Schedule"]) if e.get("Schedule") else None,
        quiet_hours=json.loads(e["QuietHours"]) if e.get("QuietHours") else None,
        last_run=e.get("LastRun"), next_run_at=e.get("NextRunAt"),
        runs=int(e.get("Runs", 0)), etag=e.metadata.get("etag"),
        layout=int(e.get("Layout") or 1), span=int(e.get("Span") or 0),
        preparation=json.loads(e["Preparation"]) if e.get("Preparation") else None)


def snapshot_key(campaign: CampaignRecord, index: int) -> tuple[str, str]:
    """(PartitionKey, RowKey) of snapshot row `index` (see the module docstring)."""
    if campaign.layout == 1:
        return campaign.id, f"{index:05d}"
    return f"{campaign.id}.{index // SNAPSHOT_BLOCK:05d}", f"{index:08d}"


def _row_entity(item: RecipientRecord, campaign: CampaignRecord) -> dict[str, Any]:
    """The Table entity of a snapshot row."""
    pk, rk = snapshot_key(campaign, item.index)
    e: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk, "To": item.to,
                         "Verdict": item.verdict}
    if item.verdict == "valid":
        e.update(Body=item.body, Segments=item.segments, Encoding=item.encoding)
    if item.reason:
        e["Reason"] = item.reason
    return e

def _recipient_row(e: Any) -> RecipientRecord:
    """A snapshot row from its Table entity."""
    return RecipientRecord(index=int(e["RowKey"]), to=e["To"], verdict=e["Verdict"],
               body=e.get("Body", ""), segments=int(e.get("Segments", 0)),
               encoding=e.get("Encoding", "GSM-7"), reason=e.get("Reason"))


def _run(campaign_id: str, e: Any) -> RunRecord:
    """A run from its Table entity (its done chunks are other rows)."""
    key = str(e["RowKey"])[4:]
    return RunRecord(
        campaign_id, key, int(e["Chunks"]), e["Status"], e["StartedAt"], e.get("FinishedAt"),
        e.metadata.get("etag"), batch_id=e.get("Batch") or legacy_run_batch(campaign_id, key),
        settled_counts=json.loads(e["Counts"]) if e.get("Counts") else None,
        blocks=int(e.get("Blocks") or 1))


def _chunk_key(key: str, chunk: int) -> str:
    return f"run.{key}.chunk.{chunk:05d}"


class CampaignStore:
    """Campaigns, their runs, fan-out markers, schedule index and recipient snapshots."""

    def __init__(self, campaigns: TableClient, recipients: TableClient) -> None:
        self._t = campaigns
        self._r = recipients

    # -- campaigns ----------------------------------------------------------------------------

    @staticmethod
    def new_token() -> tuple[str, str]:
        """A fresh confirmation token and the hash that is stored in its place."""
        token = secrets.token_urlsafe(24)
        return token, token_hash(token)

    @_STORAGE
    def create(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord]) -> None:
        """Write the snapshot rows, then the campaign: a crash leaves no visible campaign."""
        self.write_rows(campaign, rows, new=True)
        meta = self._t.create_entity(_campaign_entity(campaign))
        campaign.etag = meta.get("etag", campaign.etag)

    def write_rows(self, campaign: CampaignRecord, rows: Sequence[RecipientRecord], *,
                   new: bool) -> None:
        """Write snapshot rows, each block's in its partition's transactions, blocks side by
        side; idempotent (`new`: rows not written yet, except by a crashed attempt; otherwise
        they replace the rows of those indices)."""
        blocks: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            entity = _row_entity(row, campaign)
            blocks.setdefault(entity["PartitionKey"], []).append(entity)
        write = write_new_rows if new else upsert_rows
        with _STORAGE:
            run_all(lambda block: write(self._r, block), list(blocks.values()))

    def get(self, campaign_id: str) -> CampaignRecord:
        """The campaign, or NotFound."""
        if not campaign_id.isalnum() or len(campaign_id) > 64:
            raise NotFound(f"No campaign with id '{campaign_id}'.")
        with _STORAGE:
            try:
                return _campaign(self._t.get_entity(CAMPAIGN_PK, campaign_id))
            except ResourceNotFoundError:
                raise NotFound(f"No campaign with id '{campaign_id}'.") from None

    def save(self, campaign: CampaignRecord) -> bool:
        """Replace the campaign if nobody changed it since it was read; False on a conflict."""
        campaign.updated_at = datetime.now(UTC)
        with _STORAGE:
            try:
                meta = self._t.update_entity(_campaign_entity(campaign),
                                             mode=UpdateMode.REPLACE, etag=campaign.etag,
                                             match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                return False
        campaign.etag = meta.get("etag", campaign.etag)
        return True

    def change(self, campaign: CampaignRecord,
               mutate: Callable[[CampaignRecord], bool]) -> CampaignRecord:
        """Apply `mutate` (False: nothing to change) and save, re-reading on an ETag conflict.

        Returns the campaign as stored afterwards; mutate sees the latest state each time.
        """
        for _ in range(_CHANGE_RETRIES):
            if not mutate(campaign) or self.save(campaign):
                return campaign
            campaign = self.get(campaign.id)
        raise StorageUnavailable(f"Campaign {campaign.id} kept changing; try again")

    def page(self, limit: int, after: str | None) -> tuple[list[CampaignRecord], str | None]:
        """Campaigns in creation order, `limit` at a time, after the id `after`."""
        filt = "PartitionKey eq @pk" + (" and RowKey gt @after" if after else "")
        with _STORAGE:
            it = self._t.query_entities(filt, parameters={"pk": CAMPAIGN_PK, "after": after or ""},
                                        results_per_page=limit)
            items = [_campaign(e) for e in next(it.by_page(), [])]
        return items[:limit], (items[limit - 1].id if len(items) >= limit else None)

    @_STORAGE
    def with_status(self, status: str) -> list[CampaignRecord]:
        """Campaigns in one status (a read of the campaign partition; the timer's use only)."""
        return [_campaign(e) for e in self._t.query_entities(
            "PartitionKey eq @pk and Status eq @s", parameters={"pk": CAMPAIGN_PK, "s": status})]

    # -- recipients ---------------------------------------------------------------------------

    @_STORAGE
    def recipients(self, campaign: CampaignRecord, lo: int, hi: int) -> list[RecipientRecord]:
        """The valid rows with index in [lo, hi), a range within one block: one range query."""
        pk, first = snapshot_key(campaign, lo)
        assert snapshot_key(campaign, hi - 1)[0] == pk, "a range within one block"
        return [_recipient_row(e) for e in self._r.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and Verdict eq 'valid'",
            parameters={"pk": pk, "lo": first, "hi": snapshot_key(campaign, hi - 1)[1] + "~"})]

    def rows(self, campaign: CampaignRecord, indices: Sequence[int]) -> list[RecipientRecord]:
        """The snapshot rows of `indices` (point reads, side by side; absent ones left out)."""
        def read(index: int) -> RecipientRecord | None:
            with contextlib.suppress(ResourceNotFoundError):
                return _recipient_row(self._r.get_entity(*snapshot_key(campaign, index)))
            return None

        with _STORAGE:
            return [r for r in run_all(read, list(indices)) if r is not None]

    # -- runs ---------------------------------------------------------------------------------

    def start_run(self, campaign_id: str, key: str, chunks: int, blocks: int = 1) -> RunRecord:
        """Create the run (or return it when it already exists: a retried start)."""
        entity = {"PartitionKey": campaign_id, "RowKey": f"run.{key}", "Kind": "run",
                  "Chunks": chunks, "Status": "sending", "StartedAt": datetime.now(UTC),
                  "Batch": run_batch(campaign_id, key), "Blocks": blocks}
        with _STORAGE, contextlib.suppress(ResourceExistsError):  # a retried start
            self._t.create_entity(entity)
        run = self.run(campaign_id, key)
        assert run is not None
        return run

    def run(self, campaign_id: str, key: str, *, chunk: int | None = None) -> RunRecord | None:
        """One run with its done chunks, or None. With `chunk`, `done_chunks` tells only
        whether that chunk is done: two point reads, however many chunks the run has."""
        if chunk is None:
            runs = self._runs(campaign_id, f"run.{key}", f"run.{key}/")
            return runs[0] if runs else None
        with _STORAGE:
            try:
                row = self._t.get_entity(campaign_id, f"run.{key}")
            except ResourceNotFoundError:
                return None
            run = _run(campaign_id, row)
            with contextlib.suppress(ResourceNotFoundError):
                self._t.get_entity(campaign_id, _chunk_key(key, chunk), select=["RowKey"])
                run.done_chunks.add(chunk)
        return run

    def runs(self, campaign_id: str) -> list[RunRecord]:
        """Every run of the campaign, oldest first."""
        return self._runs(campaign_id, "run.", "run/")

    def _runs(self, campaign_id: str, lo: str, hi: str) -> list[RunRecord]:
        with _STORAGE:
            rows = list(self._t.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": campaign_id, "lo": lo, "hi": hi}))
        runs = {str(e["RowKey"])[4:]: _run(campaign_id, e) for e in rows
                if e.get("Kind") == "run"}
        for e in rows:
            if e.get("Kind") == "chunk" and e["Run"] in runs:
                runs[e["Run"]].done_chunks.add(int(e["Chunk"]))
        return [runs[k] for k in sorted(runs)]

    @_STORAGE
    def mark_chunk(self, run: RunRecord, chunk: int, counts: dict[str, int]) -> None:
        """Record that a fan-out chunk is done (idempotent)."""
        self._t.upsert_entity({"PartitionKey": run.campaign_id,
                               "RowKey": _chunk_key(run.key, chunk), "Kind": "chunk",
                               "Run": run.key, "Chunk": chunk, **counts})

    def run_canceled(self, campaign_id: str, key: str) -> bool:
        """True when the run exists and is canceled (one point read of its status)."""
        with _STORAGE:
            try:
                row = self._t.get_entity(campaign_id, f"run.{key}", select=["Status"])
            except ResourceNotFoundError:
                return False
        return bool(row.get("Status") == "canceled")

    def set_run_status(self, run: RunRecord, status: str) -> bool:
        """Move a run to `status` if it did not change meanwhile; False on a conflict."""
        return self._save_run(run, status, datetime.now(UTC), None)

    def settle_run(self, run: RunRecord, counts: dict[str, int]) -> bool:
        """Keep a finished run's totals on its row once none of its messages can change
        (read from there on instead of its batch); False on a conflict."""
        if self._save_run(run, run.status, run.finished_at or datetime.now(UTC), counts):
            run.settled_counts = dict(counts)
            return True
        return False

    def _save_run(self, run: RunRecord, status: str, finished: datetime,
                  counts: dict[str, int] | None) -> bool:
        entity = {"PartitionKey": run.campaign_id, "RowKey": f"run.{run.key}", "Kind": "run",
                  "Chunks": run.chunks, "Status": status, "StartedAt": run.started_at,
                  "FinishedAt": finished, "Batch": run.batch, "Blocks": run.blocks}
        if counts is not None:
            entity["Counts"] = json.dumps(counts)
        with _STORAGE:
            try:
                meta = self._t.update_entity(entity, mode=UpdateMode.REPLACE, etag=run.etag,
                                             match_condition=MatchConditions.IfNotModified)
            except ResourceModifiedError:
                return False
        run.status, run.finished_at, run.etag = status, finished, meta.get("etag", run.etag)
        return True

    # -- schedule index -----------------------------------------------------------------------

    @_STORAGE
    def schedule(self, campaign_id: str, due: datetime) -> None:
        """Put a run of the campaign in the schedule index (idempotent)."""
        self._t.upsert_entity({"PartitionKey": SCHEDULE_PK,
                               "RowKey": f"{run_key(due)}.{campaign_id}",
                               "Campaign": campaign_id, "Due": due})

    def due(self, now: datetime) -> Iterator[tuple[str, str]]:
        """(campaign id, run key) of every schedule entry due at `now`, oldest first."""
        with _STORAGE:  # not a decorator: this is a generator, the query runs on first next()
            rows = list(self._t.query_entities(
                "PartitionKey eq @pk and RowKey le @hi",
                parameters={"pk": SCHEDULE_PK, "hi": run_key(now) + "~"}))
        for e in rows:
            key, _, cid = str(e["RowKey"]).partition(".")
            yield cid, key

    def unschedule(self, campaign_id: str, key: str) -> None:
        """Remove a schedule entry (a no-op when it is gone)."""
        with _STORAGE, contextlib.suppress(ResourceNotFoundError):
            self._t.delete_entity(SCHEDULE_PK, f"{key}.{campaign_id}")
