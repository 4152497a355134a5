"""The conversations view: both directions between one of our numbers and one person."""

from __future__ import annotations

from typing import Protocol

from sms_core.models.conversations import ConversationMessagePublic, ConversationPagePublic
from sms_core.models.messages import parse_sender
from sms_core.models.queries import ConversationQuery
from sms_core.settings import Settings
from sms_core.use_cases.ports import Conversations


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
