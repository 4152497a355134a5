"""The project's one error tree.

Every error that the domain raises on purpose derives from `SmsError`. HTTP mapping happens in
one place, `sms_http.problems`; queue handlers decide retry-or-record from the class alone.

    SmsError
    ├── RequestInvalid          400  the request as a whole is invalid; `errors` name the fields
    ├── NotFound                404  no such resource
    ├── Conflict                409  e.g. an Idempotency-Key reused with another body
    ├── SettingsError                a setting is missing or invalid (names the setting)
    ├── StorageUnavailable      503  Table/Queue storage did not answer; safe to retry
    │   └── PartlyStored             some transactions of a send request failed, others are
    │                                stored (the use case answers 202 for those)
    └── ProviderError                ACS answered with an error for a whole send call
        ├── ProviderThrottled        429: retry after `retry_after` seconds
        ├── ProviderUnavailable      5xx or connection failure: retry later
        └── ProviderRejected         4xx other than 429: retrying will not help
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One invalid field: a JSON-pointer-like path (`to[2]`, `message`) and what is wrong."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        """The problem+json `errors` entry for this field."""
        return {"field": self.field, "message": self.message}


class SmsError(Exception):
    """Root of every error this project raises on purpose."""

    title = "SMS error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class RequestInvalid(SmsError):
    """The request is invalid as a whole; nothing was written."""

    title = "Invalid request"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class NotFound(SmsError):
    """The resource does not exist."""

    title = "Not found"


class Conflict(SmsError):
    """The request conflicts with the stored state (for example a reused Idempotency-Key)."""

    title = "Conflict"


class SettingsError(SmsError):
    """A setting is missing or invalid; the message names the setting."""

    title = "Invalid configuration"


class StorageUnavailable(SmsError):
    """Table or Queue storage failed to answer; the operation can be retried."""

    title = "Storage unavailable"


class PartlyStored(StorageUnavailable):
    """Storage failed for some transactions of a batch while others were committed.

    `stored` holds the records that are durable: they must be answered as accepted (their
    outbox rows guarantee they are sent), so a client never has a reason to send them again.
    """

    def __init__(self, detail: str, stored: list[Any]) -> None:
        super().__init__(detail)
        self.stored = stored


class ProviderError(SmsError):
    """ACS refused a whole send call."""

    title = "Provider error"

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


class ProviderThrottled(ProviderError):
    """ACS answered 429; try again after `retry_after` seconds."""

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail, 429)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """ACS answered 5xx or could not be reached; try again later."""


class ProviderRejected(ProviderError):
    """ACS answered a 4xx other than 429 for the whole call; a retry would fail the same way."""
