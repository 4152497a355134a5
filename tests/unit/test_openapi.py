"""openapi.yaml stays true: it documents exactly the HTTP routes the function app serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.app_functions import app_functions

ROOT = Path(__file__).resolve().parents[2]


def test_routes_in_openapi_match_the_function_app() -> None:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    routes = set()
    for function in app_functions().values():
        for b in function["bindings"]:
            if b["type"] == "httpTrigger":
                for m in b.get("methods", []):
                    route = re.sub(r"\{(\w+):\w+\}", r"{\1}", b["route"])
                    routes.add(("/" + route, m.lower()))
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
