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
``GET /emulator`` lists it (method, path, purpose of each endpoint: `ENDPOINTS`).

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
- ``PUT    /emulator/senders/{number}/throttle`` body ``{"calls": 1, "retryAfter": 1}``: the
  sender's next calls are answered 429 whatever its bucket holds (deterministic throttling)
- ``PUT    /emulator/webhook`` body ``{"url": "http://...", "schema": "eventgrid"|"cloudevents"}``
  (schema defaults to eventgrid; ``"url": null`` unsubscribes); ``GET /emulator/webhook`` ->
  ``{"url", "schema", "validated", "pending"}``
- ``POST   /emulator/handsets/{number}/reply`` body ``{"to": "+18005550100", "message": "STOP",
  "schema"?: "eventgrid"|"cloudevents", "casing"?: "camel"|"pascal", "deliveries"?: 1}`` -> 202
  ``{"messageId", "webhookStatus": <status of the attempt made while it waits> | null,
  "delivered": bool}`` (with ``deliveries`` > 1: the last such attempt, and whether all got a 2xx);
  502 ``{"error", "messageId", "webhook": <what it answered>}`` when the handshake fails (nothing
  is delivered); 409 when no webhook is configured. See "Handset replies" below.
- ``GET    /emulator/handsets/{number}/sent`` -> ``{"number", "messages": [{"from", "to",
  "message", "messageId", "sentAt"}]}`` (what the handset replied)
- ``GET    /emulator/webhook/deliveries`` -> every delivery attempt, in order: ``[{"eventId",
  "attempt", "status": <http status> | null, "at", "error"?, "deadLettered"?: true}]``
- ``GET    /emulator/webhook/validate?id=<validationCode>`` the ``validationUrl`` of the
  handshake event: Event Grid's manual validation, for a webhook that cannot echo the code
- ``POST   /emulator/reset`` clears inboxes, request log, repeatability ids, outcomes, rates,
  handsets' sent messages, the webhook delivery log and pending retries (the webhook and its
  validation stay).

Handset replies (inbound SMS, as Event Grid delivers it)
--------------------------------------------------------
A reply becomes a ``Microsoft.Communication.SMSReceived`` event (``from`` and ``to`` without
``+``, as ACS sends them) posted to the inbound webhook as an Event Grid webhook subscription
delivers it:

- Before the first delivery to a URL and schema, the validation handshake: Event Grid schema, a
  ``SubscriptionValidationEvent`` (header ``aeg-event-type: SubscriptionValidation``) answered by
  200 and ``{"validationResponse": <code>}``; CloudEvents, ``OPTIONS`` with
  ``WebHook-Request-Origin: eventgrid.azure.net`` answered by a 2xx with that
  ``WebHook-Allowed-Origin`` (or ``*``). Validated URLs are remembered.
- Delivery: Event Grid schema, a JSON array of one event with ``aeg-event-type: Notification``,
  ``aeg-delivery-count`` and ``aeg-subscription-name: SMSRECEIVED``; CloudEvents, the one event as
  ``application/cloudevents+json`` with ``WebHook-Request-Origin``/``Origin``. Any 2xx is
  success. The first attempt is made while the reply waits; failed ones are retried in the
  background after 1, 2, 4, ... s (``webhook_retry_base_s`` doubling, capped at 30 s), up to
  ``webhook_max_attempts`` (10) in all, then dead-lettered; 400 and 413 are dead-lettered at once,
  as Event Grid does. ``deliveries: 2`` posts the same event twice (Event Grid delivers at least
  once), the second with the next ``aeg-delivery-count``.

