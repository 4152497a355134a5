"""A local Azure Functions host for the Python app in the v2 programming model.

Azure Functions Core Tools cannot be installed here, so this module stands in for `func start`:
it reads `host.json`, imports the app's `function_app.py` (or `PYTHON_SCRIPT_FILE_NAME`) as the
Python worker does, indexes its one `azure.functions.FunctionApp` (`get_functions()`: each
function's name, user function and bindings, blueprints included) and runs the functions
in-process with the semantics of the Functions runtime v4 host:

- HTTP triggers under `extensions.http.routePrefix` (default `api`), ASP.NET Core route templates
  (`{name}`, `{name?}`, `{name=default}`, `{*rest}`, `{name}.{ext?}`) with route constraints
  (`int`, `guid`, `alpha`, `min(1)`, `regex(...)`, chained as `{n:int:min(1)}`), `methods` as a
  route constraint (no route for the path and method: 404), and `authLevel` (`function`: a function
  or the master key, `admin`: the master key; header `x-functions-key` or query `code`, checked
  before the body is read, else 401);
- queue triggers with `extensions.queues` (`batchSize`, `newBatchThreshold`,
  `visibilityTimeout`, `maxDequeueCount`, `maxPollingInterval`, `messageEncoding`) and the
  `<queue>-poison` queue;
- timer triggers with 6-field NCRONTAB (or 5-field, or a `hh:mm:ss` TimeSpan), `runOnStartup`,
  and a schedule status in storage so that an occurrence missed while the host was down runs once
  at start-up with `isPastDue`;
- `functionTimeout` (an invocation past it fails: HTTP 500, or a failed queue attempt; a sync
  function cannot be stopped, so it runs on and its late result is dropped), the `functions`
  list of host.json and the `AzureWebJobs.<name>.Disabled` app setting;
- `%SETTING%` indirection in queue names and schedules, resolved from the environment.

Functions receive real `azure.functions` objects (`HttpRequest`, `QueueMessage`,
`TimerRequest`, `Context`). The app root is first on `sys.path`, so functions and blueprints can
`from sms_core import ...`.

Run it with `python -m localdev.func_host --root . --port 7071`, or embed `FunctionHost` in tests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import http
import importlib
import inspect
import itertools
import json
import logging
import os
import queue
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qsl, unquote

import azure.functions as func
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.functions.timer import TimerRequest as FuncTimerRequest

log = logging.getLogger("localdev.func_host")

DEFAULT_FUNCTION_KEY = "local-dev-key"
"""The key `authLevel: function` routes accept locally unless LOCAL_FUNCTION_KEY is set.

