"""Health (`check_health`): ok while storage answers, StorageUnavailable (503) otherwise."""

from __future__ import annotations

import pytest

from sms_core.errors import StorageUnavailable
from sms_core.use_cases.health import check_health
from tests.unit.fakes import FakeStorageProbe


def test_ok_while_storage_answers() -> None:
    assert check_health(FakeStorageProbe()) == {"status": "ok"}


def test_unavailable_when_storage_does_not_answer() -> None:
    with pytest.raises(StorageUnavailable):
        check_health(FakeStorageProbe(available=False))
