"""Requests of the opt-out admin API (`POST /api/optouts/add|remove|check`), ACS shapes."""

from __future__ import annotations

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
