"""Segment counting: what a sender is billed for, checked against the GSM 03.38 / UCS-2 rules."""

from __future__ import annotations

import math
import random

import pytest

from sms_core.rules.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentInfo, count_segments

EMOJI = "\U0001f600"  # 😀, outside the BMP: a UTF-16 surrogate pair

# (id, text, segments, encoding, units, per_segment)
CASES: list[tuple[str, str, int, str, int, int]] = [
    ("empty", "", 0, "GSM-7", 0, 160),
    ("one char", "a", 1, "GSM-7", 1, 160),
    ("plain 160 fits one", "a" * 160, 1, "GSM-7", 160, 160),
    ("plain 161 needs two", "a" * 161, 2, "GSM-7", 161, 153),
    ("plain 306 is two full parts", "a" * 306, 2, "GSM-7", 306, 153),
    ("plain 307 needs three", "a" * 307, 3, "GSM-7", 307, 153),
    ("plain 459 is three full parts", "a" * 459, 3, "GSM-7", 459, 153),
    ("plain 460 needs four", "a" * 460, 4, "GSM-7", 460, 153),
    ("euro costs two septets", "€", 1, "GSM-7", 2, 160),
    ("80 euro = 160 septets = one", "€" * 80, 1, "GSM-7", 160, 160),
    ("81 euro = 162 septets = two", "€" * 81, 2, "GSM-7", 162, 153),
    ("159 plain + euro overflows one", "a" * 159 + "€", 2, "GSM-7", 161, 153),
    ("158 plain + euro fits one", "a" * 158 + "€", 1, "GSM-7", 160, 160),
    # 152 + 2 would straddle the 153 boundary, so the euro opens part 2 and the last 'a' spills
    # into a third part, although ceil(306 / 153) is 2.
    ("escape pair moves to next part", "a" * 152 + "€" + "a" * 152, 3, "GSM-7", 306, 153),
    # 151 + 2 = 153 exactly: the pair fits, no move.
    ("escape pair ending at 153 stays", "a" * 151 + "€" + "a" * 153, 2, "GSM-7", 306, 153),
    ("all extension chars cost two", "^{}\\[~]|€\f", 1, "GSM-7", 20, 160),
    ("CR and LF are one septet each", "line1\r\nline2\n", 1, "GSM-7", 13, 160),
    ("Greek capitals are GSM", "ΔΦΓΛΩΠΨΣΘΞ", 1, "GSM-7", 10, 160),
    ("accented GSM letters", "é è ù ì ò Ç Ø ø Å å Æ æ ß É Ä Ö Ñ Ü ä ö ñ ü à", 1, "GSM-7", 45, 160),
    ("GSM symbols", "@£$¥_§¿¡¤!\"#%&'()*+,-./:;<=>?", 1, "GSM-7", 29, 160),
    ("one emoji forces UCS-2", "Hello " + EMOJI, 1, "UCS-2", 8, 70),
    ("70 UCS-2 units = one", "ê" * 70, 1, "UCS-2", 70, 70),
    ("71 UCS-2 units = two", "ê" * 71, 2, "UCS-2", 71, 67),
    ("134 UCS-2 units = two", "ê" * 134, 2, "UCS-2", 134, 67),
    ("135 UCS-2 units = three", "ê" * 135, 3, "UCS-2", 135, 67),
    ("35 emoji = 70 units = one", EMOJI * 35, 1, "UCS-2", 70, 70),
    ("36 emoji = 72 units = two", EMOJI * 36, 2, "UCS-2", 72, 67),
    # 66 + 2 would split the surrogate pair at 67, so the emoji opens part 2 and the last 'ê'
    # spills into a third part, although ceil(134 / 67) is 2.
    ("emoji at the 67 boundary moves", "ê" * 66 + EMOJI + "ê" * 66, 3, "UCS-2", 134, 67),
    ("emoji ending at 67 stays", "ê" * 65 + EMOJI + "ê" * 67, 2, "UCS-2", 134, 67),
    # In UCS-2 the GSM extension characters are ordinary 1-unit characters.
    ("euro is one unit in UCS-2", "€" * 69 + "ê", 1, "UCS-2", 70, 70),
    ("lowercase c-cedilla is not GSM", "ça va", 1, "UCS-2", 5, 70),
    ("curly apostrophe is not GSM", "it\u2019s", 1, "UCS-2", 4, 70),
    ("tab is not GSM", "a\tb", 1, "UCS-2", 3, 70),
    ("backtick is not GSM", "`code`", 1, "UCS-2", 6, 70),
    ("lowercase Greek is not GSM", "αβγ", 1, "UCS-2", 3, 70),
    ("Ohm sign is not Greek Omega", "\u2126", 1, "UCS-2", 1, 70),
    ("flag is two astral code points", "\U0001f1f3\U0001f1f1", 1, "UCS-2", 4, 70),
]


