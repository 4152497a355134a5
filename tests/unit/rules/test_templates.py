"""Message templates: placeholder syntax, errors with columns, and rendering without blanks."""

from __future__ import annotations

import pickle
import time

import pytest

from sms_core.rules.templates import (
    MessageTemplate,
    MissingVariables,
    TemplateSyntaxError,
    parse_template,
)

# (template, variables)
VARIABLES: list[tuple[str, tuple[str, ...]]] = [
    ("", ()),
    ("No placeholders at all.", ()),
    ("Hi {{name}}", ("name",)),
    ("Hi {{ first_name }}!", ("first_name",)),
    ("Hi {{\tfirst_name\t}}!", ("first_name",)),
    ("{{a}}{{b}}{{a}}", ("a", "b")),
    ("{{_x1}} {{B2}}", ("_x1", "B2")),
    # One variable whatever the case; the first spelling is kept.
    ("{{Name}} and {{NAME}} and {{name}}", ("Name",)),
    ("{{ b }} then {{ a }}", ("b", "a")),
]


@pytest.mark.parametrize(("text", "expected"), VARIABLES)
def test_variables_are_distinct_names_in_first_use_order(
    text: str, expected: tuple[str, ...]
) -> None:
    template = parse_template(text)
    assert template.text == text
    assert template.variables == expected


# (template, values, rendered)
RENDERED: list[tuple[str, dict[str, str], str]] = [
    ("", {}, ""),
    ("Plain text", {"name": "unused"}, "Plain text"),
    ("Hi {{ first_name }}, see you", {"first_name": "Ann"}, "Hi Ann, see you"),
    ("{{a}}{{b}}{{a}}", {"a": "1", "b": "2"}, "121"),
    # Single braces and a stray '}}' are literal text, and stay literal after formatting.
    ("Code {x} and } and { and }} {0}", {}, "Code {x} and } and { and }} {0}"),
    ("{ {{name}} }", {"name": "Bo"}, "{ Bo }"),
    ("{{name}}}", {"name": "Bo"}, "Bo}"),
    # Values are inserted verbatim: no format specs, no recursion into braces.
    ("Hi {{name}}", {"name": "{0} {{x}} %s"}, "Hi {0} {{x}} %s"),
    ("Line1\n{{name}}\nLine3", {"name": "Ann"}, "Line1\nAnn\nLine3"),
    ("Hi {{name}} \U0001f600", {"name": "Zoë"}, "Hi Zoë \U0001f600"),
]


@pytest.mark.parametrize(("text", "values", "expected"), RENDERED)
def test_render(text: str, values: dict[str, str], expected: str) -> None:
    assert parse_template(text).render(values) == expected


def test_lookup_ignores_case_as_csv_headers_need() -> None:
    template = parse_template("Hi {{first_name}} from {{CITY}}")
    assert template.render({"First_Name": "Ann", "city": "Delft"}) == "Hi Ann from Delft"


def test_exact_case_wins_then_first_key_in_order() -> None:
    template = parse_template("{{name}}")
    assert template.render({"NAME": "upper", "name": "exact"}) == "exact"
    assert template.render({"NAME": "first", "Name": "second"}) == "first"


def test_non_ascii_keys_never_match_by_unicode_case_folding() -> None:
    # The Kelvin sign lower-cases to 'k'; it is not the variable k.
    with pytest.raises(MissingVariables):
        parse_template("{{k}}").render({"\u212a": "kelvin"})


def test_extra_values_are_ignored() -> None:
    assert parse_template("{{a}}").render({"a": "1", "b": "2", "to": "+31612345678"}) == "1"


@pytest.mark.parametrize("blank", ["", " ", "\t\n", "\u00a0"])
def test_empty_or_blank_value_counts_as_missing(blank: str) -> None:
    with pytest.raises(MissingVariables) as caught:
        parse_template("Hi {{name}}, order {{order}}").render({"name": blank, "order": "7"})
    assert caught.value.names == ("name",)


