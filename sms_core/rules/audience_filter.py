"""The audience filter: a small rule language that picks members of a saved audience.

A marketer writes a rule such as ``city = 'Seattle' and plan != 'free'``; `parse_filter` turns it
into an `AudienceFilter` whose `AudienceFilter.matches` is called once per audience member (a
mapping of attribute name to string value, from CSV columns or JSON). The full language, with
examples and the exact semantics, is documented for users in ``docs/filter-language.md``; keep the
two in step.

Grammar (keywords are case-insensitive)::

    rule       := or_expr END
    or_expr    := and_expr ('or' and_expr)*
    and_expr   := not_expr ('and' not_expr)*
    not_expr   := 'not' not_expr | '(' or_expr ')' | comparison
    comparison := name ('=' | '!=' | '<>' | '<' | '<=' | '>' | '>=') value
                | name ('contains' | 'startswith') value
                | name ['not'] 'in' '(' value (',' value)* ')'
                | name 'is' ['not'] 'empty'
    value      := 'text' | "text" | number
    name       := (letter | '_') (letter | digit | '_' | '-' | '.')* | `any text`

Decisions on the open questions (also in the user documentation):

* A missing attribute, a value that is blank after trimming and a JSON ``null`` are all "no
  value", as SQL's NULL: every comparison with no value is false, ``!=`` and ``not in``
  included; only ``is empty`` is true. ``not`` is plain boolean negation, so ``not city = 'a'``
  is true for a member without a city while ``city != 'a'`` is false.
* Ordering (``<``, ``<=``, ``>``, ``>=``) compares numbers when both sides are numbers and
  casefolded text when neither is; a number and a non-number are not ordered (false), so
  ``age >= 18`` never picks a member whose age is ``'unknown'``.
* A literal that is empty after trimming (``city = ''``) is a syntax error, not a rule that
  silently matches nobody: the message points to ``is empty`` / ``is not empty``.
* Keywords are reserved: an attribute called ``in`` or ``empty`` must be backquoted.
* Parentheses and ``not`` together may nest at most `_MAX_DEPTH` levels, so a hostile rule
  raises `FilterSyntaxError` instead of `RecursionError`.

Performance: parsing compiles the rule once into closures over pre-casefolded literals; each
`AudienceFilter.matches` call only looks up the rule's attributes once each, trims and casefolds
them, parses them as numbers only where a comparison needs it, and runs the closures.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["MAX_FILTER_LENGTH", "AudienceFilter", "FilterSyntaxError", "parse_filter"]

MAX_FILTER_LENGTH = 2000
"""The longest rule accepted, in characters; a longer one raises `FilterSyntaxError`."""

# Parentheses and 'not' count together; 50 is far beyond any hand-written rule and keeps the
# parser's recursion (3 frames per level) well under Python's default limit of 1000.
_MAX_DEPTH = 50

_KEYWORDS = frozenset({"and", "or", "not", "in", "is", "empty", "contains", "startswith"})
_COMPARISON_OPERATORS = {"=": "=", "!=": "!=", "<>": "!=", "<": "<", "<=": "<=", ">": ">",
                         ">=": ">="}
_OPERATOR_CHARS = "=!<>"
_EXPECTED_OPERATORS = ("=, !=, <>, <, <=, >, >=, contains, startswith, in, not in, is empty, "
                       "is not empty")
# Operators from other languages that people type by habit; the hint names ours.
_HINTS = {"==": "use '='", "=>": "use '>='", "=<": "use '<='", "!": "use 'not' or '!='",
          "&&": "use 'and'", "&": "use 'and'", "||": "use 'or'", "|": "use 'or'"}
# ASCII digits only: str.isdigit and \d would accept other scripts' digits (Decimal('٣') == 3),
# and Decimal alone would accept 'NaN', 'Infinity' and '1e3', none of which a marketer means.
_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_NUMBER_START = frozenset("+-.0123456789")
_NAME_TAIL = frozenset("_-.")
# Characters that end a run of unknown symbols, so `city ~ 'a'` reports '~' alone.
_TOKEN_STARTS = frozenset("'\"`(),=!<>_")


class FilterSyntaxError(ValueError):
    """A rule that cannot be parsed; `column` is 1-based, `message` says what was expected."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column

    def __reduce__(self) -> tuple[type[FilterSyntaxError], tuple[str, int]]:
        # ValueError would re-create the error from str(self) alone and lose `column`.
        return (type(self), (self.message, self.column))


