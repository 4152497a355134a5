"""Accepting a send request: validate, check opt-outs, store, send or enqueue; idempotent with a
key."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Protocol

from sms_core.concurrency import run_all
from sms_core.errors import FieldError, PartlyStored, RequestInvalid, StorageUnavailable
from sms_core.logs import concern
from sms_core.models.messages import (
    MAX_RECIPIENTS_PER_CALL,
    PENDING_STATUSES,
    DispatchJob,
    MessageStatus,
    RecipientResult,
    SendRequest,
    SendResponse,
    validate_key,
)
from sms_core.models.records import MessageRecord, new_batch_id
from sms_core.rules.phone import InvalidPhoneNumber, sender_to_e164_or_shortcode, to_e164
from sms_core.rules.segments import count_segments
from sms_core.settings import Settings
from sms_core.use_cases.dispatch import (
    DispatchDeps,
    log_dispatch,
    repeatability_id,
    send_claimed,
)
from sms_core.use_cases.outbox import behind_the_sweeper, enqueue_dispatch
from sms_core.use_cases.ports import IdempotencyKeys, Outbox
from sms_core.use_cases.status_changes import StatusChanges, status_changes

log = logging.getLogger(__name__)


INLINE_WITHIN_S = 0.5  # a pacing slot this close is waited for by the accepting request


class SendDeps(DispatchDeps, Protocol):
    """The ports accepting a send request needs (sending inline is dispatching)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def idempotency(self) -> IdempotencyKeys: ...
    @property
    def outbox(self) -> Outbox: ...


def resolve_sender(request_from: str | None, default_from: str | None) -> str:
    """The sender for a request: its `from`, else SMS_DEFAULT_FROM; 400 naming `from` if bad."""
    raw = request_from if request_from is not None else default_from
    if raw is None:
        raise RequestInvalid("No sender: give `from` or set SMS_DEFAULT_FROM.",
                             [FieldError("from", "required (no SMS_DEFAULT_FROM is configured)")])
    try:
        return sender_to_e164_or_shortcode(raw)
    except InvalidPhoneNumber as exc:
        raise RequestInvalid(f"Unknown sender format: {exc.reason}",
                             [FieldError("from", exc.reason)]) from None


def _result(record: MessageRecord) -> RecipientResult:
    return RecipientResult(id=record.id, to=record.to, status=record.initial_status,
                           segments=record.segments, encoding=record.encoding,
                           error=record.error if record.initial_status not in PENDING_STATUSES
                           else None)


def _normalised(request: SendRequest) -> list[str | InvalidPhoneNumber]:
    """Each recipient in E.164, or why it is not a number we can send to."""
    normalised: list[str | InvalidPhoneNumber] = []
    for raw in request.recipients:
        try:
            normalised.append(to_e164(raw))
        except InvalidPhoneNumber as exc:
            normalised.append(exc)
    return normalised


def _plan(request: SendRequest, normalised: list[str | InvalidPhoneNumber],
          opted_out: set[str], sender: str, batch: str, now: datetime,
          optout_exempt: bool) -> list[MessageRecord]:
    """One record per recipient, in request order, with its initial status decided."""
    seg = count_segments(request.message)
    pending = _pending_status(request, now)
    first_index: dict[str, int] = {}
    records = []
    for i, (raw, number) in enumerate(zip(request.recipients, normalised, strict=True)):
        status, error, to = pending, None, raw
        if isinstance(number, InvalidPhoneNumber):
            status, error = MessageStatus.REJECTED, number.reason
        else:
            to = number
            if number in first_index:
                status = MessageStatus.REJECTED
                error = f"duplicate recipient: same number as to[{first_index[number]}]"
            elif number in opted_out:
                status = MessageStatus.BLOCKED
                error = f"{number} opted out of messages from {sender}"
            else:
                first_index[number] = i
        records.append(MessageRecord(
            batch=batch, index=i, sender=sender, to=to, body=request.message, status=status,
            initial_status=status, segments=seg.segments, encoding=seg.encoding,
            created_at=now, updated_at=now, tag=request.tag,
            delivery_report=request.delivery_report, error=error, send_at=request.send_at,
            optout_exempt=optout_exempt and status in PENDING_STATUSES))
    return records