It is a fixed, documented development value, not a secret: the local host only listens on
loopback by default.
"""

DEFAULT_MASTER_KEY = "local-master-key"
"""The master key (every authLevel, and the only key `admin` accepts) unless LOCAL_MASTER_KEY is
set. A fixed, documented development value like DEFAULT_FUNCTION_KEY."""

DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
_HOST_ID_SETTING = "AzureFunctionsWebHost__hostid"
DEFAULT_SCRIPT_FILE = "function_app.py"

TIMER_STATUS_TABLE = "LocalHostTimerStatus"
"""The table (in the host's storage account) holding each monitored timer's schedule status:
PartitionKey the host id (`FunctionHost.host_id`), RowKey the function name, and the ISO 8601
strings `Last`, `Next`, `LastUpdated`. The real host keeps the same record as a blob."""

# The real host receives with a 10-minute invisibility and renews it while the function runs;
# the local host does not renew, so it receives for longer when functionTimeout is longer.
RECEIVE_VISIBILITY_S = 600
# functionTimeout when host.json sets none: the host's default outside the Consumption plan, which
# is also what Core Tools runs with.
DEFAULT_FUNCTION_TIMEOUT_S = 1800.0

# Azurite's well-known endpoints, for the `UseDevelopmentStorage=true` shorthand that
# local.settings.json files commonly carry (the Azure SDK does not understand it).
_DEV_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)

# Binding types the host runs, by their case-insensitive name (the host matches types so).
_SUPPORTED_BINDINGS = {t.lower(): t for t in ("httpTrigger", "http", "queueTrigger",
                                               "timerTrigger")}
_AUTH_LEVELS = frozenset({"anonymous", "function", "admin", "system"})
_MAX_BODY = 100 * 1024 * 1024  # the Azure Functions HTTP request limit
# An unread body up to this size is read and dropped to keep the connection; a larger one closes it.
_DRAIN_LIMIT = 64 * 1024
# Framing headers are computed by the host; a function cannot set them.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_REASONS = {s.value: s.phrase for s in http.HTTPStatus}
_SETTING_REF = re.compile(r"%([^%]+)%")
_METHOD_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# Top-level module names imported while indexing an app root, and that root: a second host for
# another root (tests build many apps) drops them so its own function_app and packages load afresh.
_APP_MODULES: dict[str, Path] = {}
_IMPORT_LOCK = threading.Lock()


class FunctionLoadError(Exception):
    """An app or function that cannot be loaded (import error, unsupported binding, ...)."""


class FunctionTimeoutError(Exception):
    """An invocation ran past host.json's functionTimeout."""


# --------------------------------------------------------------------------------------------
# host.json


def parse_timespan(value: str | float | int | None, default: float) -> float:
    """Seconds in a .NET TimeSpan string (`[d.]hh:mm:ss[.fff]`), as host.json writes durations."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    m = re.fullmatch(r"\s*(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)\s*", value)
    if not m:
        raise ValueError(f"not a TimeSpan (expected hh:mm:ss): {value!r}")
    days, hours, minutes, seconds = m.groups()
    return (int(days or 0) * 86400) + int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def format_timespan(seconds: float) -> str:
    """A duration as .NET's TimeSpan.ToString() writes it (`[d.]hh:mm:ss[.fffffff]`)."""
    days, rest = divmod(round(seconds * 10_000_000), 864_000_000_000)
    hours, rest = divmod(rest, 36_000_000_000)
    minutes, rest = divmod(rest, 600_000_000)
    secs, ticks = divmod(rest, 10_000_000)
    text = f"{hours:02}:{minutes:02}:{secs:02}"
    return (f"{days}." if days else "") + text + (f".{ticks:07}" if ticks else "")


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the Functions v4 defaults."""

    batch_size: int = 16
    new_batch_threshold: int = 8
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    max_polling_interval_s: float = 60.0
    message_encoding: str = "base64"

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> QueueOptions:
        """Read the options, applying the host's defaults and limits."""
        # The host caps batchSize at 32 (one Get Messages call returns at most 32).
        batch = max(1, min(32, int(raw.get("batchSize", 16))))
        threshold = int(raw.get("newBatchThreshold", batch // 2))
        encoding = str(raw.get("messageEncoding", "base64")).lower()
        if encoding not in ("base64", "none"):
            raise ValueError(
                f"extensions.queues.messageEncoding must be base64 or none: {encoding}"
            )
        return cls(
            batch_size=batch,
            new_batch_threshold=max(0, threshold),
            visibility_timeout_s=parse_timespan(raw.get("visibilityTimeout"), 0.0),
            max_dequeue_count=max(1, int(raw.get("maxDequeueCount", 5))),
            max_polling_interval_s=max(0.1, parse_timespan(raw.get("maxPollingInterval"), 60.0)),
            message_encoding=encoding,
        )


_LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "information": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "none": logging.CRITICAL + 10,
}


@dataclass(frozen=True)
class HostConfig:
    """The parts of host.json the local host honours."""

    route_prefix: str = "api"
    queues: QueueOptions = field(default_factory=QueueOptions)
    functions: frozenset[str] | None = None
    function_timeout_s: float | None = DEFAULT_FUNCTION_TIMEOUT_S
    log_level: int = logging.INFO

    @classmethod
    def load(cls, root: Path) -> HostConfig:
        """Read `<root>/host.json` (missing file: all defaults)."""
        path = root / "host.json"
        raw: dict[str, Any] = json.loads(path.read_text("utf-8-sig")) if path.exists() else {}
        extensions = raw.get("extensions") or {}
        prefix = str((extensions.get("http") or {}).get("routePrefix", "api")).strip("/")
        only = raw.get("functions")
        timeout = raw.get("functionTimeout")
        level_name = str(((raw.get("logging") or {}).get("logLevel") or {}).get("default", ""))
        return cls(
            route_prefix=prefix,
            queues=QueueOptions.from_json(extensions.get("queues") or {}),
            functions=frozenset(only) if isinstance(only, list) else None,
            # "-1" means unlimited on dedicated plans.
            function_timeout_s=(
                None if timeout in ("-1", -1)
                else parse_timespan(timeout, DEFAULT_FUNCTION_TIMEOUT_S)
            ),
            log_level=_LOG_LEVELS.get(level_name.lower(), logging.INFO),
        )


def resolve_settings(value: str) -> str:
    """Replace `%NAME%` with the app setting NAME, as the host does for binding expressions."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise FunctionLoadError(f"app setting {name!r} (referenced as %{name}%) is not set")
        return os.environ[name]

    return _SETTING_REF.sub(sub, value)


# --------------------------------------------------------------------------------------------
# Indexing the app


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


class _Out(func.Out[Any]):
    """The value holder for a named output binding (`func.Out[func.HttpResponse]`)."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class InvocationContext(func.Context):
    """The `context` argument: invocation id, function name and directory."""

    _tls = threading.local()

    def __init__(self, invocation_id: str, function_name: str, function_directory: str) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


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


def _is_disabled(name: str) -> bool:
    """The `AzureWebJobs.<name>.Disabled` app setting (the v2 model has no `disabled` field)."""
    return os.environ.get(f"AzureWebJobs.{name}.Disabled", "").strip().lower() in ("1", "true")


# --------------------------------------------------------------------------------------------
# HTTP routes: ASP.NET Core route templates and constraints

Constraint = Callable[[str], bool]

# .NET number parsing allows this whitespace around a number (and trailing NULs after it).
_NUM_WS = r"[\t\n\v\f\r ]*"
_NUM_DIGITS = r"(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)"  # invariant culture, thousands allowed
_INTEGER = re.compile(rf"{_NUM_WS}([+-]?[0-9]+){_NUM_WS}\x00*")
# NumberStyles.Number: one sign, leading or trailing.
_DECIMAL = re.compile(rf"{_NUM_WS}(?:[+-](?P<a>{_NUM_DIGITS}){_NUM_WS}"
                      rf"|(?P<b>{_NUM_DIGITS}){_NUM_WS}(?:[+-]{_NUM_WS})?)\x00*")
_DECIMAL_MAX = Decimal("79228162514264337593543950335")
# NumberStyles.Float | AllowThousands: a leading sign and an exponent; out of range is infinity.
_DOUBLE = re.compile(rf"{_NUM_WS}[+-]?{_NUM_DIGITS}(?:[eE][+-]?[0-9]+)?{_NUM_WS}\x00*")
_DOUBLE_SYMBOLS = frozenset({"infinity", "+infinity", "-infinity", "nan", "+nan", "-nan"})
_BOOL = re.compile(r"[\s\x00]*(?:true|false)[\s\x00]*", re.IGNORECASE)
_ALPHA = re.compile(r"^[A-Za-z]*$")  # .NET's `$` also matches before a final newline, as Python's
_HEX = re.compile(r"[0-9A-Fa-f]*")

_MONTHS = {name: i for i, names in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"), 1) for name in {names, names[:3]}} | {"sept": 9}
_MONTH = "(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_WEEKDAY = (r"(?:(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday"
            r"|mon|tue|wed|thu|fri|sat|sun),?\s*)?")
_TIME = (r"(?P<h>\d{1,2})(?::(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:\.\d{1,7})?)?)?"
         r"\s*(?P<ampm>[ap]m)?")
_ZONE = r"(?P<tz>z|gmt|utc|[+-](?P<tzh>\d{1,2})(?::?(?P<tzm>\d{2}))?)?"
_DATES = (
    r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})",
    r"(?P<m>\d{1,2})(?P<sep>[-/.])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})",
    r"(?P<m>\d{1,2})/(?P<d>\d{1,2})",
    r"(?P<y>\d{4})-(?P<m>\d{1,2})",
    rf"{_WEEKDAY}(?P<d>\d{{1,2}})[\s-]+{_MONTH}[\s,-]+(?P<y>\d{{4}})",
    rf"{_WEEKDAY}{_MONTH}\s+(?P<d>\d{{1,2}})(?:,\s*|\s+)(?P<y>\d{{4}})",
    rf"{_MONTH}\s+(?P<y>\d{{4}})",
)
_DATETIMES = tuple(
    re.compile(rf"\s*{form}\s*{_ZONE}\s*", re.IGNORECASE)
    for form in [rf"(?:{d})(?:(?:T|\s+){_TIME})?" for d in _DATES] + [_TIME]
)


def _integer(value: str, bits: int) -> int | None:
    """int.TryParse / long.TryParse (NumberStyles.Integer, invariant culture)."""
    m = _INTEGER.fullmatch(value)
    if m is None:
        return None
    n = int(m.group(1))
    return n if -(1 << (bits - 1)) <= n < (1 << (bits - 1)) else None


def _is_decimal(value: str) -> bool:
    m = _DECIMAL.fullmatch(value)
    if m is None:
        return False
    try:
        return abs(Decimal((m["a"] or m["b"]).replace(",", ""))) <= _DECIMAL_MAX
    except InvalidOperation:
        return False


def _is_double(value: str) -> bool:
    return _DOUBLE.fullmatch(value) is not None or value.strip().lower() in _DOUBLE_SYMBOLS


def _is_datetime(value: str) -> bool:
    """DateTime.TryParse with the invariant culture, for its common forms.

    ISO 8601 (`2016-12-31`, `2016-12-31T19:32:00.5Z`, `+01:00`), `12/31/2016` and `12-31-16`,
    month names (`31 December 2016`, `Dec 31, 2016`, `December 2016`), a time alone
    (`7:32 PM`, `19:32:05`) or after a date; calendar dates and times must be valid.
    """
    for form in _DATETIMES:
        m = form.fullmatch(value)
        if m is not None and _valid_datetime(m.groupdict()):
            return True
    return False


def _valid_datetime(g: dict[str, str | None]) -> bool:
    today = date.today()
    year = int(g.get("y") or today.year)
    if len(g.get("y") or "") == 2:
        year += 2000 if year < 50 else 1900  # .NET's TwoDigitYearMax is 2049
    has_date = any(g.get(k) for k in ("y", "m", "mon"))
    month = (_MONTHS[str(g["mon"]).lower()] if g.get("mon")
             else int(g.get("m") or today.month))
    day = int(g.get("d") or (1 if has_date else today.day))
    try:
        date(year, month, day)
    except ValueError:
        return False
    if g.get("h") is not None:
        hour, ampm = int(str(g["h"])), g.get("ampm")
        if g.get("mi") is None and ampm is None:
            return False  # a bare number is not a time
        if hour > (12 if ampm else 23) or int(g.get("mi") or 0) > 59 or int(g.get("s") or 0) > 59:
            return False
    return int(g.get("tzh") or 0) <= 14 and int(g.get("tzm") or 0) <= 59


def _guid_hex(part: str) -> int | None:
    """Guid's lenient hex component: an optional `+`, an optional `0x`, then hex digits."""
    part = part.removeprefix("+")
    if len(part) > 1 and part[0] == "0" and part[1] in "xX":
        part = part[2:]
    if _HEX.fullmatch(part) is None or len(part.lstrip("0")) > 8:
        return None
    return int(part, 16) if part else 0


def _is_guid_d(s: str) -> bool:
    """`d85b1407-351d-4694-9392-03acc5870eb1`, where the first five groups may carry `+`/`0x`."""
    if len(s) != 36 or any(s[i] != "-" for i in (8, 13, 18, 23)):
        return False
    groups = (s[0:8], s[9:13], s[14:18], s[19:23], s[24:28])
    if _HEX.fullmatch(s[28:36]) is None:
        return False
    if all(_HEX.fullmatch(g) for g in groups):
        return True
    return any(c in s for c in "xX+") and all(_guid_hex(g) is not None for g in groups)


_GUID_X = re.compile(r"\{0[xX]([^,]+),0[xX]([^,]+),0[xX]([^,]+),\{"
                     + r"0[xX]([^,]+),".join([""] * 8) + r"0[xX]([^}]+)\}\}")


def _is_guid(value: str) -> bool:
    """Guid.TryParse: the N, D, B, P and X formats, whitespace around (X: anywhere) allowed."""
    s = value.strip()
    if len(s) < 32:
        return False
    if s[0] == "(":
        return len(s) == 38 and s[-1] == ")" and _is_guid_d(s[1:37])
    if s[0] == "{" and s[9] == "-":
        return len(s) == 38 and s[-1] == "}" and _is_guid_d(s[1:37])
    if s[0] == "{":
        m = _GUID_X.fullmatch("".join(s.split()))
        if m is None:
            return False
        values = [_guid_hex(g) for g in m.groups()]
        return all(v is not None for v in values) and all(v <= 0xFF for v in values[3:] if v)
    if s[8] == "-":
        return _is_guid_d(s)
    return len(s) == 32 and _HEX.fullmatch(s) is not None


def _utf16_len(value: str) -> int:
    """String.Length in .NET: UTF-16 code units (an emoji counts 2)."""
    return len(value.encode("utf-16-le")) // 2


def _is_file_name(value: str) -> bool:
    """ASP.NET's `file`: the last path segment has a dot followed by something other than dots."""
    last = value.rpartition("/")[2]
    dot = last.find(".")
    return bool(value) and dot >= 0 and any(c != "." for c in last[dot + 1:])


_PLAIN_CONSTRAINTS: dict[str, Constraint] = {
    "int": lambda v: _integer(v, 32) is not None,
    "long": lambda v: _integer(v, 64) is not None,
    "bool": lambda v: _BOOL.fullmatch(v) is not None,
    "datetime": _is_datetime,
    "decimal": _is_decimal,
    "double": _is_double,
    "float": _is_double,  # float.TryParse takes the same syntax; out of range is infinity
    "guid": _is_guid,
    "alpha": lambda v: _ALPHA.search(v) is not None,
    "required": lambda v: v != "",
    "file": _is_file_name,
    "nonfile": lambda v: not _is_file_name(v),
}
# name: (argument count, 32- or 64-bit arguments)
_ARG_CONSTRAINTS: dict[str, tuple[tuple[int, ...], int]] = {
    "minlength": ((1,), 32), "maxlength": ((1,), 32), "length": ((1, 2), 32),
    "min": ((1,), 64), "max": ((1,), 64), "range": ((2,), 64),
}


def resolve_constraint(text: str) -> Constraint:
    """A route constraint (`int`, `min(1)`, `regex(^a+$)`, ...) as a predicate on the value.

    Raises FunctionLoadError for an unknown name or bad arguments, as the host fails to start
    such a route.
    """
    name, args = text, None
    open_paren = text.find("(")
    if open_paren >= 0 and text.endswith(")"):
        name, args = text[:open_paren], text[open_paren + 1:-1]
    key = name.strip().lower()
    if key == "regex":
        if args is None:
            raise FunctionLoadError(f"route constraint {text!r} needs a pattern: regex(...)")
        try:
            pattern = re.compile(args, re.IGNORECASE)
        except re.error as exc:
            raise FunctionLoadError(f"invalid regex in route constraint {text!r}: {exc}") from None
        return lambda v: pattern.search(v) is not None
    if key in _PLAIN_CONSTRAINTS:
        if args is not None:
            raise FunctionLoadError(f"route constraint {name!r} takes no arguments: {text!r}")
        return _PLAIN_CONSTRAINTS[key]
    if key not in _ARG_CONSTRAINTS:
        raise FunctionLoadError(f"unknown route constraint {name!r}")
    counts, bits = _ARG_CONSTRAINTS[key]
    values = [_integer(a, bits) for a in (args.split(",") if args is not None else [])]
    if len(values) not in counts or any(v is None for v in values):
        raise FunctionLoadError(f"route constraint {text!r} needs {' or '.join(map(str, counts))} "
                                f"integer argument(s)")
    lo, hi = values[0] or 0, values[-1] or 0
    if (lo < 0 and key.endswith("length")) or lo > hi:
        raise FunctionLoadError(f"route constraint {text!r} has an invalid range")
    if key == "minlength":
        return lambda v: _utf16_len(v) >= lo
    if key == "maxlength":
        return lambda v: _utf16_len(v) <= lo
    if key == "length":
        return lambda v: lo <= _utf16_len(v) <= hi
    low = lo if key in ("min", "range") else None
    high = hi if key in ("max", "range") else None

    def in_range(v: str) -> bool:
        n = _integer(v, 64)
        return n is not None and (low is None or n >= low) and (high is None or n <= high)

    return in_range


@dataclass(frozen=True)
class RouteParameter:
    """One `{...}` of a route template."""

    name: str
    group: str  # its regex group
    catch_all: bool
    optional: bool
    default: str | None
    constraints: tuple[Constraint, ...]


def _parse_constraints(text: str, i: int, end: int) -> tuple[list[str], int]:
    """The `:constraint(args)` list of a parameter, as ASP.NET's RouteParameterParser splits it.

    A `(` opens arguments that may hold `:`, `=` and `)` (a regex); they end at a `)` followed by
    `:`, `=` or the end. Returns the constraint texts and the index of the default's `=`.
    """
    constraints: list[str] = []
    state, start = "start", i
    while True:
        c = text[i] if i <= end else None
        if state == "start":
            if c is None:
                state = "end"
            elif c == ":":
                state, start = "name", i + 1
            elif c == "(":
                state = "args"
            elif c == "=":
                state, i = "end", i - 1
        elif state == "args":
            if c is None:
                state = "end"
                constraints.append(text[start:i])
            elif c == ")":
                after = text[i + 1] if i + 1 <= end else None
                if after in (None, ":", "="):
                    constraints.append(text[start:i + 1])
                    state, start = ("start", i + 1) if after == ":" else ("end", start)
            elif c in ":=":
                close = text.find(")", i + 1)
                if close >= 0:
                    i = close
                else:
                    constraints.append(text[start:i])
                    state, start = ("name", i + 1) if c == ":" else ("end", start)
                    i -= c == "="
        elif c is None or c in ":=":
            if text[start:i]:
                constraints.append(text[start:i])
            if c == ":":
                start = i + 1
            else:
                state, i = "end", i - (c == "=")
        elif c == "(":
            state = "args"
        i += 1
        if state == "end":
            return constraints, i


def _parse_parameter(text: str, group: str,
                     fail: Callable[[str], FunctionLoadError]) -> RouteParameter:
    """`*rest`, `name?`, `name:int:min(1)=5`, ... (the inside of a `{...}`)."""
    if not text:
        raise fail("empty parameter {}")
    catch_all = text.startswith("*")
    start = 2 if text.startswith("**") else int(catch_all)
    end = len(text) - 1
    optional = text[end] == "?"
    if optional:
        end -= 1
    if catch_all and optional:
        raise fail("a catch-all parameter cannot be optional")
    i = start
    while i <= end and not (text[i] in ":=" and i != start):
        i += 1
    name = text[start:i]
    texts, i = _parse_constraints(text, i, end)
    default = text[i + 1:end + 1] if i <= end and text[i] == "=" else None
    if optional and default is not None:
        raise fail(f"optional parameter {name!r} cannot have a default value")
    if not name or any(c in "/{}?*" for c in name):
        raise fail(f"invalid parameter name {name!r}")
    try:
        constraints = tuple(resolve_constraint(t) for t in texts)
    except FunctionLoadError as exc:
        raise fail(str(exc)) from None
    return RouteParameter(name, group, catch_all, optional, default, constraints)


def _route_segments(text: str,
                    fail: Callable[[str], FunctionLoadError]) -> list[list[str | RouteParameter]]:
    """Split a template into segments of literal and parameter parts (`{{`, `}}` escape braces)."""
    segments: list[list[str | RouteParameter]] = []
    groups = itertools.count()
    i, n = 0, len(text)
    while i < n:
        if text[i] == "/":
            raise fail("consecutive '/' separators")
        parts: list[str | RouteParameter] = []
        while i < n and text[i] != "/":
            parameter = text[i] == "{" and text[i + 1:i + 2] != "{"
            buf: list[str] = []
            j = i + 1 if parameter else i
            while True:
                if j >= n or (not parameter and text[j] == "/"):
                    if parameter:
                        raise fail("unclosed '{'")
                    break
                c = text[j]
                if c in "{}" and text[j + 1:j + 2] == c:
                    buf.append(c)
                    j += 2
                    continue
                if c == "{":
                    if parameter:
                        raise fail("a '{' inside a parameter must be written '{{'")
                    break
                if c == "}":
                    if not parameter:
                        raise fail("unmatched '}'")
                    j += 1
                    break
                buf.append(c)
                j += 1
            text_part = "".join(buf)
            parts.append(_parse_parameter(text_part, f"g{next(groups)}", fail) if parameter
                         else text_part)
            i = j
        segments.append(parts)
        i += 1
    return segments


@dataclass(frozen=True)
class RoutePattern:
    """A compiled route template: a case-insensitive regex plus the parameters' constraints."""

    template: str
    regex: re.Pattern[str]
    parameters: tuple[RouteParameter, ...]
    rank: tuple[int, ...]  # ASP.NET's inbound precedence, one digit per segment: lower first

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a path (leading slash, no trailing slash), or None if no match.

        A value that fails a constraint means no match, so another route may take the path.
        """
        m = self.regex.match(path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for p in self.parameters:
            raw = m.group(p.group)
            value = unquote(raw) if raw is not None else p.default
            if value is None:
                continue  # an absent optional parameter: its constraints do not apply
            if not all(check(value) for check in p.constraints):
                return None
            values[p.name] = value
        return values


def compile_route(template: str) -> RoutePattern:
    """Compile an ASP.NET Core route template (as the Functions host reads `route`).

    The regex matches the path after the route prefix, with a leading slash and no trailing
    slash. Precedence digits per segment: literal 1, multi-part or constrained parameter 2,
    parameter 3, constrained catch-all 4, catch-all 5 (optional parameters rank as parameters).
    """

    def fail(why: str) -> FunctionLoadError:
        return FunctionLoadError(f"invalid route template {template!r}: {why}")

    text = template.strip()
    text = text[2:] if text.startswith("~/") else text.removeprefix("/")
    segments = _route_segments(text, fail)
    pattern, ranks, parameters = "", [], []
    for index, parts in enumerate(segments):
        params = [p for p in parts if isinstance(p, RouteParameter)]
        parameters.extend(params)
        for p in params:
            if p.catch_all and (index != len(segments) - 1 or len(parts) > 1):
                raise fail("a catch-all parameter must be the whole last segment")
        if len(parts) == 1 and isinstance(parts[0], str):
            pattern += "/" + re.escape(parts[0])
            ranks.append(1)
        elif len(parts) == 1:
            p = params[0]
            if p.catch_all:
                pattern += f"(?:/(?P<{p.group}>.*))?"
            elif p.optional or p.default is not None:
                pattern += f"(?:/(?P<{p.group}>[^/]+))?"
            else:
                pattern += f"/(?P<{p.group}>[^/]+)"
            ranks.append((5 if p.catch_all else 3) - bool(p.constraints))
        else:
            pattern += "/" + _complex_segment(parts, fail)
            ranks.append(2)
    names = [p.name.lower() for p in parameters]
    if len(set(names)) != len(names):
        raise fail("a parameter name is used twice")
    return RoutePattern(template, re.compile(f"^{pattern}$", re.IGNORECASE), tuple(parameters),
                        tuple(ranks))


def _complex_segment(parts: list[str | RouteParameter],
                     fail: Callable[[str], FunctionLoadError]) -> str:
    """The regex of a segment mixing literals and parameters, e.g. `{name}.{ext?}`.

    ASP.NET matches these right to left (each literal at its last occurrence), which greedy
    parameters reproduce; an optional last parameter after a `.` takes what follows the last dot.
    """
    regex = ""
    ends_optional = isinstance(parts[-1], RouteParameter) and parts[-1].optional
    for k, part in enumerate(parts):
        if isinstance(part, str):
            regex += re.escape(part)
            continue
        if k and isinstance(parts[k - 1], RouteParameter):
            raise fail("two parameters in a segment need a literal between them")
        if not part.optional:
            lazy = ends_optional and k == len(parts) - 3
            regex += f"(?P<{part.group}>[^/]+{'?' if lazy else ''})"
            continue
        if k != len(parts) - 1 or parts[k - 1] != ".":
            raise fail(f"optional parameter {part.name!r} must end its segment, after a '.'")
        regex = regex[:-len(re.escape("."))] + rf"(?:\.(?P<{part.group}>[^/.]+))?"
    return regex


@dataclass
class HttpRoute:
    """An HTTP trigger's compiled route."""

    function: FunctionDef
    pattern: RoutePattern
    methods: frozenset[str] | None  # None: every method
    auth_level: str


# --------------------------------------------------------------------------------------------
# Timer schedules


class Schedule:
    """An NCRONTAB (6 or 5 fields, UTC) or TimeSpan (`hh:mm:ss`) timer schedule."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self._interval: timedelta | None = None
        fields = expression.split()
        if len(fields) == 1 and ":" in expression:
            self._interval = timedelta(seconds=parse_timespan(expression, 0))
            if self._interval <= timedelta(0):
                raise FunctionLoadError(f"timer interval must be positive: {expression!r}")
            return
        if len(fields) not in (5, 6):
            raise FunctionLoadError(f"NCRONTAB needs 6 fields (sec min hour day month dow): "
                                    f"{expression!r}")
        from croniter import croniter  # imported here: only apps with timers need it

        # NCrontab requires both day-of-month and day-of-week to match (day_or=False), unlike
        # Vixie cron; its 6-field form puts seconds first.
        self._seconds_first = len(fields) == 6
        if not croniter.is_valid(expression, second_at_beginning=self._seconds_first):
            raise FunctionLoadError(f"invalid NCRONTAB expression {expression!r}")
        self._croniter = croniter

    def next_after(self, when: datetime) -> datetime:
        """The first occurrence strictly after `when` (UTC)."""
        if self._interval is not None:
            return when + self._interval
        it = self._croniter(self.expression, when, ret_type=datetime, day_or=False,
                            second_at_beginning=self._seconds_first)
        nxt: datetime = it.get_next(datetime)
        return nxt

    def monitored_by_default(self, now: datetime) -> bool:
        """The host monitors a schedule (keeps its status) unless it recurs within a minute."""
        first = self.next_after(now)
        return self.next_after(first) - first >= timedelta(minutes=1)


@dataclass(frozen=True)
class ScheduleStatus:
    """A timer's recorded schedule status, as the host's ScheduleMonitor keeps it."""

    last: datetime | None
    next: datetime
    last_updated: datetime | None

    def as_request(self) -> dict[str, str]:
        """The `schedule_status` a TimerRequest carries."""
        return {"Last": (self.last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": self.next.isoformat(),
                "LastUpdated": (self.last_updated or datetime.min.replace(tzinfo=UTC)).isoformat()}


@dataclass
class _TimerState:
    function: FunctionDef
    schedule: Schedule
    run_on_startup: bool
    monitored: bool
    next_due: datetime
    last: datetime | None = None
    status: ScheduleStatus | None = None
    running: bool = False


class _TimerStatusStore:
    """Schedule status per timer function, in a table of the host's storage account."""

    def __init__(self, connection: str | dict[str, str], host_id: str) -> None:
        self.connection = connection
        self.host_id = host_id
        self._client: Any = None

    def _table(self) -> Any:
        if self._client is None:
            from azure.core.exceptions import ResourceExistsError
            from azure.data.tables import TableClient

            # Few retries: a status read must not hold the scheduler for long.
            if isinstance(self.connection, str):
                client = TableClient.from_connection_string(
                    self.connection, TIMER_STATUS_TABLE, retry_total=1)
            else:
                from azure.identity import DefaultAzureCredential

                client = TableClient(self.connection["account_url"], TIMER_STATUS_TABLE,
                                     credential=DefaultAzureCredential(), retry_total=1)
            with contextlib.suppress(ResourceExistsError):
                client.create_table()
            self._client = client
        return self._client

    def get(self, name: str) -> ScheduleStatus | None:
        """The recorded status, or None if the timer never recorded one."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            entity = self._table().get_entity(self.host_id, name)
        except ResourceNotFoundError:
            return None

        def when(key: str) -> datetime | None:
            value = entity.get(key)
            return datetime.fromisoformat(value) if value else None

        nxt = when("Next")
        if nxt is None:
            return None
        return ScheduleStatus(last=when("Last"), next=nxt, last_updated=when("LastUpdated"))

    def put(self, name: str, status: ScheduleStatus) -> None:
        """Record a status (replacing the previous one)."""
        from azure.data.tables import UpdateMode

        self._table().upsert_entity({
            "PartitionKey": self.host_id, "RowKey": name,
            "Last": status.last.isoformat() if status.last else "",
            "Next": status.next.isoformat(),
            "LastUpdated": status.last_updated.isoformat() if status.last_updated else "",
        }, mode=UpdateMode.REPLACE)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def check_past_due(schedule: Schedule, status: ScheduleStatus | None,
                   now: datetime) -> tuple[ScheduleStatus, bool, bool]:
    """The status to keep at start-up and whether an occurrence was missed while down.

    Mirrors the host's ScheduleMonitor.CheckPastDueAsync: a `Next` that no longer follows from
    `Last` (or `LastUpdated`) means the schedule changed, and is recomputed (from now if it
    would lie in the past) instead of counting as missed. Returns (status, past due, changed).
    """
    if status is None:
        return ScheduleStatus(None, schedule.next_after(now), now), False, True
    basis = status.last or status.last_updated or now
    expected = schedule.next_after(basis)
    changed = status.next != expected
    if changed:
        if now > expected:
            expected, basis = schedule.next_after(now), now
        status = ScheduleStatus(None, expected, basis)
    return status, now > status.next, changed


# --------------------------------------------------------------------------------------------
# HTTP server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # Benchmarks open many connections at once; the default backlog of 5 drops SYNs.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: FunctionHost) -> None:
        self.app = app
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Without TCP_NODELAY a small response waits for the client's delayed ACK (~40 ms).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return  # the client went away; nothing to report
        log.error("HTTP connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server_version = "localdev-func-host"
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _Server

    def setup(self) -> None:
        super().setup()
        self._expect_continue = False
        self._linger = False
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        if self._linger:
            self._lingering_close()
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes a line to stderr per request, which costs more than the request.
        pass

    def parse_request(self) -> bool:
        self._expect_continue = False
        if not super().parse_request():
            return False
        if _METHOD_TOKEN.fullmatch(self.command) is None:
            self.send_error(http.HTTPStatus.BAD_REQUEST, "Bad request method")
            return False
        # http.server answers 501 for a method without a do_<METHOD>; the real host routes every
        # method (TRACE, PROPFIND, ...), so all of them reach the same handler.
        setattr(self, f"do_{self.command}", self.dispatch)
        return True

    def handle_expect_100(self) -> bool:
        # Kestrel sends 100 Continue only once the body is read: a request refused before that
        # (401, 404, 413) never makes the client upload its body.
        self._expect_continue = True
        return True

    def dispatch(self) -> None:
        self.server.app._handle_http(self)

    def _content_length(self) -> int | None:
        """The declared body length (0: none), or None when chunked or unparseable."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        return length if length >= 0 else None

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked)."""
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = 0 if chunked else int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > _MAX_BODY:
            raise OverflowError
        if self._expect_continue:
            self._expect_continue = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not chunked:
            return self.rfile.read(length) if length else b""
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise OverflowError
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)

    def discard_body(self) -> None:
        """Skip an unread request body without buffering it.

        A small one is read and dropped so the connection stays usable; otherwise (large,
        chunked, or not sent yet because the client awaits 100 Continue) the connection closes
        after the answer.
        """
        length = self._content_length()
        if length == 0:
            return
        if length is not None and length <= _DRAIN_LIMIT and not self._expect_continue:
            while length > 0:
                chunk = self.rfile.read(min(length, 65536))
                if not chunk:
                    break
                length -= len(chunk)
            return
        self.close_connection = True
        self._linger = True

    def _lingering_close(self) -> None:
        # Closing a socket with unread input makes the kernel send RST, which can destroy the
        # answer before the client reads it; half-close and drop what still arrives, briefly.
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(0.5)
            buf = bytearray(65536)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and sock.recv_into(buf):
                pass

    def respond(self, status: int, headers: Iterable[tuple[str, str]], body: bytes) -> None:
        """Write status line, headers and body in one send (no Nagle/delayed-ACK stall)."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        for k, v in headers:
            # A header value with a line break would let a function inject headers.
            lines.append(f"{k}: {v}".replace("\r", " ").replace("\n", " "))
        lines.append(f"Content-Length: {len(body)}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        self.wfile.write(head if self.command == "HEAD" else head + body)


def _problem(status: int, title: str) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"type": "about:blank", "title": title, "status": status}).encode()
    return status, [("Content-Type", "application/problem+json")], body


