"""What a message text must be to be sent: the one rule for a message, a saved template, a
campaign's template and every message a campaign renders.

- At least one visible character. A text of only whitespace, control characters (NUL) or
  format characters (zero-width space, joiners, word joiner, byte-order mark, soft hyphen...)
  would reach the handset blank.
- No lone surrogate (U+D800..U+DFFF on its own, as JSON's "\\ud800" gives): it is no character
  at all, cannot be encoded as UTF-8 or UCS-2, and the provider refuses the message only when
  it is sent, long after the request was accepted.
- No control character but line breaks and tabs (CR, LF, TAB): the others (NUL, BEL, ESC, DEL,
  the C1 range) have no place in an SMS; GSM-7 cannot carry them and a handset shows them as
  boxes or drops them, which hides mistakes such as a C string's terminator sent along.
  Format characters inside an otherwise visible text are kept: the zero-width joiner builds
  emoji sequences (a family, a flag) and a byte-order mark or zero-width space does no harm.
"""

from __future__ import annotations

import re
import unicodedata

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})


def _visible(text: str) -> bool:
    # Stops at the first visible character: almost always the first one.
    return any(not c.isspace() and unicodedata.category(c) not in _INVISIBLE_CATEGORIES
               for c in text)


def text_problem(text: str) -> str | None:
    """What makes `text` unfit to send (a phrase to follow the field's name), or None."""
    if not _visible(text):
        return "must not be empty: it has no visible character"
    return encoding_problem(text)


def encoding_problem(text: str) -> str | None:
    """What makes `text` no SMS text at all, blank or not (a lone surrogate, a control
    character), or None: the segment counter counts a blank draft but not these."""
    found = _SURROGATE.search(text)
    if found:
        return (f"holds a lone surrogate (U+{ord(found.group()):04X}) at position "
                f"{found.start() + 1}, which is no character: a character beyond U+FFFF is "
                "written as a pair (\\ud83d\\ude00)")
    found = _CONTROL.search(text)
    if found:
        return (f"holds the control character U+{ord(found.group()):04X} at position "
                f"{found.start() + 1}; only line breaks and tabs may be used")
    return None


def check_text(text: str) -> str:
    """`text` when it is fit to send; ValueError saying what is wrong otherwise."""
    problem = text_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return text