def _pending_status(request: SendRequest, now: datetime) -> MessageStatus:
    return (MessageStatus.SCHEDULED if request.send_at is not None and request.send_at > now
            else MessageStatus.QUEUED)


def _screen_and_reserve(deps: SendDeps, request: SendRequest, sender: str, now: datetime,
                        normalised: list[str | InvalidPhoneNumber], optout_exempt: bool,
                        priority: bool) -> tuple[set[str], float | None]:
    """The recipients among `normalised` who opted out, and the pacing slot of the others when
    they can leave from this request (None: they go on the queue).

    The slot is reserved while the opt-out state is read, two round trips side by side instead
    of one after the other on the way to ACS; the share of recipients who turn out to have opted
    out is given back (for a single recipient who opted out: a reservation and its return).
    """
    numbers = {n for n in normalised if isinstance(n, str)}
    expected = len(numbers) if _pending_status(request, now) == MessageStatus.QUEUED else 0
    slot: list[float | None] = [None]
    opted_out: set[str] = set()

    def reserve() -> None:
        if 0 < expected <= MAX_RECIPIENTS_PER_CALL:
            slot[0] = deps.pacer.reserve_within(sender, expected, INLINE_WITHIN_S,
                                                priority=priority)

    def screen() -> None:
        if not optout_exempt:
            opted_out.update(deps.optouts.opted_out_among(sender, numbers))

    try:  # the screen first: this thread takes it, and its own reads can then run side by side
        run_all(lambda step: step(), [screen, reserve])
    except Exception:
        if slot[0] is not None:  # nothing is accepted: the slot goes back
            deps.pacer.give_back(sender, expected)
        raise
    if slot[0] is not None and opted_out:
        deps.pacer.give_back(sender, len(opted_out & numbers))
        if opted_out >= numbers:
            return opted_out, None
    return opted_out, slot[0]


def accept_send(deps: SendDeps, request: SendRequest,
                idempotency_key: str | None = None, *,
                optout_exempt: bool = False, priority: bool = False) -> SendResponse:
    """Accept a send request: every recipient gets a stored message, and pending ones leave.

    The messages are stored first, with their outbox rows, in one transaction per 99; a request
    whose pending messages fit one ACS call and whose sender's pace has room sends them right
    away (no queue between an accepted message and ACS), any other goes on `sms-outbound`. Once
    the messages are stored the answer is 202: what fails after that is finished by dispatch's
    retries or by the outbox sweeper (`use_cases/outbox.py`), never by a client's retry.

    With an Idempotency-Key, a retry (same body) returns the first answer and sends nothing
    new; a retry after a crash finishes the first attempt's work; another body is a 409.
    `optout_exempt` is only for the confirmation of a STOP, `priority` for keyword replies
    (see `accept_reply`).
    """
    sender = resolve_sender(request.from_, deps.settings.default_from)
    batch = new_batch_id()
    if idempotency_key is not None:
        claim = deps.idempotency.claim(validate_key(idempotency_key),
                                       request.fingerprint())
        batch = claim.batch
        concern(batch=batch)
        if claim.completed:
            stored = deps.messages.load(batch)
            if len(stored) == len(request.recipients):
                return SendResponse(messages=[_result(r) for r in stored])
    concern(batch=batch)
    now = datetime.now(UTC)
    normalised = _normalised(request)
    opted_out, slot = _screen_and_reserve(deps, request, sender, now, normalised,
                                          optout_exempt, priority)
    records = _plan(request, normalised, opted_out, sender, batch, now, optout_exempt)
    pending = [r for r in records if r.status == MessageStatus.QUEUED]
    if slot is not None:  # the claim rides on the accepting transaction
        first_sent = format_datetime(now, usegmt=True)
        for r in pending:
            r.repeatability_id, r.first_sent, r.first_sent_at = (
                repeatability_id(r), first_sent, now)
    with status_changes(deps) as changes:
        lost: set[int] = set()
        try:
            stored = changes.create_batch(records, outbox=True)
        except PartlyStored as exc:  # answered for what is durable, see `_not_stored`
            log.warning("batch %s partly stored: %s", batch, exc.detail)
            changes.created(exc.stored)
            stored, lost = _not_stored(records, exc.stored)
        # Durable from here on: whatever fails now, the answer is 202.
        waiting = [r for r in stored if r.status in PENDING_STATUSES and r.index not in lost]
        if waiting:
            _hand_over(deps, changes, batch, waiting, slot, priority)
    if idempotency_key is not None and not lost:  # else a retry with the key stores the rest
        try:
            deps.idempotency.complete(idempotency_key)
        except StorageUnavailable:  # a retry with the key re-reads the stored messages
            log.warning("could not mark Idempotency-Key of batch %s complete", batch,
                        exc_info=True)
    return SendResponse(messages=[_result(r) for r in stored])


