"""A bad app setting stops the app when it loads, with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALID = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
         "ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:9;accesskey=a2V5"}


def load_app(**settings: str) -> subprocess.CompletedProcess[str]:
    """Import function_app in a fresh interpreter, as the Python worker does."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("SMS_", "ACS_", "AZUREWEBJOBSSTORAGE"))}
    env.update(settings)
    return subprocess.run([sys.executable, "-c", "import function_app"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_app_loads_with_valid_settings() -> None:
    result = load_app(**VALID)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("settings", "named"), [
    ({"ACS_CONNECTION_STRING": ""}, "ACS_CONNECTION_STRING nor ACS_ENDPOINT"),
    ({"ACS_CONNECTION_STRING": "accesskey=only"}, "ACS_CONNECTION_STRING: must look like"),
    ({"AzureWebJobsStorage": ""}, "AzureWebJobsStorage is not set"),
    ({"SMS_OPTOUT_KEYWORDS": "HELP"}, "SMS_OPTOUT_KEYWORDS"),
    ({"SMS_OPTIN_KEYWORDS": "!!!"}, "SMS_OPTIN_KEYWORDS"),
    ({"SMS_HELP_TEXT": " "}, "SMS_HELP_TEXT"),
    ({"SMS_SENDER_RATE_PER_MINUTE": "0"}, "SMS_SENDER_RATE_PER_MINUTE"),
    ({"SMS_DEFAULT_FROM": "not a number"}, "SMS_DEFAULT_FROM"),
    ({"SMS_LOG_FORMAT": "xml"}, "SMS_LOG_FORMAT"),
    ({"SMS_CAMPAIGN_PREPARE_CHUNK": "50"}, "SMS_CAMPAIGN_PREPARE_CHUNK"),
    ({"SMS_CAMPAIGN_PREPARE_INLINE_MAX": "-1"}, "SMS_CAMPAIGN_PREPARE_INLINE_MAX"),
    ({"SMS_CAMPAIGN_PREPARE_INLINE_MAX": "many"}, "SMS_CAMPAIGN_PREPARE_INLINE_MAX"),
])
def test_a_bad_setting_stops_the_app_at_load_naming_it(settings: dict[str, str],
                                                       named: str) -> None:
    result = load_app(**{**VALID, **settings})
    assert result.returncode != 0
    assert "SettingsError" in result.stderr and named in result.stderr, result.stderr
