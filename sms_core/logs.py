"""The app's log lines: the fields they carry, the JSON line format, PII masking, and the ids a
request concerns.

Every line that tells what happened to a request or a message is one stdlib `logging` call
whose message reads on its own (ids included, no phone number but the last 4 digits of a
handset) and whose `extra` fields carry the same facts for machines, `correlationId` first:

- the correlation id is the **batch id**: the send request's batch, or a campaign run's batch
  (`<campaign id>r<run>`). It is in every dispatch job and in the tag ACS echoes with every
  delivery report (`models.messages.report_tag`), so the accepting request, its dispatch and
  its delivery reports carry the same one without storing anything more. A line about a
  campaign as a whole carries the campaign id, which starts each of its runs' batches; an
  inbound message's lines carry its ACS message id.
- `SMS_LOG_FORMAT=json` makes each line one JSON object (`JsonFormatter`): the message plus
  those fields. The Python worker forwards only the formatted message to the Functions host
  (its gRPC log record has no field for `extra`), so in Application Insights the JSON arrives as
  `traces.message` and `parse_json(message)` reads the fields; with the worker's OpenTelemetry
  integration (`PYTHON_ENABLE_OPENTELEMETRY=true` and azure-monitor-opentelemetry) the same
  `extra` fields also become `customDimensions`.

Nothing here imports `azure.functions`: the HTTP edge (`sms_http`) opens the request scope.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal

CORRELATION_ID = "correlationId"
LogFormat = Literal["text", "json"]

# Every attribute a LogRecord has of its own: the rest of a record's attributes are `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime",
                                                                   "taskName"}
_DIGITS = re.compile(r"\d")


def mask_number(number: str | None) -> str:
    """A phone number as a log may show it: its last 4 digits (`***0123`); personal data.

    Anything shorter than 7 digits (short codes, garbage) keeps no digit at all: too few
    digits left hidden would identify it.
    """
    digits = _DIGITS.findall(number or "")
    if len(digits) < 7:
        return "***"
    return "***" + "".join(digits[-4:])


def fields(correlation_id: str | None = None, **values: object) -> dict[str, object]:
    """The `extra` of a log line: `correlationId` first, then the other fields (None dropped).

    Names must not be LogRecord attributes (`message`, `name`, `args`, ...): logging refuses
    those.
    """
    out: dict[str, object] = {}
    if correlation_id:
        out[CORRELATION_ID] = correlation_id
    out.update((k, v) for k, v in values.items() if v is not None)
    return out


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a record was logged with (`extra=`), in the order they were given."""
    return {k: v for k, v in vars(record).items()
            if k not in _RECORD_ATTRIBUTES and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ms), level, logger, message, the `extra` fields, and
    the traceback as one string when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str, separators=(",", ":"))


# Libraries that log every HTTP call at INFO: the Azure SDK (request and response headers) and
# httpx (the app webhook's URL, which may carry a token). With the worker's root logger at INFO
# they would be most of what reaches Application Insights.
QUIET_LIBRARIES = ("azure", "httpx")


def configure_logging(log_format: LogFormat) -> None:
    """Set up the app's logging as it loads: SMS_LOG_FORMAT, and chatty libraries at WARNING
    (unless the host already chose a level for them).

    `json`: every handler of the root logger formats with `JsonFormatter`, including the
    Python worker's own (which sends the formatted line to the host), or a stderr handler when
    there is none. `text`: the handlers are left as the host configured them; the messages read
    on their own.
    """
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(logging.WARNING)
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        handler.setFormatter(JsonFormatter())


# -- what the current HTTP request concerns ----------------------------------------------------

_concerns: ContextVar[dict[str, str] | None] = ContextVar("sms_request_concerns", default=None)


@contextmanager
def request_scope() -> Iterator[dict[str, str]]:
    """Collect, for one HTTP request, the ids its use case says it concerns (`concern`)."""
    concerns: dict[str, str] = {}
    token = _concerns.set(concerns)
    try:
        yield concerns
    finally:
        _concerns.reset(token)


def concern(**ids: str | None) -> None:
    """Note the ids the current request concerns (`batch`, `messageId`, `campaignId`,
    `inboundId`); the first value of each is kept. Outside a request, nothing happens."""
    concerns = _concerns.get()
    if concerns is None:
        return
    for key, value in ids.items():
        if value:
            concerns.setdefault(key, value)


_CORRELATING = ("batch", "campaignId", "inboundId")


def correlation_of(concerns: Mapping[str, str]) -> str | None:
    """The correlation id of what a request concerns: the first batch, campaign or inbound
    message id its use case noted (an inbound STOP is about the inbound message before the
    batch of its reply)."""
    return next((v for k, v in concerns.items() if k in _CORRELATING), None)
