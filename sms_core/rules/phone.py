"""Phone number normalisation to E.164, built on ``phonenumbers`` (libphonenumber metadata).

Every number stored or sent by the project goes through :func:`to_e164`, so one person is one
key in the opt-out store no matter how the number was typed or how ACS formatted it in an event.

Decisions worth knowing:

* Only numbers libphonenumber calls *valid* are accepted, with one exception: North American
  numbers with the 555 exchange (``+1 NPA 555 XXXX``). The 555-01XX range is reserved for fiction
  and is what every ACS document, sample and test uses; libphonenumber already accepts it in real
  US/Canadian area codes (``+1 425 555 0123``) but rejects it elsewhere, e.g. ``+1 555 555 5555``
  (the ACS sample number) or other NANP countries such as ``+1 868 555 0123``. Accepting the whole
  555 exchange costs nothing in practice: such numbers never reach a real subscriber.
* Letters are rejected rather than translated: libphonenumber would turn ``1-800-FLOWERS`` into
  digits and silently drop an extension (``x12``), neither of which makes sense for an SMS
  recipient, and a stray letter is more likely a typo than a vanity number.
* Digits without ``+`` are first read in ``default_region`` (when given, because the caller said
  national numbers are expected) and otherwise as international, which is how ACS writes numbers
  in Event Grid events (``14255550123``). A leading ``00`` is read as the international prefix.
* Short codes are senders, never recipients, so :func:`to_e164` rejects them;
  :func:`sender_to_e164_or_shortcode` accepts them (and alphanumeric sender IDs) for ``from``.

Cost: about 17 microseconds per number (libphonenumber's parse and validity check are ~90% of
it), so 10,000 numbers take roughly 0.17 s; the fictional 555 numbers libphonenumber rejects take
~28 microseconds because libphonenumber tries every range before calling them invalid. There is
no separate fast path for input already in E.164 form: it would still have to be validated, and
validation is the cost.
"""

from __future__ import annotations

import re
import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult
from phonenumbers import timezone as phone_timezone

__all__ = [
    "InvalidPhoneNumber",
    "region_of",
    "sender_to_e164_or_shortcode",
    "time_zones_of",
    "to_e164",
]

# Shown in the "no country code" message; a fictional number so docs and errors agree.
_E164_EXAMPLE = "+14255550123"

# Separators people and spreadsheets put in numbers. Anything else that is not a digit, '+' or
# whitespace (',', ';', '#', '*', letters) is rejected because libphonenumber would read it as an
# extension marker or skip it, and guessing is worse than asking.
_SEPARATORS = frozenset("-.()/")
# ASCII plus and the full-width plus that East Asian input methods produce.
_PLUS_SIGNS = frozenset("+\uff0b")

_SHORT_CODE = re.compile(r"[0-9]{5,6}")
# ASCII only: carriers render alphanumeric sender IDs in the GSM alphabet and ACS (like every
# other provider) limits them to A-Z, a-z, 0-9 and space.
_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9 ]{1,11}")

# Region codes phonenumbers uses that are not ISO 3166 regions: "001" for non-geographic numbers
# (+800, +808, +870, ...), "ZZ" for unknown.
_NOT_A_REGION = frozenset(
    {phonenumbers.UNKNOWN_REGION, phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY}
)

_REASON_FOR_PARSE_ERROR = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    NumberParseException.NOT_A_NUMBER: "it does not look like a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}


class InvalidPhoneNumber(ValueError):
    """A string that is not an acceptable phone number (or sender), with a reason for humans.

    Attributes:
        raw: the input exactly as given.
        reason: a full sentence quoting the input, e.g.
            ``"'+1425555' is not a valid phone number: too short"``; also the ``str()`` of the
            exception, so it can be shown to an API caller as is.
    """

    def __init__(self, raw: str, reason: str) -> None:
        super().__init__(reason)
        self.raw = raw
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidPhoneNumber], tuple[str, str]]:
        # Exceptions pickle as cls(*self.args); args is (reason,) here, so spell out both fields
        # or the exception cannot cross a process boundary (multiprocessing, durable tasks).
        return (type(self), (self.raw, self.reason))


def _quote(raw: str) -> str:
    # repr() shows invisible characters; truncation keeps a pasted essay out of logs and replies.
    if len(raw) > 40:
        return repr(raw[:37] + "...")
    return repr(raw)


