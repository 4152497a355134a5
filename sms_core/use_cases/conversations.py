"""The conversations view: both directions between one of our numbers and one person."""

from __future__ import annotations

import logging
from typing import Protocol

from sms_core.models.conversations import (
    ConversationListPublic,
    ConversationMessagePublic,
    ConversationPagePublic,
    ConversationSummaryPublic,
)
from sms_core.models.messages import parse_sender
from sms_core.models.queries import ConversationListQuery, ConversationQuery
from sms_core.settings import Settings
from sms_core.use_cases.ports import (
    ConversationBackfill,
    ConversationIndex,
    Conversations,
    OptOuts,
)

log = logging.getLogger(__name__)
# Pages of 1,000 conversation rows a timer run reads: a few seconds' work every five minutes.
BACKFILL_PAGES = 5


class ConversationDeps(Protocol):
    """The ports reading a conversation needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def conversations(self) -> Conversations: ...


def conversation_page(deps: ConversationDeps, query: ConversationQuery) -> ConversationPagePublic:
    """One page of a conversation, oldest first; our number defaults to SMS_DEFAULT_FROM."""
    sender = query.sender or parse_sender(deps.settings.default_from)
    entries, token = deps.conversations.page(sender, query.their_number, query.limit,
                                             query.continuation)
    return ConversationPagePublic(messages=[ConversationMessagePublic.of(e) for e in entries],
                                  continuation_token=token)


class ConversationListDeps(Protocol):
    """The ports listing a sender's conversations needs."""

    @property
    def settings(self) -> Settings: ...
    @property
    def conversations(self) -> ConversationIndex: ...
    @property
    def optouts(self) -> OptOuts: ...


def conversation_list(deps: ConversationListDeps,
                      query: ConversationListQuery) -> ConversationListPublic:
    """A page of the sender's conversations, newest first, each with the person's opt-out
    state (one bulk check for the page); our number defaults to SMS_DEFAULT_FROM."""
    sender = query.sender or parse_sender(deps.settings.default_from)
    entries, token = deps.conversations.recent(sender, query.limit, query.continuation)
    opted = deps.optouts.opted_out_among(sender, [e.their_number for e in entries])
    return ConversationListPublic(conversations=[ConversationSummaryPublic(
        number=e.their_number, last_message=e.last_message, last_direction=e.last_direction,
        last_at=e.last_at, opted_out=e.their_number in opted) for e in entries],
        continuation_token=token)


class BackfillDeps(Protocol):
    """The port the conversation backfill needs."""

    @property
    def conversations(self) -> ConversationBackfill: ...


def backfill_conversations(deps: BackfillDeps) -> int:
    """Timer: copy conversation rows of the earlier layout (a partition per conversation) into
    their senders' partitions and lists, a few pages per run; once all are copied, each run
    costs one point read."""
    copied, done = deps.conversations.backfill(BACKFILL_PAGES)
    if copied:
        log.info("conversation backfill: %d row(s) copied%s", copied,
                 "; every conversation is in its sender's partition" if done else "")
    return copied
