"""HTTP transports for the Azure SDK clients, with connection pools as wide as the app.

Each azure-core `RequestsTransport` otherwise builds a `requests.Session` whose adapter keeps at
most 10 connections per host. The app uses up to `CONNECTIONS_PER_HOST` at once (invocation
threads plus the shared pool), so after every burst urllib3 closed the extra connections, each
with a "Connection pool is full, discarding connection" warning (dozens a second during a
campaign), and the next burst opened them again.
"""

from __future__ import annotations

import requests
from azure.core.pipeline.transport import RequestsTransport
from urllib3.util.retry import Retry

from sms_core.concurrency import CONNECTIONS_PER_HOST


def pooled_session(pool_size: int = CONNECTIONS_PER_HOST) -> requests.Session:
    """A session that keeps up to `pool_size` connections per host.

    Retries off at this level, as azure-core configures its own sessions: the SDK's retry policy
    is the one that decides.
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=4, pool_maxsize=pool_size,
        max_retries=Retry(total=False, redirect=False, raise_on_status=False))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def pooled_transport(session: requests.Session, *, connection_timeout: float = 300,
                     read_timeout: float = 300) -> RequestsTransport:
    """A transport on `session` (which it does not own or close), with its timeouts.

    A client given a transport no longer applies its `connection_timeout`/`read_timeout`
    options to it, so they are set here; 300 s is azure-core's default.
    """
    return RequestsTransport(session=session, session_owner=False,
                             connection_timeout=connection_timeout, read_timeout=read_timeout)
