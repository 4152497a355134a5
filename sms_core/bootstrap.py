"""The process-wide wiring: settings, storage clients, stores, gateway. Built once, lazily.

Function folders call `get_services()`; tests build `Services(settings, gateway=...)` to swap I/O.
"""

from __future__ import annotations

import threading
from functools import cached_property

from optout_store import OptOutStore
from sms_core.adapters.acs_gateway import AcsSmsGateway
from sms_core.adapters.analytics_store import AnalyticsStore
from sms_core.adapters.app_events import AppEventQueue, WebhookOutboxQueue
from sms_core.adapters.audience_template_store import AudienceStore, TemplateStore
from sms_core.adapters.awaiting_reports import AwaitingReportStore
from sms_core.adapters.campaign_store import CampaignStore
from sms_core.adapters.conversation_store import ConversationStore
from sms_core.adapters.idempotency_store import IdempotencyStore
from sms_core.adapters.inbound_store import InboundStore
from sms_core.adapters.job_queue import JobQueue
from sms_core.adapters.message_store import MessageStore
from sms_core.adapters.preparation_store import PreparationStore
from sms_core.adapters.provider_index import ProviderIndex
from sms_core.adapters.sender_pacer import SenderPacer
from sms_core.adapters.storage import (
    ANALYTICS_TABLE,
    AUDIENCES_TABLE,
    AWAITING_REPORTS_TABLE,
    CAMPAIGN_RECIPIENTS_TABLE,
    CAMPAIGNS_QUEUE,
    CAMPAIGNS_TABLE,
    CONVERSATIONS_TABLE,
    DELIVERY_REPORTS_QUEUE,
    EVENTS_QUEUE,
    IDEMPOTENCY_TABLE,
    INBOUND_TABLE,
    MESSAGES_TABLE,
    OPTOUT_HISTORY_TABLE,
    OPTOUTS_TABLE,
    OUTBOUND_QUEUE,
    PACING_TABLE,
    PROVIDER_IDS_TABLE,
    TEMPLATES_TABLE,
    UNMATCHED_REPORTS_TABLE,
    UPLOADS_CONTAINER,
    WEBHOOK_OUTBOX_QUEUE,
    StorageClients,
)
from sms_core.adapters.upload_store import UploadStore
from sms_core.adapters.webhook_poster import HttpxPoster
from sms_core.rules.keywords import KeywordEngine
from sms_core.settings import Settings, get_settings
from sms_core.use_cases.ports import SmsGateway, WebhookPoster


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

    @property
    def outbox(self) -> MessageStore:
        """The outbox rows, kept in the Messages table beside the messages they list."""
        return self.messages

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
    def report_retries(self) -> JobQueue:
        """`sms-delivery-reports` itself: reports put back until their message is known."""
        return JobQueue(self.storage.queue(DELIVERY_REPORTS_QUEUE))

    @cached_property
    def campaign_jobs(self) -> JobQueue:
        """The `sms-campaigns` queue (campaign runs firing and fanning out)."""
        return JobQueue(self.storage.queue(CAMPAIGNS_QUEUE))

    @cached_property
    def campaigns(self) -> CampaignStore:
        """Campaigns, their runs and recipient snapshots."""
        return CampaignStore(self.storage.table(CAMPAIGNS_TABLE),
                             self.storage.table(CAMPAIGN_RECIPIENTS_TABLE))

    @cached_property
    def preparations(self) -> PreparationStore:
        """What background campaign preparations keep between their jobs."""
        return PreparationStore(self.storage.table(CAMPAIGNS_TABLE),
                                self.storage.table(CAMPAIGN_RECIPIENTS_TABLE))

    @cached_property
    def audiences(self) -> AudienceStore:
        """Saved audiences."""
        return AudienceStore(self.storage.table(AUDIENCES_TABLE))

    @cached_property
    def uploads(self) -> UploadStore:
        """Audience files uploaded in parts (blobs in `audience-uploads`)."""
        return UploadStore(self.storage.table(AUDIENCES_TABLE),
                           lambda: self.storage.container(UPLOADS_CONTAINER))

    @cached_property
    def templates(self) -> TemplateStore:
        """Saved templates."""
        return TemplateStore(self.storage.table(TEMPLATES_TABLE))

    @cached_property
    def conversations(self) -> ConversationStore:
        """Both directions of every conversation."""
        return ConversationStore(self.storage.table(CONVERSATIONS_TABLE))

    @cached_property
    def analytics(self) -> AnalyticsStore:
        """Usage and engagement counters per day, sender and tag."""
        # 32 shards: parallel instances updating one day/sender/tag rarely meet on a row.
        return AnalyticsStore(self.storage.table(ANALYTICS_TABLE), shards=32)

    @cached_property
    def awaiting_reports(self) -> AwaitingReportStore:
        """Sent messages still waiting for their delivery report."""
        return AwaitingReportStore(self.storage.table(AWAITING_REPORTS_TABLE))

    @cached_property
    def inbound(self) -> InboundStore:
        """Inbound messages seen (de-duplication of Event Grid redeliveries)."""
        return InboundStore(self.storage.table(INBOUND_TABLE))

    @cached_property
    def app_events(self) -> AppEventQueue:
        """Events for the app: the `sms-events` queue and the webhook outbox."""
        outbox = (self.storage.queue(WEBHOOK_OUTBOX_QUEUE) if self.settings.app_webhook_url
                  else None)
        return AppEventQueue(self.storage.queue(EVENTS_QUEUE), outbox)

    @cached_property
    def webhook_outbox(self) -> WebhookOutboxQueue:
        """Webhook posts waiting for another attempt, and those that used them all."""
        return WebhookOutboxQueue(self.storage.queue(WEBHOOK_OUTBOX_QUEUE),
                                  self.storage.queue(f"{WEBHOOK_OUTBOX_QUEUE}-poison"))

    @cached_property
    def webhook_poster(self) -> WebhookPoster:
        """How app webhooks are posted (tests swap it)."""
        return HttpxPoster()

    @cached_property
    def keywords(self) -> KeywordEngine:
        """The keyword engine, with the configured extra keywords and replies."""
        return self.settings.keyword_engine()

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


_health_storage: StorageClients | None = None


def get_health_probe() -> StorageClients:
    """Storage clients of their own for `GET /api/health`, made without touching storage.

    Health must answer (503) even when storage was down while the app started, so it never
    waits for `get_services()`, which creates the tables and queues first.
    """
    global _health_storage
    if _health_storage is None:
        _health_storage = StorageClients(get_settings())
    return _health_storage
