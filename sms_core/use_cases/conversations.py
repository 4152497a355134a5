"""The conversations view: both directions between one of our numbers and one person."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sms_core.adapters.conversation_store import MAX_PAGE
from sms_core.bootstrap import Services
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.messages import parse_recipient, parse_sender


def conversation_page(services: Services, number: str,
                      params: Mapping[str, str]) -> dict[str, Any]:
    """`GET /api/conversations/{number}?from=&limit=&continuationToken=` (`from` defaults to
    SMS_DEFAULT_FROM)."""
    sender = parse_sender(params.get("from") or services.settings.default_from)
    their = parse_recipient(number, "number")
    raw_limit = params.get("limit") or "50"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_PAGE:
        raise RequestInvalid(f"limit must be 1..{MAX_PAGE}.",
                             [FieldError("limit", f"an integer from 1 to {MAX_PAGE}")])
    entries, token = services.conversations.page(sender, their, int(raw_limit),
                                                 params.get("continuationToken"))
    return {"messages": [e.public() for e in entries], "continuationToken": token}
