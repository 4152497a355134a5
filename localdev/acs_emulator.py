"""A local Azure Communication Services (ACS) SMS emulator.

It stands in for ACS the way Azurite stands in for Storage: it speaks the real ACS SMS REST API, so
the real `azure-communication-sms` SDK (and any HMAC-signing client) works against it unchanged.

ACS API
-------
``POST /sms?api-version=<any>`` (2021-03-07 and 2026-01-23 and any other version are accepted)

- HMAC-SHA256 authentication exactly as ACS checks it: ``Authorization: HMAC-SHA256
  SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<b64>``, the string to sign being
  ``VERB\\npathAndQuery\\n<signed header values joined by ';'>``; ``x-ms-content-sha256`` must
  equal base64(sha256(body)); ``x-ms-date`` (or ``Date``) must be within 15 minutes. Failures are
  401 ``{"error": {"code": "Unauthorized"|"Denied", "message": ...}}``.
- Limits: 1..100 recipients, a non-empty message of at most 2048 characters (else 400
  ``{"error": {"code": "BadRequest", "message": ...}}``); a token bucket per sender of
  ``rate_per_minute`` messages (each recipient counts as one), a request that does not fit as a
  whole is 429 with ``Retry-After`` and nothing is sent.
- 202 ``{"value": [...]}``: one item per recipient, in request order, as ACS answers it (invalid
  numbers, repeatability rejections and steered send errors are per-item failures).
- With ``enableDeliveryReport``, after ``dlr_delay_s`` one ``SMSDeliveryReportReceived`` event per
  accepted recipient is written to the Storage queue ``sms-delivery-reports``, base64 text of one
  Event Grid schema event, as an Event Grid Storage-queue subscription writes it. Default outcome
  Delivered; numbers ending in 0000 fail with 4006; any number can be steered (control API).

Control API (JSON, no auth)
---------------------------
- ``GET    /emulator/health`` -> ``{"status": "ok"}``
- ``GET    /emulator/handsets/{number}/inbox`` -> ``{"number", "messages": [{"from", "to",
  "message", "messageId", "tag", "receivedAt"}]}`` (the number with or without ``+``,
  URL-encoded or not)
- ``GET    /emulator/requests`` -> every authenticated send call, in order:
  ``[{"from", "recipients": [...], "message", "status": 202|400|429, "at"}]``
- ``GET    /emulator/stats`` -> ``{"accepted": <recipients accepted>, "requests": <send calls>}``
  (two counters, cheap to poll; the same calls and recipients as the request log)
- ``PUT    /emulator/outcomes/{number}`` body ``{"deliveryStatus": "Failed",
  "deliveryStatusDetails": "4005: ...", "sendError": {"httpStatusCode": 503,
  "errorMessage": "ServiceUnavailable"} | null}``; ``DELETE /emulator/outcomes/{number}``
- ``PUT    /emulator/senders/{number}/rate`` body ``{"ratePerMinute": 5}`` (refills that bucket)
- ``POST   /emulator/reset`` clears inboxes, request log, repeatability ids, outcomes, rates.

Planned (not built yet): ``POST /emulator/handsets/{number}/reply`` posting an Event Grid
``Microsoft.Communication.SMSReceived`` event to the inbound webhook, after the subscription
validation handshake; see ``ROUTES`` for where it plugs in.

Run it: ``python -m localdev.acs_emulator --host 127.0.0.1 --port 7072 --access-key <b64>
--storage "<connection string>" --dlr-delay 1.0 --rate-per-minute 200`` (env fallbacks:
ACS_EMULATOR_ACCESS_KEY, AzureWebJobsStorage, ACS_EMULATOR_DLR_DELAY_SECONDS,
ACS_EMULATOR_RATE_PER_MINUTE).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import heapq
import hmac
import itertools
import json
import logging
import math
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

log = logging.getLogger(__name__)

DEFAULT_ACCESS_KEY = base64.b64encode(b"local-acs-emulator-key").decode("ascii")
DLR_QUEUE = "sms-delivery-reports"
MAX_RECIPIENTS = 100
MAX_MESSAGE_CHARS = 2048
MAX_CLOCK_SKEW = timedelta(minutes=15)
DLR_EVENT_TYPE = "Microsoft.Communication.SMSDeliveryReportReceived"
# Event Grid puts the ACS resource id in `topic`; this one is obviously local.
EMULATOR_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/localdev/providers/"
    "microsoft.communication/communicationservices/acs-emulator"
)
DELIVERED = ("Delivered", "No error.")
UNREACHABLE = ("Failed", "4006: The Destination/To number isn't reachable.")
UNKNOWN_FAILURE_DETAILS = "9999: Message failed to deliver due to unknown error/failure."

_E164 = re.compile(r"\+[0-9]{7,15}")
_SHORT_CODE = re.compile(r"[0-9]{3,8}")
_ALPHANUMERIC_SENDER = re.compile(r"(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}")
_RFC1123 = "%a, %d %b %Y %H:%M:%S GMT"
_JSON = "application/json; charset=utf-8"
_DLR_MAX_ATTEMPTS = 5


# ---------------------------------------------------------------------------------------------
# HMAC-SHA256 (the scheme of every ACS data-plane API)
# ---------------------------------------------------------------------------------------------


def content_hash(body: bytes) -> str:
    """The ``x-ms-content-sha256`` value for a body: base64(sha256(body))."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def _signature(key: bytes, string_to_sign: str) -> str:
    digest = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _decode_key(access_key_b64: str) -> bytes:
    try:
        return base64.b64decode(access_key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the ACS access key must be base64") from exc


def sign_request(
    method: str,
    path_and_query: str,
    host: str,
    body: bytes,
    access_key_b64: str,
    *,
    date: str | None = None,
) -> dict[str, str]:
    """Return the headers that authenticate a request to ACS, computed as the ACS SDKs do.

    ``host`` is the Host header the client will send (with the port when it is not the default);
    ``date`` defaults to now in RFC 1123 form.
    """
    date = date or formatdate(usegmt=True)
    body_hash = content_hash(body)
    string_to_sign = f"{method.upper()}\n{path_and_query}\n{date};{host};{body_hash}"
    signature = _signature(_decode_key(access_key_b64), string_to_sign)
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": body_hash,
        "Authorization": (
            f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"
        ),
    }


