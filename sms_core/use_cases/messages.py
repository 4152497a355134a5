"""Reading messages: `GET /api/messages/{id}`, the message with its full history, and the
segment counter of a draft (`POST /api/segments`)."""

from __future__ import annotations

from sms_core.logs import concern
from sms_core.models.messages import MessageEvent, MessagePublic, SegmentsPublic
from sms_core.rules.segments import count_segments
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


def segment_count(text: str) -> SegmentsPublic:
    """What sending `text` costs: its characters (code points), segments, encoding and the
    distinct characters forcing UCS-2 in first-seen order (the rules a send and a campaign
    preview apply, `sms_core.rules.segments`)."""
    info = count_segments(text)
    return SegmentsPublic(characters=len(text), segments=info.segments, encoding=info.encoding,
                          ucs2_characters=list(info.ucs2_characters))