# --- the lexer ------------------------------------------------------------------------------


class _Token(NamedTuple):
    kind: str  # name, keyword, string, number, op, bad, (, ), ",", end
    text: str  # exactly as written in the rule, for error messages
    column: int  # 1-based
    value: str  # name: unquoted; keyword: casefolded; string: unescaped; op: normalised


def _tokens(text: str) -> Iterator[_Token]:
    """Yield the rule's tokens, then an ``end`` token; lexical errors surface in reading order."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        column = i + 1
        if c.isspace():
            i += 1
        elif c in "'\"`":
            content, i = _quoted(text, i)
            written = text[column - 1 : i]
            if c != "`":
                yield _Token("string", written, column, content)
                continue
            name = content.strip()
            if not name:
                raise FilterSyntaxError("empty attribute name between backquotes", column)
            yield _Token("name", written, column, name)
        elif c in "(),":
            yield _Token(c, c, column, c)
            i += 1
        elif c in _OPERATOR_CHARS:
            j = i
            while j < n and text[j] in _OPERATOR_CHARS:
                j += 1
            written = text[i:j]
            known = _COMPARISON_OPERATORS.get(written)
            yield _Token("op" if known else "bad", written, column, known or written)
            i = j
        elif c.isalpha() or c == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in _NAME_TAIL):
                j += 1
            written = text[i:j]
            folded = written.casefold()
            if folded in _KEYWORDS:
                yield _Token("keyword", written, column, folded)
            else:
                yield _Token("name", written, column, written)
            i = j
        elif (match := _NUMBER_RE.match(text, i)) is not None:
            j = match.end()
            if j < n and (text[j].isalnum() or text[j] in _NAME_TAIL):
                # '18abc', '1.2.3', '10-20': one bad word, not a number followed by a name.
                while j < n and (text[j].isalnum() or text[j] in _NAME_TAIL):
                    j += 1
                raise FilterSyntaxError(
                    f"'{text[i:j]}' is not a number; to compare with text, put it in quotes: "
                    f"'{text[i:j]}'", column)
            yield _Token("number", text[i:j], column, text[i:j])
            i = j
        else:
            j = i + 1
            while j < n and not (text[j].isspace() or text[j].isalnum()
                                 or text[j] in _TOKEN_STARTS):
                j += 1
            yield _Token("bad", text[i:j], column, text[i:j])
            i = j
    yield _Token("end", "", n + 1, "")


def _quoted(text: str, start: int) -> tuple[str, int]:
    """Read the quoted text opening at ``start``; a doubled quote stands for one. Return the
    content and the index just past the closing quote."""
    quote = text[start]
    parts: list[str] = []
    j = start + 1
    while True:
        k = text.find(quote, j)
        if k < 0:
            what = "attribute name" if quote == "`" else "string"
            raise FilterSyntaxError(
                f"unterminated {what}: the {quote} opened here is never closed", start + 1)
        parts.append(text[j:k])
        if text.startswith(quote, k + 1):
            parts.append(quote)
            j = k + 2
        else:
            return "".join(parts), k + 1


def _describe(token: _Token) -> str:
    """How an error message names what it found."""
    if token.kind == "end":
        return "the end of the rule"
    if token.kind == "string":
        return f"the text {token.text}"
    if token.kind == "number":
        return f"the number {token.text}"
    if token.kind == "name" and token.text.startswith("`"):
        return token.text
    return f"'{token.text}'"


# --- compiled predicates --------------------------------------------------------------------

# A member's value for one attribute, prepared once per `matches` call: its trimmed, casefolded
# text and, when some comparison needs it, its number (None when it is not a number).
# None stands for no value (missing, blank or null).
_Value = tuple[str, Decimal | None]
_Values = Sequence[_Value | None]
_Predicate = Callable[[_Values], bool]

# Any: the same functions order Decimals and strs, and typeshed types them with private protocols.
_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _to_number(text: str) -> Decimal | None:
    """The number that trimmed ``text`` spells, or None; the first-character test skips the
    regular expression for most words."""
    if text[0] in _NUMBER_START and _NUMBER_RE.fullmatch(text):
        return Decimal(text)
    return None


def _equals(slot: int, text: str, number: Decimal | None) -> _Predicate:
    if number is not None:
        def equals_number(values: _Values) -> bool:
            value = values[slot]
            return value is not None and value[1] == number
        return equals_number

    # A value that is a number cannot have the same text as a literal that is not, so text
    # equality alone is right here whatever the value is.
    def equals_text(values: _Values) -> bool:
        value = values[slot]
        return value is not None and value[0] == text
    return equals_text


def _not_equals(slot: int, text: str, number: Decimal | None) -> _Predicate:
    equals = _equals(slot, text, number)

    def not_equals(values: _Values) -> bool:
        return values[slot] is not None and not equals(values)
    return not_equals


def _ordered(slot: int, symbol: str, text: str, number: Decimal | None) -> _Predicate:
    compare = _ORDERINGS[symbol]
    if number is not None:
        def ordered_number(values: _Values) -> bool:
            value = values[slot]
            return value is not None and value[1] is not None and compare(value[1], number)
        return ordered_number

    def ordered_text(values: _Values) -> bool:
        value = values[slot]
        return value is not None and value[1] is None and compare(value[0], text)
    return ordered_text


def _member_of(slot: int, texts: frozenset[str], numbers: frozenset[Decimal],
               negate: bool) -> _Predicate:
    # Decimal hashes by numeric value (hash(Decimal('18.0')) == hash(18)), so set lookup is
    # numeric equality. A value that is a number only equals the numeric literals (see _equals).
    def member_of(values: _Values) -> bool:
        value = values[slot]
        if value is None:
            return False
        found = value[1] in numbers if value[1] is not None else value[0] in texts
        return found != negate
    return member_of


def _contains(slot: int, needle: str) -> _Predicate:
    def contains(values: _Values) -> bool:
        value = values[slot]
        return value is not None and needle in value[0]
    return contains


def _startswith(slot: int, prefix: str) -> _Predicate:
    def startswith(values: _Values) -> bool:
        value = values[slot]
        return value is not None and value[0].startswith(prefix)
    return startswith


def _is_empty(slot: int, negate: bool) -> _Predicate:
    def is_empty(values: _Values) -> bool:
        return (values[slot] is None) != negate
    return is_empty


def _negation(inner: _Predicate) -> _Predicate:
    def negation(values: _Values) -> bool:
        return not inner(values)
    return negation


def _all(predicates: list[_Predicate]) -> _Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates

        def both(values: _Values) -> bool:
            return first(values) and second(values)
        return both

    def every(values: _Values) -> bool:
        # A plain loop: all() over a generator costs a frame per member, and this runs 100,000s
        # of times per campaign.
        for predicate in predicates:  # noqa: SIM110
            if not predicate(values):
                return False
        return True
    return every


def _any(predicates: list[_Predicate]) -> _Predicate:
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates

        def either(values: _Values) -> bool:
            return first(values) or second(values)
        return either

    def some(values: _Values) -> bool:
        for predicate in predicates:  # noqa: SIM110 (see every)
            if predicate(values):
                return True
        return False
    return some


# --- the parser -----------------------------------------------------------------------------


class _Slot(NamedTuple):
    spelling: str  # as first written in the rule: tried first, as an exact key
    key: str  # trimmed and casefolded: matched against the member's keys, folded the same way
    needs_number: bool


class _Parser:
    """Recursive descent over the grammar in the module docstring, one token of lookahead."""

    def __init__(self, text: str) -> None:
        self._lexer = _tokens(text)
        self._token = next(self._lexer)
        self._peeked: _Token | None = None
        self._previous: _Token | None = None
        self._slots: list[_Slot] = []
        self._slot_of: dict[str, int] = {}  # casefolded name -> index in _slots

    def parse(self) -> tuple[_Predicate, list[_Slot]]:
        if self._token.kind == "end":
            raise FilterSyntaxError(
                "the rule is empty; write a condition such as city = 'Seattle'", 1)
        predicate = self._or(0)
        token = self._token
        if token.kind == ")":
            raise FilterSyntaxError("unbalanced ')': there is no '(' for it to close",
                                    token.column)
        if token.kind != "end":
            raise self._expected("'and', 'or' or the end of the rule")
        return predicate, self._slots

    # -- token helpers

    def _advance(self) -> _Token:
        token = self._token
        self._previous = token
        if self._peeked is not None:
            self._token, self._peeked = self._peeked, None
        else:
            self._token = next(self._lexer)
        return token

    def _peek(self) -> _Token | None:
        """The token after the current one, or None when reading it is itself an error.

        Only for hints in an error about the current token: after a lexical error the lexer
        generator is finished, so parsing must not go on.
        """
        if self._peeked is None:
            try:
                self._peeked = next(self._lexer)
            except FilterSyntaxError:
                return None
        return self._peeked

    def _at_keyword(self, keyword: str) -> bool:
        return self._token.kind == "keyword" and self._token.value == keyword

    def _expected(self, what: str, hint: str = "") -> FilterSyntaxError:
        token = self._token
        previous = self._previous
        if not hint and token.kind == "bad" and token.text in _HINTS:
            hint = _HINTS[token.text]
        elif (not hint and token.kind == "name" and previous is not None
              and previous.kind == "string"
              and token.column == previous.column + len(previous.text)):
            # 'O'Brien': the quote inside the text ended it early.
            hint = f"to put a {previous.text[0]} inside text, double it, as in 'O''Brien'"
        suffix = f"; {hint}" if hint else ""
        return FilterSyntaxError(f"expected {what}, found {_describe(token)}{suffix}",
                                 token.column)

    def _deeper(self, depth: int) -> int:
        if depth >= _MAX_DEPTH:
            raise FilterSyntaxError(
                f"the rule nests too deeply: at most {_MAX_DEPTH} levels of parentheses and "
                "'not'", self._token.column)
        return depth + 1

    # -- boolean structure

    def _or(self, depth: int) -> _Predicate:
        predicates = [self._and(depth)]
        while self._at_keyword("or"):
            self._advance()
            predicates.append(self._and(depth))
        return _any(predicates)

    def _and(self, depth: int) -> _Predicate:
        predicates = [self._not(depth)]
        while self._at_keyword("and"):
            self._advance()
            predicates.append(self._not(depth))
        return _all(predicates)

    def _not(self, depth: int) -> _Predicate:
        token = self._token
        if token.kind == "keyword" and token.value == "not":
            depth = self._deeper(depth)
            self._advance()
            return _negation(self._not(depth))
        if token.kind == "(":
            depth = self._deeper(depth)
            self._advance()
            predicate = self._or(depth)
            if self._token.kind == ")":
                self._advance()
                return predicate
            if self._token.kind == "end":
                raise FilterSyntaxError("'(' is never closed; add ')'", token.column)
            raise self._expected(f"')' to close the '(' at column {token.column}, 'and' or 'or'")
        if token.kind == "name":
            return self._comparison()
        after = f" after '{self._previous.text}'" if self._previous is not None else ""
        hint = ""
        if token.kind in ("string", "number"):
            hint = ("every condition starts with an attribute name, as in "
                    "city = 'a' or city = 'b'")
        elif token.kind == "keyword":
            hint = f"to use '{token.text}' as an attribute name, write `{token.text}`"
        raise self._expected(f"a condition{after}", hint)

    # -- conditions

    def _comparison(self) -> _Predicate:
        name = self._advance()
        token = self._token
        if token.kind == "op":
            self._advance()
            text, number = self._comparable(self._value(token))
            slot = self._slot(name, needs_number=number is not None or token.value in _ORDERINGS)
            if token.value == "=":
                return _equals(slot, text, number)
            if token.value == "!=":
                return _not_equals(slot, text, number)
            return _ordered(slot, token.value, text, number)
        if token.kind == "keyword" and token.value in ("contains", "startswith"):
            self._advance()
            literal = self._value(token)
            if not literal.value:
                raise FilterSyntaxError(
                    f"'{token.text}' needs some text; '' would match every value",
                    literal.column)
            # Not trimmed: spaces are meaningful here (`name contains ' '` finds two words).
            needle = literal.value.casefold()
            slot = self._slot(name, needs_number=False)
            if token.value == "contains":
                return _contains(slot, needle)
            return _startswith(slot, needle)
        if self._at_keyword("not"):
            self._advance()
            if not self._at_keyword("in"):
                raise self._expected("'in' after 'not'")
            return self._membership(name, negate=True)
        if self._at_keyword("in"):
            return self._membership(name, negate=False)
        if self._at_keyword("is"):
            self._advance()
            negate = self._at_keyword("not")
            if negate:
                self._advance()
            if not self._at_keyword("empty"):
                what = "'empty' after 'is not'" if negate else "'empty' or 'not empty' after 'is'"
                raise self._expected(what)
            self._advance()
            return _is_empty(self._slot(name, needs_number=False), negate)
        if token.kind in ("bad", "name") or (token.kind == "keyword"
                                            and token.value not in ("and", "or")):
            hint = _HINTS.get(token.text, "")
            if token.kind == "keyword" and token.value == "empty":
                hint = f"write: {name.text} is empty"
            after = self._peek()
            if token.kind == "name" and after is not None and (
                    after.kind == "op" or (after.kind == "keyword"
                                           and after.value in ("contains", "startswith", "in",
                                                               "is"))):
                hint = (f"a name with spaces goes in backquotes: "
                        f"`{name.value} {token.text}`")
            suffix = f"; {hint}" if hint else ""
            raise FilterSyntaxError(
                f"unknown operator '{token.text}' after {_describe(name)}; expected one of "
                f"{_EXPECTED_OPERATORS}{suffix}", token.column)
        raise self._expected(f"an operator after {_describe(name)} ({_EXPECTED_OPERATORS})")

    def _membership(self, name: _Token, negate: bool) -> _Predicate:
        in_token = self._advance()
        opening = self._token
        if opening.kind != "(":
            raise self._expected(f"'(' after '{in_token.text}' to start a list such as "
                                 "('a', 'b')")
        self._advance()
        if self._token.kind == ")":
            raise FilterSyntaxError(f"the list after '{in_token.text}' is empty; give at least "
                                    "one value", self._token.column)
        literals = [self._value(opening)]
        while self._token.kind != ")":
            if self._token.kind == ",":
                literals.append(self._value(self._advance()))
            elif self._token.kind == "end":
                raise FilterSyntaxError("the list's '(' is never closed; add ')'",
                                        opening.column)
            else:
                raise self._expected("',' or ')' in the list")
        self._advance()
        texts: set[str] = set()
        numbers: set[Decimal] = set()
        for literal in literals:
            text, number = self._comparable(literal)
            if number is None:
                texts.add(text)
            else:
                numbers.add(number)
        slot = self._slot(name, needs_number=bool(numbers))
        return _member_of(slot, frozenset(texts), frozenset(numbers), negate)

    # -- values and names

    def _value(self, after: _Token) -> _Token:
        token = self._token
        if token.kind in ("string", "number"):
            return self._advance()
        hint = ""
        if token.kind == "name" and not token.text.startswith("`"):
            hint = f"put text in quotes: '{token.text}'"
        raise self._expected(f"a value after '{after.text}'", hint)

    def _comparable(self, literal: _Token) -> tuple[str, Decimal | None]:
        # Trimmed like the member's values, or ' Seattle' could never equal anything.
        text = literal.value.strip()
        if not text:
            raise FilterSyntaxError(
                "an empty value never matches: a missing or blank attribute has no value; "
                "test for it with 'is empty' or 'is not empty'", literal.column)
        return text.casefold(), _to_number(text)

    def _slot(self, name: _Token, needs_number: bool) -> int:
        key = name.value.casefold()
        index = self._slot_of.get(key)
        if index is None:
            index = self._slot_of[key] = len(self._slots)
            self._slots.append(_Slot(name.value, key, needs_number))
        elif needs_number:
            self._slots[index] = self._slots[index]._replace(needs_number=True)
        return index


# --- the public API -------------------------------------------------------------------------


class AudienceFilter:
    """A parsed rule: `matches` says whether an audience member satisfies it.

    ``AudienceFilter(text)`` is the same as ``parse_filter(text)`` and raises
    `FilterSyntaxError` the same way. A filter never changes after construction, so one
    instance can serve many threads.
    """

    __slots__ = ("_predicate", "_slots", "attributes", "text")

    text: str
    """The rule as given."""
    attributes: frozenset[str]
    """The attribute names the rule mentions, each as first written (without backquotes);
    names that differ only in case count once."""

    def __init__(self, text: str) -> None:
        if len(text) > MAX_FILTER_LENGTH:
            raise FilterSyntaxError(f"the rule is {len(text)} characters long; the limit is "
                                    f"{MAX_FILTER_LENGTH}", MAX_FILTER_LENGTH + 1)
        predicate, slots = _Parser(text).parse()
        self.text = text
        self.attributes = frozenset(slot.spelling for slot in slots)
        self._slots = tuple(slots)
        self._predicate = predicate

    def matches(self, attributes: Mapping[str, str]) -> bool:
        """Whether the member with these attributes satisfies the rule.

        Keys are matched case-insensitively and ignoring surrounding spaces; a key spelled
        exactly as in the rule wins over other spellings. A value of None counts as no value,
        and a non-string value (a JSON number) is compared as ``str(value)``.
        """
        values: list[_Value | None] = []
        folded_keys: dict[str, str] | None = None
        for spelling, key, needs_number in self._slots:
            raw = attributes.get(spelling)
            if raw is None:
                if folded_keys is None:
                    folded_keys = {}
                    for member_key, member_value in attributes.items():
                        # setdefault: the first of several keys that fold alike wins.
                        folded_keys.setdefault(member_key.strip().casefold(), member_value)
                raw = folded_keys.get(key)
            if raw is None:
                values.append(None)
                continue
            if not isinstance(raw, str):
                raw = str(raw)
            trimmed = raw.strip()
            if not trimmed:
                values.append(None)
            else:
                values.append((trimmed.casefold(), _to_number(trimmed) if needs_number else None))
        return self._predicate(values)

    def unknown_attributes(self, columns: Iterable[str]) -> list[str]:
        """The attributes the rule names that none of `columns` is, as first written, in the
        order the rule names them; matched as `matches` matches keys (case and surrounding
        spaces do not count).

        A rule over a column the audience does not have is a typo (``plann = 'pro'``), never
        what the marketer meant: every comparison with it is false, so it would match nobody,
        and under ``not`` everybody. Callers refuse such a rule, naming the known columns.
        """
        known = {column.strip().casefold() for column in columns}
        return [slot.spelling for slot in self._slots if slot.key not in known]

    def __repr__(self) -> str:
        return f"AudienceFilter({self.text!r})"


def parse_filter(text: str) -> AudienceFilter:
    """Parse a rule such as ``city = 'Seattle' and plan != 'free'``.

    Raises `FilterSyntaxError` (a `ValueError`) whose `column` is the 1-based position of the
    offending character and whose `message` says what was expected there.
    """
    return AudienceFilter(text)
