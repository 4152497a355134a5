"""Unique phone numbers for tests: no two tests of a session share a handset or an opt-out.

Fictional NANP numbers (`+1 NPA 555 XXXX`) drawn in order from a per-session counter, never
ending in 0000 (the emulator makes those unreachable).
"""

from __future__ import annotations

import itertools
import threading

_AREA_CODES = (206, 253, 312, 360, 415, 425, 503, 509, 510, 541, 650, 707, 773, 916, 971)
_lock = threading.Lock()
_counter = itertools.count()


def unique_number() -> str:
    """A fresh valid number, different from every other this session has handed out."""
    with _lock:
        n = next(_counter)
    area = _AREA_CODES[(n // 9998) % len(_AREA_CODES)]
    return f"+1{area}555{n % 9998 + 1:04d}"
