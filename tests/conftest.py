"""Session fixtures shared by integration and end-to-end tests.

The test session starts its own Azurite on free ports (in memory) unless AzureWebJobsStorage is
already set, in which case that storage is used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from localdev.azurite import start_azurite


@pytest.fixture(scope="session")
def azurite_connection_string() -> Iterator[str]:
    """A storage connection string for a running Azurite (Tables and Queues)."""
    existing = os.environ.get("TEST_STORAGE_CONNECTION_STRING")
    if existing:
        yield existing
        return
    az = start_azurite()
    try:
        yield az.connection_string
    finally:
        az.stop()
