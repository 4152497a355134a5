"""Delivery reports against real parts: carrier codes, unknown statuses, duplicates, strangers."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

from localdev.acs_emulator import AcsEmulator, Outcome
from sms_core.bootstrap import Services
from sms_core.models.messages import MessageStatus, report_route
from sms_core.models.records import Change
from sms_core.use_cases.messages import get_message
from tests.deadlines import deadline as scaled_deadline
from tests.integration.conftest import SENDER, new_number
from tests.integration.flows import apply_reports, handle_delivery_reports, run_all_jobs, send

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventgrid"


def report_for(provider_id: str, status: str, details: str, pascal: bool = False, *,
               to: str | None = None, tag: str | None = None) -> str:
    """A delivery report shaped like the docs sample (its `to` and `Tag` unless given)."""
    name = ("eventgrid-schema.sms-delivery-report-received.docs-2022-pascalcase.json" if pascal
            else "eventgrid-schema.sms-delivery-report-received.docs-2025.json")
    (event,) = json.loads((FIXTURES / name).read_text())
    data = event["data"]
    keys = {k.lower(): k for k in data}
    data[keys["messageid"]] = provider_id
    data[keys["deliverystatus"]] = status
    data[keys["deliverystatusdetails"]] = details
    if to is not None:
        data[keys["to"]] = to
    if tag is not None:
        data[keys.get("tag", "Tag")] = tag
    event["id"] = f"dlr-{uuid.uuid4().hex}"
    return json.dumps(event)


def acs_report(emulator: AcsEmulator, msg: Any, status: str, details: str,
               pascal: bool = False) -> str:
    """The report ACS sends for one of our sent messages: its recipient and the tag its send
    call carried, as the handset's copy in the emulator shows them."""
    (copy,) = [m for m in emulator.state.inbox(msg.to)
               if m["messageId"] == msg.provider_message_id]
    return report_for(msg.provider_message_id, status, details, pascal, to=msg.to,
                      tag=copy["tag"])


def sent_message(services: Services, **body: Any) -> Any:
    (entry,) = send(services, **body).messages
    run_all_jobs(services)
    msg = get_message(services.messages, entry.id)
    assert msg.status == MessageStatus.SENT
    return msg


def test_carrier_opt_out_4007_records_an_opt_out(
        services: Services, emulator: AcsEmulator, azurite_connection_string: str,
        dlr_queue_name: str) -> None:
    person = new_number()
    emulator.state.set_outcome(person, Outcome.from_json({
        "deliveryStatus": "Failed",
        "deliveryStatusDetails": "4007: The Destination/To number has opted out of receiving "
                                 "messages from you."}))
    (entry,) = send(services, to=person, message="Hello?").messages
    run_all_jobs(services)
    apply_reports(services, azurite_connection_string, dlr_queue_name, 1)
    assert get_message(services.messages, entry.id).status == MessageStatus.FAILED
    assert services.optouts.is_opted_out(SENDER, person)
    (change,) = services.optouts.history(SENDER, person)
    assert change.source == "carrier" and "4007" in (change.reason or "")


def test_unknown_status_is_kept_as_detail_and_duplicates_are_no_ops(
        services: Services, emulator: AcsEmulator) -> None:
    msg = sent_message(services, to=new_number(), message="Status?")
    odd = acs_report(emulator, msg, "Sending", "Handed to the carrier")
    handle_delivery_reports(services, odd)
    handle_delivery_reports(services, odd)  # redelivered
    after = get_message(services.messages, msg.id)
    assert after.status == MessageStatus.SENT
    notes = [h for h in after.history if h.detail and "Sending" in h.detail]
    assert len(notes) == 1 and notes[0].status == MessageStatus.SENT

    delivered = acs_report(emulator, msg, "Delivered", "No error.", pascal=True)
    assert handle_delivery_reports(services, delivered) == 1
    handle_delivery_reports(services, delivered)
    late_failure = acs_report(emulator, msg, "Failed", "9999: unknown")
    handle_delivery_reports(services, late_failure)  # terminal states never regress
    final = get_message(services.messages, msg.id)
    assert final.status == MessageStatus.DELIVERED
    assert [h.status for h in final.history].count(MessageStatus.DELIVERED) == 1
    attempts = final.history[-1].data["deliveryAttempts"]  # type: ignore[index]
    assert attempts[0]["SegmentsSucceeded"] == 1


