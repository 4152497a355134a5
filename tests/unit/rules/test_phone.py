"""Phone number normalisation: what callers type, what ACS sends, and what must be refused."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from sms_core.rules.phone import (
    InvalidPhoneNumber,
    region_of,
    sender_to_e164_or_shortcode,
    time_zones_of,
    to_e164,
)

# (raw, default_region, expected E.164)
ACCEPTED: list[tuple[str, str | None, str]] = [
    # North American fictional 555-01XX numbers used by every doc and test.
    ("+14255550123", None, "+14255550123"),
    ("+1 (425) 555-0123", None, "+14255550123"),
    ("+1-425-555-0123", None, "+14255550123"),
    ("+1.425.555.0123", None, "+14255550123"),
    ("+1/425/555/0123", None, "+14255550123"),
    ("  +14255550123\n", None, "+14255550123"),
    ("+1 800 555 0100", None, "+18005550100"),
    ("+1 833 555 0100", None, "+18335550100"),
    ("+1 613 555 0123", None, "+16135550123"),
    # ACS events write numbers as digits without '+'.
    ("14255550123", None, "+14255550123"),
    ("15555555555", None, "+15555555555"),
    ("+15555555555", None, "+15555555555"),
    # 555 numbers in NANP countries libphonenumber does not know as fictional.
    ("+1 868 555 0123", None, "+18685550123"),
    # International prefix 00 (and the US 011 when the region says so).
    ("00 31 6 12345678", None, "+31612345678"),
    ("0031612345678", None, "+31612345678"),
    ("00 44 7400 123456", "US", "+447400123456"),
    ("011 31 6 12345678", "US", "+31612345678"),
    # Dutch mobiles.
    ("+31 6 12345678", None, "+31612345678"),
    ("+31 (0)6 1234 5678", None, "+31612345678"),
    ("06-12345678", "NL", "+31612345678"),
    ("06 12345678", "nl", "+31612345678"),
    ("31612345678", None, "+31612345678"),
    # French mobiles.
    ("+33 6 12 34 56 78", None, "+33612345678"),
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("07 81 23 45 67", "FR", "+33781234567"),
    # Spanish mobiles.
    ("+34 612 34 56 78", None, "+34612345678"),
    ("612 34 56 78", "ES", "+34612345678"),
    # UK mobiles, including the "(0)" people write after +44.
    ("+44 7400 123456", None, "+447400123456"),
    ("+44 (0) 7400 123456", None, "+447400123456"),
    ("07400 123456", "GB", "+447400123456"),
    ("447400123456", None, "+447400123456"),
    # National formats with a region; international digits still win when national fails.
    ("4255550123", "US", "+14255550123"),
    ("(425) 555-0123", "US", "+14255550123"),
    ("2025550123", "US", "+12025550123"),
    ("14255550123", "GB", "+14255550123"),
    # Copy-paste debris and non-ASCII digits and plus signs.
    ("\u200e+31 6 1234 5678\u200f", None, "+31612345678"),
    ("+1\u00a0425\u00a0555\u00a00123", None, "+14255550123"),
    ("\ufeff+14255550123", None, "+14255550123"),
    ("\uff0b1 425 555 0123", None, "+14255550123"),
    ("+\u0661\u0664\u0662\u0665\u0665\u0665\u0665\u0660\u0661\u0662\u0663", None, "+14255550123"),
    # Non-geographic (international freephone).
    ("+800 1234 5678", None, "+80012345678"),
]


@pytest.mark.parametrize(("raw", "region", "expected"), ACCEPTED)
def test_to_e164_accepts(raw: str, region: str | None, expected: str) -> None:
    assert to_e164(raw, region) == expected
    # Normalising is idempotent, so stored numbers can be normalised again safely.
    assert to_e164(expected) == expected


# (raw, default_region, the exact reason a user sees)
REJECTED: list[tuple[str, str | None, str]] = [
    ("+1425555", None, "'+1425555' is not a valid phone number: too short"),
    ("+1 425 555 01234", None, "'+1 425 555 01234' is not a valid phone number: too long"),
    ("abc", None, "'abc' is not a phone number"),
    ("", None, "'' is not a phone number"),
    ("   ", None, "'   ' is not a phone number"),
    ("+", None, "'+' is not a phone number"),
    ("()-", None, "'()-' is not a phone number"),
    (
        "4255550123",
        None,
        "'4255550123' has no country code: write it in E.164 form, for example +14255550123",
    ),
    (
        "06 12345678",
        None,
        "'06 12345678' has no country code: write it in E.164 form, for example +14255550123",
    ),
    (
        "12345",
        None,
        "'12345' looks like a short code: short codes can send messages but cannot receive "
        "them; use the full number in E.164 form",
    ),
    (
        "123456",
        "US",
        "'123456' looks like a short code: short codes can send messages but cannot receive "
        "them; use the full number in E.164 form",
    ),
    (
        "+1 800 FLOWERS",
        None,
        "'+1 800 FLOWERS' is not a phone number: it contains letters "
        "(vanity numbers and extensions are not accepted)",
    ),
    (
        "+1 425 555 0123 x12",
        None,
        "'+1 425 555 0123 x12' is not a phone number: it contains letters "
        "(vanity numbers and extensions are not accepted)",
    ),
    (
        "+1 425 555 0123, 0124",
        None,
        "'+1 425 555 0123, 0124' is not a phone number: unexpected character ','",
    ),
    (
        "+1 425 555 0123#",
        None,
        "'+1 425 555 0123#' is not a phone number: unexpected character '#'",
    ),
    (
        "++14255550123",
        None,
        "'++14255550123' is not a phone number: '+' may only appear once, at the start",
    ),
    (
        "1+4255550123",
        None,
        "'1+4255550123' is not a phone number: '+' may only appear once, at the start",
    ),
    ("+999 1234567", None, "'+999 1234567' is not a valid phone number: unknown country code"),
    ("+0012345", None, "'+0012345' is not a valid phone number: unknown country code"),
    # The UK drama range is fictional but not assigned; only the NANP 555 exchange is exempt.
    (
        "+447700900123",
        None,
        "'+447700900123' is not a valid phone number: "
        "no number range in use for country code +44 matches it",
    ),
    # NANP area codes never start with 0 or 1, even in the 555 exchange.
    (
        "+1 025 555 0123",
        None,
        "'+1 025 555 0123' is not a valid phone number: "
        "no number range in use for country code +1 matches it",
    ),
    (
        "+1 425 055 0123",
        None,
        "'+1 425 055 0123' is not a valid phone number: "
        "no number range in use for country code +1 matches it",
    ),
    (
        "07400 123456",
        "NL",
        "'07400 123456' is not a valid phone number in NL: "
        "no number range in use for country code +31 matches it",
    ),
    ("x" * 100, None, "'" + "x" * 37 + "...' is not a phone number"),
]


@pytest.mark.parametrize(("raw", "region", "reason"), REJECTED)
def test_to_e164_rejects_with_reason(raw: str, region: str | None, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        to_e164(raw, region)
    assert caught.value.raw == raw
    assert caught.value.reason == reason
    assert str(caught.value) == reason


def test_invalid_phone_number_is_a_value_error_and_pickles() -> None:
    err = InvalidPhoneNumber("+1425555", "'+1425555' is not a valid phone number: too short")
    assert isinstance(err, ValueError)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.raw, copy.reason, str(copy)) == (err.raw, err.reason, str(err))


@pytest.mark.parametrize("region", ["XX", "001", "USA", ""])
def test_unknown_default_region_is_a_configuration_error(region: str) -> None:
    with pytest.raises(ValueError, match="unknown default region") as caught:
        to_e164("+14255550123", region)
    assert not isinstance(caught.value, InvalidPhoneNumber)


# (raw, expected sender)
SENDERS_ACCEPTED: list[tuple[str, str]] = [
    ("+14255550123", "+14255550123"),
    ("+1 (833) 555-0100", "+18335550100"),
    ("18335550100", "+18335550100"),
    ("12345", "12345"),
    ("123456", "123456"),
    (" 12345\n", "12345"),
    ("Contoso", "Contoso"),
    ("CONTOSO RX", "CONTOSO RX"),
    ("Contoso1234", "Contoso1234"),
    ("A", "A"),
    ("2FA Code", "2FA Code"),
    ("  ACME \n", "ACME"),
]


@pytest.mark.parametrize(("raw", "expected"), SENDERS_ACCEPTED)
def test_sender_accepts(raw: str, expected: str) -> None:
    assert sender_to_e164_or_shortcode(raw) == expected


SENDERS_REJECTED: list[tuple[str, str]] = [
    (
        "Contoso Pharmacy",
        "'Contoso Pharmacy' is not a valid sender: "
        "alphanumeric sender IDs are at most 11 characters",
    ),
    (
        "Contoso-Rx",
        "'Contoso-Rx' is not a valid sender: "
        "alphanumeric sender IDs may only contain A-Z, a-z, 0-9 and spaces",
    ),
    (
        "Café",
        "'Café' is not a valid sender: "
        "alphanumeric sender IDs may only contain A-Z, a-z, 0-9 and spaces",
    ),
    # Digits only is never an alphanumeric sender ID; 4 and 7 digits are not short codes.
    ("1234", "'1234' has no country code: write it in E.164 form, for example +14255550123"),
    ("1234567", "'1234567' has no country code: write it in E.164 form, for example +14255550123"),
    ("", "'' is not a phone number"),
    ("+1425555", "'+1425555' is not a valid phone number: too short"),
    (
        "+1 800 FLOWERS",
        "'+1 800 FLOWERS' is not a phone number: it contains letters "
        "(vanity numbers and extensions are not accepted)",
    ),
]


@pytest.mark.parametrize(("raw", "reason"), SENDERS_REJECTED)
def test_sender_rejects_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber) as caught:
        sender_to_e164_or_shortcode(raw)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+14255550123", "US"),
        ("+16135550123", "CA"),
        ("+31612345678", "NL"),
        ("+33612345678", "FR"),
        ("+34612345678", "ES"),
        ("+447400123456", "GB"),
        ("+15555555555", None),  # fictional area code: no region to place it in
        ("+80012345678", None),  # non-geographic
    ],
)
def test_region_of(e164: str, region: str | None) -> None:
    assert region_of(e164) == region


@pytest.mark.parametrize(
    ("e164", "zones"),
    [
        ("+14255550123", ("America/Los_Angeles",)),
        ("+12025550123", ("America/New_York",)),
        ("+31612345678", ("Europe/Amsterdam",)),
        ("+33612345678", ("Europe/Paris",)),
        ("+15555555555", ()),
    ],
)
def test_time_zones_of(e164: str, zones: tuple[str, ...]) -> None:
    assert time_zones_of(e164) == zones


def test_time_zones_of_toll_free_lists_every_candidate() -> None:
    zones = time_zones_of("+18005550100")
    assert {"America/New_York", "America/Los_Angeles", "Pacific/Honolulu"} <= set(zones)


@pytest.mark.parametrize("func", [region_of, time_zones_of])
def test_region_helpers_reject_non_e164(func: Callable[[str], object]) -> None:
    with pytest.raises(InvalidPhoneNumber, match="normalise it with to_e164 first"):
        func("4255550123")

