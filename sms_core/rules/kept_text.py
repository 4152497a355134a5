"""How much of a text from outside is kept: what storage and the app events can hold.

An inbound SMS can be longer than a Table string property holds (64 KiB: 32K UTF-16 code units)
and than a queue message carries (64 KiB, base64 of JSON that escapes every non-ASCII
character): Event Grid delivers such texts. Storing one as it is fails the same way on every
redelivery, so the text is kept whole up to `MAX_KEPT_UTF16` code units (twice the longest
message we send) and cut beyond, with a marker that gives the full length. Only what is stored
or relayed is cut: the keyword rule reads the text as received.
"""

from __future__ import annotations

# 4,096 UTF-16 units: as JSON with every character escaped (\uXXXX, 6 bytes) about 24 KiB,
# base64 about 33 KiB, so an app event with it fits a 64 KiB queue message with room to spare.
MAX_KEPT_UTF16 = 4096


def utf16_units(text: str) -> int:
    """The length of `text` as Table storage counts it (UTF-16 code units)."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def cut_marker(length: int) -> str:
    """What ends a cut text: the length, in characters, of the whole text."""
    return f"… [cut: {length} characters in all]"


def kept_text(text: str, most: int = MAX_KEPT_UTF16) -> str:
    """`text` itself when it fits in `most` UTF-16 units, else its start and `cut_marker`."""
    if len(text) * 2 <= most or utf16_units(text) <= most:
        return text
    marker = cut_marker(len(text))
    budget = most - utf16_units(marker)
    head = text[:budget]
    units = utf16_units(head)
    while units > budget:  # astral characters count twice: drop from the end until it fits
        units -= utf16_units(head[-1])
        head = head[:-1]
    return head + marker
