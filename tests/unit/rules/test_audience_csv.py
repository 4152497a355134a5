"""Audience CSV uploads: what spreadsheets write, and errors that name the line to fix."""

from __future__ import annotations

import pickle
import tracemalloc
from collections.abc import Iterator

import pytest

from sms_core.rules.audience_csv import (
    PHONE_COLUMNS,
    AudienceCsvReader,
    AudienceRow,
    CsvAudienceError,
    iter_audience_csv,
    parse_audience_csv,
)


def _error(text: str, max_rows: int = 100_000) -> CsvAudienceError:
    with pytest.raises(CsvAudienceError) as caught:
        parse_audience_csv(text, max_rows=max_rows)
    error = caught.value
    assert str(error) == f"line {error.line}: {error.message}"
    return error


def test_simple_file() -> None:
    rows = parse_audience_csv(
        "to,first_name,city\n+31612345678,Ann,Delft\n+447400123456,Bo,Leeds\n"
    )
    assert rows == [
        AudienceRow(to="+31612345678", attributes={"first_name": "Ann", "city": "Delft"}, line=2),
        AudienceRow(to="+447400123456", attributes={"first_name": "Bo", "city": "Leeds"}, line=3),
    ]


def test_excel_utf8_bom_and_crlf() -> None:
    rows = parse_audience_csv("\ufeffPhone,Name\r\n+31612345678,Zoë\r\n")
    assert rows == [AudienceRow(to="+31612345678", attributes={"Name": "Zoë"}, line=2)]


def test_old_mac_line_endings() -> None:
    rows = parse_audience_csv("to,name\r+1,a\r+2,b\r")
    assert [(row.to, row.line) for row in rows] == [("+1", 2), ("+2", 3)]


def test_no_trailing_newline() -> None:
    assert parse_audience_csv("to,name\n+1,a") == [
        AudienceRow(to="+1", attributes={"name": "a"}, line=2)
    ]


def test_quoted_commas_quotes_and_newlines_keep_physical_line_numbers() -> None:
    text = (
        "to,name,note\n"  # line 1
        '+1,"Smith, Ann","two\n'  # line 2, row continues...
        'lines"\n'  # line 3
        '+2,"Say ""hi""",x\n'  # line 4
        '+3,"a\r\nb\r\nc",y\n'  # lines 5-7
        "+4,d,z\n"  # line 8
    )
    rows = parse_audience_csv(text)
    assert [(row.to, row.line) for row in rows] == [("+1", 2), ("+2", 4), ("+3", 5), ("+4", 8)]
    assert rows[0].attributes == {"name": "Smith, Ann", "note": "two\nlines"}
    assert rows[1].attributes["name"] == 'Say "hi"'
    assert rows[2].attributes["name"] == "a\r\nb\r\nc"


def test_blank_lines_and_cleared_excel_rows_are_skipped() -> None:
    text = "\n  \nto,name\n\n+1,a\n,\n , \n+2,b\n\n"
    rows = parse_audience_csv(text)
    assert [(row.to, row.line) for row in rows] == [("+1", 5), ("+2", 8)]
    semicolons = parse_audience_csv("to;name\n;\n+1;a\n")
    assert [(row.to, row.line) for row in semicolons] == [("+1", 3)]


def test_values_and_header_names_are_stripped_and_case_kept() -> None:
    rows = parse_audience_csv("  MOBILE , First Name ,City\n  +31 6 1234 5678 ,  Ann\u00a0, x\n")
    assert rows == [
        AudienceRow(to="+31 6 1234 5678", attributes={"First Name": "Ann", "City": "x"}, line=2)
    ]


def test_quoted_field_after_space_is_still_quoted() -> None:
    rows = parse_audience_csv('to, name\n+1, "Smith, Ann"\n')
    assert rows[0].attributes == {"name": "Smith, Ann"}


def test_semicolon_delimiter_when_header_has_semicolons_and_no_commas() -> None:
    text = 'telefoon;naam;to\n"x";Jansen, P.;+31612345678\n'
    rows = parse_audience_csv(text)
    assert rows == [
        AudienceRow(to="+31612345678", attributes={"telefoon": "x", "naam": "Jansen, P."}, line=2)
    ]