def test_report_for_an_unknown_message_is_kept_not_dropped(services: Services) -> None:
    stranger = f"Outgoing_{uuid.uuid4().hex}"
    assert handle_delivery_reports(services, report_for(stranger, "Delivered", "No error.")) == 0
    table = services.provider_ids._unmatched
    kept = list(table.query_entities("PartitionKey eq @pk", parameters={"pk": stranger}))
    assert len(kept) == 1 and json.loads(kept[0]["Event"])["data"]["messageId"] == stranger


def test_sent_without_report_expires_after_the_timeout(services: Services,
                                                       emulator: AcsEmulator) -> None:
    from datetime import UTC, datetime, timedelta

    from sms_core.use_cases.delivery_reports import expire_overdue

    quiet = new_number()
    emulator.state.set_outcome(quiet, Outcome.from_json({"deliveryStatus": "Failed"}))
    msg = sent_message(services, to=quiet, message="Anyone?")  # its report is never applied
    # Sent promptly: found by its batch's time, no `AwaitingReports` row written or deleted.
    assert not list(services.awaiting_reports._table.query_entities(
        "RowKey eq @id", parameters={"id": msg.id}))
    reported = sent_message(services, to=new_number(), message="Fine")
    handle_delivery_reports(services, acs_report(emulator, reported, "Delivered",
                                                 "No error."))
    expire_overdue(services, now=datetime.now(UTC) + timedelta(hours=71))
    assert get_message(services.messages, msg.id).status == MessageStatus.SENT
    later = datetime.now(UTC) + timedelta(hours=74)
    result = expire_overdue(services, now=later)
    expired = get_message(services.messages, msg.id)
    assert expired.status == MessageStatus.EXPIRED and expired.error
    assert expired.history[-1].detail == "no delivery report"
    assert get_message(services.messages, reported.id).status == MessageStatus.DELIVERED
    assert result.expired >= 1
    assert expire_overdue(services, now=later).buckets == 0  # the cursor moved on


def test_report_that_overtook_its_message_is_applied_by_reconcile(
        services: Services, emulator: AcsEmulator) -> None:
    from sms_core.use_cases.delivery_reports import reconcile_reports

    msg = sent_message(services, to=new_number(), message="Quick")
    # A message sent before tags carried the route: its report (the sample's own tag) is found
    # through the ACS-id index, and it arrived before the provider id was indexed.
    handle_delivery_reports(services, report_for(msg.provider_message_id, "Delivered", "ok"))
    assert get_message(services.messages, msg.id).status == MessageStatus.SENT
    services.provider_ids.record([(msg.provider_message_id, msg.id)])
    result = reconcile_reports(services)
    assert result.applied >= 1
    assert get_message(services.messages, msg.id).status == MessageStatus.DELIVERED
    kept = list(services.provider_ids._unmatched.query_entities(
        "PartitionKey eq @pk", parameters={"pk": msg.provider_message_id}))
    assert kept == []


def test_report_that_overtook_its_message_is_applied_from_its_queue_within_seconds(
        services: Services, emulator: AcsEmulator) -> None:
    import time

    msg = sent_message(services, to=new_number(), message="Quick again")
    # An unrouted report (see above), read before the ACS id was indexed.
    handle_delivery_reports(services, report_for(msg.provider_message_id, "Delivered", "ok"))
    assert get_message(services.messages, msg.id).status == MessageStatus.SENT
    services.provider_ids.record([(msg.provider_message_id, msg.id)])  # the write lands
    retries = services.report_retries._queue
    deadline, applied = scaled_deadline(30), 0
    while not applied and time.monotonic() < deadline:
        for queued in retries.receive_messages(messages_per_page=32, visibility_timeout=30):
            applied += handle_delivery_reports(services, queued.content)
            retries.delete_message(queued)
        time.sleep(0.2)
    assert applied == 1  # put back once, after a second, and applied then
    done = get_message(services.messages, msg.id)
    assert done.status == MessageStatus.DELIVERED
    assert [h.status for h in done.history].count(MessageStatus.DELIVERED) == 1
    kept = list(services.provider_ids._unmatched.query_entities(
        "PartitionKey eq @pk", parameters={"pk": msg.provider_message_id}))
    assert kept == []  # nothing left for the reconcile timer


