"""The functions `function_app.py` registers, in the shape function.json held (for tests).

`FunctionApp.get_functions()` may be called once per app: a second call fails its unique-name
check, so the answer is computed once per test session.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any


@cache
def app_functions() -> dict[str, dict[str, Any]]:
    """Function name -> `{"scriptFile", "bindings": [...]}` with plain-string values."""
    from function_app import app

    return {f.get_function_name(): json.loads(f.get_function_json())
            for f in app.get_functions()}
