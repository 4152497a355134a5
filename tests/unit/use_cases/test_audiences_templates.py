"""Saved audiences and templates (`sms_core.use_cases.audiences_templates`)."""

from __future__ import annotations

import pytest

from sms_core.errors import NotFound, RequestInvalid
from sms_core.models.campaigns import TemplateRequest
from sms_core.models.records import MemberRecord
from sms_core.use_cases.audiences_templates import (
    audiences_list,
    count_audience,
    create_audience,
    create_template,
    delete_audience,
    delete_template,
    get_audience,
    get_template,
    templates_list,
)
from sms_core.use_cases.campaigns import prepare_campaign
from sms_http.requests import audience_filter_query, audience_upload
from tests.unit.fakes import FakeDeps
from tests.unit.use_cases.steps import ALICE, BOB, CAROL, campaign


def test_an_audience_is_saved_with_its_members_in_order(deps: FakeDeps) -> None:
    upload = audience_upload(
        b'{"name": "VIP", "recipients": [{"to": "+14255550101", "vars": {"city": "Seattle"}},'
        b' {"to": "+14255550102", "vars": {"plan": "gold"}}]}', "application/json", {})
    saved = create_audience(deps.audiences, upload).public()
    assert (saved["name"], saved["size"], saved["columns"]) == ("VIP", 2, ["city", "plan"])
    assert [m.to for m in deps.audiences.members(saved["id"])] == [ALICE, BOB]
    assert get_audience(deps.audiences, saved["id"]).public() == saved
    assert audiences_list(deps.audiences).public() == {"audiences": [saved]}


def test_a_csv_audience_keeps_its_columns(deps: FakeDeps) -> None:
    upload = audience_upload(f"to,first_name\n{ALICE},Alice\n".encode(), "text/csv",
                             {"name": "From CSV"})
    saved = create_audience(deps.audiences, upload)
    assert saved.columns == ["first_name"]
    (member,) = deps.audiences.members(saved.id)
    assert member.attributes == {"first_name": "Alice"}


def test_an_audience_without_members_is_a_400_and_saves_nothing(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        create_audience(deps.audiences, audience_upload(
            b'{"name": "Empty", "recipients": []}', "application/json", {}))
    assert [e.field for e in exc.value.errors] == ["recipients"]
    assert audiences_list(deps.audiences).public() == {"audiences": []}


def test_a_deleted_audience_is_gone_and_campaigns_cannot_pick_it(deps: FakeDeps) -> None:
    saved = create_audience(deps.audiences, audience_upload(
        b'{"name": "Gone", "recipients": [{"to": "+14255550101"}]}', "application/json", {}))
    delete_audience(deps.audiences, saved.id)
    with pytest.raises(NotFound):
        get_audience(deps.audiences, saved.id)
    with pytest.raises(NotFound):
        delete_audience(deps.audiences, saved.id)
    with pytest.raises(RequestInvalid) as exc:
        prepare_campaign(deps, campaign(audience={"audienceId": saved.id}))
    assert [e.field for e in exc.value.errors] == ["audience.audienceId"]


def test_a_template_is_saved_with_its_variables(deps: FakeDeps) -> None:
    saved = create_template(deps.templates, TemplateRequest(
        name="Welcome", text="Hi {{ First_Name }}, your code is {{code}} ({{first_name}})")
    ).public()
    assert (saved["name"], saved["variables"]) == ("Welcome", ["First_Name", "code"])
    assert get_template(deps.templates, saved["id"]).public() == saved
    assert templates_list(deps.templates).public() == {"templates": [saved]}


def test_a_template_with_a_broken_placeholder_is_a_400_naming_text(deps: FakeDeps) -> None:
    with pytest.raises(RequestInvalid) as exc:
        create_template(deps.templates, TemplateRequest(name="Bad", text="Hi {{name"))
    assert [e.field for e in exc.value.errors] == ["text"]
    assert templates_list(deps.templates).public() == {"templates": []}


def test_deleting_a_template_keeps_campaigns_prepared_from_it(deps: FakeDeps) -> None:
    saved = create_template(deps.templates, TemplateRequest(name="T", text="Hi {{name}}"))
    prepared = prepare_campaign(deps, campaign(template=None, templateId=saved.id))
    delete_template(deps.templates, saved.id)
    with pytest.raises(NotFound):
        get_template(deps.templates, saved.id)
    assert deps.campaigns.get(prepared.id).template == "Hi {{name}}"


def _three_members(deps: FakeDeps) -> str:
    return deps.audiences.create("vip", [
        MemberRecord(ALICE, {"city": "Seattle", "plan": "pro"}),
        MemberRecord(BOB, {"city": "Portland", "plan": "free"}),
        MemberRecord(CAROL, {"city": "Seattle"})]).id


@pytest.mark.parametrize(("rule", "matching"), [
    (None, 3), ("city = 'Seattle'", 2), ("CITY = 'seattle' and plan is empty", 1),
    ("plan = 'gold'", 0)])
def test_an_audience_count_says_how_many_members_a_rule_matches(
        deps: FakeDeps, rule: str | None, matching: int) -> None:
    counted = count_audience(deps.audiences, _three_members(deps), rule).public()
    assert counted == {"members": 3, "matching": matching}


@pytest.mark.parametrize(("rule", "says"), [
    ("town = 'Seattle'", "unknown column 'town'; the audience's columns are: city, plan"),
    ("city = ", "column"), ("city = 'x' and", "column"), ("x" * 2001, "2000")])
def test_a_bad_count_rule_is_a_400_naming_filter(deps: FakeDeps, rule: str, says: str) -> None:
    audience_id = _three_members(deps)
    with pytest.raises(RequestInvalid) as exc:
        count_audience(deps.audiences, audience_id, rule)
    ((field, message),) = [(e.field, e.message) for e in exc.value.errors]
    assert field == "filter"
    assert says in message


def test_counting_an_unknown_audience_is_not_found(deps: FakeDeps) -> None:
    with pytest.raises(NotFound):
        count_audience(deps.audiences, "a20260101000000abcdef012345", "city = 'x'")


@pytest.mark.parametrize(("params", "rule"), [({}, None), ({"filter": ""}, None),
                                              ({"filter": "a = 'b'"}, "a = 'b'")])
def test_the_count_query_reads_an_empty_filter_as_none(params: dict[str, str],
                                                       rule: str | None) -> None:
    assert audience_filter_query(params) == rule
