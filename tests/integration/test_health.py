"""Health: 200 when storage answers, a fast 503 problem when it does not."""

from __future__ import annotations

import pytest

from localdev.azurite import connection_string, free_port
from sms_core.adapters.storage import StorageClients
from sms_core.errors import StorageUnavailable
from sms_core.settings import load_settings
from sms_core.use_cases.health import check_health
from sms_http.problems import problem_for


def test_health_is_ok_when_storage_answers(azurite_connection_string: str) -> None:
    storage = StorageClients(load_settings(AzureWebJobsStorage=azurite_connection_string))
    assert check_health(storage) == {"status": "ok"}


def test_health_probe_fails_fast_when_storage_is_down() -> None:
    dead = connection_string(free_port(), free_port())
    with pytest.raises(StorageUnavailable) as info:
        check_health(StorageClients(load_settings(AzureWebJobsStorage=dead)))
    assert problem_for(info.value).status == 503
