"""Unit tests see no app settings from the developer's shell."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("SMS_", "ACS_", "AZUREWEBJOBSSTORAGE")):
            monkeypatch.delenv(name)
