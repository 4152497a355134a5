"""openapi.yaml stays true: it documents exactly the HTTP routes the function app serves, and the
tools users point at it (a strict YAML loader, a spec validator, a client generator) accept it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

from tests.app_functions import app_functions
from tests.openapi_tools import generate_client

ROOT = Path(__file__).resolve().parents[2]
SPEC_TEXT = (ROOT / "openapi.yaml").read_text(encoding="utf-8")


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that fails on a key repeated in one mapping, as ruamel.yaml does (and so
    openapi-python-client); `yaml.safe_load` keeps the last value silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def strict_spec() -> dict[str, Any]:
    """openapi.yaml loaded the strict way."""
    spec: dict[str, Any] = yaml.load(SPEC_TEXT, Loader=UniqueKeyLoader)
    return spec


def null_values(node: Any, path: str = "") -> list[str]:
    """Where a mapping holds a null: the mark of a flow mapping cut by an unquoted comma
    (`{description: a, b}` is `{description: "a", "b": null}`). The spec has no other nulls."""
    if isinstance(node, dict):
        found = [f"{path}/{k}" for k, v in node.items() if v is None]
        for k, v in node.items():
            found += null_values(v, f"{path}/{k}")
        return found
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in null_values(v, f"{path}/{i}")]
    return []


def test_routes_in_openapi_match_the_function_app() -> None:
    spec = yaml.safe_load(SPEC_TEXT)
    routes = set()
    for function in app_functions().values():
        for b in function["bindings"]:
            if b["type"] == "httpTrigger":
                for m in b.get("methods", []):
                    route = re.sub(r"\{(\w+):\w+\}", r"{\1}", b["route"])
                    routes.add(("/" + route, m.lower()))
    http_methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m in http_methods}
    assert routes == documented


def test_no_key_is_repeated() -> None:
    # Raises ConstructorError naming the key and its line.
    strict = strict_spec()
    assert strict == yaml.safe_load(SPEC_TEXT)


def test_no_flow_mapping_is_cut_by_a_comma() -> None:
    assert null_values(yaml.safe_load(SPEC_TEXT)) == []


def test_the_strict_loader_catches_what_it_is_for() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'example'"):
        yaml.load("a: {example: 1, example: 2}", Loader=UniqueKeyLoader)
    cut = yaml.load("a: {description: our number, or global}", Loader=UniqueKeyLoader)
    assert null_values(cut) == ["/a/or global"]


def test_openapi_spec_validator_accepts_it() -> None:
    validate(yaml.safe_load(SPEC_TEXT))


def test_openapi_python_client_builds_a_client_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "sms_client"
    run = generate_client(out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
    operations = {p.stem for p in (out / "api" / "default").glob("*.py")} - {"__init__"}
    spec = yaml.safe_load(SPEC_TEXT)
    assert operations == {re.sub(r"(?<!^)(?=[A-Z])", "_", op["operationId"]).lower()
                          for ops in spec["paths"].values() for op in ops.values()}