@dataclass(frozen=True)
class AuthFailure:
    """Why a request failed authentication, in ACS's error vocabulary."""

    code: str
    message: str


def verify_hmac(
    method: str,
    path_and_query: str,
    headers: Mapping[str, str],
    body: bytes,
    access_key_b64: str,
    *,
    now: datetime | None = None,
) -> AuthFailure | None:
    """Check a request's HMAC-SHA256 authentication as ACS does; None when it is valid.

    ``path_and_query`` and the Host header are taken exactly as sent: ACS signs the raw request
    target and ``host:port``, so any re-encoding on either side breaks the signature.
    """
    h = {k.lower(): v for k, v in headers.items()}
    auth = h.get("authorization", "")
    if not auth:
        return AuthFailure("Unauthorized", "The Authorization header is missing.")
    scheme, _, params_text = auth.partition(" ")
    if scheme != "HMAC-SHA256":
        # Entra ID bearer tokens are a real ACS option, but there is no identity provider here.
        return AuthFailure("Unauthorized", "The emulator accepts HMAC-SHA256 authorization only.")
    params: dict[str, str] = {}
    for part in params_text.strip().split("&"):
        # The signature is base64 and may itself end in '=': split on the first one only.
        name, _, value = part.partition("=")
        params[name.strip()] = value.strip()
    signed = [s.strip().lower() for s in params.get("SignedHeaders", "").split(";") if s.strip()]
    signature = params.get("Signature", "")
    if not signature or "host" not in signed or "x-ms-content-sha256" not in signed:
        return AuthFailure(
            "Denied", "SignedHeaders must include host and x-ms-content-sha256, with a Signature."
        )
    date_header = "x-ms-date" if "x-ms-date" in signed else "date" if "date" in signed else None
    if date_header is None:
        return AuthFailure("Denied", "SignedHeaders must include x-ms-date or date.")
    missing = [name for name in signed if name not in h]
    if missing:
        return AuthFailure("Denied", f"Signed header(s) missing: {', '.join(missing)}.")
    if not hmac.compare_digest(h["x-ms-content-sha256"], content_hash(body)):
        # ACS's own wording for this failure (azure-rest-api-specs examples, issue #11767).
        return AuthFailure(
            "Denied", "Request 'x-ms-content-sha256' differs from generated content hash."
        )
    try:
        sent_at = parsedate_to_datetime(h[date_header])
    except (TypeError, ValueError):
        return AuthFailure("Denied", f"The {date_header} header is not an RFC 1123 date.")
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=UTC)
    if abs((now or datetime.now(UTC)) - sent_at) > MAX_CLOCK_SKEW:
        return AuthFailure(
            "Denied", f"The request date is more than 15 minutes off: {h[date_header]}."
        )
    string_to_sign = f"{method.upper()}\n{path_and_query}\n" + ";".join(h[name] for name in signed)
    try:
        key = _decode_key(access_key_b64)
    except ValueError:
        return AuthFailure("Denied", "The access key is not base64.")
    if not hmac.compare_digest(_signature(key, string_to_sign), signature):
        return AuthFailure("Denied", "The HMAC-SHA256 signature does not match the request.")
    return None


