"""The results table (stdout) and its JSON twin (bench/results/latest.json).

A figure may add rows of its own under its standard ones (`detail["_rows"]`, 5-tuples of the
table's columns) and lines printed under the table (`detail["_lines"]`); detail keys starting
with `_` are for the table only and stay out of the JSON.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.measure import Run
from bench.scenarios import Figure


def _rate(run: Run, unit: str) -> str:
    return f"{run.rate:,.0f} {unit}"


def _latency(run: Run) -> str:
    return f"p50 {run.p50_ms:.1f} / p95 {run.p95_ms:.1f} ms"


def _cpu(run: Run) -> str:
    per = run.cpu_ms_per_unit()
    names = ("host", "proxy", "azurite", "emulator", "bench", "other")
    return ", ".join(f"{name} {per[name]:.2f}" for name in names
                     if name in per and per[name] >= 0.005)


def _busy_share(run: Run) -> float:
    """The share of the machine's busy CPU time that was not the stack's, during the run."""
    total = sum(run.cpu_s.values())
    return run.cpu_s.get("other", 0.0) / total if total > 0 else 0.0


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def render(figures: list[Figure], memory_kib: dict[str, int | None],
           memory_label: str = "4") -> str:
    """The human table: the figures in order of their labels, the peak memory as figure
    `memory_label` among them."""
    rows: list[tuple[str, str, str, str, str]] = [
        ("figure", "value", "floor", "ratio", "target")]

    def memory_rows() -> None:
        for name, kib in memory_kib.items():
            rows.append((f"{memory_label}. peak RSS (VmHWM), {name}", _mib(kib), "", "", ""))

    memory_done = False
    for f in figures:
        if not memory_done and f.label > memory_label:
            memory_rows()
            memory_done = True
        target = "-" if f.target is None else f"<= {f.target:.2f}x"
        verdict = "" if f.met is None else ("  ok" if f.met else "  MISSED")
        rows.append((f"{f.label}. {f.title}", _rate(f.ours, f.unit), _rate(f.floor, f.unit),
                     f"{f.ratio:.2f}x", target + verdict))
        if f.ours.cpu_s:
            rows.append((f"   CPU ms per {f.item}", _cpu(f.ours), _cpu(f.floor), "", ""))
        if len(f.ours.latencies_s) > 1:
            rows.append(("   latency per request", _latency(f.ours), _latency(f.floor), "", ""))
        elif f.ours.count == 1:
            rows.append((f"   {f.detail.get('time_row', 'time per request')}",
                         f"{f.ours.elapsed_s * 1000:.0f} ms",
                         f"{f.floor.elapsed_s * 1000:.0f} ms", "", ""))
        for name, value, floor, ratio, target in f.detail.get("_rows", ()):
            rows.append((str(name), str(value), str(floor), str(ratio), str(target)))
    if not memory_done:
        memory_rows()
    widths = [max(len(r[c]) for r in rows) for c in range(5)]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[c]) for c, cell in enumerate(row)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    for f in figures:
        lines.extend(f.detail.get("_lines", ()))
    for f in figures:
        busy = max(_busy_share(f.ours), _busy_share(f.floor))
        if busy > 0.10:
            lines.append(f"note: other processes used up to {busy:.0%} of the busy CPU time "
                         f"during figure {f.label}; its ratio is less reliable")
        retried = f.detail.get("failed_invocations") or 0
        if retried:
            lines.append(f"note: {retried} invocation(s) failed and were retried (after the "
                         f"queue's visibility timeout) during figure {f.label}; see "
                         "bench/README.md")
        paused = f.detail.get("azurite_pauses_s") or []
        if paused:
            lines.append(f"note: Azurite paused {len(paused)} time(s) during figure {f.label} "
                         f"(longest {max(paused):.1f} s); its numbers are less reliable")
    return "\n".join(lines)


def as_json(figures: list[Figure], memory_kib: dict[str, int | None],
            settings: dict[str, Any], duration_s: float) -> dict[str, Any]:
    """The machine-readable results."""
    return {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": settings,
        "duration_s": round(duration_s, 1),
        "figures": {f.key: {"figure": f.label, "title": f.title, "unit": f.unit,
                            "value": round(f.ours.rate, 2), "floor": round(f.floor.rate, 2),
                            "ratio": round(f.ratio, 3), "target": f.target, "met": f.met,
                            "ours": f.ours.as_json(), "floor_run": f.floor.as_json(),
                            **{k: v for k, v in f.detail.items() if not k.startswith("_")}}
                    for f in figures},
        "peak_rss_kib": memory_kib,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write the JSON results, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