def _http_result(value: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    """Map a function's return value to (status, headers, body) like the Python worker."""
    if isinstance(value, func.HttpResponse):
        headers = [(k, v) for k, v in value.headers.items() if k.lower() not in _HOP_HEADERS]
        if not any(k.lower() == "content-type" for k, _ in headers):
            mimetype = value.mimetype
            if mimetype.startswith("text/"):
                mimetype = f"{mimetype}; charset={value.charset}"
            headers.append(("Content-Type", mimetype))
        return int(value.status_code), headers, value.get_body() or b""
    if value is None:
        return 204, [], b""
    if isinstance(value, str):
        return 200, [("Content-Type", "text/plain; charset=utf-8")], value.encode()
    if isinstance(value, bytes | bytearray):
        return 200, [("Content-Type", "application/octet-stream")], bytes(value)
    raise TypeError(f"an HTTP function must return func.HttpResponse, str or bytes, "
                    f"not {type(value).__name__}")


# --------------------------------------------------------------------------------------------
# Queue polling


class _QueuePoller:
    """One queue trigger: fetch batches, run them on the shared pool, retry or poison failures."""

    def __init__(self, app: FunctionHost, function: FunctionDef, queue_name: str,
                 client: Any, poison: Any, options: QueueOptions) -> None:
        self.app = app
        self.function = function
        self.queue_name = queue_name
        self.client = client
        self.poison = poison
        self.options = options
        self.running = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(
            target=self._run, name=f"queue-poller-{queue_name}", daemon=True
        )

    # The poller loop -------------------------------------------------------------------------

    def _run(self) -> None:
        stop = self.app._stop_event
        failures = 0
        while not stop.is_set() and not self._ensure_queues(failures):
            failures += 1
            stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        failures = 0
        delay = 0.1
        opts = self.options
        visibility = self.app._receive_visibility_s
        while not stop.is_set():
            with self.cond:
                # Fetch again only when the running count drops to newBatchThreshold, so at most
                # batchSize + newBatchThreshold messages of this queue run at once.
                while self.running > opts.new_batch_threshold and not stop.is_set():
                    self.cond.wait(0.5)
            if stop.is_set():
                break
            try:
                pages = self.client.receive_messages(
                    messages_per_page=opts.batch_size, visibility_timeout=visibility
                ).by_page()
                messages = list(next(pages, []))
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "queue %s: receive failed (retrying): %r", self.queue_name, exc)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if failures:
                log.info("queue %s: receiving again", self.queue_name)
                failures = 0
            if not messages:
                stop.wait(delay)
                delay = min(delay * 2, opts.max_polling_interval_s)
                continue
            delay = 0.1
            with self.cond:
                self.running += len(messages)
            for msg in messages:
                self.app._workers.submit(self._process, msg)

    def _ensure_queues(self, failures: int) -> bool:
        from azure.core.exceptions import ResourceExistsError

        try:
            for client in (self.client, self.poison):
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
        except Exception as exc:
            level = logging.WARNING if failures == 0 else logging.DEBUG
            log.log(level, "queue %s: cannot create the queue (retrying): %r", self.queue_name, exc)
            return False
        return True

    # One message -----------------------------------------------------------------------------

    def _done(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify()

    def _process(self, msg: Any) -> None:
        try:
            if self.app._stop_event.is_set():
                self._release(msg)
                return
            if (msg.dequeue_count or 0) > self.options.max_dequeue_count:
                # The real host checks this on receive: a message that came back without being
                # counted as a failure (the host crashed or stopped mid-invocation).
                log.error("%s: message %s on %s has dequeue count %s, over maxDequeueCount (%d); "
                          "moving it to %s-poison", self.function.name, msg.id, self.queue_name,
                          msg.dequeue_count, self.options.max_dequeue_count, self.queue_name)
                self._poison(msg)
                return
            text: str = msg.content if msg.content is not None else ""
            try:
                body = self._decode(text)
            except ValueError:
                # The real host moves a message it cannot decode straight to the poison queue.
                log.error("%s: message %s on %s is not valid base64; moving it to %s-poison",
                          self.function.name, msg.id, self.queue_name, self.queue_name)
                self._poison(msg)
                return
            trigger = FuncQueueMessage(  # type: ignore[no-untyped-call]
                id=msg.id,
                body=body,
                dequeue_count=msg.dequeue_count,
                expiration_time=msg.expires_on,
                insertion_time=msg.inserted_on,
                time_next_visible=msg.next_visible_on,
                pop_receipt=msg.pop_receipt,
            )
            try:
                self.app._invoke(self.function, trigger)
            except FunctionTimeoutError:
                self._failed(msg)  # a failed attempt; _invoke logged the timeout
                return
            except Exception:
                log.error("%s failed on message %s (dequeue count %s)", self.function.name,
                          msg.id, msg.dequeue_count, exc_info=True)
                self._failed(msg)
                return
            try:
                self.client.delete_message(msg.id, msg.pop_receipt)
            except Exception as exc:
                # The message reappears after its invisibility and runs again (at-least-once).
                log.error("queue %s: delete of %s failed: %r", self.queue_name, msg.id, exc)
        finally:
            self._done()

    def _decode(self, text: str) -> bytes:
        if self.options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            # .NET's base64 decoder ignores whitespace; Python's strict mode does not.
            return base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error as exc:
            raise ValueError(str(exc)) from exc

    def _failed(self, msg: Any) -> None:
        if (msg.dequeue_count or 0) >= self.options.max_dequeue_count:
            log.error("%s: message %s reached maxDequeueCount (%d); moving it to %s-poison",
                      self.function.name, msg.id, self.options.max_dequeue_count, self.queue_name)
            self._poison(msg)
            return
        try:
            self.client.update_message(
                msg.id, msg.pop_receipt,
                visibility_timeout=round(self.options.visibility_timeout_s),
            )
        except Exception as exc:
            log.error("queue %s: cannot make %s visible again (it will be after %d s): %r",
                      self.queue_name, msg.id, self.app._receive_visibility_s, exc)

    def _poison(self, msg: Any) -> None:
        try:
            # The original text, untouched: base64 stays base64, as the real host copies it.
            self.poison.send_message(msg.content)
        except Exception as exc:
            # Keep the original: it will be retried and poisoned later, never dropped.
            log.error("queue %s: cannot write %s to the poison queue: %r", self.queue_name,
                      msg.id, exc)
            return
        try:
            self.client.delete_message(msg.id, msg.pop_receipt)
        except Exception as exc:
            log.error("queue %s: delete of poisoned %s failed: %r", self.queue_name, msg.id, exc)

    def _release(self, msg: Any) -> None:
        """Make a fetched but unprocessed message visible again (the host is stopping)."""
        with contextlib.suppress(Exception):
            self.client.update_message(msg.id, msg.pop_receipt, visibility_timeout=0)


def _storage_connection(setting: str, default: str | None,
                        service: str = "queue") -> str | dict[str, str] | None:
    """The connection string (or identity-based `service` URI) behind a `connection` setting."""
    if setting == DEFAULT_STORAGE_SETTING and default:
        value: str | None = default
    else:
        value = os.environ.get(setting) or os.environ.get(f"AzureWebJobs{setting}")
    if value:
        return _DEV_STORAGE if value.strip().lower() == "usedevelopmentstorage=true" else value
    # Identity-based connections: <setting>__queueServiceUri or <setting>__accountName.
    uri = os.environ.get(f"{setting}__{service}ServiceUri")
    account = os.environ.get(f"{setting}__accountName")
    if uri or account:
        return {"account_url": uri or f"https://{account}.{service}.core.windows.net"}
    return None


class _QueueClients:
    """Creates QueueClients that share one HTTP connection pool sized for the workers."""

    def __init__(self, pool_size: int) -> None:
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._transport_cls = RequestsTransport
        self._credential: Any = None

    def client(self, connection: str | dict[str, str], queue_name: str) -> Any:
        from azure.storage.queue import QueueClient

        # No message encode/decode policy: the host sees the raw text and decodes it itself.
        transport = self._transport_cls(session=self.session, session_owner=False)
        if isinstance(connection, str):
            return QueueClient.from_connection_string(
                connection, queue_name, transport=transport
            )
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return QueueClient(connection["account_url"], queue_name, credential=self._credential,
                           transport=transport)

    def close(self) -> None:
        self.session.close()


# --------------------------------------------------------------------------------------------
# Workers


class _Workers:
    """Daemon threads for invocations and trigger work, one per concurrent job, reused when idle.

    Unbounded, unlike ThreadPoolExecutor: HTTP invocations never were bounded, and a sync
    invocation that ran past functionTimeout keeps its thread until it returns. Daemon threads,
    so such a hung invocation does not also hold the interpreter at exit.
    """

    def __init__(self, name: str, idle_s: float = 30.0) -> None:
        self._name = name
        self._idle_s = idle_s
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]]
        self._jobs = queue.SimpleQueue()
        # Waiting threads nobody has counted on yet; a submit claims one or starts a thread.
        self._free = 0
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run fn(*args) on a worker thread."""
        future: Future[Any] = Future()
        with self._lock:
            self._jobs.put((future, fn, args))
            if self._free:
                self._free -= 1
                return future
        threading.Thread(target=self._work, name=f"{self._name}-{next(self._ids)}",
                         daemon=True).start()
        return future

    def _work(self) -> None:
        job = self._jobs.get()
        while True:
            future, fn, args = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:
                    future.set_exception(exc)
            del job, future, fn, args  # do not keep the last job's objects alive while idle
            with self._lock:
                self._free += 1
            while True:
                try:
                    job = self._jobs.get(timeout=self._idle_s)
                    break
                except queue.Empty:
                    with self._lock:
                        if self._free:
                            self._free -= 1
                            return


# --------------------------------------------------------------------------------------------
# The host


def _host_id(root: Path) -> str:
    """The id under which the host keeps its timer status: the `AzureFunctionsWebHost__hostid`
    app setting, else the root folder's name plus a hash of its path (at most 32 characters)."""
    configured = os.environ.get(_HOST_ID_SETTING)
    if configured:
        return configured
    slug = re.sub(r"[^a-z0-9]+", "-", root.name.lower()).strip("-")[:19] or "app"
    return f"{slug}-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"


