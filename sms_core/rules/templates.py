"""Campaign message templates: ``{{name}}`` placeholders filled from a recipient's attributes.

A campaign is prepared once and rendered for every recipient of its audience (up to 100,000), so
:func:`parse_template` does all the work up front: it checks the syntax, lists the variables and
compiles the text into a ``str.format`` pattern; :meth:`MessageTemplate.render` then only looks the
values up and formats (about a microsecond for a typical SMS).

Syntax, and the decisions behind it:

* A placeholder is ``{{name}}`` with optional spaces or tabs inside the braces
  (``{{ first_name }}``); a name is ``[A-Za-z_][A-Za-z0-9_]*``.
* Names are case-insensitive, because audiences come from CSV headers typed by people
  (``First_Name`` fills ``{{first_name}}``). ``{{Name}}`` and ``{{name}}`` in one template are one
  variable, listed once under the spelling used first.
* A single ``{`` or ``}`` and a ``}}`` with no opening ``{{`` are literal text: SMS text uses braces
  rarely, and refusing them would only get in the way. A ``{{`` that is not closed, closes nothing
  (``{{ }}``) or holds something that is not a name is a :class:`TemplateSyntaxError`, because a
  half-written placeholder sent to 100,000 people is worse than an error at preparation time.
* A variable whose value is missing, empty or only whitespace is *missing*: a message that says
  "Hi , your order is ready" is exactly the mistake templates must prevent, so rendering refuses it
  (:class:`MissingVariables`, naming every missing variable at once) rather than sending a blank.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MessageTemplate", "MissingVariables", "TemplateSyntaxError", "parse_template"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPEN = "{{"
_CLOSE = "}}"
_INSIDE_SPACE = " \t"
# Longest piece of a bad placeholder quoted back in an error; a template can be a long message.
_QUOTE_LIMIT = 30


class TemplateSyntaxError(ValueError):
    """A template that cannot be parsed.

    Attributes:
        message: what is wrong, e.g. ``"'{{' is never closed with '}}'"``.
        column: 1-based position of the problem in the template text, counted over the whole
            text (a newline counts as one character), so ``text[column - 1]`` is the character
            to point at.
    """

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column

    def __reduce__(self) -> tuple[type[TemplateSyntaxError], tuple[str, int]]:
        # Exceptions pickle as cls(*self.args), and args holds only the formatted string.
        return (type(self), (self.message, self.column))


class MissingVariables(ValueError):
    """Rendering found no usable value (absent, empty or blank) for one or more variables.

    Attributes:
        names: the missing variables in order of first use in the template, spelled as in the
            template.
    """

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__(f"missing variable(s): {', '.join(names)}")
        self.names = names

    def __reduce__(self) -> tuple[type[MissingVariables], tuple[tuple[str, ...]]]:
        return (type(self), (self.names,))


@dataclass(frozen=True)
class _Compiled:
    variables: tuple[str, ...]
    # The text as a str.format pattern with positional fields {0}, {1}... (one per variable, so a
    # variable used twice is looked up once) and every literal brace doubled.
    pattern: str


@dataclass(frozen=True)
class MessageTemplate:
    """A parsed template; build it with :func:`parse_template`.

    Attributes:
        text: the template as written.
        variables: the distinct placeholder names in order of first use (spelled as first used).
    """

    text: str
    variables: tuple[str, ...]
    _pattern: str = field(init=False, repr=False, compare=False)
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Compiling here (not only in parse_template) keeps a directly constructed instance
        # consistent with its text; the second parse costs microseconds, once per campaign.
        compiled = _compile(self.text)
        if compiled.variables != self.variables:
            raise ValueError(
                f"variables {self.variables!r} do not match the template, which uses "
                f"{compiled.variables!r}; build templates with parse_template()"
            )
        object.__setattr__(self, "_pattern", compiled.pattern)
        object.__setattr__(self, "_keys", tuple(name.lower() for name in compiled.variables))

    def render(self, values: Mapping[str, str]) -> str:
        """Fill the placeholders from ``values`` (for example a CSV row's attributes).

        Names match case-insensitively; an exact-case key wins over other spellings, and
        otherwise the first matching key in ``values``' order is used. Values are inserted as
        given. Extra keys are ignored.

        Raises:
            MissingVariables: if any variable has no value, an empty value or a whitespace-only
                value, listing all of them.
        """
        resolved: list[str] = []
        missing: list[str] | None = None
        folded: dict[str, str] | None = None
        for name, key in zip(self.variables, self._keys, strict=True):
            value = values.get(name)
            if value is None:
                if folded is None:
                    folded = _fold(values)
                value = folded.get(key)
            if not value or value.isspace():
                if missing is None:
                    missing = []
                missing.append(name)
                continue
            resolved.append(value)
        if missing is not None:
            raise MissingVariables(tuple(missing))
        return self._pattern.format(*resolved)


def _fold(values: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased keys of ``values``, first spelling winning."""
    folded: dict[str, str] = {}
    for key, value in values.items():
        # Template names are ASCII, so only ASCII keys can match; skipping the rest also keeps
        # Unicode case folding (e.g. the Kelvin sign lower-casing to 'k') from matching by surprise.
        if key.isascii():
            folded.setdefault(key.lower(), value)
    return folded


def _quote(piece: str) -> str:
    if len(piece) > _QUOTE_LIMIT:
        piece = piece[: _QUOTE_LIMIT - 3] + "..."
    return repr(piece)


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _compile(text: str) -> _Compiled:
    variables: list[str] = []
    index_of: dict[str, int] = {}
    pattern: list[str] = []
    pos = 0
    while True:
        start = text.find(_OPEN, pos)
        if start < 0:
            pattern.append(_literal(text[pos:]))
            break
        pattern.append(_literal(text[pos:start]))
        inner_start = start + len(_OPEN)
        end = text.find(_CLOSE, inner_start)
        if end < 0:
            raise TemplateSyntaxError("'{{' is never closed with '}}'", start + 1)
        # A second '{{' before the '}}' almost always means this one was left unclosed.
        reopen = text.find(_OPEN, inner_start, end)
        if reopen >= 0:
            raise TemplateSyntaxError(
                f"'{{{{' is not closed with '}}}}' before the next '{{{{' (column {reopen + 1})",
                start + 1,
            )
        inner = text[inner_start:end]
        name = inner.strip(_INSIDE_SPACE)
        if not name:
            raise TemplateSyntaxError(
                "empty placeholder: write a variable name between '{{' and '}}'", start + 1
            )
        if not _NAME.fullmatch(name):
            name_column = inner_start + (len(inner) - len(inner.lstrip(_INSIDE_SPACE))) + 1
            raise TemplateSyntaxError(
                f"invalid variable name {_quote(name)}: use letters, digits and '_', "
                "not starting with a digit",
                name_column,
            )
        key = name.lower()
        index = index_of.get(key)
        if index is None:
            index = index_of[key] = len(variables)
            variables.append(name)
        pattern.append(f"{{{index}}}")
        pos = end + len(_CLOSE)
    return _Compiled(variables=tuple(variables), pattern="".join(pattern))


def parse_template(text: str) -> MessageTemplate:
    """Parse a message template with ``{{name}}`` placeholders (syntax in the module docstring).

    Raises:
        TemplateSyntaxError: for an unclosed ``{{``, an empty ``{{ }}`` or an invalid name, with
            the 1-based column of the problem.
    """
    return MessageTemplate(text=text, variables=_compile(text).variables)