Run it: ``python -m localdev.acs_emulator --host 127.0.0.1 --port 7072 --access-key <b64>
--storage "<connection string>" --dlr-delay 1.0 --rate-per-minute 200
--inbound-webhook http://127.0.0.1:7071/api/inbound?code=<key>`` (env fallbacks:
ACS_EMULATOR_ACCESS_KEY, AzureWebJobsStorage, ACS_EMULATOR_DLR_DELAY_SECONDS,
ACS_EMULATOR_RATE_PER_MINUTE, ACS_EMULATOR_INBOUND_WEBHOOK_URL).
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
    import httpx
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
        self._sent: dict[str, list[dict[str, Any]]] = {}  # what handsets replied, per handset
        self._requests: list[dict[str, Any]] = []
        # repeatabilityRequestId -> messageId of the accepted send. ACS remembers ids per resource.
        self._repeatability: dict[str, str] = {}
        self._outcomes: dict[str, Outcome] = {}
        self._rates: dict[str, int] = {}
        self._forced_throttles: dict[str, tuple[int, int]] = {}  # sender -> (calls, retry-after)
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
            wait_s = self._forced_throttle(req.from_) or self._take_tokens(
                req.from_, len(req.recipients))
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

    def _forced_throttle(self, sender: str) -> float:
        calls, retry_after = self._forced_throttles.get(sender, (0, 0))
        if calls <= 0:
            return 0.0
        self._forced_throttles[sender] = (calls - 1, retry_after)
        return float(retry_after)

    def throttle_next(self, sender: str, calls: int = 1, retry_after_s: int = 1) -> None:
        """Answer the sender's next `calls` send calls 429 with this Retry-After, whatever the
        bucket holds: a deterministic way for tests to see throttling."""
        if calls < 0 or retry_after_s < 1:
            raise ValueError("calls must be >= 0 and retryAfter >= 1")
        with self._lock:
            self._forced_throttles[normalize_number(sender)] = (calls, retry_after_s)

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

    def record_sent(
        self, handset: str, to: str, message: str, message_id: str, at: datetime
    ) -> None:
        """Remember a message a handset sent (a reply) to one of our numbers."""
        with self._lock:
            self._sent.setdefault(normalize_number(handset), []).append(
                {
                    "from": normalize_number(handset),
                    "to": to,
                    "message": message,
                    "messageId": message_id,
                    "sentAt": _iso(at, digits=6),
                }
            )

    def sent(self, number: str) -> list[dict[str, Any]]:
        """What a handset has sent (its replies), oldest first."""
        with self._lock:
            return list(self._sent.get(normalize_number(number), []))

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
        """Forget everything: inboxes, replies, request log, repeatability ids, outcomes, rates."""
        with self._lock:
            self._inboxes.clear()
            self._sent.clear()
            self._requests.clear()
            self._repeatability.clear()
            self._outcomes.clear()
            self._rates.clear()
            self._forced_throttles.clear()
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


def _wait_until_due(cond: threading.Condition, heap: list[Any],
                    stopping: Callable[[], bool]) -> bool:
    """With `cond` held, wait until the earliest entry of `heap` (due time first) is due.

    Returns False when `stopping()` turned true instead. Shared by the two background schedulers
    (delivery reports and webhook retries).
    """
    while not stopping():
        if not heap:
            cond.wait()
            continue
        delay = heap[0][0] - time.monotonic()
        if delay <= 0:
            return True
        cond.wait(delay)
    return False


class _HeapScheduler:
    """One daemon thread working through a heap of (due time, seq, ...) entries.

    Shared by the delivery-report writer and the webhook retrier: both keep their due work in
    ``self._heap`` under ``self._cond`` and count what their thread is handling in
    ``self._in_flight``.
    """

    def __init__(self, thread_name: str) -> None:
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._heap: list[Any] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def backlog(self) -> int:
        """Work scheduled or being handled."""
        with self._cond:
            return len(self._heap) + self._in_flight

    def start(self) -> None:
        """Start the thread."""
        with self._cond:
            self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def _stop_thread(self, timeout_s: float) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None

    def _wait_due(self) -> bool:
        """With ``self._cond`` held: wait for due work; False when stopping."""
        return _wait_until_due(self._cond, self._heap, lambda: self._stopping)

    def _run(self) -> None:
        raise NotImplementedError


class _DeliveryReportWorker(_HeapScheduler):
    """Writes due delivery reports to the Storage queue from a single thread with a heap."""

    def __init__(self, connection_string: str, queue_name: str) -> None:
        super().__init__("acs-emulator-dlr")
        self._connection_string = _queue_connection_string(connection_string)
        self._queue_name = queue_name
        self._client: QueueClient | None = None

    def stop(self) -> None:
        """Stop the thread; reports not yet due are dropped."""
        self._stop_thread(10)
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
                if not self._wait_due():
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
# Handset replies: SMSReceived events to the inbound webhook, as Event Grid delivers them
# ---------------------------------------------------------------------------------------------

