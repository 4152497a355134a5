"""The app webhook poster: one pooled httpx client per process."""

from __future__ import annotations

import logging

import httpx

from sms_core.models.app_events import WEBHOOK_TIMEOUT_S

log = logging.getLogger(__name__)


class HttpxPoster:
    """The real poster: one pooled httpx client per process."""

    def __init__(self, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False)

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """POST `body`; None on connection errors and timeouts."""
        try:
            return self._client.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError as exc:
            log.warning("app webhook unreachable: %s", exc)
            return None
