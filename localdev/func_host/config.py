"""host.json and app settings: `QueueOptions`, `HostConfig`, TimeSpan durations, `%SETTING%`
references, the default keys and the storage connection behind a `connection` setting."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localdev.func_host.errors import FunctionLoadError

DEFAULT_FUNCTION_KEY = "local-dev-key"
"""The key `authLevel: function` routes accept locally unless LOCAL_FUNCTION_KEY is set.

It is a fixed, documented development value, not a secret: the local host only listens on
loopback by default.
"""

DEFAULT_MASTER_KEY = "local-master-key"
"""The master key (every authLevel, and the only key `admin` accepts) unless LOCAL_MASTER_KEY is
set. A fixed, documented development value like DEFAULT_FUNCTION_KEY."""

DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"

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

_SETTING_REF = re.compile(r"%([^%]+)%")


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


# --------------------------------------------------------------------------------------------
# App settings


def resolve_settings(value: str) -> str:
    """Replace `%NAME%` with the app setting NAME, as the host does for binding expressions."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise FunctionLoadError(f"app setting {name!r} (referenced as %{name}%) is not set")
        return os.environ[name]

    return _SETTING_REF.sub(sub, value)


def storage_connection(setting: str, default: str | None,
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
