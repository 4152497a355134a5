"""Reading messages: `GET /api/messages/{id}`, the message with its full history."""

from __future__ import annotations

from sms_core.models.messages import MessagePublic
from sms_core.use_cases.ports import Messages


def get_message(messages: Messages, message_id: str) -> MessagePublic:
    """The message, its status and every event of its history; NotFound for unknown ids."""
    return messages.get(message_id)
