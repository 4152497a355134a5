"""HTTP routes: ASP.NET Core route templates (`compile_route`, `RoutePattern`), their route
constraints (`resolve_constraint`: `int`, `guid`, `min(1)`, `regex(...)`, ... with .NET's parsing
rules) and the inbound precedence that orders routes."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from urllib.parse import unquote

from localdev.func_host.errors import FunctionLoadError

Constraint = Callable[[str], bool]

# .NET number parsing allows this whitespace around a number (and trailing NULs after it).
_NUM_WS = r"[\t\n\v\f\r ]*"
_NUM_DIGITS = r"(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)"  # invariant culture, thousands allowed
_INTEGER = re.compile(rf"{_NUM_WS}([+-]?[0-9]+){_NUM_WS}\x00*")
# NumberStyles.Number: one sign, leading or trailing.
_DECIMAL = re.compile(rf"{_NUM_WS}(?:[+-](?P<a>{_NUM_DIGITS}){_NUM_WS}"
                      rf"|(?P<b>{_NUM_DIGITS}){_NUM_WS}(?:[+-]{_NUM_WS})?)\x00*")
_DECIMAL_MAX = Decimal("79228162514264337593543950335")
# NumberStyles.Float | AllowThousands: a leading sign and an exponent; out of range is infinity.
_DOUBLE = re.compile(rf"{_NUM_WS}[+-]?{_NUM_DIGITS}(?:[eE][+-]?[0-9]+)?{_NUM_WS}\x00*")
_DOUBLE_SYMBOLS = frozenset({"infinity", "+infinity", "-infinity", "nan", "+nan", "-nan"})
_BOOL = re.compile(r"[\s\x00]*(?:true|false)[\s\x00]*", re.IGNORECASE)
_ALPHA = re.compile(r"^[A-Za-z]*$")  # .NET's `$` also matches before a final newline, as Python's
_HEX = re.compile(r"[0-9A-Fa-f]*")

_MONTHS = {name: i for i, names in enumerate(
    ("january", "february", "march", "april", "may", "june", "july", "august", "september",
     "october", "november", "december"), 1) for name in {names, names[:3]}} | {"sept": 9}
_MONTH = "(?P<mon>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_WEEKDAY = (r"(?:(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday"
            r"|mon|tue|wed|thu|fri|sat|sun),?\s*)?")
_TIME = (r"(?P<h>\d{1,2})(?::(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:\.\d{1,7})?)?)?"
         r"\s*(?P<ampm>[ap]m)?")
_ZONE = r"(?P<tz>z|gmt|utc|[+-](?P<tzh>\d{1,2})(?::?(?P<tzm>\d{2}))?)?"
_DATES = (
    r"(?P<y>\d{4})(?P<sep>[-/.])(?P<m>\d{1,2})(?P=sep)(?P<d>\d{1,2})",
    r"(?P<m>\d{1,2})(?P<sep>[-/.])(?P<d>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})",
    r"(?P<m>\d{1,2})/(?P<d>\d{1,2})",
    r"(?P<y>\d{4})-(?P<m>\d{1,2})",
    rf"{_WEEKDAY}(?P<d>\d{{1,2}})[\s-]+{_MONTH}[\s,-]+(?P<y>\d{{4}})",
    rf"{_WEEKDAY}{_MONTH}\s+(?P<d>\d{{1,2}})(?:,\s*|\s+)(?P<y>\d{{4}})",
    rf"{_MONTH}\s+(?P<y>\d{{4}})",
)
_DATETIMES = tuple(
    re.compile(rf"\s*{form}\s*{_ZONE}\s*", re.IGNORECASE)
    for form in [rf"(?:{d})(?:(?:T|\s+){_TIME})?" for d in _DATES] + [_TIME]
)


def _integer(value: str, bits: int) -> int | None:
    """int.TryParse / long.TryParse (NumberStyles.Integer, invariant culture)."""
    m = _INTEGER.fullmatch(value)
    if m is None:
        return None
    n = int(m.group(1))
    return n if -(1 << (bits - 1)) <= n < (1 << (bits - 1)) else None


def _is_decimal(value: str) -> bool:
    m = _DECIMAL.fullmatch(value)
    if m is None:
        return False
    try:
        return abs(Decimal((m["a"] or m["b"]).replace(",", ""))) <= _DECIMAL_MAX
    except InvalidOperation:
        return False


def _is_double(value: str) -> bool:
    return _DOUBLE.fullmatch(value) is not None or value.strip().lower() in _DOUBLE_SYMBOLS


def _is_datetime(value: str) -> bool:
    """DateTime.TryParse with the invariant culture, for its common forms.

    ISO 8601 (`2016-12-31`, `2016-12-31T19:32:00.5Z`, `+01:00`), `12/31/2016` and `12-31-16`,
    month names (`31 December 2016`, `Dec 31, 2016`, `December 2016`), a time alone
    (`7:32 PM`, `19:32:05`) or after a date; calendar dates and times must be valid.
    """
    for form in _DATETIMES:
        m = form.fullmatch(value)
        if m is not None and _valid_datetime(m.groupdict()):
            return True
    return False


def _valid_datetime(g: dict[str, str | None]) -> bool:
    today = date.today()
    year = int(g.get("y") or today.year)
    if len(g.get("y") or "") == 2:
        year += 2000 if year < 50 else 1900  # .NET's TwoDigitYearMax is 2049
    has_date = any(g.get(k) for k in ("y", "m", "mon"))
    month = (_MONTHS[str(g["mon"]).lower()] if g.get("mon")
             else int(g.get("m") or today.month))
    day = int(g.get("d") or (1 if has_date else today.day))
    try:
        date(year, month, day)
    except ValueError:
        return False
    if g.get("h") is not None:
        hour, ampm = int(str(g["h"])), g.get("ampm")
        if g.get("mi") is None and ampm is None:
            return False  # a bare number is not a time
        if hour > (12 if ampm else 23) or int(g.get("mi") or 0) > 59 or int(g.get("s") or 0) > 59:
            return False
    return int(g.get("tzh") or 0) <= 14 and int(g.get("tzm") or 0) <= 59


def _guid_hex(part: str) -> int | None:
    """Guid's lenient hex component: an optional `+`, an optional `0x`, then hex digits."""
    part = part.removeprefix("+")
    if len(part) > 1 and part[0] == "0" and part[1] in "xX":
        part = part[2:]
    if _HEX.fullmatch(part) is None or len(part.lstrip("0")) > 8:
        return None
    return int(part, 16) if part else 0