def test_a_report_for_a_stranger_is_put_back_a_few_times_then_left_to_reconcile(
        services: Services) -> None:
    from sms_core.models.events import RETRY_MEMBER
    from sms_core.use_cases.delivery_reports import REPORT_RETRY_DELAYS_S

    retries = services.report_retries._queue

    def waiting() -> int:  # delayed messages included
        return int(retries.get_queue_properties().approximate_message_count)

    stranger = f"Outgoing_{uuid.uuid4().hex}"
    first = report_for(stranger, "Delivered", "No error.")
    assert handle_delivery_reports(services, first) == 0
    assert waiting() == 1  # put back, attempt 1
    last = json.loads(first)
    last[RETRY_MEMBER] = len(REPORT_RETRY_DELAYS_S)
    assert handle_delivery_reports(services, json.dumps(last)) == 0
    assert waiting() == 1  # the last attempt is not put back again
    kept = list(services.provider_ids._unmatched.query_entities(
        "PartitionKey eq @pk", parameters={"pk": stranger}))
    assert len(kept) == 1  # one row for the reconcile timer, however often it was tried


def test_every_status_change_is_an_sms_status_event(services: Services,
                                                    emulator: AcsEmulator) -> None:
    from sms_core.adapters.app_events import AppEventQueue

    name = f"events-{uuid.uuid4().hex[:12]}"
    services.storage.queue_service().create_queue(name)
    queue = services.storage.queue(name)
    services.__dict__["app_events"] = AppEventQueue(queue, None)
    msg = sent_message(services, to=new_number(), message="Track me", tag="t-42")
    delivered = acs_report(emulator, msg, "Delivered", "No error.")
    handle_delivery_reports(services, delivered)
    handle_delivery_reports(services, delivered)  # redelivered: same event id again
    events = [json.loads(m.content) for m in queue.peek_messages(max_messages=32)]
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("sms.status", "sent"), ("sms.status", "delivered"), ("sms.status", "delivered")]
    assert events[1]["id"] == events[2]["id"] == f"status-{msg.id}-delivered"
    assert events[0]["data"]["tag"] == "t-42"
    assert events[0]["data"]["providerMessageId"] == msg.provider_message_id


def test_verbatim_samples_apply_in_both_casings_and_queue_encodings(
        services: Services, emulator: AcsEmulator) -> None:
    import base64

    samples = ["eventgrid-schema.sms-delivery-report-received.docs-2025.json",
               "eventgrid-schema.sms-delivery-report-received.docs-2022-pascalcase.json",
               "cloudevents-schema.sms-delivery-report-received.spec-example.json"]
    for name, encoding, routed in itertools.product(samples, ("raw", "base64"), (True, False)):
        msg = sent_message(services, to=new_number(), message=f"{name} {encoding} {routed}")
        sample = json.loads((FIXTURES / name).read_text().replace(
            "Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
            msg.provider_message_id))
        event = sample[0] if isinstance(sample, list) else sample
        keys = {k.lower(): k for k in event["data"]}
        if routed:  # as ACS echoes our send call: the recipient and the call's tag
            routed_report = json.loads(acs_report(emulator, msg, "Delivered", "No error."))
            event["data"][keys["to"]] = msg.to
            event["data"][keys.get("tag", "Tag")] = routed_report["data"]["Tag"]
        else:  # a message sent before tags carried the route: found by its indexed ACS id
            services.provider_ids.record([(msg.provider_message_id, msg.id)])
        text = json.dumps(sample)
        body = text if encoding == "raw" else base64.b64encode(text.encode()).decode()
        assert handle_delivery_reports(services, body) == 1, (name, encoding, routed)
        final = get_message(services.messages, msg.id)
        assert final.status == MessageStatus.DELIVERED, (name, encoding, routed)
        assert final.history[-1].detail == "delivery report: Delivered (No error.)"


def test_a_report_that_overtook_the_send_leaves_sent_in_the_history_where_it_happened(
        services: Services, emulator: AcsEmulator, monkeypatch: Any) -> None:
    """The report is applied between ACS's answer and the dispatch's write: the message stays
    delivered, and its history (read back from Table storage) still shows sent before it."""
    real_send = services.gateway.send

    def report_first(*args: Any, **kwargs: Any) -> Any:
        outcomes = real_send(*args, **kwargs)
        route = report_route(kwargs["tag"])  # found by its tag's route, as a report is
        assert route is not None
        services.messages.apply(route.batch, list(range(route.first, route.last + 1)),
                                lambda r: Change(status=MessageStatus.DELIVERED,
                                                 detail="delivery report: Delivered"))
        return outcomes

    monkeypatch.setattr(services.gateway, "send", report_first)
    (entry,) = send(services, to=new_number(), message="Raced").messages
    run_all_jobs(services)
    done = get_message(services.messages, entry.id)
    assert done.status == MessageStatus.DELIVERED and done.provider_message_id
    assert [h.status for h in done.history] == [MessageStatus.QUEUED, MessageStatus.SENT,
                                               MessageStatus.DELIVERED]
    assert done.sent_at is not None and done.history[1].at == done.sent_at