def _clean(raw: str) -> str:
    """Drop invisible format characters (LRM, zero-width space, BOM) that copy-paste adds."""
    if raw.isascii():
        return raw.strip()
    return "".join(ch for ch in raw if unicodedata.category(ch) != "Cf").strip()


def _is_nanp_fictional(number: PhoneNumber) -> bool:
    """True for +1 NPA 555 XXXX, the range docs and tests use (see the module docstring)."""
    if number.country_code != 1:
        return False
    national = str(number.national_number)
    return len(national) == 10 and national[0] in "23456789" and national[3:6] == "555"


def _invalid_reason(number: PhoneNumber) -> str:
    """Explain, in a few words, why libphonenumber rejects a parsed number."""
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible == ValidationResult.INVALID_COUNTRY_CODE:
        return f"unknown country code +{number.country_code}"
    if possible == ValidationResult.TOO_SHORT:
        return "too short"
    if possible == ValidationResult.TOO_LONG:
        return "too long"
    if possible == ValidationResult.IS_POSSIBLE_LOCAL_ONLY:
        return "too short (it looks like a local number without its area code)"
    if possible == ValidationResult.INVALID_LENGTH:
        return f"wrong number of digits for country code +{number.country_code}"
    return f"no number range in use for country code +{number.country_code} matches it"


def _accept(number: PhoneNumber) -> bool:
    return phonenumbers.is_valid_number(number) or _is_nanp_fictional(number)


def _parse(text: str, region: str | None) -> PhoneNumber | str:
    """Parse ``text``; return the number, or a reason string if libphonenumber refuses it."""
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        return _REASON_FOR_PARSE_ERROR.get(exc.error_type, "it does not look like a phone number")
    if number.extension:
        # Unreachable with the character check in to_e164, kept so a future relaxation of that
        # check cannot let an extension be dropped silently.
        return "extensions cannot receive SMS"
    return number


def to_e164(raw: str, default_region: str | None = None) -> str:
    """Normalise a recipient phone number to E.164 (``+`` and digits), or raise.

    Accepts ``+14255550123``, ``+1 (425) 555-0123``, ``14255550123`` (ACS event style: digits
    without ``+`` that form a valid international number), ``00 31 6 12345678`` (``00``
    international prefix) and, only when ``default_region`` (ISO 3166 code such as ``"NL"``) is
    given, national formats such as ``06 12345678``. Spaces, ``-``, ``.``, ``(``, ``)`` and ``/``
    are ignored; letters, extensions and short codes are refused.

    Raises:
        InvalidPhoneNumber: with a human-readable ``reason``.
        ValueError: if ``default_region`` is not a region libphonenumber knows (a programming or
            configuration error, not a bad number).
    """
    region = _check_region(default_region)
    text = _clean(raw)
    quoted = _quote(raw)
    not_valid = f"{quoted} is not a valid phone number"

    digits = ""
    plus_count = 0
    for ch in text:
        if ch.isdecimal():
            # int() maps any Unicode decimal digit (Arabic-Indic, full-width...) to 0-9.
            digits += str(int(ch))
        elif ch in _PLUS_SIGNS:
            plus_count += 1
        elif not (ch.isspace() or ch in _SEPARATORS):
            if not any(c.isdecimal() for c in text):
                raise InvalidPhoneNumber(raw, f"{quoted} is not a phone number")
            if ch.isalpha():
                raise InvalidPhoneNumber(
                    raw,
                    f"{quoted} is not a phone number: it contains letters "
                    "(vanity numbers and extensions are not accepted)",
                )
            raise InvalidPhoneNumber(
                raw, f"{quoted} is not a phone number: unexpected character {ch!r}"
            )
    if not digits:
        raise InvalidPhoneNumber(raw, f"{quoted} is not a phone number")
    if plus_count > 1 or (plus_count == 1 and text[0] not in _PLUS_SIGNS):
        raise InvalidPhoneNumber(
            raw, f"{quoted} is not a phone number: '+' may only appear once, at the start"
        )

    if plus_count or digits.startswith("00"):
        international = "+" + (digits if plus_count else digits[2:])
        parsed = _parse(international, None)
        if isinstance(parsed, str):
            raise InvalidPhoneNumber(raw, f"{not_valid}: {parsed}")
        if not _accept(parsed):
            raise InvalidPhoneNumber(raw, f"{not_valid}: {_invalid_reason(parsed)}")
        return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)

    # Bare digits: national (if a region was given) or international without the '+'.
    national: PhoneNumber | str | None = None
    if region is not None:
        # Pass the cleaned text, not just the digits, so libphonenumber sees the original shape;
        # it also handles the region's own international prefix (011 in the US).
        national = _parse(text, region)
        if not isinstance(national, str) and _accept(national):
            return phonenumbers.format_number(national, PhoneNumberFormat.E164)
    as_international = _parse("+" + digits, None)
    if not isinstance(as_international, str) and _accept(as_international):
        return phonenumbers.format_number(as_international, PhoneNumberFormat.E164)

    if _SHORT_CODE.fullmatch(digits):
        raise InvalidPhoneNumber(
            raw,
            f"{quoted} looks like a short code: short codes can send messages but cannot "
            "receive them; use the full number in E.164 form",
        )
    if national is None:
        raise InvalidPhoneNumber(
            raw,
            f"{quoted} has no country code: write it in E.164 form, for example {_E164_EXAMPLE}",
        )
    if isinstance(national, str):
        raise InvalidPhoneNumber(raw, f"{not_valid} in {region}: {national}")
    raise InvalidPhoneNumber(raw, f"{not_valid} in {region}: {_invalid_reason(national)}")


