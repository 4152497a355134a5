"""Pure domain rules: payload decoding as ACS really sends it, the status lifecycle, settings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sms_core.adapters.event_grid import ci_get, decode_payload, delivery_reports, inbound_sms
from sms_core.errors import RequestInvalid, SettingsError
from sms_core.models.messages import MessageStatus as S
from sms_core.models.messages import ReportRoute, can_transition, report_route, report_tag
from sms_core.settings import load_settings, parse_acs_connection_string
from sms_core.use_cases.delivery_reports import delivery_code

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "eventgrid"
SAMPLES = sorted(FIXTURES.glob("*delivery-report*.json"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_delivery_report_samples_decode_in_any_casing_and_encoding(path: Path,
                                                                  encoding: str) -> None:
    text = path.read_text()
    body = text if encoding == "raw" else base64.b64encode(text.encode()).decode()
    (event,) = decode_payload(body)
    assert event.type == "Microsoft.Communication.SMSDeliveryReportReceived"
    assert ci_get(event.data, "messageId").startswith("Outgoing_")
    assert ci_get(event.data, "deliveryStatus") == "Delivered"
    assert ci_get(event.data, "deliveryAttempts")[0]


def test_array_of_events_and_single_object() -> None:
    one = json.loads((FIXTURES / SAMPLES[0].name).read_text())
    many = one * 3 if isinstance(one, list) else [one] * 3
    assert len(decode_payload(json.dumps(many))) == 3
    assert len(decode_payload(json.dumps(many[0]))) == 1


@pytest.mark.parametrize("body", ["{not json", "bm90IGpzb24=", "[1]", '{"data": {}}'])
def test_malformed_payloads_are_invalid_not_crashes(body: str) -> None:
    with pytest.raises(RequestInvalid):
        decode_payload(body)


@pytest.mark.parametrize(("details", "code"), [
    ("4006: The Destination/To number isn't reachable.", 4006), ("2000: No Error", 2000),
    ("No error.", None), (None, None), ("Sender blocked for given recipient.", None)])
def test_delivery_code(details: str | None, code: int | None) -> None:
    assert delivery_code(details) == code


@pytest.mark.parametrize(("current", "new", "allowed"), [
    (S.QUEUED, S.SENT, True), (S.SCHEDULED, S.SENT, True), (S.SENT, S.DELIVERED, True),
    (S.QUEUED, S.DELIVERED, True),  # a report may overtake the send result
    (S.SENT, S.FAILED, True), (S.QUEUED, S.BLOCKED, True),
    (S.DELIVERED, S.FAILED, False), (S.FAILED, S.DELIVERED, False),
    (S.DELIVERED, S.SENT, False), (S.SENT, S.QUEUED, False), (S.SENT, S.SENT, False),
    (S.BLOCKED, S.SENT, False), (S.EXPIRED, S.DELIVERED, False),
])
def test_status_never_regresses(current: S, new: S, allowed: bool) -> None:
    assert can_transition(current, new) is allowed


def test_settings_defaults_and_validation() -> None:
    s = load_settings(SMS_DEFAULT_FROM="+1 (800) 555-0100", SMS_SENDER_RATE_PER_MINUTE="")
    assert s.default_from == "+18005550100"
    assert s.sender_rate_per_minute == 200 and s.optout_scope == "sender" and s.auto_reply


@pytest.mark.parametrize(("name", "value"), [
    ("SMS_SENDER_RATE_PER_MINUTE", "fast"), ("SMS_SENDER_RATE_PER_MINUTE", "0"),
    ("SMS_OPTOUT_SCOPE", "everyone"), ("SMS_AUTO_REPLY", "perhaps"),
    ("SMS_DEFAULT_FROM", "not-a-number!"),
])
def test_invalid_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(**{name: value})


def test_acs_connection_string_keeps_its_scheme() -> None:
    assert parse_acs_connection_string("endpoint=http://127.0.0.1:7072/;accesskey=a2V5") == (
        "http://127.0.0.1:7072", "a2V5")
    assert parse_acs_connection_string("Endpoint=contoso.communication.azure.com;AccessKey=k") \
        == ("https://contoso.communication.azure.com", "k")
    with pytest.raises(SettingsError, match="ACS_CONNECTION_STRING: must look like"):
        load_settings(ACS_CONNECTION_STRING="endpoint=https://x/")


def test_identity_based_storage_settings_build_service_uris() -> None:
    from sms_core.adapters.storage import StorageClients

    s = load_settings(AzureWebJobsStorage__accountName="smsstore",
                      AzureWebJobsStorage__credential="managedidentity",
                      AzureWebJobsStorage__clientId="00000000-0000-0000-0000-000000000001")
    clients = StorageClients(s)
    assert clients.table_service().url.startswith("https://smsstore.table.core.windows.net")
    assert clients.queue_service().url.startswith("https://smsstore.queue.core.windows.net")


def test_missing_storage_setting_is_named() -> None:
    from sms_core.adapters.storage import StorageClients

    with pytest.raises(SettingsError, match="AzureWebJobsStorage"):
        StorageClients(load_settings()).table_service()


def test_queue_text_reads_base64_or_raw_json() -> None:
    from sms_core.adapters.event_grid import queue_text

    job = '{"v":1,"batch":"b","indices":[0]}'
    assert queue_text(job) == job
    assert queue_text(base64.b64encode(job.encode())) == job
    assert queue_text(b"not json, not base64!") == "not json, not base64!"


@pytest.mark.parametrize(("value", "retry"), [(2, 2), (0, 0), (-3, 0), ("2", 0), (True, 0),
                                               (None, 0), (1.5, 0)])
def test_only_a_positive_whole_smsretry_counts_as_a_put_back(value: object, retry: int) -> None:
    from sms_core.adapters.event_grid import delivery_reports

    event = {"id": "e1", "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
             "data": {"messageId": "Outgoing_1", "deliveryStatus": "Delivered"},
             "smsRetry": value}
    (report,) = delivery_reports(json.dumps(event))
    assert report.retry == retry


def test_the_report_tag_names_the_batch_and_index_range_and_keeps_the_app_tag() -> None:
    tag = report_tag("20261201120000abcdef012345", [7, 3, 99], "spring|sale")
    assert tag == "sms1|20261201120000abcdef012345|3-99|spring|sale"
    assert report_route(tag) == ReportRoute("20261201120000abcdef012345", 3, 99)
    assert report_route(report_tag("b1", [0], None)) == ReportRoute("b1", 0, 0)


@pytest.mark.parametrize("tag", [None, "", "spring", "sms1", "sms1||0-1", "sms1|b|1",
                                 "sms1|b|x-2", "sms1|b|5-2", "sms2|b|0-1", "Optional tag"])
def test_a_tag_we_did_not_make_routes_nowhere(tag: str | None) -> None:
    assert report_route(tag) is None


def test_the_published_sample_decodes_its_tag_and_recipient() -> None:
    body = (FIXTURES / "eventgrid-schema.sms-delivery-report-received.docs-2025.json").read_text()
    (report,) = delivery_reports(body)
    assert report.tag == "Optional customer-tag set in the original message"
    assert report.to == "+15555555555"
    assert report_route(report.tag) is None  # not ours: found through the ACS-id index


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00Z", "0496-09-26T00:02:24Z",
                                   "1600-12-31T23:59:59Z"])
def test_an_inbound_timestamp_storage_cannot_keep_gives_way_to_the_event_time(
        stamp: str) -> None:
    (event,) = decode_payload(json.dumps({
        "id": "e1", "eventType": "Microsoft.Communication.SMSReceived",
        "eventTime": "2026-01-01T00:00:05Z",
        "data": {"messageId": "Incoming_1", "from": "+14255550101", "to": "+18005550100",
                 "message": "hi", "receivedTimestamp": stamp}}))
    assert inbound_sms(event).received_at == datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
