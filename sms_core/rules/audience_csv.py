"""A campaign audience uploaded as CSV: one recipient per row, a phone column plus attributes.

The attributes fill the template's ``{{placeholders}}`` (see :mod:`sms_core.rules.templates`), so
the header names are the variable names. Parsing is strict and every error names the physical line
of the file, because the person fixing it has the file open in a spreadsheet or an editor.

Decisions worth knowing:

* Quoting follows RFC 4180 through the stdlib ``csv`` module in strict mode; a quoted field may
  contain commas and newlines, and a row's ``line`` is the physical line where it *starts*.
* The delimiter is ``,`` unless the header line has ``;`` and no ``,``: Excel in many European
  locales saves "CSV" with semicolons.
* Spaces after a delimiter are skipped (``to, name``) so that a quoted field after ``", "`` is
  still read as quoted; header names and values are stripped of surrounding whitespace anyway.
* A UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped. Blank lines are skipped, and so are
  rows whose every field is blank (``,,,``), which Excel writes for rows that were cleared.
* The phone column is the one header among :data:`PHONE_COLUMNS`, compared ignoring case and
  surrounding spaces. More than one is an error rather than a guess: a file with both ``phone``
  and ``mobile`` may hold landlines in one of them. Its value is not validated here (the caller
  normalises it with :func:`sms_core.rules.phone.to_e164` and reports bad numbers per row).
* Every other column becomes an attribute under its header name, stripped but with its case
  kept; column names must be unique ignoring case because template variables are
  case-insensitive.
* A file with a header and no data rows is not an error here; the caller decides what an empty
  audience means.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["PHONE_COLUMNS", "AudienceCsvReader", "AudienceRow", "CsvAudienceError",
           "CsvPosition", "iter_audience_csv", "parse_audience_csv"]

PHONE_COLUMNS: tuple[str, ...] = (
    "to",
    "phone",
    "phone_number",
    "phonenumber",
    "mobile",
    "msisdn",
    "number",
)

_BOM = "\ufeff"
# Header names longer than this are cut in messages so one bad file cannot produce a huge error.
_NAME_LIMIT = 40


class CsvAudienceError(ValueError):
    """An audience CSV that cannot be used, with the line to fix.

    Attributes:
        line: 1-based physical line of the file where the problem is (for a row, where it starts).
        message: what is wrong; ``str()`` of the exception is ``"line {line}: {message}"``.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line
        self.message = message

    def __reduce__(self) -> tuple[type[CsvAudienceError], tuple[int, str]]:
        # Exceptions pickle as cls(*self.args), and args holds only the formatted string.
        return (type(self), (self.line, self.message))


@dataclass(frozen=True, slots=True)
class AudienceRow:
    """One recipient of an uploaded audience.

    Attributes:
        to: the phone column's text, stripped, not yet validated.
        attributes: every other column, header name (stripped, case kept) to stripped value.
        line: the physical line of the file where the row starts.
    """

    to: str
    attributes: dict[str, str]
    line: int


class _Dialect(csv.Dialect):
    delimiter = ","
    quotechar = '"'
    doublequote = True
    skipinitialspace = True
    lineterminator = "\r\n"  # only used for writing; reading accepts \n, \r\n and \r
    quoting = csv.QUOTE_MINIMAL
    strict = True


class _SemicolonDialect(_Dialect):
    delimiter = ";"


def _name(name: str) -> str:
    if len(name) > _NAME_LIMIT:
        name = name[: _NAME_LIMIT - 3] + "..."
    return repr(name)


def _names(header: list[str], limit: int = 10) -> str:
    shown = ", ".join(header[:limit])
    return shown if len(header) <= limit else f"{shown}, ..."


def _is_blank(row: list[str]) -> bool:
    return all(not field.strip() for field in row)


def _dialect_of(header_line: str) -> type[_Dialect]:
    """Semicolons when the header (first non-blank line) has ``;`` and no ``,``."""
    if ";" in header_line and "," not in header_line:
        return _SemicolonDialect
    return _Dialect


def _csv_error(exc: csv.Error, row_line: int, current_line: int) -> CsvAudienceError:
    """Turn the csv module's terse error into one a spreadsheet user can act on."""
    detail = str(exc)
    if "unexpected end of data" in detail:
        # Reported at the end of the file, but the quote was opened in the row that starts here.
        return CsvAudienceError(
            row_line, "a quoted field in the row starting here is never closed (missing '\"')"
        )
    if "expected after" in detail:
        return CsvAudienceError(
            current_line,
            "text after a closing quote: a quoted field must end at the delimiter "
            "(write a '\"' inside a quoted field as '\"\"')",
        )
    return CsvAudienceError(current_line, f"not valid CSV: {detail}")


def parse_audience_csv(text: str, max_rows: int | None = 100_000) -> list[AudienceRow]:
    """Parse an audience CSV (already decoded to ``str``) into rows, in file order.

    The first non-blank line is the header; it must name exactly one phone column (one of
    :data:`PHONE_COLUMNS`). See the module docstring for the rules.

    Raises:
        CsvAudienceError: naming the line, for an empty file, a header without a phone column,
            with two phone columns, a duplicate or empty column name, a row with the wrong number
            of fields, broken quoting, or more than ``max_rows`` data rows.
    """
    # newline="" hands the csv module the line endings untouched, as its docs require, so quoted
    # newlines survive and line_num counts physical lines.
    return list(iter_audience_csv(io.StringIO(text, newline=""), max_rows))