SMS_RECEIVED_EVENT_TYPE = "Microsoft.Communication.SMSReceived"
VALIDATION_EVENT_TYPE = "Microsoft.EventGrid.SubscriptionValidationEvent"
WEBHOOK_SCHEMAS = ("eventgrid", "cloudevents")
CASINGS = ("camel", "pascal")
# The origin Event Grid names in the CloudEvents abuse-protection handshake and its deliveries.
EVENTGRID_ORIGIN = "eventgrid.azure.net"
SUBSCRIPTION_NAME = "SMSRECEIVED"
MAX_REPLY_DELIVERIES = 10
WEBHOOK_MAX_RETRY_DELAY_S = 30.0
# Event Grid dead-letters these at once rather than retry: the same request gets the same answer.
_NOT_RETRIED = frozenset({400, 413})
_CLOUDEVENTS_JSON = "application/cloudevents+json; charset=utf-8"
_ANSWER_BODY_CHARS = 2000
# The samples disagree on casing: docs 2025 is camelCase, docs 2022 and the specs examples
# PascalCase. Both are offered so consumers are tested against either.
_SMS_RECEIVED_KEYS = {
    "camel": ("messageId", "from", "to", "message", "receivedTimestamp", "segmentCount"),
    "pascal": ("MessageId", "From", "To", "Message", "ReceivedTimestamp", "SegmentCount"),
}


def sms_received_event(
    message_id: str,
    from_: str,
    to: str,
    message: str,
    received_at: datetime,
    *,
    schema: str = "eventgrid",
    casing: str = "camel",
) -> dict[str, Any]:
    """The ``SMSReceived`` event ACS publishes when ``from_`` (a handset) texts ``to`` (ours).

    Both numbers go out without their ``+``, as in the published samples; the subject names our
    number. ``schema`` is ``eventgrid`` or ``cloudevents``, ``casing`` ``camel`` or ``pascal``.
    """
    if schema not in WEBHOOK_SCHEMAS:
        raise ValueError(f"schema must be one of {', '.join(WEBHOOK_SCHEMAS)}")
    if casing not in CASINGS:
        raise ValueError(f"casing must be one of {', '.join(CASINGS)}")
    ours = to.removeprefix("+")
    values = (
        message_id,
        from_.removeprefix("+"),
        ours,
        message,
        _iso(received_at),
        segment_count(message),
    )
    data = dict(zip(_SMS_RECEIVED_KEYS[casing], values, strict=True))
    subject = f"/phonenumber/{ours}"
    if schema == "cloudevents":
        return {
            "specversion": "1.0",
            "type": SMS_RECEIVED_EVENT_TYPE,
            "source": EMULATOR_TOPIC,
            "subject": subject,
            "id": message_id,
            "time": _iso(received_at),
            "data": data,
        }
    return {
        "id": message_id,
        "topic": EMULATOR_TOPIC,
        "subject": subject,
        "data": data,
        "eventType": SMS_RECEIVED_EVENT_TYPE,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": _iso(received_at, digits=0),
    }


def _check_webhook_url(url: Any) -> str:
    if not isinstance(url, str):
        raise ValueError("url must be a string")
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc:
        raise ValueError(f"url must be an absolute http(s) URL, not {url!r}")
    return url


class NoInboundWebhook(RuntimeError):
    """A handset replied, but no inbound webhook is configured to receive the event."""


class HandshakeFailed(Exception):
    """The webhook did not complete Event Grid's validation handshake: no subscription, so the
    event is not delivered. ``answer`` is what the webhook answered, ``message_id`` the reply's."""

    def __init__(self, message: str, answer: dict[str, Any], message_id: str = "") -> None:
        super().__init__(message)
        self.answer = answer
        self.message_id = message_id


@dataclass
class _Delivery:
    """One delivery of an event to a webhook, attempted until a 2xx or a dead letter."""

    event_id: str
    url: str
    schema: str
    payload: bytes
    tries: int = 0


def _answer(resp: httpx.Response) -> dict[str, Any]:
    """What a webhook answered, for a person reading a 502 or the log."""
    body: Any
    try:
        body = resp.json()
    except ValueError:
        body = resp.text[:_ANSWER_BODY_CHARS]
    return {"status": resp.status_code, "body": body}


def _notification_headers(schema: str, delivery_count: int) -> dict[str, str]:
    # aeg-* are Event Grid's delivery headers (docs: event-grid/includes/message-headers.md);
    # for CloudEvents aeg-metadata-version carries the spec version and there is no data version.
    headers = {
        "aeg-event-type": "Notification",
        "aeg-subscription-name": SUBSCRIPTION_NAME,
        "aeg-delivery-count": str(delivery_count),
    }
    if schema == "cloudevents":
        return {
            "content-type": _CLOUDEVENTS_JSON,
            "WebHook-Request-Origin": EVENTGRID_ORIGIN,
            "Origin": EVENTGRID_ORIGIN,  # CloudEvents webhook spec: every delivery names it
            **headers,
            "aeg-metadata-version": "1.0",
        }
    return {
        "content-type": "application/json",
        **headers,
        "aeg-metadata-version": "1",
        "aeg-data-version": "1.0",
    }


