"""Usage and engagement analytics per UTC day, sender and tag, counted as events happen.

Every real-world fact (a message became `sent`, a delivery report said `delivered`, an SMS came
in, a STOP opted someone out) is recorded once as a `Fact` with a stable id, the UTC day it is
attributed to, the sender (our number), the tag and what it adds to the counters (`COUNTERS`).
A query then reads a few pre-summed rows per day; it never reads the Messages table.

Table `Analytics` (keys)
------------------------
- PartitionKey: the UTC day, `YYYY-MM-DD`. Everything written for a fact lives in its day's
  partition, which is what lets one entity-group transaction cover both rows below.
- Counter rows, RowKey `c|<sender>|<tag or ->|<shard:02d>`: one Edm.Int64 property per counter
  (plus `Sender` and `Tag` as written, for people reading the table). `shard` is a stable hash of
  the fact id modulo `shards` (default 8).
- Ledger rows, RowKey `l|<fact id>`: no properties; their existence means "this fact is counted".

Key parts are escaped so they never hold what Table keys forbid (`/ \\ # ?`, control characters)
nor the `|` separator: those characters, `%` and `~` become `%XX`, and a tag that is literally
`-` becomes `%2D` so it cannot be mistaken for "no tag". A part longer than 200 characters is cut
to 64 and followed by `~<sha256 of the whole value>`, which keeps keys under the 1 KiB limit and
distinct (an escaped part never contains `~`, a hashed one always does).

Exact under redelivery
----------------------
Queues and Event Grid deliver at least once, so the same fact arrives again. A counter row and
the ledger rows of the facts it adds are written in ONE entity-group transaction: the ledger rows
are inserted (`create`, which fails if the row exists) and the counter is replaced with the new
sums under `If-Match` with the ETag it was read with (or inserted when it does not exist yet).
Either all of it happens or none of it: a fact is never counted without its ledger row, nor
recorded in the ledger without being counted. A redelivered fact makes the transaction fail with
`EntityAlreadyExists` naming the first such ledger row; the writer drops that fact,
point-reads the ledger rows after it (all of them if the service names no row), drops those that
exist and tries again. A writer that lost a race for the counter row (412, or a concurrent
insert of the row) re-reads it and tries again, so no increment is ever lost. The ledger keys
only on the fact id inside the day partition, so a fact stays de-duplicated even if `shards`
changes; the day, however, must be derived from the fact itself (see `Fact.day`).

Why shards
----------
All writers for one sender, tag and day would otherwise queue on one counter row: each ETag
conflict costs a re-read and another round trip. Spreading the facts over `shards` rows by a hash
of their id lets parallel instances mostly write different rows; a query sums the shards.

Facts of concurrent callers share a transaction
-----------------------------------------------
Within one instance, the facts of callers that arrive while a transaction for the same day,
sender and tag is under way wait for it and then go out together, in the next transaction, on
the shard of the first of them (`sms_core.concurrency.GroupCommit`). A transaction costs the
client about four times what a single-entity request does (azure-core builds and parses its
multipart body with the `email` package: about 8.5 ms of CPU against 2.1 ms), so eight facts
in one transaction are far cheaper than eight transactions of one, and the instance no longer
races itself for counter rows. A caller alone is not held back. Each caller still hears how
many of its own facts were newly counted (a fact two callers brought at once counts for the
first), and a failed transaction fails every caller whose facts it held: their redeliveries
count them exactly once, as for a caller alone.

What a query reads
------------------
One single-partition range query per day over the `c|` rows (narrowed to `c|<sender>|` when a
sender is given), run 8 at a time; so at most days x senders x tags x shards small rows, never the
ledger and never a message. The tag filter is applied to the parsed RowKey.

Counter rows kept between writes
--------------------------------
After a successful transaction the store keeps the counter row's new sums and ETag, so the next
fact for that row in this process is one transaction, without reading the row first. A writer
takes the kept row for itself (two threads never build on the same ETag); another instance's
write since then makes the transaction fail its If-Match, and the row is read again, so a kept
row can cost a retry but never a lost increment.

Limits
------
A day is one partition, so all of a day's writes go to one partition server (Azure's target is
about 2,000 entities per second per partition; a fact costs its ledger row plus a share of one
counter update). The ledger grows by one small row per fact and is never read by queries; it
must be kept for as long as a redelivery can arrive, or a late one would be counted again.
The counters and the rates they give are rules: `sms_core.rules.analytics`.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError, ServiceResponseError
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableTransactionError,
    UpdateMode,
)

from sms_core.adapters.azure_errors import error_code, storage_errors
from sms_core.concurrency import GroupCommit, run_all
from sms_core.errors import StorageUnavailable
from sms_core.rules.analytics import COUNTERS, AnalyticsReport, Fact, check_range, rates

ENTITY_GROUP_LIMIT = 100  # Azure Table entity-group transactions hold at most 100 operations.
_FACTS_PER_TX = ENTITY_GROUP_LIMIT - 1  # ledger rows, plus the counter row
_MAX_TRIES = 50  # a busy counter row under many instances can lose a few races in a row
_CONNECTION_RETRIES = 3  # dropped connections before the failure is the caller's
_MAX_PART = 200  # escaped characters in one key part before it is hashed
_KEPT_ROWS = 4096  # counter rows kept between writes (a few per active sender, tag and day)
_HASHED_HEAD = 64
_FORBIDDEN = re.compile(r"[%|~/\\#?\x00-\x1f\x7f-\x9f]")

# Separate pools, because a write task waits for ledger reads: sharing one pool could deadlock.


# -- facts and keys ---------------------------------------------------------------------------


def _escape(value: str) -> str:
    return _FORBIDDEN.sub(lambda m: f"%{ord(m.group()):02X}", value)


def key_part(value: str) -> str:
    """`value` made safe for one part of a RowKey: escaped, and hashed when long (injective)."""
    escaped = _escape(value)
    if len(escaped) <= _MAX_PART:
        return escaped
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{escaped[:_HASHED_HEAD]}~{digest}"


def tag_part(tag: str | None) -> str:
    """The tag's RowKey part: `-` for no tag; a literal `-` tag is escaped so both differ."""
    if tag is None:
        return "-"
    return "%2D" if tag == "-" else key_part(tag)


