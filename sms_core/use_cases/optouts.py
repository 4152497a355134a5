"""The opt-out admin API, in the shapes of ACS's own Opt-Out API so apps written for it fit.

`POST /api/optouts/add|remove|check` with `{"from", "recipients": [{"to"}]}` (1 to 100) answer
200 `{"value": [{"to", "httpStatusCode", "isOptedOut"?, "errorMessage"?}]}`, one entry per
recipient in order: a bad number is a 400 entry, not a failed request (as ACS does).
"""

from __future__ import annotations

import csv
import io
import uuid
from typing import Literal

from optout_store.records import GLOBAL_SENDER
from sms_core.concurrency import run_all
from sms_core.errors import FieldError, RequestInvalid, StorageUnavailable
from sms_core.models.messages import parse_sender
from sms_core.models.optouts import (
    OptOutEntryPublic,
    OptOutHistoryPublic,
    OptOutRecipient,
    OptOutRequest,
    OptOutResultPublic,
    OptOutResultsPublic,
)
from sms_core.rules.phone import InvalidPhoneNumber, to_e164
from sms_core.use_cases.optout_changes import OptOutChangeDeps, change_optout
from sms_core.use_cases.ports import OptOuts

Action = Literal["add", "remove", "check"]
ACTIONS: tuple[Action, ...] = ("add", "remove", "check")
INVALID_NUMBER = "Invalid recipient phone number format"


def change_optouts(deps: OptOutChangeDeps, action: str,
                   request: OptOutRequest) -> OptOutResultsPublic:
    """Run add, remove or check for every recipient; one entry each, in request order."""
    if action not in ACTIONS:
        raise RequestInvalid(f"Unknown opt-out action '{action}': use add, remove or check.",
                             [FieldError("action", "one of add, remove, check")])
    sender = parse_sender(request.from_)
    numbers: list[str | None] = []
    for r in request.recipients:
        try:
            numbers.append(to_e164(r.to))
        except InvalidPhoneNumber:
            numbers.append(None)
    valid = [n for n in numbers if n]
    opted = deps.optouts.opted_out_among(sender, valid) if action == "check" else set()
    def entry(item: tuple[OptOutRecipient, str | None]) -> OptOutResultPublic:
        recipient, number = item
        if number is None:
            return OptOutResultPublic(to=recipient.to, http_status_code=400,
                                      error_message=INVALID_NUMBER)
        if action == "check":
            return OptOutResultPublic(to=number, http_status_code=200,
                                      is_opted_out=number in opted)
        return _change_one(deps, action, sender, number)

    # Each change is its own read and writes; run them side by side, answer in request order.
    return OptOutResultsPublic(value=run_all(entry, zip(request.recipients, numbers,
                                                        strict=True)))


def _change_one(deps: OptOutChangeDeps, action: str, sender: str,
                number: str) -> OptOutResultPublic:
    try:
        change_optout(deps, sender, number, opted_out=action == "add", source="api",
                      event_id=f"optout-api-{uuid.uuid4().hex}")
    except StorageUnavailable as exc:
        return OptOutResultPublic(to=number, http_status_code=500, error_message=exc.detail)
    return OptOutResultPublic(to=number, http_status_code=200)


def optout_history(optouts: OptOuts, sender: str, recipient: str) -> OptOutHistoryPublic:
    """`GET /api/optouts/history?from=&to=`: every change of the pair, oldest first."""
    return OptOutHistoryPublic(value=[OptOutEntryPublic(
        from_=e.sender, to=e.recipient, action=e.action, at=e.at.isoformat(), source=e.source,
        keyword=e.keyword, text=e.text, inbound_message_id=e.inbound_message_id,
        reason=e.reason) for e in optouts.history(sender, recipient)])


def optout_export_csv(optouts: OptOuts, sender: str) -> str:
    """`GET /api/optouts/export?from=`: the current opt-out list of a sender (and global) as CSV."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["from", "to", "scope", "optedOutAt", "source", "keyword"])
    for partition in dict.fromkeys((sender, GLOBAL_SENDER)):
        for rec in optouts.list_opted_out(partition):
            writer.writerow([sender, rec.recipient,
                             "global" if partition == GLOBAL_SENDER else "sender",
                             rec.updated_at.isoformat(), rec.source or "", rec.keyword or ""])
    return out.getvalue()
