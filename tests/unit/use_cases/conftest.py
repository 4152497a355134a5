"""Every use-case test gets a fresh set of in-memory fakes."""

from __future__ import annotations

import pytest

from tests.unit.fakes import FakeDeps


@pytest.fixture
def deps() -> FakeDeps:
    return FakeDeps.build()
