"""The whole local stack for end-to-end tests (tests/stack.py), package-scoped so the host stops
before other test packages run: it consumes the contract queues (`sms-outbound`,
`sms-delivery-reports`) and must not take other tests' messages.

The names below are re-exported: the e2e tests import them from here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import (
    FUNCTION_KEY,
    ROOT,
    SENDER,
    WEBHOOK_SECRET,
    AppWebhook,
    Stack,
    start_stack,
)

__all__ = ["FUNCTION_KEY", "ROOT", "SENDER", "WEBHOOK_SECRET", "AppWebhook", "Stack"]


@pytest.fixture(scope="package")
def stack(azurite_connection_string: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    with start_stack(azurite_connection_string, tmp_path_factory.mktemp("host")) as running:
        yield running
