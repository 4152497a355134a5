"""What a background campaign preparation keeps between its jobs (`Preparations`).

- Claims, in the CampaignRecipients table: PK `<campaign id>.n<bucket, 5 digits>`, RK
  `<number>|<row index, 8 digits>`. A number always hashes to the same bucket, so one bucket job
  sees every row of a number, first row first: the order of the keys.
- Markers, in the Campaigns table beside the campaign's runs: PK campaign id, RK
  `prep.<stage>.<part, 5 digits>` (stage `chunk` or `bucket`), with the part's tally: its counts
  (`Counts`, small, what progress reads) and the rest (`Tally`, JSON in parts).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.data.tables import TableClient

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.campaign_store import get_json, put_json
from sms_core.adapters.table_batches import delete_rows, write_new_rows
from sms_core.concurrency import run_all
from sms_core.models.records import ClaimRecord

_STORAGE = storage_errors("Campaign preparation")


def _bucket_partition(campaign_id: str, bucket: int) -> str:
    return f"{campaign_id}.n{bucket:05d}"


def _mark_key(stage: str, part: int) -> str:
    return f"prep.{stage}.{part:05d}"


class PreparationStore:
    """Claims and markers of background preparations."""

    def __init__(self, campaigns: TableClient, recipients: TableClient) -> None:
        self._t = campaigns
        self._r = recipients

    def save_claims(self, campaign_id: str,
                    by_bucket: Mapping[int, Sequence[ClaimRecord]]) -> None:
        """Write claims into their buckets, buckets side by side (rewriting is harmless)."""
        def write(item: tuple[int, Sequence[ClaimRecord]]) -> None:
            bucket, claims = item
            write_new_rows(self._r, [
                {"PartitionKey": _bucket_partition(campaign_id, bucket),
                 "RowKey": f"{c.to}|{c.index:08d}", "Segments": c.segments,
                 "Encoding": c.encoding, "Ucs2": c.ucs2, "Place": c.place}
                for c in claims])

        with _STORAGE:
            run_all(write, [(b, c) for b, c in by_bucket.items() if c])

    @_STORAGE
    def claims(self, campaign_id: str, bucket: int) -> list[ClaimRecord]:
        """A bucket's claims ordered by number, then row index (the order of their keys)."""
        out = []
        for e in self._r.query_entities("PartitionKey eq @pk",
                                        parameters={"pk": _bucket_partition(campaign_id, bucket)}):
            to, _, index = str(e["RowKey"]).rpartition("|")
            out.append(ClaimRecord(to, int(index), int(e["Segments"]), str(e["Encoding"]),
                                   str(e.get("Ucs2") or ""), int(e.get("Place") or 0)))
        return out

    def forget_claims(self, campaign_id: str, bucket: int) -> None:
        """Delete a bucket's claims; a storage failure leaves them (nothing reads them again
        once the bucket is marked done)."""
        pk = _bucket_partition(campaign_id, bucket)
        with contextlib.suppress(AzureError):
            keys = [str(e["RowKey"]) for e in self._r.query_entities(
                "PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey"])]
            delete_rows(self._r, pk, keys)

    @_STORAGE
    def mark(self, campaign_id: str, stage: str, part: int, tally: dict[str, Any]) -> None:
        """Record that `part` of `stage` is done, with its tally (idempotent)."""
        counts = {k: v for k, v in tally.items() if isinstance(v, int)}
        entity: dict[str, Any] = {"PartitionKey": campaign_id, "RowKey": _mark_key(stage, part),
                                  "Kind": "prep", "Counts": json.dumps(counts)}
        put_json(entity, "Tally", {k: v for k, v in tally.items() if k not in counts})
        self._t.upsert_entity(entity)

    def marked(self, campaign_id: str, stage: str, part: int) -> bool:
        """Whether `part` of `stage` is done (a point read)."""
        with _STORAGE:
            try:
                self._t.get_entity(campaign_id, _mark_key(stage, part), select=["RowKey"])
            except ResourceNotFoundError:
                return False
        return True

    @_STORAGE
    def marks(self, campaign_id: str, stage: str, *, full: bool = True
              ) -> dict[int, dict[str, Any]]:
        """The tallies of the done parts of `stage` by part; `full=False` reads only counts."""
        lo = _mark_key(stage, 0)[:-5]
        rows = self._t.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": campaign_id, "lo": lo, "hi": lo[:-1] + "/"},
            select=None if full else ["RowKey", "Counts", "Timestamp"])
        out: dict[int, dict[str, Any]] = {}
        for e in rows:
            tally: dict[str, Any] = json.loads(e["Counts"])
            if e.metadata.get("timestamp") is not None:
                tally["at"] = e.metadata["timestamp"]  # when it was written (progress stalls)
            if full:
                tally.update(get_json(e, "Tally", {}))
            out[int(str(e["RowKey"])[-5:])] = tally
        return out