# ---------------------------------------------------------------------------------------------
# Segments (for deliveryAttempts.segmentsSucceeded)
# ---------------------------------------------------------------------------------------------

_GSM7_BASIC = frozenset(
    "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5"
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9"
    " !\"#\u00a4%&'()*+,-./0123456789:;<=>?"
    "\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7"
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0"
)
# Characters of the GSM 03.38 extension table take two septets (escape + code).
_GSM7_EXTENSION = frozenset("\f^{}\\[~]|\u20ac")


def segment_count(message: str) -> int:
    """SMS segments for a message: GSM-7 at 160/153 septets, otherwise UCS-2 at 70/67 units."""
    septets = 0
    for ch in message:
        if ch in _GSM7_BASIC:
            septets += 1
        elif ch in _GSM7_EXTENSION:
            septets += 2
        else:
            units = len(message.encode("utf-16-le")) // 2
            return 1 if units <= 70 else math.ceil(units / 67)
    return 1 if septets <= 160 else math.ceil(septets / 153)


# ---------------------------------------------------------------------------------------------
# State (no HTTP here, so it is unit-testable)
# ---------------------------------------------------------------------------------------------


def normalize_number(number: str) -> str:
    """A phone number as a handset key: URL-decoded, trimmed, with a leading ``+``."""
    n = unquote(number).strip()
    return n if n.startswith("+") else "+" + n


def _iso(ts: datetime, digits: int = 7) -> str:
    # ACS timestamps are .NET round-trip strings with 7 fractional digits ("...20.2855749Z");
    # emit the same so consumers are tested against what ACS really sends.
    base = ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if digits == 0:
        return base + "Z"
    return f"{base}.{ts.microsecond:06d}{'0' * (digits - 6)}Z"


@dataclass(frozen=True)
class Outcome:
    """How the emulated network treats one number: the delivery report, or a send error."""

    delivery_status: str = DELIVERED[0]
    delivery_status_details: str = DELIVERED[1]
    send_error_status: int | None = None
    send_error_message: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The control API's representation."""
        send_error = (
            None
            if self.send_error_status is None
            else {"httpStatusCode": self.send_error_status, "errorMessage": self.send_error_message}
        )
        return {
            "deliveryStatus": self.delivery_status,
            "deliveryStatusDetails": self.delivery_status_details,
            "sendError": send_error,
        }

    @classmethod
    def from_json(cls, body: Any) -> Outcome:
        """Parse the control API's body; raises ValueError with a readable reason."""
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        status = body.get("deliveryStatus", DELIVERED[0])
        if not isinstance(status, str) or not status:
            raise ValueError("deliveryStatus must be a non-empty string")
        default_details = DELIVERED[1] if status == DELIVERED[0] else UNKNOWN_FAILURE_DETAILS
        details = body.get("deliveryStatusDetails", default_details)
        if not isinstance(details, str):
            raise ValueError("deliveryStatusDetails must be a string")
        err = body.get("sendError")
        if err is None:
            return cls(status, details)
        code = err.get("httpStatusCode") if isinstance(err, dict) else None
        if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
            raise ValueError("sendError.httpStatusCode must be an integer 400..599")
        message = err.get("errorMessage") or HTTPStatus(code).phrase.replace(" ", "")
        if not isinstance(message, str):
            raise ValueError("sendError.errorMessage must be a string")
        return cls(status, details, code, message)


def default_outcome(number: str) -> Outcome:
    """The outcome of a number nobody steered: delivered, unless it ends in 0000 (unreachable)."""
    if number.endswith("0000"):
        return Outcome(*UNREACHABLE)
    return Outcome()