@pytest.mark.parametrize(
    ("text", "segments", "encoding", "units", "per_segment"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_count_segments(
    text: str, segments: int, encoding: str, units: int, per_segment: int
) -> None:
    info = count_segments(text)
    assert (info.segments, info.encoding, info.units, info.per_segment) == (
        segments,
        encoding,
        units,
        per_segment,
    )
    if encoding == "GSM-7":
        assert info.ucs2_characters == ()


# (id, text, characters reported as forcing UCS-2)
UCS2_REPORTS: list[tuple[str, str, tuple[str, ...]]] = [
    ("single emoji", "Hello " + EMOJI, (EMOJI,)),
    ("é is GSM, ê is reported", "é ê é", ("ê",)),
    ("distinct, first-seen order", "crêpe à la ça, crêpe ç ê ô", ("ê", "ç", "ô")),
    ("only ç, never Ç", "Ça ça", ("ç",)),
    ("curly quotes", "\u201cquoted\u201d it\u2019s", ("\u201c", "\u201d", "\u2019")),
    ("skin tone is a separate code point", "\U0001f44d\U0001f3fd ok", ("\U0001f44d", "\U0001f3fd")),
    (
        "zero-width joiner is reported",
        "\U0001f468\u200d\U0001f4bb",
        ("\U0001f468", "\u200d", "\U0001f4bb"),
    ),
]


@pytest.mark.parametrize(
    ("text", "reported"),
    [case[1:] for case in UCS2_REPORTS],
    ids=[case[0] for case in UCS2_REPORTS],
)
def test_reports_characters_forcing_ucs2(text: str, reported: tuple[str, ...]) -> None:
    info = count_segments(text)
    assert info.encoding == "UCS-2"
    assert info.ucs2_characters == reported


def test_gsm_tables_match_gsm_03_38() -> None:
    # 128 code points minus the escape (0x1B) in the basic table; 10 in the extension table.
    assert len(GSM7_BASIC) == 127
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert "\x1b" not in GSM7_BASIC
    assert set("\r\n ") <= GSM7_BASIC
    assert set("£¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉÄÖÑÜ§¿äöñüà") <= GSM7_BASIC
    assert set("^{}\\[~]|€\f") == GSM7_EXTENSION
    assert all(len(ch) == 1 for ch in GSM7_BASIC | GSM7_EXTENSION)


def test_segment_info_is_frozen_with_slots() -> None:
    info = count_segments("hi")
    assert isinstance(info, SegmentInfo)
    with pytest.raises(AttributeError):
        info.segments = 2  # type: ignore[misc]
    assert not hasattr(info, "__dict__")


def _reference(text: str) -> tuple[int, int]:
    """(segments, units) by the rules spelled out literally: cost per character, then packing."""
    if not text:
        return 0, 0
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        costs = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
        single, multi = 160, 153
    else:
        costs = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, multi = 70, 67
    total = sum(costs)
    if total <= single:
        return 1, total
    parts: list[int] = [0]
    for cost in costs:
        if parts[-1] + cost > multi:
            parts.append(0)
        parts[-1] += cost
    assert all(0 < p <= multi for p in parts)
    return len(parts), total


@pytest.mark.parametrize("alphabet", ["gsm", "gsm+ext", "ucs2", "ucs2+emoji"])
def test_matches_reference_on_random_text(alphabet: str) -> None:
    pools = {
        "gsm": "abc DEF 123 é\n",
        "gsm+ext": "abc €[]{}",
        "ucs2": "abc ê€",
        "ucs2+emoji": "abê" + EMOJI + "\U0001f1f3",
    }
    rng = random.Random(f"segments-{alphabet}")
    for _ in range(400):
        text = "".join(rng.choice(pools[alphabet]) for _ in range(rng.randrange(0, 700)))
        info = count_segments(text)
        assert (info.segments, info.units) == _reference(text), text
        if info.segments > 1:
            # Packing can only ever need more parts than plain division, never fewer.
            assert info.segments >= math.ceil(info.units / info.per_segment)