def shard_of(fact_id: str, shards: int) -> int:
    """A stable shard for a fact id (the same in every process, unlike `hash()`)."""
    digest = hashlib.sha256(fact_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def counter_row_key(sender: str, tag: str | None, shard: int) -> str:
    """RowKey of a counter row: `c|<sender>|<tag or ->|<shard:02d>`."""
    return f"c|{key_part(sender)}|{tag_part(tag)}|{shard:02d}"


def ledger_row_key(fact_id: str) -> str:
    """RowKey of a fact's ledger row: `l|<fact id>`."""
    return f"l|{key_part(fact_id)}"


def parse_counter_row_key(row_key: str) -> tuple[str, str, int] | None:
    """(sender part, tag part, shard) of a counter RowKey, as escaped; None if it is not one."""
    parts = row_key.split("|")
    if len(parts) != 4 or parts[0] != "c" or not parts[3].isdigit():
        return None
    return parts[1], parts[2], int(parts[3])


# -- rates and reports --------------------------------------------------------------------------


# -- storage ----------------------------------------------------------------------------------


_STORAGE = storage_errors("Analytics")


def _failed_index(exc: TableTransactionError) -> int | None:
    # The service prefixes the message with the index of the failed operation ("1:The specified
    # entity already exists."). The SDK's `index` falls back to 0 when there is none, which
    # would wrongly name the first operation, so the prefix is read here.
    head = str(exc.message or "").split(":", 1)[0]
    return int(head) if head.isdigit() else None


def _as_int(value: Any) -> int:
    # Edm.Int64 comes back as EntityProperty, a small Edm.Int32 as a plain int.
    if isinstance(value, EntityProperty):
        value = value.value
    return int(value) if value is not None else 0


@dataclass
class _Counter:
    """A counter row as read: its sums and ETag (None: the row does not exist yet)."""

    values: dict[str, int]
    etag: str | None


_Key = tuple[date, str, str | None]  # day, sender, tag: the facts that may share a row


@dataclass(frozen=True)
class _Group:
    day: date
    sender: str
    tag: str | None
    shard: int

    @property
    def partition(self) -> str:
        return self.day.isoformat()

    @property
    def row_key(self) -> str:
        return counter_row_key(self.sender, self.tag, self.shard)


class AnalyticsStore:
    """Counts facts exactly once into per-day counter rows and reads reports from them."""

    def __init__(self, table: TableClient, shards: int = 8) -> None:
        if not 1 <= shards <= 100:
            raise ValueError("shards must be between 1 and 100 (two digits in the RowKey)")
        self._table = table
        self._shards = shards
        self._kept: dict[_Group, _Counter] = {}
        self._kept_lock = threading.Lock()
        # Facts of concurrent callers for one day, sender and tag share a transaction.
        self._together: GroupCommit[_Key, Fact, int] = GroupCommit(self._write_together,
                                                                   limit=_FACTS_PER_TX)

    # -- writes -------------------------------------------------------------------------------

    def record(self, facts: Sequence[Fact]) -> int:
        """Count each fact exactly once, ever; returns how many were newly counted.

        Safe to call again with the same facts (a redelivery) and from parallel instances.
        Raises StorageUnavailable when storage fails or a counter row stays contended; a retry
        of the same call then counts exactly what is still missing.
        """
        groups: dict[_Key, list[Fact]] = {}
        seen: set[tuple[date, str]] = set()
        for fact in facts:
            key = (fact.day, ledger_row_key(fact.id))
            if key in seen:  # the same fact twice in one call counts once, like the ledger
                continue
            seen.add(key)
            groups.setdefault((fact.day, fact.sender, fact.tag), []).append(fact)
        return sum(run_all(lambda item: self._together.submit(*item), list(groups.items())))

    def _write_together(self, key: _Key, batches: list[list[Fact]]) -> list[int]:
        """The facts of callers that met in `_together`, counted into one counter row (the
        shard of the first fact: any shard will do, the ledger decides what is counted); how
        many of each caller's facts were newly counted."""
        owner: dict[str, int] = {}  # ledger key -> the first caller that brought the fact
        facts: list[Fact] = []
        for n, batch in enumerate(batches):
            for fact in batch:
                if owner.setdefault(ledger_row_key(fact.id), n) == n:  # no repeats in a batch
                    facts.append(fact)
        counted = [0] * len(batches)
        if facts:
            group = _Group(*key, shard=shard_of(facts[0].id, self._shards))
            for fact in self._record_group(group, facts):
                counted[owner[ledger_row_key(fact.id)]] += 1
        return counted

    def _record_group(self, group: _Group, facts: list[Fact]) -> list[Fact]:
        with self._kept_lock:
            counter = self._kept.pop(group, None)  # ours alone until it is put back
        counted: list[Fact] = []
        for start in range(0, len(facts), _FACTS_PER_TX):
            chunk = facts[start:start + _FACTS_PER_TX]
            new, counter = self._record_chunk(group, chunk, counter)
            counted += new
        if counter is not None and counter.etag is not None:
            with self._kept_lock:
                if len(self._kept) >= _KEPT_ROWS:
                    self._kept.pop(next(iter(self._kept)))
                self._kept[group] = counter
        return counted

    def _record_chunk(self, group: _Group, chunk: list[Fact], counter: _Counter | None
                      ) -> tuple[list[Fact], _Counter]:
        """One transaction: the chunk's ledger rows + the counter row, retried on conflicts."""
        pending = list(chunk)
        if counter is None:
            counter = self._read_counter(group)
        dropped = 0
        for attempt in range(_MAX_TRIES):
            if not pending:
                return [], counter
            new_values = dict(counter.values)
            for fact in pending:
                for name, value in fact.counts.items():
                    new_values[name] += value
            ops: list[Any] = [("create", {"PartitionKey": group.partition,
                                          "RowKey": ledger_row_key(f.id)}) for f in pending]
            entity = self._counter_entity(group, new_values)
            if counter.etag is None:
                ops.append(("create", entity))
            else:
                ops.append(("update", entity, {"mode": UpdateMode.REPLACE, "etag": counter.etag,
                                               "match_condition": MatchConditions.IfNotModified}))
            with _STORAGE:
                try:
                    results = self._table.submit_transaction(ops)
                except TableTransactionError as exc:
                    code = error_code(exc)
                    if code == "EntityAlreadyExists":
                        index = _failed_index(exc)
                        if index is None or index >= len(pending):
                            # Another writer inserted the counter row first (or, without an
                            # index, it may have): build on its sums.
                            counter = self._read_counter(group)
                            _backoff(attempt)
                        if index is None or index < len(pending):
                            # Some of these facts are counted already: a redelivery.
                            pending = self._uncounted(group, pending, index)
                        continue
                    if code in ("UpdateConditionNotSatisfied", "ResourceNotFound"):
                        # Another writer changed the counter row first: build on its sums.
                        counter = self._read_counter(group)
                        _backoff(attempt)
                        continue
                    raise
                except (ServiceRequestError, ServiceResponseError):
                    # The connection dropped: the transaction may or may not have been applied.
                    # Trying again is safe by design: a ledger row that exists fails the insert
                    # and its fact is dropped as counted; a changed counter fails its If-Match.
                    dropped += 1
                    if dropped > _CONNECTION_RETRIES:
                        raise
                    _backoff(attempt)
                    continue
            etag = results[-1].get("etag") if results else None
            # Without the new ETag the next chunk must read the row again.
            return pending, (_Counter(new_values, etag) if etag
                                  else self._read_counter(group))
        raise StorageUnavailable(f"Analytics row {group.partition} {group.row_key} kept "
                                 "changing; giving up for now")

    def _counter_entity(self, group: _Group, values: Mapping[str, int]) -> dict[str, Any]:
        # Int64 explicitly: the SDK sends a plain int as Edm.Int32 and refuses one >= 2**31,
        # which a busy sender's segment total reaches in time.
        entity: dict[str, Any] = {"PartitionKey": group.partition, "RowKey": group.row_key,
                                  "Sender": group.sender}
        if group.tag is not None:
            entity["Tag"] = group.tag
        entity.update({name: EntityProperty(values[name], EdmType.INT64) for name in COUNTERS})
        return entity

    @_STORAGE
    def _read_counter(self, group: _Group) -> _Counter:
        try:
            e = self._table.get_entity(group.partition, group.row_key)
        except ResourceNotFoundError as exc:
            if error_code(exc) == "TableNotFound":
                raise  # no table: nothing can be counted, which is a storage failure
            return _Counter({name: 0 for name in COUNTERS}, None)
        return _Counter({name: _as_int(e.get(name)) for name in COUNTERS},
                        e.metadata.get("etag"))

    def _uncounted(self, group: _Group, pending: list[Fact], index: int | None) -> list[Fact]:
        """The facts of a transaction that failed with EntityAlreadyExists not counted yet.

        The service names the failed operation: that ledger row exists (ledger rows are never
        deleted), the rows before it did not exist a moment ago (if one appeared since, the next
        attempt says so), and the rows after it are checked. Without an index, all are checked.
        """
        if index is None:
            known = self._counted(group, pending)
        else:
            rest = pending[index + 1:]
            known = {ledger_row_key(pending[index].id)}
            known |= self._counted(group, rest) if rest else set()
        return [f for f in pending if ledger_row_key(f.id) not in known]

    def _counted(self, group: _Group, facts: Iterable[Fact]) -> set[str]:
        """The ledger RowKeys among these facts' that exist (point reads, in parallel).

        Point reads, not a query: ledger rows of one counter row are scattered over the whole
        day partition, and an `or` of RowKeys is a partition scan in Azure Tables.
        """
        keys = [ledger_row_key(f.id) for f in facts]

        @_STORAGE
        def exists(row_key: str) -> bool:
            try:
                self._table.get_entity(group.partition, row_key, select=["RowKey"])
                return True
            except ResourceNotFoundError as exc:
                if error_code(exc) == "TableNotFound":
                    raise
                return False

        found = run_all(exists, keys)
        return {k for k, hit in zip(keys, found, strict=True) if hit}

    # -- reads --------------------------------------------------------------------------------

    def query(self, start: date, end: date, sender: str | None = None,
              tag: str | None = None) -> AnalyticsReport:
        """Counters and rates per day from `start` to `end` (both included), with totals.

        `sender` narrows each day's query to that sender's rows; `tag` keeps the rows of that
        tag. At most 366 days; RequestInvalid names `from` or `to` otherwise.
        """
        check_range(start, end)
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        per_day = run_all(lambda d: self._day_counts(d, sender, tag), days)
        totals: dict[str, int] = {name: 0 for name in COUNTERS}
        rows: list[dict[str, Any]] = []
        for day, counts in zip(days, per_day, strict=True):
            for name in COUNTERS:
                totals[name] += counts[name]
            rows.append({"date": day.isoformat(), **counts, **rates(counts)})
        return AnalyticsReport(totals={**totals, **rates(totals)}, days=rows)

    def _day_counts(self, day: date, sender: str | None, tag: str | None) -> dict[str, int]:
        prefix = f"c|{key_part(sender)}|" if sender is not None else "c|"
        # `}` follows `|` in code-point order, so this range is exactly the prefix's rows.
        upper = prefix[:-1] + "}"
        wanted_tag = tag_part(tag) if tag is not None else None
        counts = {name: 0 for name in COUNTERS}
        # No table yet (ResourceNotFoundError): nothing was ever recorded, so every count is 0.
        with _STORAGE, contextlib.suppress(ResourceNotFoundError):
            entities = self._table.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": day.isoformat(), "lo": prefix, "hi": upper},
                select=["RowKey", *COUNTERS])
            for e in entities:
                parsed = parse_counter_row_key(str(e["RowKey"]))
                if parsed is None or (wanted_tag is not None and parsed[1] != wanted_tag):
                    continue
                for name in COUNTERS:
                    counts[name] += _as_int(e.get(name))
        return counts


def _backoff(attempt: int) -> None:
    # Writers that collided on a counter row would collide again if they retried in lockstep;
    # a short random pause (at most 50 ms) spreads them out.
    if attempt:
        time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** attempt)))
