"""Inbound SMS from Event Grid: handshakes, keywords, opt-out lifecycle, relay to the app.

Steps for one `Microsoft.Communication.SMSReceived` event, each idempotent so that Event Grid's
redeliveries and a crash half-way are harmless:

1. claim the inbound message id (a fully processed redelivery stops here);
2. a keyword acts at once: opt-out / opt-in recorded (history keyed by the inbound id), the
   reply accepted with an Idempotency-Key derived from the inbound id (one reply, ever);
3. record it in the conversation (a text longer than storage holds is kept cut, with its
   length: `sms_core.rules.kept_text`);
4. relay `sms.received` (and `optout.changed` when the state changed) to the app;
5. mark the message done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sms_core.errors import RequestInvalid
from sms_core.logs import concern, fields, mask_number
from sms_core.models.app_events import received_event
from sms_core.models.events import InboundSms, InvalidInbound
from sms_core.models.records import ConversationRecord
from sms_core.rules.kept_text import kept_text
from sms_core.rules.keywords import KeywordEngine, KeywordMatch
from sms_core.use_cases.analytics import InboundCountDeps, count_inbound
from sms_core.use_cases.optout_changes import OptOutChangeDeps, change_optout
from sms_core.use_cases.ports import InboundLedger, ProviderIds
from sms_core.use_cases.sending import SendDeps, accept_reply

log = logging.getLogger(__name__)



class InboundDeps(SendDeps, OptOutChangeDeps, InboundCountDeps, Protocol):
    """The ports handling inbound SMS needs (replies are sends, keywords change opt-outs)."""

    @property
    def inbound(self) -> InboundLedger: ...
    @property
    def provider_ids(self) -> ProviderIds: ...
    @property
    def keywords(self) -> KeywordEngine: ...


@dataclass(frozen=True, slots=True)
class InboundResult:
    """What one Event Grid delivery of inbound messages came to."""

    processed: int
    invalid: list[RequestInvalid]


def receive_inbound(deps: InboundDeps,
                    messages: Sequence[InboundSms | InvalidInbound]) -> InboundResult:
    """Process each inbound SMS of a delivery; keep the ones that cannot be used."""
    processed, invalid = 0, []
    for message in messages:
        if isinstance(message, InvalidInbound):
            deps.provider_ids.keep_unmatched("invalid-inbound", message.event_id or "-",
                                             dict(message.raw))
            invalid.append(message.error)
            continue
        receive_sms(deps, message)
        processed += 1
    return InboundResult(processed, invalid)


def receive_sms(deps: InboundDeps, sms: InboundSms) -> None:
    """Process one inbound SMS (idempotent; see the module docstring)."""
    concern(inboundId=sms.id)
    # What storage and the app event can hold of the text (cut beyond, saying its length);
    # the keyword rule below reads the text as received.
    text = kept_text(sms.text)
    if not deps.inbound.claim(sms.id, {"From": sms.their_number, "To": sms.our_number,
                                           "Text": text, "Length": len(sms.text),
                                           "ReceivedAt": sms.received_at}):
        log.info("inbound %s already processed", sms.id,
                 extra=fields(sms.id, inboundId=sms.id, duplicate=True))
        return
    match = deps.keywords.match(sms.text)
    # The keyword acts first: an opt-out must not wait on (or fail with) the conversation row.
    if match is not None:
        _act_on_keyword(deps, sms, match)
    deps.conversations.record([ConversationRecord(
        our_number=sms.our_number, their_number=sms.their_number, direction="inbound",
        message_id=sms.id, text=text, at=sms.received_at,
        keyword=match.keyword if match else None,
        length=len(sms.text) if text != sms.text else None)])
    count_inbound(deps, sms.id, sms.our_number, sms.their_number, sms.received_at,
                  match.kind if match else None)
    deps.app_events.publish(*received_event(
        sms.id, sms.their_number, sms.our_number, text,
        keyword=match.keyword if match else None, keyword_kind=match.kind if match else None,
        received_at=sms.received_at, length=len(sms.text)), at=sms.received_at)
    deps.inbound.complete(sms.id)
    _log_inbound(sms, match)


def _log_inbound(sms: InboundSms, match: KeywordMatch | None) -> None:
    """The line of an inbound text: who wrote (the handset masked to its last 4 digits, our
    number in full: it is the business's, and tells which line was written to), the keyword it
    was, its length; never the text."""
    log.info("inbound %s from %s to %s: %s, %d character(s)", sms.id,
             mask_number(sms.their_number), sms.our_number,
             f"keyword {match.keyword} ({match.kind})" if match else "no keyword",
             len(sms.text),
             extra=fields(sms.id, inboundId=sms.id, sender=mask_number(sms.their_number),
                          recipient=sms.our_number, keyword=match.keyword if match else None,
                          keywordKind=match.kind if match else None, length=len(sms.text)))


def _act_on_keyword(deps: InboundDeps, sms: InboundSms, match: KeywordMatch) -> None:
    if match.kind in ("opt_out", "opt_in"):
        change_optout(deps, sms.our_number, sms.their_number, opted_out=match.kind == "opt_out",
                      source="keyword", event_id=f"optout-{sms.id}", keyword=match.keyword,
                      text=sms.text[:1000], inbound_message_id=sms.id, at=sms.received_at,
                      event_details={"keyword": match.keyword, "inboundMessageId": sms.id,
                                     "at": sms.received_at.isoformat()})
    if deps.settings.auto_reply and match.reply:
        accept_reply(deps, sms.our_number, sms.their_number, match.reply, sms.id,
                     confirms_opt_out=match.kind == "opt_out")