@dataclass(frozen=True)
class DeliveryReport:
    """A delivery report due for one accepted message."""

    message_id: str
    from_: str
    to: str
    delivery_status: str
    delivery_status_details: str
    tag: str | None
    sent_at: datetime
    segments: int

    def event(self, received_at: datetime) -> dict[str, Any]:
        """The Event Grid schema ``SMSDeliveryReportReceived`` event ACS publishes for it."""
        # ACS drops the '+' from `from` (and from the subject) but keeps it on `to`.
        sender = self.from_.removeprefix("+")
        delivered = self.delivery_status == DELIVERED[0]
        data: dict[str, Any] = {
            "messageId": self.message_id,
            "from": sender,
            "to": self.to,
            "deliveryStatus": self.delivery_status,
            "deliveryStatusDetails": self.delivery_status_details,
            "receivedTimestamp": _iso(received_at),
            "deliveryAttempts": [
                {
                    "timestamp": _iso(self.sent_at),
                    "segmentsSucceeded": self.segments if delivered else 0,
                    "segmentsFailed": 0 if delivered else self.segments,
                }
            ],
        }
        if self.tag is not None:
            # The published sample (docs 2025) spells this one key "Tag" while the rest are
            # camelCase: kept, so readers must match keys case-insensitively as with real ACS.
            data["Tag"] = self.tag
        return {
            "id": self.message_id,
            "topic": EMULATOR_TOPIC,
            "subject": f"/phonenumber/{sender}",
            "data": data,
            "eventType": DLR_EVENT_TYPE,
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": _iso(received_at, digits=0),
        }