class _WebhookRelay(_HeapScheduler):
    """Event Grid's side of one webhook subscription: handshake, delivery, retry, dead letters.

    First attempts run on the caller's thread, so a reply can answer with the webhook's status;
    retries run on one daemon thread with a heap (as ``_DeliveryReportWorker`` does), so a failing
    webhook never holds up the HTTP server.
    """

    def __init__(
        self,
        *,
        url: str | None,
        schema: str,
        max_attempts: int,
        retry_base_s: float,
        timeout_s: float,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("webhook_max_attempts must be at least 1")
        if retry_base_s < 0 or timeout_s <= 0:
            raise ValueError("webhook delays must be positive")
        super().__init__("acs-emulator-webhook")
        self.max_attempts = max_attempts
        self.retry_base_s = retry_base_s
        self.timeout_s = timeout_s
        self._url: str | None = None
        self._schema = "eventgrid"
        self.configure(url, schema)
        # Held through a handshake only: concurrent first replies to one URL handshake once.
        self._handshake_lock = threading.Lock()
        self._validated: set[tuple[str, str]] = set()
        self._awaiting_manual: dict[str, tuple[str, str]] = {}  # validationCode -> subscription
        self._attempts: dict[str, int] = {}  # event id -> attempts so far (aeg-delivery-count)
        self._log: list[dict[str, Any]] = []
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    # -- subscription ---------------------------------------------------------------------------

    def configure(self, url: str | None, schema: str = "eventgrid") -> None:
        """Point the subscription at ``url`` (None: no subscription) with ``schema``."""
        if url is not None:
            _check_webhook_url(url)
        if schema not in WEBHOOK_SCHEMAS:
            raise ValueError(f"schema must be one of {', '.join(WEBHOOK_SCHEMAS)}")
        with self._cond:
            self._url, self._schema = url, schema

    def subscription(self) -> tuple[str | None, str]:
        """The webhook URL (None: no subscription) and its schema, read together."""
        with self._cond:
            return self._url, self._schema

    def is_validated(self, url: str, schema: str) -> bool:
        """True once the handshake for this URL and schema has succeeded."""
        with self._cond:
            return (url, schema) in self._validated

    def validate_manually(self, code: str) -> tuple[str, str] | None:
        """Event Grid's manual validation (a GET of ``validationUrl``): the subscription it
        validates, or None for an unknown code."""
        with self._cond:
            subscription = self._awaiting_manual.pop(code, None)
            if subscription is not None:
                self._validated.add(subscription)
            return subscription

    def ensure_validated(self, url: str, schema: str, validation_url: Callable[[str], str]) -> None:
        """Perform the handshake unless this URL and schema passed it; raise HandshakeFailed."""
        if self.is_validated(url, schema):
            return
        with self._handshake_lock:
            if self.is_validated(url, schema):
                return
            if schema == "cloudevents":
                self._options_handshake(url)
            else:
                self._validation_event_handshake(url, validation_url)
            with self._cond:
                self._validated.add((url, schema))

    def _validation_event_handshake(self, url: str, validation_url: Callable[[str], str]) -> None:
        import httpx

        code = str(uuid.uuid4())
        with self._cond:
            self._awaiting_manual[code] = (url, "eventgrid")
        event = {
            "id": str(uuid.uuid4()),
            "topic": EMULATOR_TOPIC,
            "subject": "",
            "data": {"validationCode": code, "validationUrl": validation_url(code)},
            "eventType": VALIDATION_EVENT_TYPE,
            "eventTime": _iso(datetime.now(UTC)),
            "metadataVersion": "1",
            "dataVersion": "1",
        }
        headers = {
            "content-type": "application/json",
            "aeg-event-type": "SubscriptionValidation",
            "aeg-subscription-name": SUBSCRIPTION_NAME,
            "aeg-delivery-count": "0",
        }
        try:
            resp = self._http().post(url, content=json.dumps([event]).encode(), headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise HandshakeFailed(
                f"The webhook could not be reached for the validation handshake: {exc}",
                {"status": None, "error": f"{type(exc).__name__}: {exc}"},
            ) from None
        answer = _answer(resp)
        body = answer["body"]
        # The webhook is usually ASP.NET or Python code: match the key as Event Grid binds it,
        # case-insensitively.
        echoed = (
            next((v for k, v in body.items() if k.lower() == "validationresponse"), None)
            if isinstance(body, dict)
            else None
        )
        if resp.status_code != 200 or echoed != code:
            raise HandshakeFailed(
                "The webhook did not answer the SubscriptionValidationEvent with 200 and "
                f'{{"validationResponse": "{code}"}}; a GET of the validationUrl validates it '
                "by hand.",
                answer,
            )
        with self._cond:
            self._awaiting_manual.pop(code, None)

    def _options_handshake(self, url: str) -> None:
        import httpx

        try:
            resp = self._http().request(
                "OPTIONS", url, headers={"WebHook-Request-Origin": EVENTGRID_ORIGIN}
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise HandshakeFailed(
                f"The webhook could not be reached for the CloudEvents handshake: {exc}",
                {"status": None, "error": f"{type(exc).__name__}: {exc}"},
            ) from None
        allowed = resp.headers.get("WebHook-Allowed-Origin")
        answer = {**_answer(resp), "headers": {"WebHook-Allowed-Origin": allowed}}
        granted = allowed is not None and allowed.strip().lower() in (EVENTGRID_ORIGIN, "*")
        if not (200 <= resp.status_code < 300 and granted):
            raise HandshakeFailed(
                "The webhook did not answer OPTIONS (WebHook-Request-Origin: "
                f"{EVENTGRID_ORIGIN}) with a 2xx and WebHook-Allowed-Origin: {EVENTGRID_ORIGIN}"
                " or *.",
                answer,
            )

    # -- delivery -------------------------------------------------------------------------------

    def deliver(
        self, event_id: str, url: str, schema: str, payload: bytes
    ) -> tuple[int | None, bool]:
        """Make the first attempt of one delivery now: (HTTP status or None, delivered).

        A failed attempt is retried in the background, or dead-lettered.
        """
        return self._attempt(_Delivery(event_id, url, schema, payload))

    def _attempt(self, d: _Delivery) -> tuple[int | None, bool]:
        import httpx

        with self._cond:
            attempt = self._attempts.get(d.event_id, 0) + 1
            self._attempts[d.event_id] = attempt
        status: int | None = None
        error: str | None = None
        try:
            resp = self._http().post(
                d.url, content=d.payload, headers=_notification_headers(d.schema, attempt - 1)
            )
            status = resp.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"
        d.tries += 1
        delivered = status is not None and 200 <= status < 300
        retry = not delivered and status not in _NOT_RETRIED and d.tries < self.max_attempts
        entry: dict[str, Any] = {
            "eventId": d.event_id,
            "attempt": attempt,
            "status": status,
            "at": _iso(datetime.now(UTC), digits=6),
        }
        if error is not None:
            entry["error"] = error
        if not delivered and not retry:
            entry["deadLettered"] = True
            log.warning(
                "ACS emulator: dead-lettered event %s after %d attempt(s) (last: %s)",
                d.event_id,
                d.tries,
                status if error is None else error,
            )
        with self._cond:
            self._log.append(entry)
            if retry:
                delay = min(self.retry_base_s * 2 ** (d.tries - 1), WEBHOOK_MAX_RETRY_DELAY_S)
                heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), d))
                self._cond.notify()
        return status, delivered

    def deliveries(self) -> list[dict[str, Any]]:
        """Every delivery attempt, in order."""
        with self._cond:
            return [dict(entry) for entry in self._log]

    def reset(self) -> None:
        """Forget the delivery log and drop pending retries; the subscription stays."""
        with self._cond:
            self._log.clear()
            self._attempts.clear()
            self._heap.clear()

    # -- lifecycle ------------------------------------------------------------------------------

    def _http(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                import httpx

                # trust_env=False: Event Grid does not go through this machine's proxy settings,
                # and a proxy from the environment must not swallow calls to a local webhook.
                self._client = httpx.Client(timeout=self.timeout_s, trust_env=False)
            return self._client

    def stop(self) -> None:
        """Stop retrying and close the HTTP client."""
        self._stop_thread(self.timeout_s + 5)
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._wait_due():
                    return
                _, _, delivery = heapq.heappop(self._heap)
                self._in_flight += 1
            try:
                self._attempt(delivery)
            except Exception:
                log.exception("ACS emulator: retrying event %s failed", delivery.event_id)
            finally:
                with self._cond:
                    self._in_flight -= 1


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


def _h_sender_throttle(emu: AcsEmulator, req: _Request) -> _Response:
    body = req.json()
    calls = body.get("calls", 1) if isinstance(body, dict) else None
    retry_after = body.get("retryAfter", 1) if isinstance(body, dict) else None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (calls, retry_after)):
        raise _BadRequest("calls and retryAfter must be integers.")
    number = normalize_number(req.params["number"])
    try:
        emu.state.throttle_next(number, int(calls), int(retry_after))  # type: ignore[arg-type]
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    return _Response(200, {"number": number, "calls": calls, "retryAfter": retry_after})