class FunctionHost:
    """Runs a v2-model Python app: HTTP server, queue pollers and timer scheduler.

    `start()` returns once the HTTP port is bound; everything runs on background threads.
    `stop()` stops accepting work and waits for in-flight invocations up to a deadline.
    """

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_connection_string: str | None = None,
        function_key: str = DEFAULT_FUNCTION_KEY,
        master_key: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.host = host
        self.port = port
        self.storage_connection_string = storage_connection_string
        self.function_key = function_key
        self.master_key = master_key or os.environ.get("LOCAL_MASTER_KEY") or DEFAULT_MASTER_KEY
        self.host_id = _host_id(self.root)
        self.config = HostConfig()
        self.functions: dict[str, FunctionDef] = {}
        self.load_errors: dict[str, str] = {}
        self._routes: list[HttpRoute] = []
        self._pollers: list[_QueuePoller] = []
        self._timers: list[_TimerState] = []
        self._timer_store: _TimerStatusStore | None = None
        self._stop_event = threading.Event()
        self._server: _Server | None = None
        self._server_thread: threading.Thread | None = None
        self._scheduler: threading.Thread | None = None
        self._timer_cond = threading.Condition()
        self._workers = _Workers("func-worker")
        self._clients: _QueueClients | None = None
        self._inflight = 0
        self._inflight_cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_lock = threading.Lock()
        self._added_sys_path = False
        self._key_bytes = function_key.encode()
        self._master_bytes = self.master_key.encode()

    @property
    def base_url(self) -> str:
        """`http://host:port` of the running server (the bound port when started with 0)."""
        return f"http://{self.host}:{self.port}"

    @property
    def _receive_visibility_s(self) -> int:
        limit = self.config.function_timeout_s
        if limit is None or limit + 60 <= RECEIVE_VISIBILITY_S:
            return RECEIVE_VISIBILITY_S
        return min(int(limit) + 60, 7 * 86400)

    # Lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load host.json, index the app, bind the HTTP port and start the background work."""
        self.config = HostConfig.load(self.root)
        self._added_sys_path = str(self.root) not in sys.path
        self._load_all()

        self._server = _Server((self.host, self.port), self)
        self.port = int(self._server.server_address[1])
        self._setup_triggers()
        self._print_functions()

        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="func-host-http", daemon=True,
        )
        self._server_thread.start()
        for poller in self._pollers:
            poller.thread.start()
        if self._timers:
            self._scheduler = threading.Thread(target=self._schedule_loop, name="func-host-timers",
                                               daemon=True)
            self._scheduler.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop HTTP, pollers and timers; wait up to `timeout` s for in-flight invocations.

        Returns False when invocations were still running at the deadline (their threads cannot
        be cancelled; the caller decides whether to exit anyway). An invocation that outran
        functionTimeout counts until its code returns.
        """
        if self._stop_event.is_set():
            return True
        deadline = time.monotonic() + timeout
        self._stop_event.set()
        with self._timer_cond:
            self._timer_cond.notify_all()
        if self._server is not None:
            # shutdown() waits for serve_forever to exit: only call it if that loop runs.
            if self._server_thread is not None and self._server_thread.is_alive():
                self._server.shutdown()
            self._server.server_close()
        for poller in self._pollers:
            with poller.cond:
                poller.cond.notify_all()
            if poller.thread.is_alive():
                poller.thread.join(max(0.1, min(10.0, deadline - time.monotonic())))
        if self._scheduler is not None:
            self._scheduler.join(max(0.1, deadline - time.monotonic()))
        finished = True
        with self._inflight_cond:
            while self._inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("stopping with %d invocation(s) still running", self._inflight)
                    finished = False
                    break
                self._inflight_cond.wait(left)
        # Let a timer that just ran record its status, or the next start would run it again.
        with self._timer_cond:
            while any(t.running for t in self._timers) and time.monotonic() < deadline:
                self._timer_cond.wait(max(0.01, deadline - time.monotonic()))
        # Let fetched but unstarted messages be released (each a single quick storage call).
        for poller in self._pollers:
            with poller.cond:
                while poller.running > 0 and time.monotonic() < deadline:
                    poller.cond.wait(max(0.01, deadline - time.monotonic()))
        if self._server is not None:
            # Unblock idle keep-alive connections so their threads end now.
            with self._server.connections_lock:
                conns = list(self._server.connections)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._clients is not None:
            self._clients.close()
        if self._timer_store is not None:
            self._timer_store.close()
        if self._added_sys_path:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(self.root))
            self._added_sys_path = False
        return finished

    def __enter__(self) -> FunctionHost:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Loading ---------------------------------------------------------------------------------

    def _load_all(self) -> None:
        script = os.environ.get("PYTHON_SCRIPT_FILE_NAME") or DEFAULT_SCRIPT_FILE
        try:
            indexed = index_function_app(self.root, script)
        except FunctionLoadError as exc:
            self.load_errors[script] = str(exc)
            log.error("%s not loaded: %s", script, exc)
            return
        for function in indexed:
            name = str(function.get_function_name())
            if self.config.functions is not None and name not in self.config.functions:
                continue
            if _is_disabled(name):
                self.load_errors[name] = "disabled"
                continue
            try:
                self.functions[name] = load_function(self.root, function)
            except FunctionLoadError as exc:
                self.load_errors[name] = str(exc)
                log.error("function %s not loaded: %s", name, exc)

    def _setup_triggers(self) -> None:
        opts = self.config.queues
        queue_fns: list[tuple[FunctionDef, str, str | dict[str, str]]] = []
        now = datetime.now(UTC)
        timer_storage = _storage_connection(DEFAULT_STORAGE_SETTING,
                                            self.storage_connection_string, "table")
        for fn in list(self.functions.values()):
            try:
                t = fn.trigger
                if fn.trigger_type == "httpTrigger":
                    self._routes.append(self._make_route(fn))
                elif fn.trigger_type == "queueTrigger":
                    queue_name = resolve_settings(str(t.get("queueName") or "")).strip().lower()
                    if not queue_name:
                        raise FunctionLoadError("queueTrigger needs a queueName")
                    setting = str(t.get("connection") or DEFAULT_STORAGE_SETTING)
                    conn = _storage_connection(setting, self.storage_connection_string)
                    if conn is None:
                        raise FunctionLoadError(
                            f"storage connection setting {setting!r} is not set"
                        )
                    queue_fns.append((fn, queue_name, conn))
                elif fn.trigger_type == "timerTrigger":
                    schedule = Schedule(resolve_settings(str(t.get("schedule") or "")))
                    use_monitor = t.get("useMonitor")
                    monitored = timer_storage is not None and (
                        schedule.monitored_by_default(now) if use_monitor is None
                        else str(use_monitor).lower() == "true"
                    )
                    self._timers.append(_TimerState(
                        function=fn, schedule=schedule,
                        run_on_startup=str(t.get("runOnStartup", False)).lower() == "true",
                        monitored=monitored, next_due=schedule.next_after(now),
                    ))
            except (FunctionLoadError, ValueError) as exc:
                self.load_errors[fn.name] = str(exc)
                del self.functions[fn.name]
                log.error("function %s not loaded: %s", fn.name, exc)
        self._routes.sort(key=lambda r: (r.pattern.rank, r.pattern.template.lower()))
        if timer_storage is not None and any(t.monitored for t in self._timers):
            self._timer_store = _TimerStatusStore(timer_storage, self.host_id)
        if queue_fns:
            per_queue = opts.batch_size + opts.new_batch_threshold
            self._clients = _QueueClients(pool_size=max(10, (per_queue + 1) * len(queue_fns)))
            for fn, queue_name, conn in queue_fns:
                client = self._clients.client(conn, queue_name)
                poison = self._clients.client(conn, f"{queue_name}-poison")
                self._pollers.append(_QueuePoller(self, fn, queue_name, client, poison, opts))

    def _make_route(self, fn: FunctionDef) -> HttpRoute:
        t = fn.trigger
        auth_level = str(t.get("authLevel") or "function").lower()
        if auth_level not in _AUTH_LEVELS:
            raise FunctionLoadError(f"authLevel {auth_level!r} is not supported")
        methods = t.get("methods")
        return HttpRoute(
            function=fn,
            pattern=compile_route(str(t.get("route") or fn.name)),
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            auth_level=auth_level,
        )

    def _print_functions(self) -> None:
        prefix = f"/{self.config.route_prefix}" if self.config.route_prefix else ""
        routes = {r.function.name: r for r in self._routes}
        pollers = {p.function.name: p for p in self._pollers}
        timers = {t.function.name: t for t in self._timers}
        print(f"Functions in {self.root}:", flush=True)
        for name in sorted(set(self.functions) | set(self.load_errors)):
            if name in routes:
                r = routes[name]
                methods = ",".join(sorted(r.methods)) if r.methods else "ALL"
                path = "/".join(s for s in (prefix.strip("/"), r.pattern.template.strip("/")) if s)
                line = (f"httpTrigger [{methods}] {self.base_url}/{path} "
                        f"(authLevel {r.auth_level})")
            elif name in pollers:
                p = pollers[name]
                line = f"queueTrigger {p.queue_name} (poison: {p.queue_name}-poison)"
            elif name in timers:
                tm = timers[name]
                startup = ", runOnStartup" if tm.run_on_startup else ""
                line = f"timerTrigger {tm.schedule.expression!r} (UTC{startup})"
            elif self.load_errors.get(name) == "disabled":
                line = "disabled"
            else:
                line = f"NOT LOADED: {self.load_errors.get(name, 'unknown trigger')}"
            print(f"  {name}: {line}", flush=True)

    # Invocation ------------------------------------------------------------------------------

    def _invoke(self, fn: FunctionDef, trigger: Any) -> tuple[Any, dict[str, _Out]]:
        """Call a function with its bound arguments; returns (return value, output holders).

        Raises FunctionTimeoutError when functionTimeout passes first: the caller then treats
        the invocation as failed, and whatever the function does later is ignored (a sync
        function cannot be stopped; an async one is cancelled).
        """
        invocation_id = str(uuid.uuid4())
        kwargs: dict[str, Any] = {}
        outs: dict[str, _Out] = {}
        for pname, kind in fn.params:
            if kind == "trigger":
                kwargs[pname] = trigger
            elif kind == "context":
                kwargs[pname] = InvocationContext(invocation_id, fn.name, str(fn.directory))
            else:
                outs[pname] = kwargs[pname] = _Out()
        debug = log.isEnabledFor(logging.DEBUG)
        if debug:
            log.debug("Executing 'Functions.%s' (Id=%s)", fn.name, invocation_id)
        started = time.monotonic()
        with self._inflight_cond:
            self._inflight += 1
        try:
            future: Future[Any] = (
                asyncio.run_coroutine_threadsafe(fn.main(**kwargs), self._event_loop())
                if fn.is_async else self._workers.submit(lambda: fn.main(**kwargs))
            )
        except BaseException:
            self._invocation_ended(None)
            raise
        future.add_done_callback(self._invocation_ended)
        limit = self.config.function_timeout_s
        try:
            return future.result(timeout=limit), outs
        except TimeoutError:
            if future.done():
                raise  # the function's own TimeoutError
            future.cancel()
            log.error("Timeout value of %s was exceeded by function: Functions.%s (Id: '%s')",
                      format_timespan(limit or 0), fn.name, invocation_id)
            raise FunctionTimeoutError(f"{fn.name} ran past functionTimeout") from None
        finally:
            if debug:
                log.debug("Executed 'Functions.%s' (Id=%s, Duration=%.1f ms)", fn.name,
                          invocation_id, (time.monotonic() - started) * 1000)

    def _invocation_ended(self, _future: Future[Any] | None) -> None:
        with self._inflight_cond:
            self._inflight -= 1
            if self._inflight == 0:
                self._inflight_cond.notify_all()

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The host's one event loop for `async def` functions, as the Python worker has."""
        with self._loop_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="func-host-asyncio",
                                 daemon=True).start()
                self._loop = loop
            return self._loop

    # HTTP ------------------------------------------------------------------------------------

    def _handle_http(self, h: _Handler) -> None:
        if self._stop_event.is_set():
            h.discard_body()
            h.close_connection = True
            h.respond(*_problem(503, "Service Unavailable"))
            return
        path, _, query = h.path.partition("?")
        path = path.split("#", 1)[0]
        if path.rstrip("/").lower() == "/admin/host/status":
            h.discard_body()
            h.respond(200, [("Content-Type", "application/json")], b'{"state":"Running"}')
            return
        rel = self._strip_prefix(path)
        found = self._match(rel, h.command) if rel is not None else None
        if found is None:
            # Methods are route constraints in the real host: a path whose routes all take
            # other methods is not found either.
            h.discard_body()
            h.respond(*_problem(404, "Not Found"))
            return
        route, route_params = found
        params = self._query_params(query)
        if not self._authorized(route.auth_level, h, params):
            # Before the body is read: an unauthenticated caller cannot make the host buffer it.
            h.discard_body()
            h.respond(401, [], b"")
            return
        try:
            body = h.read_body()
        except (OverflowError, ValueError) as exc:
            h.discard_body()  # too large or badly framed: the connection closes after the answer
            h.respond(*(_problem(413, "Payload Too Large") if isinstance(exc, OverflowError)
                        else _problem(400, "Bad Request")))
            return
        headers: dict[str, str] = {}
        for k, v in h.headers.items():
            lk = k.lower()
            headers[lk] = f"{headers[lk]}, {v}" if lk in headers else v
        host_header = headers.get("host") or f"{self.host}:{self.port}"
        req = func.HttpRequest(
            h.command, f"http://{host_header}{h.path}", headers=headers, params=params,
            route_params=route_params, body=body,
        )
        fn = route.function
        try:
            result, outs = self._invoke(fn, req)
            named = [outs[n].get() for n in fn.http_outs if outs[n].get() is not None]
            status, resp_headers, resp_body = _http_result(named[0] if named else result)
        except FunctionTimeoutError:
            status, resp_headers, resp_body = 500, [], b""  # _invoke logged the timeout
        except Exception:
            log.error("%s failed", fn.name, exc_info=True)
            status, resp_headers, resp_body = 500, [], b""
        h.respond(status, resp_headers, resp_body)

    def _strip_prefix(self, path: str) -> str | None:
        """The path below the route prefix (leading slash, no trailing slash), or None."""
        prefix = self.config.route_prefix
        if prefix:
            plen = len(prefix) + 1
            if path[1:plen].lower() != prefix.lower() or path[plen:plen + 1] not in ("", "/"):
                return None
            path = path[plen:]
        return path.rstrip("/")

    def _match(self, rel: str, method: str) -> tuple[HttpRoute, dict[str, str]] | None:
        """The first route (in precedence order) whose template, constraints and methods match."""
        method = method.upper()
        for route in self._routes:
            if route.methods is not None and method not in route.methods:
                continue
            values = route.pattern.match(rel)
            if values is not None:
                return route, values
        return None

    @staticmethod
    def _query_params(query: str) -> dict[str, str]:
        params: dict[str, str] = {}
        if query:
            for k, v in parse_qsl(query, keep_blank_values=True):
                # Repeated keys reach the worker joined with commas (ASP.NET StringValues).
                params[k] = f"{params[k]},{v}" if k in params else v
        return params

    def _authorized(self, auth_level: str, h: _Handler, params: dict[str, str]) -> bool:
        """`anonymous`: anyone; `function`: a function (host) key or the master key;
        `admin` and `system`: the master key."""
        if auth_level == "anonymous":
            return True
        supplied = h.headers.get("x-functions-key") or params.get("code")
        if not supplied:
            return False
        key = supplied.encode()
        if hmac.compare_digest(key, self._master_bytes):
            return True
        return auth_level == "function" and hmac.compare_digest(key, self._key_bytes)

    # Timers ----------------------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        now = datetime.now(UTC)
        startup = [(t, self._timer_startup(t, now)) for t in self._timers]
        with self._timer_cond:
            for t, past_due in startup:
                if self._stop_event.is_set():
                    return
                if past_due and t.status is not None:
                    # Missed while the host was down: once now, then the schedule resumes.
                    self._fire_timer(t, t.status.next, now, past_due=True)
                elif t.run_on_startup:
                    self._fire_timer(t, now, now, past_due=False)
        while not self._stop_event.is_set():
            with self._timer_cond:
                now = datetime.now(UTC)
                wait = 1.0
                for t in self._timers:
                    if t.running:
                        continue
                    if t.next_due <= now:
                        # Late by more than a second (e.g. the previous run overran): tell it.
                        late = (now - t.next_due) > timedelta(seconds=1)
                        self._fire_timer(t, t.next_due, now, past_due=late)
                    else:
                        wait = min(wait, (t.next_due - now).total_seconds())
                self._timer_cond.wait(max(0.005, wait))

    def _timer_startup(self, t: _TimerState, now: datetime) -> bool:
        """Read a monitored timer's status; True when an occurrence was missed while down."""
        if not t.monitored or self._timer_store is None:
            return False
        name = t.function.name
        try:
            status, past_due, changed = check_past_due(
                t.schedule, self._timer_store.get(name), now)
            if changed:
                self._timer_store.put(name, status)
        except Exception as exc:
            log.warning("%s: cannot read the timer status from table %s (%r); not checking "
                        "for a missed occurrence", name, TIMER_STATUS_TABLE, exc)
            return False
        t.status = status
        if past_due:
            log.info("Timer '%s' is past due (next occurrence was %s)", name,
                     status.next.isoformat())
        return past_due

    def _fire_timer(self, t: _TimerState, scheduled: datetime, now: datetime, *,
                    past_due: bool) -> None:
        """Start one timer invocation on a worker (caller holds the timer condition)."""
        t.running = True
        request = FuncTimerRequest(
            past_due=past_due,
            schedule_status=t.status.as_request() if t.status is not None else {
                "Last": (t.last or scheduled).isoformat(),
                "Next": t.schedule.next_after(now).isoformat(),
                "LastUpdated": now.isoformat(),
            },
            schedule={"AdjustForDST": True},
        )

        def run() -> None:
            try:
                self._invoke(t.function, request)
            except FunctionTimeoutError:
                pass  # _invoke logged it
            except Exception:
                log.error("%s failed", t.function.name, exc_info=True)
            finally:
                if t.monitored:
                    self._record_timer_run(t, now)
                with self._timer_cond:
                    t.running = False
                    t.last = scheduled
                    # Like the real host: the next occurrence after now, no catch-up storm.
                    t.next_due = t.schedule.next_after(datetime.now(UTC))
                    self._timer_cond.notify_all()

        self._workers.submit(run)

    def _record_timer_run(self, t: _TimerState, invoked: datetime) -> None:
        """After an invocation: Last = its time, Next = the occurrence after it (as the host)."""
        status = ScheduleStatus(invoked, t.schedule.next_after(invoked), invoked)
        t.status = status
        if self._timer_store is None:
            return
        try:
            self._timer_store.put(t.function.name, status)
        except Exception as exc:
            log.warning("%s: cannot record the timer status in table %s: %r", t.function.name,
                        TIMER_STATUS_TABLE, exc)