@dataclass
class SendResult:
    """What the ``POST /sms`` call answers, plus the delivery reports it makes due."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    reports: list[DeliveryReport] = field(default_factory=list)


@dataclass
class _Bucket:
    capacity: float
    tokens: float
    updated: float


@dataclass(frozen=True)
class _Recipient:
    to: str
    repeatability_request_id: str | None
    repeatability_first_sent: Any


@dataclass(frozen=True)
class _SendRequest:
    from_: str
    recipients: list[_Recipient]
    message: str
    enable_delivery_report: bool
    tag: str | None


class _BadRequest(ValueError):
    pass


def _lower_keys(obj: dict[str, Any]) -> dict[str, Any]:
    # ACS is ASP.NET: JSON property names bind case-insensitively, so "From" works like "from".
    return {k.lower(): v for k, v in obj.items()}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _parse_send_request(payload: Any) -> _SendRequest:
    if not isinstance(payload, dict):
        raise _BadRequest("The request body must be a JSON object.")
    body = _lower_keys(payload)
    sender = body.get("from")
    if not isinstance(sender, str) or not (
        _E164.fullmatch(sender)
        or _SHORT_CODE.fullmatch(sender)
        or _ALPHANUMERIC_SENDER.fullmatch(sender)
    ):
        raise _BadRequest("Invalid From phone number format.")
    raw_recipients = body.get("smsrecipients")
    if not isinstance(raw_recipients, list) or not raw_recipients:
        raise _BadRequest("The SmsRecipients field is required and must not be empty.")
    if len(raw_recipients) > MAX_RECIPIENTS:
        raise _BadRequest(
            f"The number of recipients ({len(raw_recipients)}) exceeds the limit of"
            f" {MAX_RECIPIENTS} per request."
        )
    recipients: list[_Recipient] = []
    for raw in raw_recipients:
        r = _lower_keys(raw) if isinstance(raw, dict) else {}
        to = r.get("to")
        rid = r.get("repeatabilityrequestid")
        if not isinstance(to, str) or not (rid is None or isinstance(rid, str)):
            raise _BadRequest("Each recipient must have a string 'to'.")
        recipients.append(_Recipient(to, rid or None, r.get("repeatabilityfirstsent")))
    message = body.get("message")
    if not isinstance(message, str) or not message:
        raise _BadRequest("The Message field is required.")
    if len(message) > MAX_MESSAGE_CHARS:
        raise _BadRequest(
            f"The message is {len(message)} characters long; the limit is {MAX_MESSAGE_CHARS}."
        )
    options = body.get("smssendoptions") or {}
    if not isinstance(options, dict):
        raise _BadRequest("SmsSendOptions must be an object.")
    options = _lower_keys(options)
    enable = options.get("enabledeliveryreport", False)
    tag = options.get("tag")
    if not isinstance(enable, bool) or not (tag is None or isinstance(tag, str)):
        raise _BadRequest("SmsSendOptions: enableDeliveryReport must be boolean, tag a string.")
    return _SendRequest(sender, recipients, message, enable, tag)


def _valid_first_sent(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.strptime(value, _RFC1123)
    except ValueError:
        return False
    return True


class EmulatorState:
    """Everything the emulated ACS remembers, behind one lock. No I/O.

    ``clock`` (monotonic seconds) drives the rate buckets and ``wallclock`` the timestamps, so
    tests can pin both.
    """

    def __init__(
        self,
        *,
        rate_per_minute: int = 200,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if rate_per_minute < 1:
            raise ValueError("rate_per_minute must be at least 1")
        self.rate_per_minute = rate_per_minute
        self._clock = clock
        self._wallclock = wallclock
        self._lock = threading.Lock()
        self._inboxes: dict[str, list[dict[str, Any]]] = {}
        self._requests: list[dict[str, Any]] = []
        # repeatabilityRequestId -> messageId of the accepted send. ACS remembers ids per resource.
        self._repeatability: dict[str, str] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._rates: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._accepted = 0  # recipients accepted since the last reset

    # -- the ACS send ---------------------------------------------------------------------------

    def send(self, body: bytes) -> SendResult:
        """Process an authenticated ``POST /sms`` body as ACS would."""
        now = self._wallclock()
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            payload = None
        try:
            req = _parse_send_request(payload)
        except _BadRequest as exc:
            with self._lock:
                self._log_request(payload, 400, now)
            return SendResult(400, _error("BadRequest", str(exc)))

        with self._lock:
            wait_s = self._take_tokens(req.from_, len(req.recipients))
            if wait_s > 0:
                self._log_request(payload, 429, now)
                retry_after = max(1, math.ceil(wait_s))
                return SendResult(
                    429,
                    _error(
                        "TooManyRequests",
                        f"Rate limit exceeded for sender {req.from_}: retry after {retry_after} s.",
                    ),
                    {"Retry-After": str(retry_after)},
                )
            items: list[dict[str, Any]] = []
            reports: list[DeliveryReport] = []
            segments = segment_count(req.message)
            for r in req.recipients:
                items.append(self._send_one(req, r, now, segments, reports))
            self._log_request(payload, 202, now)
        return SendResult(202, {"value": items}, reports=reports)

    def _send_one(
        self,
        req: _SendRequest,
        r: _Recipient,
        now: datetime,
        segments: int,
        reports: list[DeliveryReport],
    ) -> dict[str, Any]:
        if not _E164.fullmatch(r.to):
            return {
                "to": r.to,
                "httpStatusCode": 400,
                "errorMessage": "Invalid To phone number format.",
                "successful": False,
            }
        rid = r.repeatability_request_id
        if rid is not None:
            # ACS follows the OASIS repeatable-requests rule: an id needs its first-sent date.
            if not _valid_first_sent(r.repeatability_first_sent):
                return {
                    "to": r.to,
                    "httpStatusCode": 400,
                    "repeatabilityResult": "rejected",
                    "errorMessage": (
                        "Request sent with Invalid DateTime value for repeatability-first-sent."
                        " Expected is DateTime ,RFC1123 pattern."
                    ),
                    "successful": False,
                }
            original = self._repeatability.get(rid)
            if original is not None:
                return {
                    "to": r.to,
                    "messageId": original,
                    "httpStatusCode": 400,
                    "repeatabilityResult": "rejected",
                    "errorMessage": "A request with this repeatability-request-id was accepted.",
                    "successful": False,
                }
        outcome = self._outcomes.get(r.to) or default_outcome(r.to)
        if outcome.send_error_status is not None:
            # Not accepted, so the id is not remembered: a retry with it may still succeed.
            return {
                "to": r.to,
                "httpStatusCode": outcome.send_error_status,
                "errorMessage": outcome.send_error_message,
                "successful": False,
            }
        message_id = f"Outgoing_{now:%Y%m%d%H%M%S}{uuid.uuid4()}_noam"
        if rid is not None:
            self._repeatability[rid] = message_id
        self._inboxes.setdefault(r.to, []).append(
            {
                "from": req.from_,
                "to": r.to,
                "message": req.message,
                "messageId": message_id,
                "tag": req.tag,
                "receivedAt": _iso(now, digits=6),
            }
        )
        if req.enable_delivery_report:
            reports.append(
                DeliveryReport(
                    message_id,
                    req.from_,
                    r.to,
                    outcome.delivery_status,
                    outcome.delivery_status_details,
                    req.tag,
                    now,
                    segments,
                )
            )
        item: dict[str, Any] = {"to": r.to, "messageId": message_id, "httpStatusCode": 202}
        if rid is not None:
            item["repeatabilityResult"] = "accepted"
        item["successful"] = True
        self._accepted += 1
        return item

    def _take_tokens(self, sender: str, n: int) -> float:
        """Take n tokens from the sender's bucket; 0 when taken, else seconds until they fit."""
        rate = self._rates.get(sender, self.rate_per_minute)
        now = self._clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = _Bucket(rate, rate, now)
        per_second = rate / 60.0
        bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * per_second)
        bucket.updated = now
        if bucket.tokens >= n:
            bucket.tokens -= n
            return 0.0
        # A request larger than the bucket never fits; the hint is still the honest deficit.
        return (n - bucket.tokens) / per_second

    def _log_request(self, payload: Any, status: int, now: datetime) -> None:
        body = _lower_keys(payload) if isinstance(payload, dict) else {}
        raw = body.get("smsrecipients")
        recipients = [
            _lower_keys(r).get("to") if isinstance(r, dict) else None
            for r in (raw if isinstance(raw, list) else [])
        ]
        self._requests.append(
            {
                "from": body.get("from"),
                "recipients": recipients,
                "message": body.get("message"),
                "status": status,
                "at": _iso(now, digits=6),
            }
        )

    # -- control --------------------------------------------------------------------------------

    def inbox(self, number: str) -> list[dict[str, Any]]:
        """What a handset has received, oldest first."""
        with self._lock:
            return list(self._inboxes.get(normalize_number(number), []))

    def requests(self) -> list[dict[str, Any]]:
        """Every authenticated send call, in arrival order."""
        with self._lock:
            return list(self._requests)

    def stats(self) -> dict[str, int]:
        """Recipients accepted and send calls logged since the last reset (counters only)."""
        with self._lock:
            return {"accepted": self._accepted, "requests": len(self._requests)}

    def set_outcome(self, number: str, outcome: Outcome) -> None:
        """Steer what happens to messages sent to a number."""
        with self._lock:
            self._outcomes[normalize_number(number)] = outcome

    def clear_outcome(self, number: str) -> bool:
        """Back to the default outcome; True when one was set."""
        with self._lock:
            return self._outcomes.pop(normalize_number(number), None) is not None

    def set_sender_rate(self, sender: str, rate_per_minute: int) -> None:
        """Override a sender's rate; its bucket starts full at the new capacity."""
        if rate_per_minute < 1:
            raise ValueError("ratePerMinute must be at least 1")
        with self._lock:
            self._rates[sender] = rate_per_minute
            self._buckets[sender] = _Bucket(rate_per_minute, rate_per_minute, self._clock())

    def reset(self) -> None:
        """Forget everything: inboxes, request log, repeatability ids, outcomes, rates."""
        with self._lock:
            self._inboxes.clear()
            self._requests.clear()
            self._repeatability.clear()
            self._outcomes.clear()
            self._rates.clear()
            self._buckets.clear()
            self._accepted = 0