def iter_audience_csv(lines: Iterable[str], max_rows: int | None = None
                      ) -> Iterator[AudienceRow]:
    """The rows of an audience CSV read line by line (a file or stream opened with
    ``newline=""``), so a file of any size is parsed in constant memory; rules and errors as
    :func:`parse_audience_csv` (the error is raised when its line is reached)."""
    return AudienceCsvReader(lines, max_rows).rows()


@dataclass(frozen=True, slots=True)
class CsvPosition:
    """Where reading a file goes on after a pause: its header, its delimiter and the physical
    line the next row starts on (the bytes before that line are not read again)."""

    header: list[str]
    delimiter: str
    line: int


class AudienceCsvReader:
    """An audience CSV read as a stream of rows, which can stop after any row and go on later.

    `rows()` yields the rows; after each one, `position()` says where the next one starts, to
    resume from with the bytes after that row (`resume=`) instead of the file from its start.
    """

    def __init__(self, lines: Iterable[str], max_rows: int | None = None, *,
                 resume: CsvPosition | None = None) -> None:
        self._lines = lines
        self._max_rows = max_rows
        self._resume = resume
        self.header: list[str] | None = resume.header if resume else None
        self.delimiter = resume.delimiter if resume else ","
        self._first_line = resume.line if resume else 1
        self._reader: Any = None

    def position(self) -> CsvPosition:
        """Where the row after the last one yielded starts (once the header was read)."""
        if self.header is None:
            raise ValueError("the header was not read yet")
        read = self._reader.line_num if self._reader is not None else 0
        return CsvPosition(list(self.header), self.delimiter, self._first_line + read)

    def rows(self) -> Iterator[AudienceRow]:
        """The rows, in file order (see the module docstring for the rules)."""
        source = iter(self._lines)
        seen: list[str] = []  # the lines up to the header's, handed back to the reader
        if self.header is None:
            for raw in source:
                seen.append(raw[len(_BOM):] if not seen and raw.startswith(_BOM) else raw)
                if seen[-1].strip():
                    break
            dialect = _dialect_of(seen[-1]) if seen else _Dialect
            self.delimiter = dialect.delimiter
        else:
            dialect = _SemicolonDialect if self.delimiter == ";" else _Dialect
        reader = csv.reader(itertools.chain(seen, source), dialect=dialect)
        self._reader = reader
        offset = self._first_line - 1  # physical lines before the first one read here

        header = self.header
        header_line = 1
        phone_index = 0
        attribute_columns: list[tuple[int, str]] = []
        if header is not None:
            phone_index = _check_header(header, offset)
            attribute_columns = [(i, name) for i, name in enumerate(header) if i != phone_index]
        count = 0
        while True:
            line = offset + reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                raise _csv_error(exc, line, offset + reader.line_num) from None
            if _is_blank(fields):
                continue
            if header is None:
                header = [name.strip() for name in fields]
                header_line = line
                phone_index = _check_header(header, line)
                attribute_columns = [(i, name) for i, name in enumerate(header)
                                     if i != phone_index]
                self.header = header
                continue
            if len(fields) != len(header):
                raise CsvAudienceError(
                    line,
                    f"expected {len(header)} fields ({_names(header)}), found {len(fields)}",
                )
            if self._max_rows is not None and count >= self._max_rows:
                raise CsvAudienceError(
                    line,
                    f"more than {self._max_rows} recipients: split the audience into several "
                    "files",
                )
            count += 1
            yield AudienceRow(
                to=fields[phone_index].strip(),
                attributes={name: fields[i].strip() for i, name in attribute_columns},
                line=line,
            )
        if header is None:
            raise CsvAudienceError(
                header_line,
                "the file is empty: the first line must be a header naming the columns, "
                "e.g. 'to,first_name'",
            )


def _check_header(header: list[str], line: int) -> int:
    """Validate the header names; return the index of the phone column."""
    seen: dict[str, int] = {}
    for index, name in enumerate(header):
        if not name:
            raise CsvAudienceError(
                line, f"column {index + 1} has no name: every column needs a header"
            )
        key = name.lower()
        if key in seen:
            raise CsvAudienceError(
                line,
                f"duplicate column name {_name(name)} (columns {seen[key] + 1} and {index + 1}; "
                "names are compared ignoring case)",
            )
        seen[key] = index
    phone = [index for index, name in enumerate(header) if name.lower() in PHONE_COLUMNS]
    if not phone:
        raise CsvAudienceError(
            line,
            f"no phone number column (found {_names(header)}): name one column "
            f"{', '.join(PHONE_COLUMNS[:-1])} or {PHONE_COLUMNS[-1]} "
            "(case and surrounding spaces are ignored)",
        )
    if len(phone) > 1:
        names = ", ".join(_name(header[index]) for index in phone)
        raise CsvAudienceError(
            line, f"more than one phone number column ({names}): keep one or rename the others"
        )
    return phone[0]