def _h_reset(emu: AcsEmulator, req: _Request) -> _Response:
    emu.state.reset()
    emu._webhook.reset()
    return _Response(200, {"status": "reset"})


def _h_reply(emu: AcsEmulator, req: _Request) -> _Response:
    body = req.json()
    if not isinstance(body, dict):
        raise _BadRequest("The request body must be a JSON object.")
    try:
        result = emu.reply(
            req.params["number"],
            body.get("to"),
            body.get("message"),
            schema=body.get("schema"),
            casing=body.get("casing", "camel"),
            deliveries=body.get("deliveries", 1),
        )
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    except NoInboundWebhook as exc:
        return _Response(409, _error("NoInboundWebhook", str(exc)))
    except HandshakeFailed as exc:
        return _Response(
            502,
            {
                **_error("WebhookValidationFailed", str(exc)),
                "messageId": exc.message_id,
                "webhook": exc.answer,
            },
        )
    return _Response(202, result)


def _h_sent(emu: AcsEmulator, req: _Request) -> _Response:
    number = normalize_number(req.params["number"])
    return _Response(200, {"number": number, "messages": emu.state.sent(number)})


def _h_get_webhook(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, emu.webhook_status())


def _h_put_webhook(emu: AcsEmulator, req: _Request) -> _Response:
    body = req.json()
    if not isinstance(body, dict) or "url" not in body:
        raise _BadRequest('The body must be {"url": ..., "schema"?: "eventgrid"|"cloudevents"}.')
    try:
        emu.configure_webhook(body["url"], body.get("schema") or "eventgrid")
    except ValueError as exc:
        raise _BadRequest(str(exc)) from None
    return _Response(200, emu.webhook_status())