# ---------------------------------------------------------------------------------------------
# Delivery reports: one scheduler thread, one reused QueueClient
# ---------------------------------------------------------------------------------------------


def _queue_connection_string(conn: str) -> str:
    # azure-storage-queue does not understand the Functions shorthand; expand it to Azurite's
    # well-known default endpoints as the Functions host does.
    if conn.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
        from localdev.azurite import connection_string

        return connection_string(10001, 10002)
    return conn


class _DeliveryReportWorker:
    """Writes due delivery reports to the Storage queue from a single thread with a heap."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        self._connection_string = _queue_connection_string(connection_string)
        self._queue_name = queue_name
        self._heap: list[tuple[float, int, DeliveryReport, int]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._in_flight = 0
        self._thread: threading.Thread | None = None
        self._client: QueueClient | None = None

    @property
    def backlog(self) -> int:
        """Reports scheduled or being written, not yet in the queue."""
        with self._cond:
            return len(self._heap) + self._in_flight

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="acs-emulator-dlr", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def submit(self, reports: list[DeliveryReport], due: float) -> None:
        if not reports:
            return
        with self._cond:
            for report in reports:
                heapq.heappush(self._heap, (due, next(self._seq), report, 0))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    delay = self._heap[0][0] - time.monotonic()
                    if delay <= 0:
                        break
                    self._cond.wait(delay)
                if self._stopping:
                    return
                now = time.monotonic()
                due: list[tuple[float, int, DeliveryReport, int]] = []
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap))
                self._in_flight = len(due)
            for _, _, report, attempts in due:
                self._write(report, attempts)
                with self._cond:
                    self._in_flight -= 1

    def _write(self, report: DeliveryReport, attempts: int) -> None:
        event = report.event(datetime.now(UTC))
        # Event Grid's Storage-queue destination writes ONE event per message, as base64 text.
        text = base64.b64encode(json.dumps(event).encode("utf-8")).decode("ascii")
        try:
            self._queue().send_message(text)
        except Exception:
            if attempts + 1 >= _DLR_MAX_ATTEMPTS:
                log.exception("dropping the delivery report for %s", report.message_id)
                return
            log.warning("delivery report for %s failed, retrying", report.message_id)
            self._client = None
            with self._cond:
                retry_at = time.monotonic() + 0.2 * 2**attempts
                heapq.heappush(self._heap, (retry_at, next(self._seq), report, attempts + 1))

    def _queue(self) -> QueueClient:
        if self._client is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.storage.queue import QueueClient

            client = QueueClient.from_connection_string(self._connection_string, self._queue_name)
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            self._client = client
        return self._client


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


@dataclass
class _Request:
    method: str
    target: str  # the raw request target (path and query), as signed by HMAC clients
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except (ValueError, UnicodeDecodeError):
            raise _BadRequest("The request body is not valid JSON.") from None


@dataclass
class _Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


_Handler = Callable[["AcsEmulator", _Request], _Response]


def _h_send(emu: AcsEmulator, req: _Request) -> _Response:
    failure = verify_hmac(req.method, req.target, req.headers, req.body, emu.access_key_b64)
    if failure is not None:
        return _Response(401, _error(failure.code, failure.message))
    if not req.query.get("api-version"):
        return _Response(
            400,
            {
                "error": {
                    "code": "ApiVersionUnspecified",
                    "message": "An API version is required, but was not specified.",
                    "innerError": None,
                }
            },
        )
    result = emu.state.send(req.body)
    if result.reports:
        emu._schedule_reports(result.reports)
    headers = dict(result.headers)
    # The SDK asks for its request id back (x-ms-return-client-request-id: true), as ACS does.
    client_request_id = req.headers.get("x-ms-client-request-id")
    if client_request_id and req.headers.get("x-ms-return-client-request-id") == "true":
        headers["x-ms-client-request-id"] = client_request_id
    return _Response(result.status, result.body, headers)


def _h_health(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, {"status": "ok"})


def _h_inbox(emu: AcsEmulator, req: _Request) -> _Response:
    number = normalize_number(req.params["number"])
    return _Response(200, {"number": number, "messages": emu.state.inbox(number)})


def _h_requests(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, emu.state.requests())


def _h_stats(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, emu.state.stats())


def _h_put_outcome(emu: AcsEmulator, req: _Request) -> _Response:
    try:
        outcome = Outcome.from_json(req.json())
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    number = normalize_number(req.params["number"])
    emu.state.set_outcome(number, outcome)
    return _Response(200, {"number": number, **outcome.as_json()})


def _h_delete_outcome(emu: AcsEmulator, req: _Request) -> _Response:
    number = normalize_number(req.params["number"])
    return _Response(200, {"number": number, "removed": emu.state.clear_outcome(number)})


def _h_sender_rate(emu: AcsEmulator, req: _Request) -> _Response:
    body = req.json()
    rate = body.get("ratePerMinute") if isinstance(body, dict) else None
    if not isinstance(rate, int) or isinstance(rate, bool) or rate < 1:
        raise _BadRequest("ratePerMinute must be an integer of at least 1.")
    number = normalize_number(req.params["number"])
    emu.state.set_sender_rate(number, rate)
    return _Response(200, {"number": number, "ratePerMinute": rate})


def _h_reset(emu: AcsEmulator, req: _Request) -> _Response:
    emu.state.reset()
    return _Response(200, {"status": "reset"})


_NUMBER = r"(?P<number>[^/]+)"

# (method, path pattern, handler). The handset reply feature (an SMSReceived event to the inbound
# webhook after Event Grid's validation handshake) goes here as
# ("POST", rf"/emulator/handsets/{_NUMBER}/reply", _h_reply), with its webhook URL an
# AcsEmulator option and its delivery on its own worker like _DeliveryReportWorker.
ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    ("POST", re.compile(r"/sms"), _h_send),
    ("GET", re.compile(r"/emulator/health"), _h_health),
    ("GET", re.compile(rf"/emulator/handsets/{_NUMBER}/inbox"), _h_inbox),
    ("GET", re.compile(r"/emulator/requests"), _h_requests),
    ("GET", re.compile(r"/emulator/stats"), _h_stats),
    ("PUT", re.compile(rf"/emulator/outcomes/{_NUMBER}"), _h_put_outcome),
    ("DELETE", re.compile(rf"/emulator/outcomes/{_NUMBER}"), _h_delete_outcome),
    ("PUT", re.compile(rf"/emulator/senders/{_NUMBER}/rate"), _h_sender_rate),
    ("POST", re.compile(r"/emulator/reset"), _h_reset),
]


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self, method: str) -> None:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            self._write(_Response(400, _error("BadRequest", "Unreadable request body.")))
            return
        split = urlsplit(self.path)
        req = _Request(
            method=method,
            target=self.path,
            path=split.path,
            query=parse_qs(split.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        path_known = False
        for route_method, pattern, handler in ROUTES:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            path_known = True
            if route_method != method:
                continue
            req.params = m.groupdict()
            try:
                resp = handler(self.server.emulator, req)
            except _BadRequest as exc:
                resp = _Response(400, _error("BadRequest", str(exc)))
            except Exception:
                log.exception("ACS emulator: %s %s failed", method, self.path)
                resp = _Response(500, _error("InternalServerError", "The emulator failed."))
            self._write(resp)
            return
        if path_known:
            self._write(_Response(405, _error("MethodNotAllowed", f"{method} is not allowed.")))
        else:
            self._write(_Response(404, _error("NotFound", f"No route for {req.path}.")))

    def _write(self, resp: _Response) -> None:
        payload = json.dumps(resp.body, separators=(",", ":")).encode("utf-8")
        status = HTTPStatus(resp.status)
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {_JSON}",
            f"Content-Length: {len(payload)}",
        ]
        lines.extend(f"{k}: {v}" for k, v in resp.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # One write for head and body: two small writes hit Nagle + delayed ACK (~40 ms each).
        self.wfile.write(head + payload)
        if log.isEnabledFor(logging.DEBUG):
            self.log_request(status.value, len(payload))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: AcsEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the FQDN of the host, a DNS round trip nobody needs.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class AcsEmulator:
    """The ACS SMS emulator: an HTTP server, its state and the delivery-report worker."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 7072,
        access_key_b64: str,
        storage_connection_string: str | None,
        dlr_delay_s: float = 1.0,
        rate_per_minute: int = 200,
        dlr_queue_name: str = DLR_QUEUE,
    ) -> None:
        _decode_key(access_key_b64)
        self.host = host
        self.port = port
        self.access_key_b64 = access_key_b64
        self.storage_connection_string = storage_connection_string or None
        self.dlr_delay_s = dlr_delay_s
        self.state = EmulatorState(rate_per_minute=rate_per_minute)
        self._dlr: _DeliveryReportWorker | None = None
        if self.storage_connection_string is not None:
            self._dlr = _DeliveryReportWorker(self.storage_connection_string, dlr_queue_name)
        self._dlr_skip_logged = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:7072``."""
        return f"http://{self.host}:{self.port}"

    @property
    def connection_string(self) -> str:
        """An ACS connection string for this emulator (the scheme is http)."""
        return f"endpoint={self.endpoint}/;accesskey={self.access_key_b64}"

    @property
    def dlr_backlog(self) -> int:
        """Delivery reports scheduled and not yet written to the queue."""
        return self._dlr.backlog if self._dlr is not None else 0

    def start(self) -> None:
        """Bind (port 0 picks a free port, then ``.port`` is the real one) and serve in a thread."""
        if self._server is not None:
            raise RuntimeError("the ACS emulator is already running")
        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        if self._dlr is not None:
            self._dlr.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="acs-emulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; delivery reports not yet due are dropped."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._dlr is not None:
            self._dlr.stop()

    def __enter__(self) -> AcsEmulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _schedule_reports(self, reports: list[DeliveryReport]) -> None:
        if self._dlr is None:
            if not self._dlr_skip_logged:
                self._dlr_skip_logged = True
                log.warning("ACS emulator: no storage connection string, delivery reports skipped")
            return
        self._dlr.submit(reports, time.monotonic() + self.dlr_delay_s)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the emulator until SIGTERM or SIGINT."""
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m localdev.acs_emulator", description="Local ACS SMS emulator."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument(
        "--access-key", default=env.get("ACS_EMULATOR_ACCESS_KEY") or DEFAULT_ACCESS_KEY
    )
    parser.add_argument(
        "--storage",
        default=env.get("AzureWebJobsStorage"),
        help="storage connection string for delivery reports (empty: none)",
    )
    parser.add_argument(
        "--dlr-delay", type=float, default=float(env.get("ACS_EMULATOR_DLR_DELAY_SECONDS", "1.0"))
    )
    parser.add_argument(
        "--rate-per-minute", type=int, default=int(env.get("ACS_EMULATOR_RATE_PER_MINUTE", "200"))
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The Azure SDK logs every HTTP call at INFO: delivery-report writes would flood the console.
    logging.getLogger("azure").setLevel(logging.WARNING)

    emulator = AcsEmulator(
        host=args.host,
        port=args.port,
        access_key_b64=args.access_key,
        storage_connection_string=args.storage or None,
        dlr_delay_s=args.dlr_delay,
        rate_per_minute=args.rate_per_minute,
    )
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emulator.start()
    print(
        f"ACS emulator listening on {emulator.endpoint}"
        f" (ACS_CONNECTION_STRING={emulator.connection_string})",
        flush=True,
    )
    while not stopping.wait(1.0):
        pass
    emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