def test_all_missing_names_reported_at_once_in_first_use_order() -> None:
    template = parse_template("{{c}} {{a}} {{b}} {{a}} {{d}}")
    with pytest.raises(MissingVariables) as caught:
        template.render({"b": "ok", "d": ""})
    assert caught.value.names == ("c", "a", "d")
    assert str(caught.value) == "missing variable(s): c, a, d"
    assert isinstance(caught.value, ValueError)


def test_missing_names_use_the_template_spelling() -> None:
    with pytest.raises(MissingVariables) as caught:
        parse_template("Hi {{First_Name}}").render({})
    assert caught.value.names == ("First_Name",)
    assert str(caught.value) == "missing variable(s): First_Name"


# (template, column, words in the message)
SYNTAX_ERRORS: list[tuple[str, int, str]] = [
    ("Hi {{name", 4, "never closed"),
    ("Hi {{", 4, "never closed"),
    ("{{a}} and {{b", 11, "never closed"),
    ("Hi {{ name } and more", 4, "never closed"),
    ("{{ a {{ b }}", 1, "before the next '{{' (column 6)"),
    ("Hi {{}}", 4, "empty placeholder"),
    ("Hi {{   }}", 4, "empty placeholder"),
    ("Hi {{ 1st }}", 7, "invalid variable name '1st'"),
    ("Hi {{first name}}", 6, "invalid variable name 'first name'"),
    ("Hi {{ first-name }}", 7, "invalid variable name 'first-name'"),
    ("Hi {{ naïve }}", 7, "invalid variable name"),
    ("{{{name}}}", 3, "invalid variable name '{name'"),
    ("ok\n{{ x.y }}", 7, "invalid variable name 'x.y'"),
]


@pytest.mark.parametrize(("text", "column", "words"), SYNTAX_ERRORS)
def test_syntax_errors_point_at_the_column(text: str, column: int, words: str) -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template(text)
    error = caught.value
    assert error.column == column
    assert words in error.message
    assert str(error) == f"column {column}: {error.message}"
    assert isinstance(error, ValueError)


def test_long_bad_name_is_cut_in_the_message() -> None:
    with pytest.raises(TemplateSyntaxError) as caught:
        parse_template("{{ " + "x " * 100 + "}}")
    assert len(caught.value.message) < 120


def test_exceptions_survive_pickling() -> None:
    syntax = pickle.loads(pickle.dumps(TemplateSyntaxError("bad", 3)))
    assert (syntax.message, syntax.column, str(syntax)) == ("bad", 3, "column 3: bad")
    missing = pickle.loads(pickle.dumps(MissingVariables(("a", "b"))))
    assert (missing.names, str(missing)) == (("a", "b"), "missing variable(s): a, b")


def test_template_is_a_frozen_value() -> None:
    first = parse_template("Hi {{name}}")
    assert first == parse_template("Hi {{name}}")
    assert hash(first) == hash(parse_template("Hi {{name}}"))
    assert first != parse_template("Hi {{ name }}")  # different text
    with pytest.raises(AttributeError):
        first.text = "other"  # type: ignore[misc]


def test_direct_construction_must_agree_with_the_text() -> None:
    assert MessageTemplate("Hi {{name}}", ("name",)).render({"name": "Bo"}) == "Hi Bo"
    with pytest.raises(ValueError, match="do not match"):
        MessageTemplate("Hi {{name}}", ("other",))
    with pytest.raises(TemplateSyntaxError):
        MessageTemplate("Hi {{", ())


def test_render_is_fast_enough_for_a_large_campaign() -> None:
    template = parse_template(
        "Hi {{first_name}}, your order {{order}} ships to {{city}} on {{date}}. Reply STOP to "
        "opt out."
    )
    # CSV header spelling, so the case-insensitive path is the one measured.
    row = {"First_Name": "Ann", "Order": "A-1", "City": "Utrecht", "Date": "Mon", "extra": "x"}
    started = time.perf_counter()
    for _ in range(100_000):
        template.render(row)
    # About 0.15 s on a laptop; the bound only catches an accidental per-render parse.
    assert time.perf_counter() - started < 2.0
