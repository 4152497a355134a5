"""The SDK clients' transports: pools as wide as the app, the SDKs' own timeouts kept."""

from __future__ import annotations

import pytest
import requests

from sms_core.adapters.acs_gateway import AcsSmsGateway
from sms_core.adapters.http_pool import pooled_session, pooled_transport
from sms_core.adapters.storage import StorageClients
from sms_core.concurrency import CONNECTIONS_PER_HOST, POOL_SIZE
from sms_core.settings import load_settings

SETTINGS = load_settings(AzureWebJobsStorage="UseDevelopmentStorage=true",
                         ACS_CONNECTION_STRING="endpoint=http://127.0.0.1:9;accesskey=a2V5")


def _adapter_pool(session: requests.Session) -> int:
    adapter = session.get_adapter("https://example.org")
    assert isinstance(adapter, requests.adapters.HTTPAdapter)
    return int(adapter._pool_maxsize)


def test_the_pool_holds_every_thread_that_may_call_at_once() -> None:
    assert CONNECTIONS_PER_HOST > POOL_SIZE  # invocation threads besides the shared pool
    assert _adapter_pool(pooled_session()) == CONNECTIONS_PER_HOST


def test_a_transport_keeps_the_timeouts_it_is_given() -> None:
    transport = pooled_transport(pooled_session(), connection_timeout=3, read_timeout=5)
    assert (transport.connection_config.timeout, transport.connection_config.read_timeout) == (
        3, 5)


def test_storage_and_acs_clients_use_the_wide_pools() -> None:
    storage = StorageClients(SETTINGS)
    table = storage.table_service()
    queue = storage.queue_service()
    queue_transport = queue._pipeline._transport
    assert queue_transport.session is table._client._client._pipeline._transport.session
    assert _adapter_pool(queue_transport.session) == CONNECTIONS_PER_HOST
    assert (queue_transport.connection_config.timeout,
            queue_transport.connection_config.read_timeout) == (20, 60)
    gateway = AcsSmsGateway(SETTINGS)
    acs = gateway._client._sms_service_client._client._pipeline._transport
    assert _adapter_pool(acs.session) == CONNECTIONS_PER_HOST
    assert (acs.connection_config.timeout, acs.connection_config.read_timeout) == (10, 30)


def _without_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


def test_without_a_proxy_the_session_skips_the_per_request_environment_lookups(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _without_proxies(monkeypatch)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    session = pooled_session()
    assert session.trust_env is False
    # The environment's CA bundle still verifies every HTTPS request.
    assert pooled_transport(session).connection_config.verify == "/etc/corp/ca.pem"


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "http_proxy", "NO_PROXY", "all_proxy"])
def test_a_configured_proxy_is_honoured(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    _without_proxies(monkeypatch)
    monkeypatch.setenv(variable, "http://proxy.corp:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/corp/ca.pem")
    session = pooled_session()
    assert session.trust_env is True
    # requests reads the bundle from the environment itself then.
    assert pooled_transport(session).connection_config.verify is True
    settings = session.merge_environment_settings("https://acct.table.core.windows.net/t",
                                                  {}, False, True, None)
    assert settings["verify"] == "/etc/corp/ca.pem"
