"""The process-wide wiring: settings, storage clients, stores, gateway. Built once, lazily.

Function folders call `get_services()`; tests build `Services(settings, gateway=...)` to swap I/O.
"""

from __future__ import annotations

import threading
from functools import cached_property

from optout_store import OptOutStore
from sms_core.gateway import AcsSmsGateway, SmsGateway
from sms_core.idempotency import IdempotencyStore
from sms_core.message_store import MessageStore
from sms_core.pacing import SenderPacer
from sms_core.provider_index import ProviderIndex
from sms_core.queues import JobQueue
from sms_core.settings import Settings, get_settings
from sms_core.storage import (
    IDEMPOTENCY_TABLE,
    MESSAGES_TABLE,
    OPTOUT_HISTORY_TABLE,
    OPTOUTS_TABLE,
    OUTBOUND_QUEUE,
    PACING_TABLE,
    PROVIDER_IDS_TABLE,
    UNMATCHED_REPORTS_TABLE,
    StorageClients,
)


class Services:
    """Everything a handler needs, built on first use."""

    def __init__(self, settings: Settings, gateway: SmsGateway | None = None) -> None:
        self.settings = settings
        self.storage = StorageClients(settings)
        self._gateway = gateway
        self._ensured = False
        self._lock = threading.Lock()

    def ensure_resources(self) -> None:
        """Create tables and queues once per process (a no-op when they exist)."""
        if not self._ensured:
            with self._lock:
                if not self._ensured:
                    self.storage.ensure_resources()
                    self._ensured = True

    @cached_property
    def gateway(self) -> SmsGateway:
        """The ACS gateway (the real one unless a test swapped it)."""
        return self._gateway or AcsSmsGateway(self.settings)

    @cached_property
    def messages(self) -> MessageStore:
        """The Messages table."""
        return MessageStore(self.storage.table(MESSAGES_TABLE))

    @cached_property
    def optouts(self) -> OptOutStore:
        """The opt-out state and history."""
        return OptOutStore(self.storage.table(OPTOUTS_TABLE),
                           self.storage.table(OPTOUT_HISTORY_TABLE), self.settings.optout_scope)

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        """Idempotency-Key bindings."""
        return IdempotencyStore(self.storage.table(IDEMPOTENCY_TABLE))

    @cached_property
    def pacer(self) -> SenderPacer:
        """Per-sender pacing shared across instances."""
        return SenderPacer(self.storage.table(PACING_TABLE), self.settings.sender_rate_per_minute)

    @cached_property
    def jobs(self) -> JobQueue:
        """The `sms-outbound` queue."""
        return JobQueue(self.storage.queue(OUTBOUND_QUEUE))

    @cached_property
    def provider_ids(self) -> ProviderIndex:
        """The ACS message id -> our message id index."""
        return ProviderIndex(self.storage.table(PROVIDER_IDS_TABLE),
                             self.storage.table(UNMATCHED_REPORTS_TABLE))


_services: Services | None = None
_services_lock = threading.Lock()


def get_services() -> Services:
    """The process-wide services, with tables and queues ensured."""
    global _services
    if _services is None:
        with _services_lock:
            if _services is None:
                s = Services(get_settings())
                s.ensure_resources()
                _services = s
    return _services
