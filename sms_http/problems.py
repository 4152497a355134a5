"""Map the error tree to RFC 9457 problem details: the one place where errors meet HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sms_core.errors import (
    Conflict,
    NotFound,
    RequestInvalid,
    SettingsError,
    SmsError,
    StorageUnavailable,
)

PROBLEM_CONTENT_TYPE = "application/problem+json"
_TYPE_BASE = "https://github.com/sms-functions/errors/"

_STATUS_BY_CLASS: tuple[tuple[type[SmsError], int, str], ...] = (
    (RequestInvalid, 400, "invalid-request"),
    (NotFound, 404, "not-found"),
    (Conflict, 409, "conflict"),
    (StorageUnavailable, 503, "storage-unavailable"),
    (SettingsError, 500, "configuration"),
)


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem: the HTTP status and the JSON body."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


def problem(status: int, title: str, detail: str, slug: str = "about:blank",
            **extra: Any) -> Problem:
    """Build a problem with the standard members plus any extension members."""
    type_ = slug if slug == "about:blank" else _TYPE_BASE + slug
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    body.update(extra)
    return Problem(status, body)


def problem_for(error: SmsError) -> Problem:
    """The problem for an error of the tree; unknown subclasses are a 500."""
    for cls, status, slug in _STATUS_BY_CLASS:
        if isinstance(error, cls):
            extra: dict[str, Any] = {}
            if isinstance(error, RequestInvalid) and error.errors:
                extra["errors"] = [e.as_dict() for e in error.errors]
            p = problem(status, error.title, error.detail, slug, **extra)
            if status == 503:
                p.headers["Retry-After"] = "5"
            return p
    return problem(500, error.title, error.detail, "internal")
