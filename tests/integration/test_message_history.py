"""A message's history on its own row, and what does not fit there, against Azurite.

A status change of one message is one single-entity update: its history entry rides on the
message row (`History`). Entries past the row's limit, and histories written before entries
moved onto the row, are rows of their own; `GET /api/messages/{id}` reads both, in time order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sms_core.bootstrap import Services
from sms_core.models.messages import MessageStatus
from sms_core.models.records import Change, split_message_id
from sms_core.use_cases.messages import get_message
from tests.integration.conftest import new_number, queue_every_send
from tests.integration.flows import send


def event_rows(services: Services, batch: str) -> list[str]:
    return [e["RowKey"] for e in services.messages._table.query_entities(
        "PartitionKey eq @pk and Kind eq 'event'", parameters={"pk": batch})]


def test_a_long_history_overflows_into_rows_and_reads_back_whole_and_in_order(
        services: Services) -> None:
    queue_every_send(services)
    (entry,) = send(services, to=new_number(), message="Hello").messages
    batch, index = split_message_id(entry.id)
    details = [f"note {n}: " + "x" * 3000 for n in range(15)]  # about 45,000 characters
    for detail in details:
        services.messages.apply(batch, [index], lambda r, d=detail: Change(note=True, detail=d))
    services.messages.apply(batch, [index], lambda r: Change(
        status=MessageStatus.SENT, detail="accepted by ACS", fields={"provider_message_id": "m1"}))

    history = get_message(services.messages, entry.id).history
    assert [h.detail for h in history] == [None, *details, "accepted by ACS"]
    assert [h.status for h in history][-1] == MessageStatus.SENT
    rows = event_rows(services, batch)
    assert rows and len(rows) < 16  # the first entries on the row, the rest as rows
    assert get_message(services.messages, entry.id).status == MessageStatus.SENT


def test_history_rows_written_before_the_row_kept_its_history_are_still_read(
        services: Services) -> None:
    queue_every_send(services)
    (entry,) = send(services, to=new_number(), message="Hello").messages
    batch, index = split_message_id(entry.id)
    sent_at = datetime.now(UTC) + timedelta(seconds=1)
    # As the previous version stored a `sent`: a row of its own, seq 1.
    services.messages._table.create_entity({
        "PartitionKey": batch, "RowKey": f"{index:05d}.00001", "Kind": "event",
        "Status": "sent", "At": sent_at, "Detail": "accepted by ACS"})
    services.messages._table.update_entity({
        "PartitionKey": batch, "RowKey": f"{index:05d}", "Status": "sent", "Seq": 1},
        mode="merge")
    later = sent_at + timedelta(seconds=1)
    services.messages.apply(batch, [index], lambda r: Change(
        status=MessageStatus.DELIVERED, detail="Delivered", noted_at=later))

    history = get_message(services.messages, entry.id).history
    assert [(h.status, h.detail) for h in history] == [
        (MessageStatus.QUEUED, None), (MessageStatus.SENT, "accepted by ACS"),
        (MessageStatus.DELIVERED, "Delivered")]
    assert event_rows(services, batch) == [f"{index:05d}.00001"]  # the new entry is on the row


def test_one_message_is_read_by_its_key_whole_and_never_a_history_or_outbox_row(
        services: Services) -> None:
    """A single-recipient job or report reads its message with one point read: the message as
    the batch query would give it, nothing for an index with no message."""
    queue_every_send(services)
    to = new_number()
    entries = send(services, to=[to, new_number()], message="Hello").messages
    batch, index = split_message_id(entries[0].id)
    for n in range(12):  # past the row's limit: the last entries are rows of their own
        services.messages.apply(batch, [index], lambda r, n=n: Change(
            note=True, detail=f"{n}: " + "x" * 3000))
    assert event_rows(services, batch)

    (one,) = services.messages.load(batch, [index])
    assert one == next(r for r in services.messages.load(batch) if r.index == index)
    assert one.to == to and one.status == MessageStatus.QUEUED
    assert services.messages.load(batch, [7]) == []
    assert services.messages.load("20260101T000000Z-none", [0]) == []
    found = services.messages.find_recipient(batch, index, index, to)
    assert found is not None and found.id == entries[0].id
    assert services.messages.find_recipient(batch, index, index, new_number()) is None