def _is_guid_d(s: str) -> bool:
    """`d85b1407-351d-4694-9392-03acc5870eb1`, where the first five groups may carry `+`/`0x`."""
    if len(s) != 36 or any(s[i] != "-" for i in (8, 13, 18, 23)):
        return False
    groups = (s[0:8], s[9:13], s[14:18], s[19:23], s[24:28])
    if _HEX.fullmatch(s[28:36]) is None:
        return False
    if all(_HEX.fullmatch(g) for g in groups):
        return True
    return any(c in s for c in "xX+") and all(_guid_hex(g) is not None for g in groups)


_GUID_X = re.compile(r"\{0[xX]([^,]+),0[xX]([^,]+),0[xX]([^,]+),\{"
                     + r"0[xX]([^,]+),".join([""] * 8) + r"0[xX]([^}]+)\}\}")


def _is_guid(value: str) -> bool:
    """Guid.TryParse: the N, D, B, P and X formats, whitespace around (X: anywhere) allowed."""
    s = value.strip()
    if len(s) < 32:
        return False
    if s[0] == "(":
        return len(s) == 38 and s[-1] == ")" and _is_guid_d(s[1:37])
    if s[0] == "{" and s[9] == "-":
        return len(s) == 38 and s[-1] == "}" and _is_guid_d(s[1:37])
    if s[0] == "{":
        m = _GUID_X.fullmatch("".join(s.split()))
        if m is None:
            return False
        values = [_guid_hex(g) for g in m.groups()]
        return all(v is not None for v in values) and all(v <= 0xFF for v in values[3:] if v)
    if s[8] == "-":
        return _is_guid_d(s)
    return len(s) == 32 and _HEX.fullmatch(s) is not None


