"""The functions `function_app.py` registers, in the shape function.json held (for tests).

`FunctionApp.get_functions()` may be called once per app: a second call fails its unique-name
check, so the answer is computed once per test session. The app checks its settings when it
loads, so the import sees a minimal valid configuration (nothing is connected to).
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

from sms_core.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]


@cache
def app_functions() -> dict[str, dict[str, Any]]:
    """Function name -> `{"scriptFile", "bindings": [...]}` with plain-string values."""
    valid = {"AzureWebJobsStorage": "UseDevelopmentStorage=true",
             "ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:9;accesskey=a2V5"}
    # Loaded from its file under a name of its own: a test host may have left another app's
    # `function_app` in sys.modules.
    spec = importlib.util.spec_from_file_location("project_function_app", ROOT / "function_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, valid):
        get_settings.cache_clear()
        spec.loader.exec_module(module)
    get_settings.cache_clear()
    app = module.app
    return {f.get_function_name(): json.loads(f.get_function_json())
            for f in app.get_functions()}