def _h_webhook_deliveries(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, emu.webhook_deliveries())


def _h_webhook_validate(emu: AcsEmulator, req: _Request) -> _Response:
    code = (req.query.get("id") or [""])[0]
    subscription = emu._webhook.validate_manually(code)
    if subscription is None:
        return _Response(404, _error("NotFound", "No handshake is waiting for this validation id."))
    url, schema = subscription
    return _Response(200, {"validated": True, "url": url, "schema": schema})


# What `GET /emulator` answers: every endpoint with its method, path and purpose (the module
# docstring has the bodies). A test checks it lists exactly the routes below.
ENDPOINTS: list[dict[str, str]] = [
    {"method": "POST", "path": "/sms?api-version=<any>",
     "purpose": "ACS SMS send (HMAC-SHA256 signed, 1..100 recipients); delivery reports follow "
                "on the sms-delivery-reports queue"},
    {"method": "GET", "path": "/emulator", "purpose": "this list of the control API"},
    {"method": "GET", "path": "/emulator/health", "purpose": "liveness: {\"status\": \"ok\"}"},
    {"method": "GET", "path": "/emulator/handsets/{number}/inbox",
     "purpose": "what a handset received (from, to, message, messageId, tag, receivedAt)"},
    {"method": "GET", "path": "/emulator/handsets/{number}/sent",
     "purpose": "what a handset replied"},
    {"method": "POST", "path": "/emulator/handsets/{number}/reply",
     "purpose": "the handset texts us: {\"to\", \"message\"} posted to the inbound webhook as "
                "an Event Grid SMSReceived event (handshake first)"},
    {"method": "GET", "path": "/emulator/requests",
     "purpose": "every authenticated send call, in order"},
    {"method": "GET", "path": "/emulator/stats",
     "purpose": "counters: recipients accepted, send calls"},
    {"method": "PUT", "path": "/emulator/outcomes/{number}",
     "purpose": "steer a number: its delivery status and details, or a send error"},
    {"method": "DELETE", "path": "/emulator/outcomes/{number}",
     "purpose": "back to the default outcome (Delivered; numbers ending 0000 fail with 4006)"},
    {"method": "PUT", "path": "/emulator/senders/{number}/rate",
     "purpose": "a sender's rate: {\"ratePerMinute\"} (refills its bucket)"},
    {"method": "PUT", "path": "/emulator/senders/{number}/throttle",
     "purpose": "answer a sender's next calls 429: {\"calls\", \"retryAfter\"}"},
    {"method": "GET", "path": "/emulator/webhook",
     "purpose": "the inbound webhook subscription: url, schema, validated, pending"},
    {"method": "PUT", "path": "/emulator/webhook",
     "purpose": "subscribe the inbound webhook: {\"url\", \"schema\": eventgrid|cloudevents}"},
    {"method": "GET", "path": "/emulator/webhook/deliveries",
     "purpose": "every webhook delivery attempt, in order"},
    {"method": "GET", "path": "/emulator/webhook/validate?id=<code>",
     "purpose": "Event Grid's manual validation URL of a handshake"},
    {"method": "POST", "path": "/emulator/reset",
     "purpose": "clear inboxes, logs, outcomes, rates and pending retries (the webhook stays)"},
]