def _utf16_len(value: str) -> int:
    """String.Length in .NET: UTF-16 code units (an emoji counts 2)."""
    return len(value.encode("utf-16-le")) // 2


def _is_file_name(value: str) -> bool:
    """ASP.NET's `file`: the last path segment has a dot followed by something other than dots."""
    last = value.rpartition("/")[2]
    dot = last.find(".")
    return bool(value) and dot >= 0 and any(c != "." for c in last[dot + 1:])


_PLAIN_CONSTRAINTS: dict[str, Constraint] = {
    "int": lambda v: _integer(v, 32) is not None,
    "long": lambda v: _integer(v, 64) is not None,
    "bool": lambda v: _BOOL.fullmatch(v) is not None,
    "datetime": _is_datetime,
    "decimal": _is_decimal,
    "double": _is_double,
    "float": _is_double,  # float.TryParse takes the same syntax; out of range is infinity
    "guid": _is_guid,
    "alpha": lambda v: _ALPHA.search(v) is not None,
    "required": lambda v: v != "",
    "file": _is_file_name,
    "nonfile": lambda v: not _is_file_name(v),
}
# name: (argument count, 32- or 64-bit arguments)
_ARG_CONSTRAINTS: dict[str, tuple[tuple[int, ...], int]] = {
    "minlength": ((1,), 32), "maxlength": ((1,), 32), "length": ((1, 2), 32),
    "min": ((1,), 64), "max": ((1,), 64), "range": ((2,), 64),
}


def resolve_constraint(text: str) -> Constraint:
    """A route constraint (`int`, `min(1)`, `regex(^a+$)`, ...) as a predicate on the value.

    Raises FunctionLoadError for an unknown name or bad arguments, as the host fails to start
    such a route.
    """
    name, args = text, None
    open_paren = text.find("(")
    if open_paren >= 0 and text.endswith(")"):
        name, args = text[:open_paren], text[open_paren + 1:-1]
    key = name.strip().lower()
    if key == "regex":
        if args is None:
            raise FunctionLoadError(f"route constraint {text!r} needs a pattern: regex(...)")
        try:
            pattern = re.compile(args, re.IGNORECASE)
        except re.error as exc:
            raise FunctionLoadError(f"invalid regex in route constraint {text!r}: {exc}") from None
        return lambda v: pattern.search(v) is not None
    if key in _PLAIN_CONSTRAINTS:
        if args is not None:
            raise FunctionLoadError(f"route constraint {name!r} takes no arguments: {text!r}")
        return _PLAIN_CONSTRAINTS[key]
    if key not in _ARG_CONSTRAINTS:
        raise FunctionLoadError(f"unknown route constraint {name!r}")
    counts, bits = _ARG_CONSTRAINTS[key]
    values = [_integer(a, bits) for a in (args.split(",") if args is not None else [])]
    if len(values) not in counts or any(v is None for v in values):
        raise FunctionLoadError(f"route constraint {text!r} needs {' or '.join(map(str, counts))} "
                                f"integer argument(s)")
    lo, hi = values[0] or 0, values[-1] or 0
    if (lo < 0 and key.endswith("length")) or lo > hi:
        raise FunctionLoadError(f"route constraint {text!r} has an invalid range")
    if key == "minlength":
        return lambda v: _utf16_len(v) >= lo
    if key == "maxlength":
        return lambda v: _utf16_len(v) <= lo
    if key == "length":
        return lambda v: lo <= _utf16_len(v) <= hi
    low = lo if key in ("min", "range") else None
    high = hi if key in ("max", "range") else None

    def in_range(v: str) -> bool:
        n = _integer(v, 64)
        return n is not None and (low is None or n >= low) and (high is None or n <= high)

    return in_range


@dataclass(frozen=True)
class RouteParameter:
    """One `{...}` of a route template."""

    name: str
    group: str  # its regex group
    catch_all: bool
    optional: bool
    default: str | None
    constraints: tuple[Constraint, ...]


