"""Decoding Event Grid payloads as they really arrive.

Queue messages may be base64 text or raw JSON, hold one event or an array; events may use the
Event Grid schema (`eventType`, `data`) or CloudEvents 1.0 (`type`, `data`); ACS has sent keys in
camelCase and PascalCase (even `Tag`), and `from` without its `+`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sms_core.errors import FieldError, RequestInvalid


def ci_get(mapping: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """`mapping[key]` matched case-insensitively (ACS sends both camelCase and PascalCase)."""
    if key in mapping:
        return mapping[key]
    lower = key.lower()
    for k, v in mapping.items():
        if k.lower() == lower:
            return v
    return default


@dataclass(frozen=True, slots=True)
class GridEvent:
    """One event, whatever schema it came in."""

    id: str
    type: str
    data: Mapping[str, Any]
    time: str | None
    raw: Mapping[str, Any]


def queue_text(body: bytes | str) -> str:
    """The JSON text of a queue message written base64 (the Functions default) or raw.

    host.json sets `messageEncoding: none` so the host hands over the message as stored, and
    every consumer accepts both forms: Event Grid's Storage-queue destination has been seen
    writing base64, while its docs once said plain text.
    """
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return stripped
    try:
        return base64.b64decode(stripped, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return text


def decode_payload(body: bytes | str) -> list[GridEvent]:
    """Events from a queue message or webhook body: base64 or JSON, one event or an array."""
    try:
        parsed = json.loads(queue_text(body))
    except ValueError:
        raise RequestInvalid("The payload is neither JSON nor base64-encoded JSON.",
                             [FieldError("body", "malformed JSON")]) from None
    items = parsed if isinstance(parsed, list) else [parsed]
    events = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise RequestInvalid(f"Event {i} is not a JSON object.",
                                 [FieldError(f"[{i}]", "an event object is required")])
        etype = ci_get(item, "eventType") or ci_get(item, "type")
        data = ci_get(item, "data")
        if not isinstance(etype, str) or not isinstance(data, dict | type(None)):
            raise RequestInvalid(f"Event {i} has no eventType/type.",
                                 [FieldError(f"[{i}].eventType", "required")])
        events.append(GridEvent(id=str(ci_get(item, "id", "")), type=etype, data=data or {},
                                time=ci_get(item, "eventTime") or ci_get(item, "time"),
                                raw=item))
    return events
