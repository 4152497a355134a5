"""SMS segment counting for GSM-7 and UCS-2 encoded text.

Carriers bill and ACS reports per *segment*, so the count has to match what the network does,
not just ``len(text) / 160``. The rules implemented here:

* If every character is in the GSM 03.38 default alphabet or its extension table, the message is
  sent as GSM-7. Default-alphabet characters cost one septet; extension-table characters cost two
  (the escape septet 0x1B plus the character). Up to 160 septets fit in one segment; a longer
  message is split into segments of at most 153 septets (7 septets go to the concatenation
  header), and an escape pair is never split across two segments.
* Otherwise the whole message is sent as UCS-2 (in practice UTF-16): each character costs one
  UTF-16 code unit, or two for characters outside the Basic Multilingual Plane (most emoji). Up to
  70 units fit in one segment; a longer message is split into segments of at most 67 units, and a
  surrogate pair is never split across two segments.

National language shift tables (Turkish, Spanish, Portuguese, ...) are not used: ACS does not
send with them, so characters that exist only there force UCS-2 just like any other.

No package on PyPI gets all of this right (most ignore escape pairs or the no-split rule), hence
this hand-written module. It must stay free of Azure imports: it is used by the API layer to
preview costs and by the worker to record them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTIPART_SEPTETS",
    "GSM7_SINGLE_SEPTETS",
    "UCS2_MULTIPART_UNITS",
    "UCS2_SINGLE_UNITS",
    "Encoding",
    "SegmentInfo",
    "count_segments",
]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE_SEPTETS = 160
GSM7_MULTIPART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_MULTIPART_UNITS = 67

# The GSM 03.38 default alphabet, written out row by row in code-point order (0x00-0x7F) so it can
# be checked against the standard's table. 0x1B is the escape to the extension table, not a
# character anyone can send, so it is left out. Note 0x09 is capital Ç: lowercase ç is not in the
# alphabet and forces UCS-2. The Greek capitals are the real Greek letters (U+0394 etc.), not
# look-alikes such as the Ohm sign.
GSM7_BASIC: frozenset[str] = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F
    "Δ_ΦΓΛΩΠΨΣΘΞÆæßÉ"  # 0x10-0x1F, without 0x1B (escape)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)

# The extension table: each of these is sent as escape + character, so it costs two septets.
GSM7_EXTENSION: frozenset[str] = frozenset("\f^{}\\[~]|€")

_GSM7_ALL: frozenset[str] = GSM7_BASIC | GSM7_EXTENSION


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """How a message will be encoded and how many segments it will be billed as.

    Attributes:
        segments: number of SMS segments; 0 for the empty string.
        encoding: ``"GSM-7"`` or ``"UCS-2"``.
        units: septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2
            (characters outside the BMP count 2).
        ucs2_characters: the distinct characters, in first-seen order, that are not in the GSM-7
            tables and therefore forced UCS-2; empty for GSM-7. Useful to tell a user "replace ê
            to halve the cost". Characters are Unicode code points, so an emoji with a skin-tone
            modifier reports both code points.
        per_segment: the per-segment limit that applied: 160 or 153 for GSM-7, 70 or 67 for UCS-2.
    """

    segments: int
    encoding: Encoding
    units: int
    ucs2_characters: tuple[str, ...]
    per_segment: int


def _pack(costs_source: str, cost_of_two: frozenset[str] | None, limit: int) -> int:
    """Count segments by greedy packing, moving a 2-unit item whole to the next segment.

    ``cost_of_two`` is the set of characters costing 2 units; ``None`` means "characters outside
    the BMP" (UTF-16 surrogate pairs).
    """
    segments = 1
    used = 0
    for ch in costs_source:
        if cost_of_two is None:
            cost = 2 if ord(ch) > 0xFFFF else 1
        else:
            cost = 2 if ch in cost_of_two else 1
        if used + cost > limit:
            # The item does not fit: it starts the next segment, leaving this one a unit short.
            segments += 1
            used = cost
        else:
            used += cost
    return segments


def count_segments(text: str) -> SegmentInfo:
    """Return the encoding, size and segment count the network will use for ``text``.

    The empty string returns ``segments=0`` (GSM-7, 0 units, ``per_segment=160``): nothing would
    be sent. Rejecting empty messages is the caller's job (ACS refuses them), so this function
    reports the honest count instead of raising.

    Runs in one C-level pass over the text for the common cases; the per-character packing loop
    only runs for multi-segment messages that contain 2-unit characters.
    """
    if not text:
        return SegmentInfo(0, "GSM-7", 0, (), GSM7_SINGLE_SEPTETS)

    # dict.fromkeys keeps the distinct characters in first-seen order, which is exactly the order
    # ucs2_characters promises; the membership tests then run once per distinct character.
    distinct = dict.fromkeys(text)
    non_gsm = tuple(ch for ch in distinct if ch not in _GSM7_ALL)

    if not non_gsm:
        extension_count = sum(text.count(ch) for ch in distinct if ch in GSM7_EXTENSION)
        septets = len(text) + extension_count
        if septets <= GSM7_SINGLE_SEPTETS:
            return SegmentInfo(1, "GSM-7", septets, (), GSM7_SINGLE_SEPTETS)
        if extension_count:
            segments = _pack(text, GSM7_EXTENSION, GSM7_MULTIPART_SEPTETS)
        else:
            segments = math.ceil(septets / GSM7_MULTIPART_SEPTETS)
        return SegmentInfo(segments, "GSM-7", septets, (), GSM7_MULTIPART_SEPTETS)

    # "surrogatepass" so a lone surrogate (possible in a Python str decoded leniently) counts as
    # one unit instead of raising; real astral characters encode to a surrogate pair (2 units).
    units = len(text.encode("utf-16-le", "surrogatepass")) // 2
    if units <= UCS2_SINGLE_UNITS:
        return SegmentInfo(1, "UCS-2", units, non_gsm, UCS2_SINGLE_UNITS)
    if units > len(text):
        segments = _pack(text, None, UCS2_MULTIPART_UNITS)
    else:
        segments = math.ceil(units / UCS2_MULTIPART_UNITS)
    return SegmentInfo(segments, "UCS-2", units, non_gsm, UCS2_MULTIPART_UNITS)
