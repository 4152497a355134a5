"""The log line format (`sms_core.logs`): masking, the JSON lines, the fields, the setting."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest

from sms_core.errors import SettingsError
from sms_core.logs import (
    JsonFormatter,
    concern,
    configure_logging,
    correlation_of,
    extra_fields,
    fields,
    mask_number,
    request_scope,
)
from sms_core.settings import load_settings


@pytest.mark.parametrize(("number", "shown"), [
    ("+14255550123", "***0123"),
    ("14255550123", "***0123"),
    ("+44 7700 900123", "***0123"),
    ("+3161234", "***1234"),
    ("12345", "***"),  # a short code, or garbage: too few digits to show any
    ("", "***"),
    (None, "***"),
])
def test_a_phone_number_shows_only_its_last_4_digits(number: str | None, shown: str) -> None:
    assert mask_number(number) == shown


def _record(msg: str = "dispatch %s: sent %d", args: tuple[object, ...] = ("b1", 2),
            extra: dict[str, object] | None = None,
            exc_info: object = None) -> logging.LogRecord:
    logger = logging.getLogger("sms_core.use_cases.dispatch")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, msg, args,
                             exc_info, extra=extra)  # type: ignore[arg-type]


def test_fields_put_the_correlation_id_first_and_drop_what_is_unknown() -> None:
    assert list(fields("b1", batch="b1", sent=2, error=None)) == ["correlationId", "batch", "sent"]
    assert fields(None, sent=0) == {"sent": 0}


def test_a_json_line_carries_the_message_and_every_field() -> None:
    record = _record(extra=fields("b1", batch="b1", sent=2, counts={"sent": 2}))
    line = JsonFormatter().format(record)
    assert "\n" not in line
    body = json.loads(line)
    assert body["message"] == "dispatch b1: sent 2"
    assert (body["level"], body["logger"]) == ("INFO", "sms_core.use_cases.dispatch")
    assert body["time"].endswith("Z") and "T" in body["time"]
    assert (body["correlationId"], body["batch"], body["sent"], body["counts"]) == (
        "b1", "b1", 2, {"sent": 2})
    assert extra_fields(record) == {"correlationId": "b1", "batch": "b1", "sent": 2,
                                    "counts": {"sent": 2}}


def test_a_json_line_holds_the_traceback_as_one_string() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("unhandled error in %s %s", ("POST", "/api/messages"),
                         exc_info=sys.exc_info())
    body = json.loads(JsonFormatter().format(record))
    assert body["message"] == "unhandled error in POST /api/messages"
    assert body["exception"].startswith("Traceback") and "RuntimeError: boom" in body["exception"]


def test_a_value_json_cannot_hold_is_written_as_text() -> None:
    body = json.loads(JsonFormatter().format(_record(extra={"at": object()})))
    assert body["at"].startswith("<object object")


@pytest.fixture
def root_handler() -> Iterator[logging.Handler]:
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


def test_json_formats_every_root_handler_and_text_leaves_them(
        root_handler: logging.Handler) -> None:
    before = root_handler.formatter
    configure_logging("text")
    assert root_handler.formatter is before
    configure_logging("json")
    assert isinstance(root_handler.formatter, JsonFormatter)


def test_sms_log_format_is_text_or_json_in_any_case() -> None:
    assert load_settings().log_format == "text"
    assert load_settings(SMS_LOG_FORMAT=" JSON ").log_format == "json"
    with pytest.raises(SettingsError, match="SMS_LOG_FORMAT"):
        load_settings(SMS_LOG_FORMAT="xml")


def test_a_request_collects_what_it_concerns_and_its_correlation_id() -> None:
    concern(batch="outside")  # no request: nothing to note it in
    with request_scope() as concerns:
        concern(inboundId="Incoming_1")
        concern(batch="reply-batch", messageId=None)
        concern(batch="second")  # the first value stays
    assert concerns == {"inboundId": "Incoming_1", "batch": "reply-batch"}
    # The first id that correlates: an inbound STOP is about the inbound message first.
    assert correlation_of(concerns) == "Incoming_1"
    assert correlation_of({"messageId": "b-00000", "batch": "b"}) == "b"
    assert correlation_of({"messageId": "b-00000"}) is None


def test_chatty_libraries_log_warnings_only_unless_the_host_chose() -> None:
    httpx_log, azure_log = logging.getLogger("httpx"), logging.getLogger("azure")
    before = httpx_log.level, azure_log.level
    try:
        httpx_log.setLevel(logging.NOTSET)
        azure_log.setLevel(logging.DEBUG)  # the host asked for it
        configure_logging("text")
        assert (httpx_log.level, azure_log.level) == (logging.WARNING, logging.DEBUG)
    finally:
        httpx_log.setLevel(before[0])
        azure_log.setLevel(before[1])
