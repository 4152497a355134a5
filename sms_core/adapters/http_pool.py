"""HTTP transports for the Azure SDK clients, with connection pools as wide as the app.

Each azure-core `RequestsTransport` otherwise builds a `requests.Session` whose adapter keeps at
most 10 connections per host. The app uses up to `CONNECTIONS_PER_HOST` at once (invocation
threads plus the shared pool), so after every burst urllib3 closed the extra connections, each
with a "Connection pool is full, discarding connection" warning (dozens a second during a
campaign), and the next burst opened them again.
"""

from __future__ import annotations

import os

import requests
from azure.core.pipeline.transport import RequestsTransport
from urllib3.util.retry import Retry

from sms_core.concurrency import CONNECTIONS_PER_HOST


def proxies_configured() -> bool:
    """Whether the environment routes HTTP through a proxy (`*_proxy` or `no_proxy` set, in
    either case), which only a session that trusts the environment honours."""
    return any(value and (name.lower().endswith("_proxy") or name.lower() == "no_proxy")
               for name, value in os.environ.items())


def environment_ca_bundle() -> str | None:
    """The CA bundle the environment names for requests (REQUESTS_CA_BUNDLE, else
    CURL_CA_BUNDLE), as requests itself reads them."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None


def pooled_session(pool_size: int = CONNECTIONS_PER_HOST) -> requests.Session:
    """A session that keeps up to `pool_size` connections per host.

    Retries off at this level, as azure-core configures its own sessions: the SDK's retry policy
    is the one that decides.

    It reads the environment only when a proxy is configured: a session that trusts the
    environment looks up the proxy variables, `no_proxy` and `~/.netrc` again on every request
    (0.45 ms of CPU each on this machine, some 15 times per delivered message), and nothing
    else it would find there applies to us: the SDKs sign their requests themselves (a netrc
    entry would replace that Authorization header), and the CA bundle is carried over by
    `pooled_transport`.
    """
    session = requests.Session()
    session.trust_env = proxies_configured()
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
    options to it, so they are set here; 300 s is azure-core's default. On a session that does
    not read the environment, the environment's CA bundle is given to the transport, which
    passes it with every request (as requests would have found it there).
    """
    bundle = None if session.trust_env else environment_ca_bundle()
    return RequestsTransport(session=session, session_owner=False,
                             connection_timeout=connection_timeout, read_timeout=read_timeout,
                             **({"connection_verify": bundle} if bundle else {}))
