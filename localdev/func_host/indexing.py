"""Indexing the app: importing its `function_app.py` afresh for each host root (dropping another
root's modules), `get_functions()` of its one `FunctionApp`, and each function checked and bound
into a `FunctionDef` (or a load error)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from localdev.func_host.errors import FunctionLoadError

DEFAULT_SCRIPT_FILE = "function_app.py"

# Binding types the host runs, by their case-insensitive name (the host matches types so).
_SUPPORTED_BINDINGS = {t.lower(): t for t in ("httpTrigger", "http", "queueTrigger",
                                               "timerTrigger")}

# Top-level module names imported while indexing an app root, and that root: a second host for
# another root (tests build many apps) drops them so its own function_app and packages load afresh.
_APP_MODULES: dict[str, Path] = {}
_IMPORT_LOCK = threading.Lock()


@dataclass
class FunctionDef:
    """One indexed function: its user function and how its parameters are bound."""

    name: str
    directory: Path  # the app root: the v2 worker's context.function_directory
    main: Callable[..., Any]
    trigger: dict[str, Any]
    # (parameter name, kind) with kind in {"trigger", "context", "out"}.
    params: list[tuple[str, str]]
    # Named (not `$return`) HTTP output bindings; the first one set is the response.
    http_outs: tuple[str, ...]
    is_async: bool

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


def _module_paths(module: ModuleType) -> list[Path]:
    """Where a module (or namespace package) lives on disk."""
    file = getattr(module, "__file__", None)
    if file:
        return [Path(file).resolve()]
    return [Path(p).resolve() for p in getattr(module, "__path__", None) or []]


def _top_level_modules(root: Path) -> set[str]:
    """The module and package names an app root provides to `import` (it is first on sys.path)."""
    names = set()
    for entry in root.iterdir():
        if entry.suffix == ".py" and entry.stem.isidentifier():
            names.add(entry.stem)
        elif entry.is_dir() and entry.name.isidentifier() and any(entry.glob("*.py")):
            names.add(entry.name)
    return names


def _import_app_module(root: Path, module_name: str) -> ModuleType:
    """Import the app's script module afresh, the app root first on sys.path."""
    with _IMPORT_LOCK:
        for top, owner in list(_APP_MODULES.items()):
            if owner != root:
                for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
                    del sys.modules[name]
                del _APP_MODULES[top]
        # A FunctionApp indexes once (get_functions() rejects names it has seen), so the script
        # runs again for every host; the app's packages stay imported for the same root.
        sys.modules.pop(module_name, None)
        for name in sorted(_top_level_modules(root) - {module_name}):
            existing = sys.modules.get(name)
            if existing is None or _APP_MODULES.get(name) == root:
                continue
            paths = _module_paths(existing)
            if not any(p.is_relative_to(root / name) or p == root / f"{name}.py" for p in paths):
                raise FunctionLoadError(
                    f"{name!r} in the app root clashes with the already imported module {name!r} "
                    f"({', '.join(map(str, paths)) or 'built in'})"
                )
        with contextlib.suppress(ValueError):
            sys.path.remove(str(root))
        sys.path.insert(0, str(root))
        before = set(sys.modules)
        importlib.invalidate_caches()
        try:
            return importlib.import_module(module_name)
        except Exception as exc:
            raise FunctionLoadError(f"import of {module_name} failed: {exc!r}") from exc
        finally:
            # Packages imported before (say by a test from the same root) are not the app's to drop.
            for name in set(sys.modules) - before:
                module, top = sys.modules.get(name), name.partition(".")[0]
                if module is not None and top not in before and any(
                        p.is_relative_to(root) for p in _module_paths(module)):
                    _APP_MODULES[top] = root


def index_function_app(root: Path, script_file: str = DEFAULT_SCRIPT_FILE) -> list[func.Function]:
    """Import the app's script and return its functions, as the Python worker indexes a v2 app.

    The module must hold exactly one `FunctionRegister` (a `FunctionApp`) at module level.
    """
    if Path(script_file).name != script_file or not script_file.endswith(".py"):
        raise FunctionLoadError(f"script file {script_file!r} must be a .py file in the app root")
    if not (root / script_file).is_file():
        raise FunctionLoadError(f"{script_file} not found in {root}")
    module = _import_app_module(root, script_file[:-3])
    apps = {id(v): v for v in vars(module).values() if isinstance(v, func.FunctionRegister)}
    if len(apps) != 1:
        raise FunctionLoadError(
            f"{script_file} must define exactly one FunctionApp at module level, found {len(apps)}"
        )
    app = next(iter(apps.values()))
    try:
        return list(app.get_functions())
    except Exception as exc:  # the library's own validation: no trigger, duplicate names, ...
        raise FunctionLoadError(f"indexing {script_file} failed: {exc}") from exc


def _plain_bindings(function: func.Function) -> list[dict[str, Any]]:
    """The function's bindings as function.json held them, case normalised.

    The library writes its enums by name (`"direction": "IN"`, `"authLevel": "FUNCTION"`,
    `"methods": ["POST"]`); the host reads them case-insensitively.
    """
    raw = json.loads(json.dumps(function.get_bindings_dict(), default=str))
    bindings: list[dict[str, Any]] = list(raw.get("bindings") or [])
    for b in bindings:
        btype = str(b.get("type", ""))
        b["type"] = _SUPPORTED_BINDINGS.get(btype.lower(), btype)
        b["direction"] = str(b.get("direction", "")).lower()
        if "authLevel" in b:
            b["authLevel"] = str(b["authLevel"]).lower()
        if b.get("methods"):
            b["methods"] = [str(m).upper() for m in b["methods"]]
    return bindings


def load_function(root: Path, function: func.Function) -> FunctionDef:
    """Check one indexed function's bindings and bind its parameters."""
    name = str(function.get_function_name())
    bindings = _plain_bindings(function)
    for b in bindings:
        if b["type"] not in _SUPPORTED_BINDINGS.values():
            raise FunctionLoadError(
                f"binding type {b['type']!r} is not supported by the local host"
            )
    triggers = [b for b in bindings if b["type"].endswith("Trigger")]
    if len(triggers) != 1:
        raise FunctionLoadError(f"expected exactly one trigger binding, found {len(triggers)}")
    trigger = triggers[0]
    main = function.get_user_function()
    by_name = {str(b.get("name")): b for b in bindings}
    params: list[tuple[str, str]] = []
    for pname, param in inspect.signature(main).parameters.items():
        bound = by_name.get(pname)
        if bound is trigger:
            params.append((pname, "trigger"))
        elif bound is not None and bound["direction"] == "out":
            params.append((pname, "out"))
        elif pname == "context" and bound is None:
            params.append((pname, "context"))
        elif param.default is inspect.Parameter.empty and param.kind not in (
            inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD
        ):
            raise FunctionLoadError(f"parameter {pname!r} of {main.__name__} has no binding")
    if not any(kind == "trigger" for _, kind in params):
        raise FunctionLoadError(
            f"{main.__name__} has no parameter named {trigger.get('name')!r} (the trigger)"
        )
    http_outs = tuple(
        pname for pname, kind in params
        if kind == "out" and by_name[pname]["type"] == "http"
    )
    return FunctionDef(
        name=name,
        directory=root,
        main=main,
        trigger=trigger,
        params=params,
        http_outs=http_outs,
        is_async=inspect.iscoroutinefunction(main),
    )


def is_disabled(name: str) -> bool:
    """The `AzureWebJobs.<name>.Disabled` app setting (the v2 model has no `disabled` field)."""
    return os.environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("1", "true")