def _check_region(default_region: str | None) -> str | None:
    if default_region is None:
        return None
    region = default_region.strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(
            f"unknown default region {default_region!r}: use an ISO 3166 code like 'US'"
        )
    return region


def sender_to_e164_or_shortcode(raw: str) -> str:
    """Normalise a ``from`` value: an E.164 number, a short code or an alphanumeric sender ID.

    * 5 or 6 digits (nothing else) are a short code, returned as the digits.
    * 1 to 11 ASCII letters, digits and spaces with at least one letter are an alphanumeric
      sender ID, returned as given apart from surrounding whitespace (settings files often carry
      a trailing newline; the ID itself is case- and space-sensitive).
    * Anything else must be a phone number accepted by :func:`to_e164` without a default region
      (a sender is configured once, so there is no reason to accept national formats).

    Raises:
        InvalidPhoneNumber: with a human-readable ``reason``.
    """
    text = _clean(raw)
    if _SHORT_CODE.fullmatch(text):
        return text
    # Any letter (not just ASCII) routes to the sender-ID rules so "Café" gets a sender-ID reason
    # rather than "not a phone number"; '+' means the user meant a phone number.
    if any(ch.isalpha() for ch in text) and not text.startswith("+"):
        if _ALPHANUMERIC_SENDER.fullmatch(text):
            return text
        quoted = _quote(raw)
        if len(text) > 11:
            detail = "alphanumeric sender IDs are at most 11 characters"
        else:
            detail = "alphanumeric sender IDs may only contain A-Z, a-z, 0-9 and spaces"
        raise InvalidPhoneNumber(raw, f"{quoted} is not a valid sender: {detail}")
    return to_e164(raw)


def _parse_e164(e164: str) -> PhoneNumber:
    try:
        return phonenumbers.parse(e164, None)
    except NumberParseException as exc:
        raise InvalidPhoneNumber(
            e164, f"{_quote(e164)} is not an E.164 phone number: normalise it with to_e164 first"
        ) from exc


def region_of(e164: str) -> str | None:
    """ISO 3166 region code (``"US"``, ``"NL"``) of an E.164 number, or None if it has none.

    None for non-geographic numbers (+800 ...) and for numbers libphonenumber cannot place, such
    as the fictional ``+15555555555``. Shared country codes are resolved by number range
    (``+1 613 ...`` is ``"CA"``). Raises InvalidPhoneNumber if ``e164`` cannot be parsed.
    """
    region = phonenumbers.region_code_for_number(_parse_e164(e164))
    if region is None or region in _NOT_A_REGION:
        return None
    return region


def time_zones_of(e164: str) -> tuple[str, ...]:
    """IANA time zones that an E.164 number may be in (for quiet hours), possibly several.

    Empty when unknown: libphonenumber's ``"Etc/Unknown"`` placeholder is dropped so callers can
    treat an empty tuple as "don't know". Raises InvalidPhoneNumber if ``e164`` cannot be parsed.
    """
    zones = phone_timezone.time_zones_for_number(_parse_e164(e164))
    return tuple(z for z in zones if z != phone_timezone.UNKNOWN_TIMEZONE)
