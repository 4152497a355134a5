"""The ports: what the use cases need from the world, as Protocols.

Use cases name these, never an adapter. The adapters in `sms_core.adapters` (and
`optout_store`) implement them; `sms_core.bootstrap` wires one of each per process; unit tests
pass the in-memory fakes of `tests/unit/fakes.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sms_core.models.app_events import WebhookDelivery
from sms_core.models.messages import OutboundSms, SendOutcome


class WebhookPoster(Protocol):
    """Anything that can POST bytes and tell the status (None: no answer)."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> int | None:
        """POST and return the HTTP status, or None when the app could not be reached."""
        ...


class SmsGateway(Protocol):
    """Anything that can send one SMS to up to 100 recipients."""

    def send(self, sender: str, recipients: Sequence[OutboundSms], message: str, *,
             tag: str | None, delivery_report: bool) -> list[SendOutcome]:
        """Send; one outcome per recipient in order, or raise a ProviderError for the call."""
        ...


class Job(Protocol):
    """Anything that knows its queue message text (`DispatchJob`, `FanoutJob`)."""

    def encode(self) -> str:
        """The queue message text."""
        ...


class WebhookOutbox(Protocol):
    """Where a webhook post that failed waits for its next attempt."""

    def retry_later(self, delivery: WebhookDelivery, delay_s: int) -> None:
        """Try the delivery again after `delay_s` seconds."""
        ...

    def give_up(self, delivery: WebhookDelivery) -> None:
        """Keep a delivery that used all its attempts where an operator finds it."""
        ...
