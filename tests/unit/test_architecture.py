"""The import rules of the layers (docs/architecture.md, "Layers"), checked on the source.

- rules and models do no I/O: they import no adapter, use case, bootstrap or Azure SDK;
- use cases name ports, never adapters (the opt-out store's records excepted), the bootstrap or
  an Azure SDK;
- adapters implement ports: they import no use case but `use_cases.ports`, and no bootstrap;
- nothing under sms_core or optout_store imports azure.functions;
- the blueprints reach adapters only to decode their triggers (`adapters.event_grid`);
- no module imports itself back through others (no cycles).
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BLUEPRINTS = ("send_sms", "inbound_webhook", "delivery_report", "campaigns", "operations")
PACKAGES = ("sms_core", "optout_store", "sms_http", *BLUEPRINTS)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def imports() -> dict[str, set[str]]:
    """Every shipped module -> the modules it imports (any level, TYPE_CHECKING included)."""
    graph: dict[str, set[str]] = {}
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    files.append(ROOT / "function_app.py")
    for path in files:
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[_module_name(path)] = found
    return graph


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(layer: str, forbidden: tuple[str, ...],
                allowed: tuple[str, ...] = ()) -> list[str]:
    return sorted(f"{mod} imports {imp}" for mod, imps in imports().items()
                  if _within(mod, layer) for imp in imps
                  if any(_within(imp, f) for f in forbidden)
                  and not any(_within(imp, a) for a in allowed))


def test_the_tree_has_the_layers() -> None:
    for layer in ("rules", "models", "adapters", "use_cases"):
        assert any(_within(m, f"sms_core.{layer}") for m in imports()), layer
    assert {"sms_core.bootstrap", "sms_core.settings", "sms_core.errors"} <= set(imports())


@pytest.mark.parametrize("layer", ["sms_core.rules", "sms_core.models"])
def test_rules_and_models_do_no_io(layer: str) -> None:
    assert _violations(layer, ("sms_core.adapters", "sms_core.use_cases", "sms_core.bootstrap",
                               "azure", "optout_store", "httpx")) == []


def test_use_cases_name_ports_not_adapters() -> None:
    assert _violations("sms_core.use_cases", ("sms_core.adapters", "sms_core.bootstrap",
                                              "azure", "httpx", "sms_http", "optout_store"),
                       allowed=("optout_store.records",)) == []


def test_adapters_depend_on_ports_only() -> None:
    assert _violations("sms_core.adapters", ("sms_core.use_cases", "sms_core.bootstrap"),
                       allowed=("sms_core.use_cases.ports",)) == []


def test_the_core_never_imports_azure_functions() -> None:
    for layer in ("sms_core", "optout_store"):
        assert _violations(layer, ("azure.functions",)) == []


@pytest.mark.parametrize("blueprint", BLUEPRINTS)
def test_blueprints_reach_adapters_only_to_decode_triggers(blueprint: str) -> None:
    assert _violations(blueprint, ("sms_core.adapters",),
                       allowed=("sms_core.adapters.event_grid",)) == []


def test_no_import_cycles() -> None:
    graph = {m: {i for i in imps if i in imports()} for m, imps in imports().items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package's __init__ re-exporting its own module is not a cycle of the design.
    real = [c for c in cycles if not (len(c) == 3 and c[0] == c[2] and _within(c[1], c[0]))]
    assert real == []
