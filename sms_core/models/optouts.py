"""Requests of the opt-out admin API (`POST /api/optouts/add|remove|check`), ACS shapes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class OptOutRecipient(BaseModel):
    """One recipient of an opt-out request."""

    model_config = ConfigDict(extra="forbid")
    to: StrictStr


class OptOutRequest(BaseModel):
    """Body of `POST /api/optouts/{add|remove|check}`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    from_: StrictStr = Field(alias="from")
    recipients: list[OptOutRecipient] = Field(min_length=1, max_length=100)


def _dump(model: BaseModel) -> dict[str, Any]:
    # None is "not said" in these ACS-shaped answers: the key is left out, as ACS does.
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class OptOutResultPublic(BaseModel):
    """One recipient's answer: `httpStatusCode` per recipient, as ACS's Opt-Out API has it."""

    to: str
    http_status_code: int = Field(serialization_alias="httpStatusCode")
    is_opted_out: bool | None = Field(None, serialization_alias="isOptedOut")
    error_message: str | None = Field(None, serialization_alias="errorMessage")


class OptOutResultsPublic(BaseModel):
    """Body of `POST /api/optouts/{add|remove|check}`: one result per recipient, in order."""

    value: list[OptOutResultPublic]

    def public(self) -> dict[str, Any]:
        """The JSON body."""
        return {"value": [_dump(r) for r in self.value]}


class OptOutEntryPublic(BaseModel):
    """One change of the audit trail."""

    from_: str = Field(serialization_alias="from")
    to: str
    action: Literal["opt-out", "opt-in"]
    at: str  # ISO 8601 as stored
    source: str
    keyword: str | None = None
    text: str | None = None
    inbound_message_id: str | None = Field(None, serialization_alias="inboundMessageId")
    reason: str | None = None


class OptOutHistoryPublic(BaseModel):
    """Body of `GET /api/optouts/history`: every change of one pair, oldest first."""

    value: list[OptOutEntryPublic]

    def public(self) -> dict[str, Any]:
        """The JSON body."""
        return {"value": [_dump(e) for e in self.value]}