def _parse_constraints(text: str, i: int, end: int) -> tuple[list[str], int]:
    """The `:constraint(args)` list of a parameter, as ASP.NET's RouteParameterParser splits it.

    A `(` opens arguments that may hold `:`, `=` and `)` (a regex); they end at a `)` followed by
    `:`, `=` or the end. Returns the constraint texts and the index of the default's `=`.
    """
    constraints: list[str] = []
    state, start = "start", i
    while True:
        c = text[i] if i <= end else None
        if state == "start":
            if c is None:
                state = "end"
            elif c == ":":
                state, start = "name", i + 1
            elif c == "(":
                state = "args"
            elif c == "=":
                state, i = "end", i - 1
        elif state == "args":
            if c is None:
                state = "end"
                constraints.append(text[start:i])
            elif c == ")":
                after = text[i + 1] if i + 1 <= end else None
                if after in (None, ":", "="):
                    constraints.append(text[start:i + 1])
                    state, start = ("start", i + 1) if after == ":" else ("end", start)
            elif c in ":=":
                close = text.find(")", i + 1)
                if close >= 0:
                    i = close
                else:
                    constraints.append(text[start:i])
                    state, start = ("name", i + 1) if c == ":" else ("end", start)
                    i -= c == "="
        elif c is None or c in ":=":
            if text[start:i]:
                constraints.append(text[start:i])
            if c == ":":
                start = i + 1
            else:
                state, i = "end", i - (c == "=")
        elif c == "(":
            state = "args"
        i += 1
        if state == "end":
            return constraints, i


def _parse_parameter(text: str, group: str,
                     fail: Callable[[str], FunctionLoadError]) -> RouteParameter:
    """`*rest`, `name?`, `name:int:min(1)=5`, ... (the inside of a `{...}`)."""
    if not text:
        raise fail("empty parameter {}")
    catch_all = text.startswith("*")
    start = 2 if text.startswith("**") else int(catch_all)
    end = len(text) - 1
    optional = text[end] == "?"
    if optional:
        end -= 1
    if catch_all and optional:
        raise fail("a catch-all parameter cannot be optional")
    i = start
    while i <= end and not (text[i] in ":=" and i != start):
        i += 1
    name = text[start:i]
    texts, i = _parse_constraints(text, i, end)
    default = text[i + 1:end + 1] if i <= end and text[i] == "=" else None
    if optional and default is not None:
        raise fail(f"optional parameter {name!r} cannot have a default value")
    if not name or any(c in "/{}?*" for c in name):
        raise fail(f"invalid parameter name {name!r}")
    try:
        constraints = tuple(resolve_constraint(t) for t in texts)
    except FunctionLoadError as exc:
        raise fail(str(exc)) from None
    return RouteParameter(name, group, catch_all, optional, default, constraints)


def _route_segments(text: str,
                    fail: Callable[[str], FunctionLoadError]) -> list[list[str | RouteParameter]]:
    """Split a template into segments of literal and parameter parts (`{{`, `}}` escape braces)."""
    segments: list[list[str | RouteParameter]] = []
    groups = itertools.count()
    i, n = 0, len(text)
    while i < n:
        if text[i] == "/":
            raise fail("consecutive '/' separators")
        parts: list[str | RouteParameter] = []
        while i < n and text[i] != "/":
            parameter = text[i] == "{" and text[i + 1:i + 2] != "{"
            buf: list[str] = []
            j = i + 1 if parameter else i
            while True:
                if j >= n or (not parameter and text[j] == "/"):
                    if parameter:
                        raise fail("unclosed '{'")
                    break
                c = text[j]
                if c in "{}" and text[j + 1:j + 2] == c:
                    buf.append(c)
                    j += 2
                    continue
                if c == "{":
                    if parameter:
                        raise fail("a '{' inside a parameter must be written '{{'")
                    break
                if c == "}":
                    if not parameter:
                        raise fail("unmatched '}'")
                    j += 1
                    break
                buf.append(c)
                j += 1
            text_part = "".join(buf)
            parts.append(_parse_parameter(text_part, f"g{next(groups)}", fail) if parameter
                         else text_part)
            i = j
        segments.append(parts)
        i += 1
    return segments


