"""One factory for Table, Queue and Blob clients, from `AzureWebJobsStorage` in any of its forms.

Connection string (Azurite, or a key-based account), or identity-based as the Functions host
accepts it: `AzureWebJobsStorage__accountName`, or `__tableServiceUri` + `__queueServiceUri`
(+ `__blobServiceUri`), with `__credential=managedidentity` and `__clientId` for a
user-assigned identity. Blobs hold uploaded audiences only: a connection string that names its
endpoints but no `BlobEndpoint` (a storage proxy in front of Tables and Queues) has none, and
an upload then answers 503.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerClient
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from sms_core.adapters.azure_errors import storage_errors
from sms_core.adapters.http_pool import pooled_session, pooled_transport
from sms_core.errors import SettingsError, StorageUnavailable
from sms_core.settings import Settings

# Table names (alphanumeric by Azure's rules). Documented in docs/architecture.md.
MESSAGES_TABLE = "Messages"
PROVIDER_IDS_TABLE = "ProviderMessageIds"
UNMATCHED_REPORTS_TABLE = "UnmatchedReports"
IDEMPOTENCY_TABLE = "IdempotencyKeys"
PACING_TABLE = "SenderPacing"
OPTOUTS_TABLE = "OptOuts"
OPTOUT_HISTORY_TABLE = "OptOutHistory"
CONVERSATIONS_TABLE = "Conversations"
INBOUND_TABLE = "InboundMessages"
AWAITING_REPORTS_TABLE = "AwaitingReports"
ANALYTICS_TABLE = "Analytics"
CAMPAIGNS_TABLE = "Campaigns"
CAMPAIGN_RECIPIENTS_TABLE = "CampaignRecipients"
AUDIENCES_TABLE = "Audiences"
TEMPLATES_TABLE = "Templates"
ALL_TABLES = (MESSAGES_TABLE, PROVIDER_IDS_TABLE, UNMATCHED_REPORTS_TABLE, IDEMPOTENCY_TABLE,
              AWAITING_REPORTS_TABLE, PACING_TABLE, OPTOUTS_TABLE, OPTOUT_HISTORY_TABLE,
              CONVERSATIONS_TABLE, INBOUND_TABLE, ANALYTICS_TABLE, CAMPAIGNS_TABLE,
              CAMPAIGN_RECIPIENTS_TABLE, AUDIENCES_TABLE, TEMPLATES_TABLE)

# Queue names are part of the contract (design.md section 6).
OUTBOUND_QUEUE = "sms-outbound"
DELIVERY_REPORTS_QUEUE = "sms-delivery-reports"
EVENTS_QUEUE = "sms-events"
# Internal: app events waiting to be POSTed to SMS_APP_WEBHOOK_URL (with retries).
WEBHOOK_OUTBOX_QUEUE = "sms-webhook-out"
# Internal: campaign fan-out work (one message per chunk of a campaign run's recipients).
CAMPAIGNS_QUEUE = "sms-campaigns"
# Blob container of audience uploads (parts staged as blocks, then read as a stream).
UPLOADS_CONTAINER = "audience-uploads"
ALL_QUEUES = (OUTBOUND_QUEUE, DELIVERY_REPORTS_QUEUE, EVENTS_QUEUE, WEBHOOK_OUTBOX_QUEUE,
              CAMPAIGNS_QUEUE)


class StorageClients:
    """Builds and caches Table and Queue clients; one instance per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[str, QueueClient] = {}
        self._table_service: TableServiceClient | None = None
        self._probe_service: TableServiceClient | None = None
        self._queue_service: QueueServiceClient | None = None
        self._blob_service: BlobServiceClient | None = None
        # One session for every client of the account: a pool per endpoint (tables, queues),
        # each as wide as the app's concurrency (`adapters/http_pool.py`).
        self._session = pooled_session()

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        s = self._settings
        if (s.storage_credential or "").lower() == "managedidentity":
            return ManagedIdentityCredential(client_id=s.storage_client_id)
        return DefaultAzureCredential(managed_identity_client_id=s.storage_client_id)

    def _service_uri(self, kind: str, explicit: str | None) -> str:
        s = self._settings
        uri = explicit or (f"https://{s.storage_account_name}.{kind}.core.windows.net"
                           if s.storage_account_name else None)
        if not uri:
            raise SettingsError("AzureWebJobsStorage is not set (nor "
                                "AzureWebJobsStorage__accountName)")
        return uri

    def _new_table_service(self, *, connection_timeout: float = 300, read_timeout: float = 300,
                           **options: Any) -> TableServiceClient:
        # The Tables SDK's own timeouts are azure-core's defaults (300 s).
        options["transport"] = pooled_transport(self._session,
                                                connection_timeout=connection_timeout,
                                                read_timeout=read_timeout)
        conn = self._settings.storage_connection_string
        if conn:
            return TableServiceClient.from_connection_string(conn, **options)
        return TableServiceClient(self._service_uri(
            "table", self._settings.storage_table_service_uri),
            credential=self._credential(), **options)

    def table_service(self) -> TableServiceClient:
        """The Table service client for the configured account."""
        with self._lock:
            if self._table_service is None:
                self._table_service = self._new_table_service()
            return self._table_service

    def probe(self) -> None:
        """One cheap call that fails fast (no retries); StorageUnavailable when it fails."""
        with self._lock:
            if self._probe_service is None:
                self._probe_service = self._new_table_service(
                    retry_total=0, connection_timeout=3, read_timeout=5)
        with storage_errors("Table"):
            next(iter(self._probe_service.list_tables(results_per_page=1)), None)

    def _new_service(self, client: Any, kind: str, explicit_uri: str | None,
                     read_timeout: float) -> Any:
        """A Queue or Blob service client (`client`, the SDK's class) for the account."""
        conn = self._settings.storage_connection_string
        transport = pooled_transport(self._session, connection_timeout=20,
                                     read_timeout=read_timeout)
        if conn:
            return client.from_connection_string(conn, transport=transport)
        return client(self._service_uri(kind, explicit_uri), credential=self._credential(),
                      transport=transport)

    def queue_service(self) -> QueueServiceClient:
        """The Queue service client for the configured account."""
        with self._lock:
            if self._queue_service is None:
                # The Queue SDK's own timeouts (20 s to connect, 60 s to read).
                self._queue_service = self._new_service(
                    QueueServiceClient, "queue", self._settings.storage_queue_service_uri, 60)
            return self._queue_service

    def has_blobs(self) -> bool:
        """Whether the account's Blob service is configured (see the module docstring)."""
        conn = self._settings.storage_connection_string
        if conn:
            keys = {p.split("=", 1)[0].strip().lower() for p in conn.split(";") if "=" in p}
            return "blobendpoint" in keys or "tableendpoint" not in keys
        return bool(self._settings.storage_blob_service_uri
                    or self._settings.storage_account_name)

    def blob_service(self) -> BlobServiceClient:
        """The Blob service client for the configured account."""
        if not self.has_blobs():
            raise StorageUnavailable("Blob storage is not configured (AzureWebJobsStorage "
                                     "names no BlobEndpoint)")
        with self._lock:
            if self._blob_service is None:
                self._blob_service = self._new_service(
                    BlobServiceClient, "blob", self._settings.storage_blob_service_uri, 120)
            return self._blob_service

    def container(self, name: str) -> ContainerClient:
        """A client for one blob container."""
        return self.blob_service().get_container_client(name)

    def table(self, name: str) -> TableClient:
        """A cached client for one table."""
        client = self._tables.get(name)
        if client is None:
            client = self.table_service().get_table_client(name)
            self._tables[name] = client
        return client

    def queue(self, name: str) -> QueueClient:
        """A cached client for one queue; messages are base64 text, the Functions default."""
        client = self._queues.get(name)
        if client is None:
            client = self.queue_service().get_queue_client(
                name,
                message_encode_policy=TextBase64EncodePolicy(),
                message_decode_policy=TextBase64DecodePolicy(),
            )
            self._queues[name] = client
        return client

    def ensure_resources(self) -> None:
        """Create every table and queue (with its poison twin) that does not exist yet.

        In Azure the Bicep template creates them; locally and in tests this does.
        StorageUnavailable when storage fails.
        """
        with storage_errors("Table"):
            for name in ALL_TABLES:
                with contextlib.suppress(ResourceExistsError):
                    self.table_service().create_table(name)
        with storage_errors("Queue"):
            for name in ALL_QUEUES:
                for q in (name, f"{name}-poison"):
                    with contextlib.suppress(ResourceExistsError):
                        self.queue_service().create_queue(q)
        if self.has_blobs():
            with storage_errors("Blob"), contextlib.suppress(ResourceExistsError):
                self.blob_service().create_container(UPLOADS_CONTAINER)