# --------------------------------------------------------------------------------------------
# CLI


def _load_local_settings(root: Path) -> None:
    """Export local.settings.json `Values` that the environment does not already set.

    Mirrors Core Tools, with the environment taking precedence so `make run` can override.
    """
    path = root / "local.settings.json"
    if not path.exists():
        return
    try:
        values = json.loads(path.read_text("utf-8-sig")).get("Values") or {}
    except ValueError as exc:
        raise SystemExit(f"{path}: invalid JSON: {exc}") from exc
    for key, value in values.items():
        os.environ.setdefault(str(key), str(value))


def main(argv: list[str] | None = None) -> int:
    """`python -m localdev.func_host --root . --host 127.0.0.1 --port 7071`."""
    parser = argparse.ArgumentParser(
        description="Local Azure Functions host (Python, v2 programming model: function_app.py)")
    parser.add_argument("--root", default=".", help="function app root (holds host.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7071, help="0 picks a free port")
    parser.add_argument("--log-level", default=None,
                        help="DEBUG, INFO, ... (default: host.json logging.logLevel.default)")
    args = parser.parse_args(argv)

    root = Path(args.root).resolve()
    if not (root / "host.json").is_file():
        print(f"no host.json in {root}", file=sys.stderr)
        return 2
    _load_local_settings(root)
    level = (logging.getLevelName(args.log_level.upper()) if args.log_level
             else HostConfig.load(root).log_level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The Azure SDK logs every HTTP call at INFO; the poller alone would flood the console.
    logging.getLogger("azure").setLevel(max(logging.WARNING, logging.getLogger().level))

    key = os.environ.get("LOCAL_FUNCTION_KEY") or DEFAULT_FUNCTION_KEY
    master = os.environ.get("LOCAL_MASTER_KEY") or DEFAULT_MASTER_KEY
    host = FunctionHost(
        root, host=args.host, port=args.port,
        storage_connection_string=os.environ.get(DEFAULT_STORAGE_SETTING),
        function_key=key, master_key=master,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        host.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(f"Function key: {key} (header x-functions-key or query ?code=; "
          f"set LOCAL_FUNCTION_KEY to change it)", flush=True)
    print(f"Master key: {master} (also the only key for authLevel admin; "
          f"set LOCAL_MASTER_KEY to change it)", flush=True)
    print(f"Host running at {host.base_url} (Ctrl-C to stop)", flush=True)
    while not stop.wait(0.5):
        pass
    print("Stopping the function host...", flush=True)
    if not host.stop():
        # Worker threads of a hung invocation would keep the interpreter alive at exit.
        logging.shutdown()
        sys.stdout.flush()
        os._exit(1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
