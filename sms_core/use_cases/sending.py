"""Accepting a send request: validate, check opt-outs, store, enqueue; idempotent with a key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from sms_core.errors import FieldError, RequestInvalid
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
from sms_core.use_cases.ports import IdempotencyKeys, Jobs, OptOuts
from sms_core.use_cases.status_changes import StatusDeps, status_changes


class SendDeps(StatusDeps, Protocol):
    """The ports accepting a send request needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def optouts(self) -> OptOuts: ...
    @property
    def idempotency(self) -> IdempotencyKeys: ...
    @property
    def jobs(self) -> Jobs: ...


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


def _plan(optouts: OptOuts, request: SendRequest, sender: str, batch: str,
          now: datetime, optout_exempt: bool) -> list[MessageRecord]:
    """One record per recipient, in request order, with its initial status decided."""
    seg = count_segments(request.message)
    pending = (MessageStatus.SCHEDULED if request.send_at is not None and request.send_at > now
               else MessageStatus.QUEUED)
    normalised: list[str | InvalidPhoneNumber] = []
    for raw in request.recipients:
        try:
            normalised.append(to_e164(raw))
        except InvalidPhoneNumber as exc:
            normalised.append(exc)
    opted_out = set() if optout_exempt else optouts.opted_out_among(
        sender, {n for n in normalised if isinstance(n, str)})
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


def accept_send(deps: SendDeps, request: SendRequest,
                idempotency_key: str | None = None, *,
                optout_exempt: bool = False) -> SendResponse:
    """Accept a send request: every recipient gets a stored message and pending ones a job.

    With an Idempotency-Key, a retry (same body) returns the first answer and sends nothing
    new; a retry after a crash finishes the first attempt's work; another body is a 409.
    `optout_exempt` is only for the confirmation of a STOP (see `accept_reply`).
    """
    sender = resolve_sender(request.from_, deps.settings.default_from)
    batch = new_batch_id()
    if idempotency_key is not None:
        claim = deps.idempotency.claim(validate_key(idempotency_key),
                                       request.fingerprint())
        batch = claim.batch
        if claim.completed:
            stored = deps.messages.load(batch)
            if len(stored) == len(request.recipients):
                return SendResponse(messages=[_result(r) for r in stored])
    now = datetime.now(UTC)
    with status_changes(deps) as changes:
        stored = changes.create_batch(
            _plan(deps.optouts, request, sender, batch, now, optout_exempt))
    pending = [r for r in stored if r.initial_status in PENDING_STATUSES]
    if pending:
        send_at = pending[0].send_at
        delay = (send_at - datetime.now(UTC)).total_seconds() if send_at else 0.0
        jobs = [DispatchJob(batch=batch,
                            indices=[r.index for r in pending[i:i + MAX_RECIPIENTS_PER_CALL]],
                            not_before=send_at if delay > 0 else None)
                for i in range(0, len(pending), MAX_RECIPIENTS_PER_CALL)]
        deps.jobs.enqueue_many(jobs, delay_s=delay)
    if idempotency_key is not None:
        deps.idempotency.complete(idempotency_key)
    return SendResponse(messages=[_result(r) for r in stored])


def accept_reply(deps: SendDeps, our_number: str, their_number: str, text: str,
                 inbound_id: str, *, confirms_opt_out: bool = False) -> SendResponse:
    """Send an automatic reply to an inbound message, exactly once per inbound message.

    The Idempotency-Key is derived from the inbound message id, so Event Grid delivering the
    same STOP twice yields one reply. Only the confirmation of an opt-out may reach a person who
    opted out (`confirms_opt_out`); any other reply to them is `blocked` like every message.
    """
    request = SendRequest.model_validate({"from": our_number, "to": their_number,
                                          "message": text, "tag": "auto-reply"})
    return accept_send(deps, request, f"reply-{inbound_id}"[:255],
                       optout_exempt=confirms_opt_out)
