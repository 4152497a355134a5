"""openapi.yaml stays true: it documents exactly the HTTP routes the function folders serve."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_routes_in_openapi_match_the_function_folders() -> None:
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    routes = set()
    for fj in ROOT.glob("*/function.json"):
        for b in json.loads(fj.read_text())["bindings"]:
            if b["type"] == "httpTrigger":
                for m in b.get("methods", []):
                    route = re.sub(r"\{(\w+):\w+\}", r"{\1}", b["route"])
                    routes.add(("/" + route, m.lower()))
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
