"""The functions `function_app.py` registers, in the shape function.json held (for tests).

`FunctionApp.get_functions()` may be called once per app: a second call fails its unique-name
check, so the answer is computed once per test session. The app checks its settings when it
loads, so the import sees a minimal valid configuration (nothing is connected to).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any


@cache
def app_functions() -> dict[str, dict[str, Any]]:
    """Function name -> `{"scriptFile", "bindings": [...]}` with plain-string values."""
    import os
    from unittest import mock

    from sms_core.settings import get_settings

    valid = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:9;accesskey=a2V5"}
    with mock.patch.dict(os.environ, valid):
        get_settings.cache_clear()
        from function_app import app
    get_settings.cache_clear()
    return {f.get_function_name(): json.loads(f.get_function_json())
            for f in app.get_functions()}