def test_comma_wins_when_header_has_both() -> None:
    rows = parse_audience_csv("to,name;alias\n+1,a;b\n")
    assert rows[0].attributes == {"name;alias": "a;b"}


@pytest.mark.parametrize("name", [*PHONE_COLUMNS, "TO", " Phone_Number ", "MSISDN", "Mobile"])
def test_every_accepted_phone_column_name(name: str) -> None:
    rows = parse_audience_csv(f"first,{name},last\nA,+31612345678,B\n")
    assert rows == [AudienceRow(to="+31612345678", attributes={"first": "A", "last": "B"}, line=2)]


def test_phone_value_is_not_validated_here() -> None:
    rows = parse_audience_csv("to,name\nnot a number,a\n,b\n")
    assert [row.to for row in rows] == ["not a number", ""]


def test_header_only_is_an_empty_audience() -> None:
    assert parse_audience_csv("to,name\n\n") == []


def test_phone_only_file_has_no_attributes() -> None:
    assert parse_audience_csv("to\n+1\n") == [AudienceRow(to="+1", attributes={}, line=2)]


@pytest.mark.parametrize("text", ["", "\n", "\r\n  \n\n", "\ufeff", ",,,\n"])
def test_empty_input(text: str) -> None:
    error = _error(text)
    assert error.line == 1
    assert "empty" in error.message


def test_no_phone_column_lists_the_accepted_names() -> None:
    error = _error("\nname,telephone\nAnn,+1\n")
    assert error.line == 2
    assert "found name, telephone" in error.message
    for accepted in PHONE_COLUMNS:
        assert accepted in error.message


def test_two_phone_columns_are_ambiguous() -> None:
    error = _error("name,phone,Mobile\n")
    assert error.line == 1
    assert "more than one phone number column ('phone', 'Mobile')" in error.message


def test_duplicate_column_names_ignore_case() -> None:
    error = _error("to,City,name, city \n")
    assert error.line == 1
    assert error.message.startswith("duplicate column name 'city' (columns 2 and 4")


@pytest.mark.parametrize(("text", "column"), [("to,,city\n", 2), ("to,name,\n", 3), (" ,to\n", 1)])
def test_empty_column_name(text: str, column: int) -> None:
    error = _error(text)
    assert error.line == 1
    assert error.message.startswith(f"column {column} has no name")


def test_too_many_fields() -> None:
    text = "to,name,city\n" + "+1,a,b\n" * 5 + "+1,a,b,c\n"
    error = _error(text)
    assert str(error) == "line 7: expected 3 fields (to, name, city), found 4"


def test_too_few_fields_after_a_multi_line_row() -> None:
    error = _error('to,name,city\n+1,"a\nb",c\n+2,x\n')
    assert str(error) == "line 4: expected 3 fields (to, name, city), found 2"


def test_wide_header_is_shortened_in_the_field_count_message() -> None:
    header = ",".join(["to"] + [f"c{i}" for i in range(20)])
    error = _error(header + "\n+1\n")
    assert error.message.startswith("expected 21 fields (to, c0, c1")
    assert error.message.endswith("c8, ...), found 1")


def test_unterminated_quote_names_the_row_where_it_starts() -> None:
    error = _error('to,name\n+1,a\n+2,"never closed\n+3,b\n+4,c\n')
    assert error.line == 3
    assert "never closed" in error.message


def test_text_after_closing_quote() -> None:
    error = _error('to,name\n+1,a\n+2,"Ann" Smith\n')
    assert error.line == 3
    assert "closing quote" in error.message


def test_quote_inside_unquoted_field_is_literal() -> None:
    assert parse_audience_csv('to,name\n+1,6" sub\n')[0].attributes == {"name": '6" sub'}