def _not_stored(planned: list[MessageRecord], stored: list[MessageRecord]
                ) -> tuple[list[MessageRecord], set[int]]:
    """The answer to a partly stored request, and the indices not stored: the stored messages
    as stored, the others `rejected` (nothing of them was kept, so sending them again cannot
    duplicate)."""
    durable = {r.index: r for r in stored}
    lost = {r.index for r in planned} - set(durable)
    return [durable.get(r.index) or replace(
        r, status=MessageStatus.REJECTED, initial_status=MessageStatus.REJECTED,
        error="not accepted: storage was unavailable; send to this recipient again")
        for r in planned], lost


def _hand_over(deps: SendDeps, changes: StatusChanges, batch: str,
               waiting: list[MessageRecord], slot: float | None, priority: bool) -> None:
    """Send the stored pending messages inline, or put them on the queue; then clear their
    outbox rows. A storage failure leaves the rows for the sweeper."""
    try:
        if slot is not None and all(r.first_sent for r in waiting):
            wait = slot - time.time()
            if wait > 0:
                time.sleep(wait)
            job = DispatchJob(batch=batch, indices=[r.index for r in waiting],
                              priority=priority or None)
            sent = send_claimed(deps, changes, job, waiting, attempt=1, clear_outbox=True)
            log_dispatch(job, sent, attempt=1, inline=True)
            if sent.outbox_cleared:
                return
        else:
            if slot is not None:  # a retry found them stored unclaimed: the queue claims them
                deps.pacer.give_back(waiting[0].sender, len(waiting))
            enqueue_dispatch(deps.jobs, batch, waiting, priority=priority)
        for marks in (False, True):  # outbox rows, or marks on one-message transactions' rows
            if indices := [r.index for r in waiting if r.outbox == marks]:
                deps.outbox.clear_outbox(batch, indices, on_messages=marks)
    except StorageUnavailable:
        if behind_the_sweeper(batch, datetime.now(UTC)):
            raise  # a keyed retry of an old batch: 503, and the client's retry finishes it
        log.warning("batch %s is stored but not handed over; the outbox sweeper will",
                    batch, exc_info=True)


def accept_reply(deps: SendDeps, our_number: str, their_number: str, text: str,
                 inbound_id: str, *, confirms_opt_out: bool = False) -> SendResponse:
    """Send an automatic reply to an inbound message, exactly once per inbound message.

    The Idempotency-Key is derived from the inbound message id, so Event Grid delivering the
    same STOP twice yields one reply. Replies are paced ahead of the sender's bulk traffic: the
    person who just wrote is waiting for the answer. Only the confirmation of an opt-out may
    reach a person who opted out (`confirms_opt_out`); any other reply to them is `blocked` like
    every message.
    """
    request = SendRequest.model_validate({"from": our_number, "to": their_number,
                                          "message": text, "tag": "auto-reply"})
    return accept_send(deps, request, f"reply-{inbound_id}"[:255],
                       optout_exempt=confirms_opt_out, priority=True)