@dataclass(frozen=True)
class RoutePattern:
    """A compiled route template: a case-insensitive regex plus the parameters' constraints."""

    template: str
    regex: re.Pattern[str]
    parameters: tuple[RouteParameter, ...]
    rank: tuple[int, ...]  # ASP.NET's inbound precedence, one digit per segment: lower first

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for a path (leading slash, no trailing slash), or None if no match.

        A value that fails a constraint means no match, so another route may take the path.
        """
        m = self.regex.match(path)
        if m is None:
            return None
        values: dict[str, str] = {}
        for p in self.parameters:
            raw = m.group(p.group)
            value = unquote(raw) if raw is not None else p.default
            if value is None:
                continue  # an absent optional parameter: its constraints do not apply
            if not all(check(value) for check in p.constraints):
                return None
            values[p.name] = value
        return values


def compile_route(template: str) -> RoutePattern:
    """Compile an ASP.NET Core route template (as the Functions host reads `route`).

    The regex matches the path after the route prefix, with a leading slash and no trailing
    slash. Precedence digits per segment: literal 1, multi-part or constrained parameter 2,
    parameter 3, constrained catch-all 4, catch-all 5 (optional parameters rank as parameters).
    """

    def fail(why: str) -> FunctionLoadError:
        return FunctionLoadError(f"invalid route template {template!r}: {why}")

    text = template.strip()
    text = text[2:] if text.startswith("~/") else text.removeprefix("/")
    segments = _route_segments(text, fail)
    pattern, ranks, parameters = "", [], []
    for index, parts in enumerate(segments):
        params = [p for p in parts if isinstance(p, RouteParameter)]
        parameters.extend(params)
        for p in params:
            if p.catch_all and (index != len(segments) - 1 or len(parts) > 1):
                raise fail("a catch-all parameter must be the whole last segment")
        if len(parts) == 1 and isinstance(parts[0], str):
            pattern += "/" + re.escape(parts[0])
            ranks.append(1)
        elif len(parts) == 1:
            p = params[0]
            if p.catch_all:
                pattern += f"(?:/(?P<{p.group}>.*))?"
            elif p.optional or p.default is not None:
                pattern += f"(?:/(?P<{p.group}>[^/]+))?"
            else:
                pattern += f"/(?P<{p.group}>[^/]+)"
            ranks.append((5 if p.catch_all else 3) - bool(p.constraints))
        else:
            pattern += "/" + _complex_segment(parts, fail)
            ranks.append(2)
    names = [p.name.lower() for p in parameters]
    if len(set(names)) != len(names):
        raise fail("a parameter name is used twice")
    return RoutePattern(template, re.compile(f"^{pattern}$", re.IGNORECASE), tuple(parameters),
                        tuple(ranks))


def _complex_segment(parts: list[str | RouteParameter],
                     fail: Callable[[str], FunctionLoadError]) -> str:
    """The regex of a segment mixing literals and parameters, e.g. `{name}.{ext?}`.

    ASP.NET matches these right to left (each literal at its last occurrence), which greedy
    parameters reproduce; an optional last parameter after a `.` takes what follows the last dot.
    """
    regex = ""
    ends_optional = isinstance(parts[-1], RouteParameter) and parts[-1].optional
    for k, part in enumerate(parts):
        if isinstance(part, str):
            regex += re.escape(part)
            continue
        if k and isinstance(parts[k - 1], RouteParameter):
            raise fail("two parameters in a segment need a literal between them")
        if not part.optional:
            lazy = ends_optional and k == len(parts) - 3
            regex += f"(?P<{part.group}>[^/]+{'?' if lazy else ''})"
            continue
        if k != len(parts) - 1 or parts[k - 1] != ".":
            raise fail(f"optional parameter {part.name!r} must end its segment, after a '.'")
        regex = regex[:-len(re.escape("."))] + rf"(?:\.(?P<{part.group}>[^/.]+))?"
    return regex
