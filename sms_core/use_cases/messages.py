"""Reading messages: `GET /api/messages/{id}`, the message with its full history."""

from __future__ import annotations

from sms_core.logs import concern
from sms_core.models.messages import MessageEvent, MessagePublic
from sms_core.use_cases.ports import Messages


def get_message(messages: Messages, message_id: str) -> MessagePublic:
    """The message, its status and every event of its history; NotFound for unknown ids."""
    concern(messageId=message_id)
    rec, events = messages.with_history(message_id)
    concern(batch=rec.batch)
    # The history starts with the status the message was accepted in.
    history = [MessageEvent(status=rec.initial_status, at=rec.created_at), *events]
    return MessagePublic(
        id=rec.id, from_=rec.sender, to=rec.to, message=rec.body, status=rec.status,
        error=rec.error, tag=rec.tag, segments=rec.segments, encoding=rec.encoding,
        delivery_report=rec.delivery_report, provider_message_id=rec.provider_message_id,
        created_at=rec.created_at, updated_at=rec.updated_at, send_at=rec.send_at,
        sent_at=rec.sent_at, history=history)
