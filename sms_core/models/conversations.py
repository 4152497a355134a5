"""The conversations view: `GET /api/conversations/{number}`, both directions in time order."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from sms_core.models.records import ConversationRecord


class ConversationMessagePublic(BaseModel):
    """One message of a conversation, as the API shows it."""

    id: str
    direction: Literal["inbound", "outbound"]
    from_: str = Field(serialization_alias="from")
    to: str
    message: str
    at: str  # ISO 8601 as stored (`+00:00`), the same text the row was written with
    keyword: str | None = None

    @classmethod
    def of(cls, entry: ConversationRecord) -> ConversationMessagePublic:
        """The view of a stored entry: `from`/`to` as the message travelled."""
        inbound = entry.direction == "inbound"
        return cls(id=entry.message_id, direction=entry.direction,
                   from_=entry.their_number if inbound else entry.our_number,
                   to=entry.our_number if inbound else entry.their_number,
                   message=entry.text, at=entry.at.isoformat(), keyword=entry.keyword or None)


class ConversationPagePublic(BaseModel):
    """One page of a conversation and the token of the next (None on the last page)."""

    messages: list[ConversationMessagePublic]
    continuation_token: str | None = Field(serialization_alias="continuationToken")

    def public(self) -> dict[str, Any]:
        """The JSON body (an entry without a keyword has no `keyword` key)."""
        return {"messages": [m.model_dump(mode="json", by_alias=True, exclude_none=True)
                             for m in self.messages],
                "continuationToken": self.continuation_token}


class ConversationSummaryPublic(BaseModel):
    """One conversation of `GET /api/conversations`: the person, the last message, opt-out."""

    number: str
    last_message: str = Field(serialization_alias="lastMessage")
    last_direction: Literal["inbound", "outbound"] = Field(serialization_alias="lastDirection")
    last_at: datetime = Field(serialization_alias="lastAt")
    opted_out: bool = Field(serialization_alias="optedOut")


class ConversationListPublic(BaseModel):
    """Body of `GET /api/conversations`: a sender's conversations, newest first."""

    conversations: list[ConversationSummaryPublic]
    continuation_token: str | None = Field(serialization_alias="continuationToken")

    def public(self) -> dict[str, Any]:
        """The JSON body."""
        return self.model_dump(mode="json", by_alias=True)
