"""What is kept of a long inbound text (`sms_core.rules.kept_text`)."""

from __future__ import annotations

import pytest

from sms_core.rules.kept_text import MAX_KEPT_UTF16, kept_text, utf16_units


@pytest.mark.parametrize("text", ["", "STOP", "x" * MAX_KEPT_UTF16,
                                  "\U0001f600" * (MAX_KEPT_UTF16 // 2)])
def test_a_text_that_fits_is_kept_whole(text: str) -> None:
    assert kept_text(text) == text


@pytest.mark.parametrize("filler", ["x", "é", "\U0001f600"])
def test_a_longer_text_is_cut_to_fit_with_a_marker_giving_its_length(filler: str) -> None:
    text = "STOP. " + filler * 40_000
    kept = kept_text(text)
    assert utf16_units(kept) <= MAX_KEPT_UTF16
    assert kept.startswith("STOP. " + filler * 1000)
    assert kept.endswith(f"… [cut: {len(text)} characters in all]")
    assert utf16_units(kept) >= MAX_KEPT_UTF16 - 1  # an astral character may not fit whole


def test_units_count_astral_characters_twice() -> None:
    assert utf16_units("a\U0001f600é") == 4