def _h_index(emu: AcsEmulator, req: _Request) -> _Response:
    return _Response(200, {"emulator": "ACS SMS emulator", "endpoint": emu.endpoint,
                           "endpoints": ENDPOINTS})


_NUMBER = r"(?P<number>[^/]+)"

# (method, path pattern, handler)
ROUTES: list[tuple[str, re.Pattern[str], _Handler]] = [
    ("POST", re.compile(r"/sms"), _h_send),
    ("GET", re.compile(r"/emulator/?"), _h_index),
    ("GET", re.compile(r"/emulator/health"), _h_health),
    ("GET", re.compile(rf"/emulator/handsets/{_NUMBER}/inbox"), _h_inbox),
    ("GET", re.compile(r"/emulator/requests"), _h_requests),
    ("GET", re.compile(r"/emulator/stats"), _h_stats),
    ("PUT", re.compile(rf"/emulator/outcomes/{_NUMBER}"), _h_put_outcome),
    ("DELETE", re.compile(rf"/emulator/outcomes/{_NUMBER}"), _h_delete_outcome),
    ("PUT", re.compile(rf"/emulator/senders/{_NUMBER}/rate"), _h_sender_rate),
    ("PUT", re.compile(rf"/emulator/senders/{_NUMBER}/throttle"), _h_sender_throttle),
    ("POST", re.compile(rf"/emulator/handsets/{_NUMBER}/reply"), _h_reply),
    ("GET", re.compile(rf"/emulator/handsets/{_NUMBER}/sent"), _h_sent),
    ("GET", re.compile(r"/emulator/webhook"), _h_get_webhook),
    ("PUT", re.compile(r"/emulator/webhook"), _h_put_webhook),
    ("GET", re.compile(r"/emulator/webhook/deliveries"), _h_webhook_deliveries),
    ("GET", re.compile(r"/emulator/webhook/validate"), _h_webhook_validate),
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
    """The ACS SMS emulator: an HTTP server, its state, the delivery-report worker and the
    inbound webhook relay (handset replies as Event Grid ``SMSReceived`` deliveries).

    ``inbound_webhook_url``/``inbound_webhook_schema`` subscribe the app's webhook;
    ``webhook_max_attempts``, ``webhook_retry_base_s`` (first retry delay, doubling up to 30 s)
    and ``webhook_timeout_s`` shape delivery as Event Grid's retry policy does.
    """

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
        inbound_webhook_url: str | None = None,
        inbound_webhook_schema: str = "eventgrid",
        webhook_max_attempts: int = 10,
        webhook_retry_base_s: float = 1.0,
        webhook_timeout_s: float = 30.0,
    ) -> None:
        _decode_key(access_key_b64)
        self._webhook = _WebhookRelay(
            url=inbound_webhook_url or None,
            schema=inbound_webhook_schema,
            max_attempts=webhook_max_attempts,
            retry_base_s=webhook_retry_base_s,
            timeout_s=webhook_timeout_s,
        )
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
        self._webhook.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="acs-emulator",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; delivery reports not yet due and webhook retries are dropped."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._dlr is not None:
            self._dlr.stop()
        self._webhook.stop()

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

    # -- handset replies ------------------------------------------------------------------------

    @property
    def webhook_backlog(self) -> int:
        """Webhook deliveries waiting for a retry or being retried."""
        return self._webhook.backlog

    def configure_webhook(self, url: str | None, schema: str = "eventgrid") -> None:
        """Subscribe ``url`` (None: unsubscribe) to SMSReceived events in ``schema``."""
        self._webhook.configure(url, schema)

    def webhook_status(self) -> dict[str, Any]:
        """The subscription: ``{"url", "schema", "validated", "pending"}``."""
        url, schema = self._webhook.subscription()
        return {
            "url": url,
            "schema": schema,
            "validated": url is not None and self._webhook.is_validated(url, schema),
            "pending": self._webhook.backlog,
        }

    def webhook_deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt: ``{"eventId", "attempt", "status", "at", "error"?,
        "deadLettered"?}``."""
        return self._webhook.deliveries()

    def reply(
        self,
        number: str,
        to: str,
        message: str,
        *,
        schema: str | None = None,
        casing: str = "camel",
        deliveries: int = 1,
    ) -> dict[str, Any]:
        """Handset ``number`` texts ``message`` to our number ``to``: ACS publishes SMSReceived.

        The event goes to the inbound webhook in ``schema`` (default: the subscription's) after
        the validation handshake if this URL and schema have not passed it, ``deliveries`` times
        (Event Grid delivers at least once). Returns ``{"messageId", "webhookStatus",
        "delivered"}``: the status of the last first attempt, and whether every first attempt
        got a 2xx; failures are retried in the background. Raises ValueError for bad arguments,
        NoInboundWebhook, and HandshakeFailed (nothing delivered).
        """
        handset, ours = _reply_numbers(number, to)
        if not isinstance(message, str) or not message:
            raise ValueError("message must be a non-empty string")
        if len(message) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message must be at most {MAX_MESSAGE_CHARS} characters")
        if schema is not None and schema not in WEBHOOK_SCHEMAS:
            raise ValueError(f"schema must be one of {', '.join(WEBHOOK_SCHEMAS)}")
        if casing not in CASINGS:
            raise ValueError(f"casing must be one of {', '.join(CASINGS)}")
        if (
            not isinstance(deliveries, int)
            or isinstance(deliveries, bool)
            or not 1 <= deliveries <= MAX_REPLY_DELIVERIES
        ):
            raise ValueError(f"deliveries must be an integer 1..{MAX_REPLY_DELIVERIES}")
        url, subscribed_schema = self._webhook.subscription()
        if url is None:
            raise NoInboundWebhook(
                "No inbound webhook: start with --inbound-webhook or PUT /emulator/webhook."
            )
        schema = schema or subscribed_schema
        now = datetime.now(UTC)
        message_id = f"Incoming_{now:%Y%m%d%H%M%S}{uuid.uuid4()}"
        # The handset sent it whatever becomes of the event: recorded before the handshake.
        self.state.record_sent(handset, ours, message, message_id, now)
        event = sms_received_event(
            message_id, handset, ours, message, now, schema=schema, casing=casing
        )
        try:
            self._webhook.ensure_validated(url, schema, self._validation_url)
        except HandshakeFailed as exc:
            exc.message_id = message_id
            raise
        # Event Grid schema deliveries are arrays (of one event here); CloudEvents a single event.
        payload = json.dumps([event] if schema == "eventgrid" else event).encode("utf-8")
        status: int | None = None
        delivered = True
        for _ in range(deliveries):
            status, ok = self._webhook.deliver(message_id, url, schema, payload)
            delivered = delivered and ok
        log.info(
            "ACS emulator: %s replied to %s, event %s: webhook %s%s",
            handset,
            ours,
            message_id,
            status,
            "" if delivered else " (not delivered: see GET /emulator/webhook/deliveries)",
        )
        return {"messageId": message_id, "webhookStatus": status, "delivered": delivered}

    def _validation_url(self, code: str) -> str:
        return f"{self.endpoint}/emulator/webhook/validate?id={code}"


def _reply_numbers(number: Any, to: Any) -> tuple[str, str]:
    """The handset (E.164) and our number (E.164 or a short code) of a reply; ValueError."""
    if not isinstance(number, str) or not isinstance(to, str):
        raise ValueError("the handset number and 'to' must be strings")
    handset = normalize_number(number)
    if not _E164.fullmatch(handset):
        raise ValueError(f"the handset number must be E.164, not {number!r}")
    raw_to = unquote(to).strip()
    # Without a '+', 3 to 8 digits are a short code (ACS numbers are E.164 or short codes).
    ours = raw_to if _SHORT_CODE.fullmatch(raw_to) else normalize_number(raw_to)
    if not (_E164.fullmatch(ours) or _SHORT_CODE.fullmatch(ours)):
        raise ValueError(f"'to' must be an E.164 number or a short code, not {to!r}")
    return handset, ours


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
    parser.add_argument(
        "--inbound-webhook",
        default=env.get("ACS_EMULATOR_INBOUND_WEBHOOK_URL"),
        help="where handset replies are delivered as Event Grid SMSReceived events (empty: none)",
    )
    args = parser.parse_args(argv)
    # The function host's format: `make run` interleaves both in one terminal.
    logging.basicConfig(level=logging.INFO, datefmt="%H:%M:%S",
                        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s")
    # The Azure SDK logs every HTTP call at INFO: delivery-report writes would flood the console.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # httpx logs every webhook call at INFO, URL and its ?code= function key included.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    emulator = AcsEmulator(
        host=args.host,
        port=args.port,
        access_key_b64=args.access_key,
        storage_connection_string=args.storage or None,
        dlr_delay_s=args.dlr_delay,
        rate_per_minute=args.rate_per_minute,
        inbound_webhook_url=args.inbound_webhook or None,
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