def test_max_rows() -> None:
    text = "to\n" + "".join(f"+{i}\n" for i in range(1, 6))
    assert len(parse_audience_csv(text, max_rows=5)) == 5
    error = _error(text + "\n+6\n", max_rows=5)
    assert error.line == 8
    assert "more than 5 recipients" in error.message


def test_blank_rows_do_not_count_towards_max_rows() -> None:
    assert len(parse_audience_csv("to\n+1\n\n,\n+2\n", max_rows=2)) == 2


def test_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(CsvAudienceError(7, "bad")))
    assert (error.line, error.message, str(error)) == (7, "bad", "line 7: bad")
    assert isinstance(error, ValueError)


def test_row_is_frozen() -> None:
    row = AudienceRow(to="+1", attributes={}, line=2)
    with pytest.raises(AttributeError):
        row.to = "+2"  # type: ignore[misc]


def test_large_file() -> None:
    text = "to,name,city\n" + "".join(f"+3161{i:07d},Name {i},City\n" for i in range(100_000))
    rows = parse_audience_csv(text)
    assert len(rows) == 100_000
    assert rows[-1] == AudienceRow(
        to="+31610099999", attributes={"name": "Name 99999", "city": "City"}, line=100_001
    )


def _lines(rows: int, bad_at: int | None = None) -> Iterator[str]:
    """A CSV made line by line, never whole in memory: a BOM, semicolons, a quoted newline."""
    yield "\ufeffphone;first_name;note\r\n"
    for i in range(rows):
        if i == bad_at:
            yield "+14255550100;too;many;fields\r\n"
        yield f'+1425{i % 10_000_000:07d};P{i};"two\r\n'
        yield 'lines"\r\n'


def test_a_stream_is_parsed_row_by_row_in_constant_memory() -> None:
    tracemalloc.start()
    try:
        count, last = 0, None
        for row in iter_audience_csv(_lines(200_000)):
            count, last = count + 1, row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert last is not None and last.line == 2 + 2 * 199_999  # rows start on even lines
    assert last.attributes == {"first_name": "P199999", "note": "two\r\nlines"}
    assert peak < 2_000_000  # 200,000 rows held whole would be over 100 MB


def test_a_stream_yields_the_rows_before_the_bad_line_then_names_it() -> None:
    rows = iter_audience_csv(_lines(10, bad_at=3))
    assert [next(rows).attributes["first_name"] for _ in range(3)] == ["P0", "P1", "P2"]
    with pytest.raises(CsvAudienceError) as exc:
        next(rows)
    assert exc.value.line == 8 and "expected 3 fields" in exc.value.message


def test_a_stream_without_a_header_is_an_error_naming_line_one() -> None:
    with pytest.raises(CsvAudienceError) as exc:
        list(iter_audience_csv(iter(["\r\n", "  \r\n"])))
    assert exc.value.line == 1 and "empty" in exc.value.message


def test_reading_stops_after_any_row_and_resumes_from_its_position() -> None:
    """An import that stopped goes on with the lines after its last row, same line numbers."""
    lines = list(_lines(6))
    whole = list(iter_audience_csv(iter(lines)))
    for stop_after in range(1, 6):
        reader = AudienceCsvReader(iter(lines))
        rows = reader.rows()
        head = [next(rows) for _ in range(stop_after)]
        at = reader.position()
        assert at.delimiter == ";" and at.header == ["phone", "first_name", "note"]
        rest = list(AudienceCsvReader(iter(lines[at.line - 1:]), resume=at).rows())
        assert head + rest == whole


def test_a_resumed_reading_names_the_lines_of_the_whole_file() -> None:
    lines = list(_lines(10, bad_at=7))
    reader = AudienceCsvReader(iter(lines))
    rows = reader.rows()
    for _ in range(4):
        next(rows)
    at = reader.position()
    resumed = AudienceCsvReader(iter(lines[at.line - 1:]), resume=at).rows()
    assert [r.line for r in (next(resumed), next(resumed), next(resumed))] == [10, 12, 14]
    with pytest.raises(CsvAudienceError) as exc:
        next(resumed)
    assert exc.value.line == 16
