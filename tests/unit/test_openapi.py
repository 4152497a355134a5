"""openapi.yaml stays true: it documents exactly the HTTP routes the function app serves, and the
tools users point at it (a strict YAML loader, a spec validator, a client generator) accept it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from tests.app_functions import app_functions
from tests.openapi_tools import generate_client

ROOT = Path(__file__).resolve().parents[2]
SPEC_TEXT = (ROOT / "openapi.yaml").read_text(encoding="utf-8")


class UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that fails on a key repeated in one mapping, as ruamel.yaml does (and so
    openapi-python-client); `yaml.safe_load` keeps the last value silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def strict_spec() -> dict[str, Any]:
    """openapi.yaml loaded the strict way."""
    spec: dict[str, Any] = yaml.load(SPEC_TEXT, Loader=UniqueKeyLoader)
    return spec


def null_values(node: Any, path: str = "") -> list[str]:
    """Where a mapping holds a null: the mark of a flow mapping cut by an unquoted comma
    (`{description: a, b}` is `{description: "a", "b": null}`). The spec has no other nulls."""
    if isinstance(node, dict):
        found = [f"{path}/{k}" for k, v in node.items() if v is None]
        for k, v in node.items():
            found += null_values(v, f"{path}/{k}")
        return found
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in null_values(v, f"{path}/{i}")]
    return []


def test_routes_in_openapi_match_the_function_app() -> None:
    spec = yaml.safe_load(SPEC_TEXT)
    routes = set()
    for function in app_functions().values():
        for b in function["bindings"]:
            if b["type"] == "httpTrigger":
                for m in b.get("methods", []):
                    # Constraints and the catch-all mark are the host's, not OpenAPI's.
                    route = re.sub(r"\{\*?(\w+)(?::\w+)?\}", r"{\1}", b["route"])
                    routes.add(("/" + route, m.lower()))
    http_methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops if m in http_methods}
    assert routes == documented


def test_no_key_is_repeated() -> None:
    # Raises ConstructorError naming the key and its line.
    strict = strict_spec()
    assert strict == yaml.safe_load(SPEC_TEXT)


def test_no_flow_mapping_is_cut_by_a_comma() -> None:
    assert null_values(yaml.safe_load(SPEC_TEXT)) == []


def test_the_strict_loader_catches_what_it_is_for() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'example'"):
        yaml.load("a: {example: 1, example: 2}", Loader=UniqueKeyLoader)
    cut = yaml.load("a: {description: our number, or global}", Loader=UniqueKeyLoader)
    assert null_values(cut) == ["/a/or global"]


def test_openapi_spec_validator_accepts_it() -> None:
    validate(yaml.safe_load(SPEC_TEXT))


def test_openapi_python_client_builds_a_client_without_warnings(tmp_path: Path) -> None:
    out = tmp_path / "sms_client"
    run = generate_client(out)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "warning" not in (run.stdout + run.stderr).lower(), run.stdout + run.stderr
    operations = {p.stem for p in (out / "api" / "default").glob("*.py")} - {"__init__"}
    spec = yaml.safe_load(SPEC_TEXT)
    assert operations == {re.sub(r"(?<!^)(?=[A-Z])", "_", op["operationId"]).lower()
                          for ops in spec["paths"].values() for op in ops.values()}


# Bodies the server's request models accept (True) or refuse with a 400 (False): the spec's
# schema of the same name must say the same, so a client validating against it meets no surprise.
_SAME_VERDICT: list[tuple[str, dict[str, Any], bool]] = [
    ("SendRequest", {"to": "+14255550123", "message": "Hello"}, True),
    ("SendRequest", {"to": ["+14255550123", "+14255550124"], "message": "Hello",
                     "tag": "t" * 256, "deliveryReport": False}, True),
    ("SendRequest", {"to": [], "message": "Hello"}, False),
    ("SendRequest", {"to": ["+14255550123"] * 10_001, "message": "Hello"}, False),
    ("SendRequest", {"to": "+14255550123", "message": ""}, False),
    ("SendRequest", {"to": "+14255550123", "message": "x" * 2049}, False),
    ("SendRequest", {"to": "+14255550123", "message": "Hello", "tag": "t" * 257}, False),
    ("SendRequest", {"to": "+14255550123", "message": "Hello", "deliveryReport": "yes"}, False),
    ("SendRequest", {"to": "+14255550123", "message": "Hello", "sendAt": 1}, False),
    ("SendRequest", {"to": "+14255550123", "message": "Hello", "priority": 1}, False),
    ("SendRequest", {"message": "Hello"}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"csv": "to\n+14255550123"}},
     True),
    ("CampaignRequest", {"name": "c", "templateId": "t1", "audience": {"audienceId": "a1",
                         "filter": "city = 'Seattle'"}, "schedule": {"cron": "0 9 * * 1",
                         "timezone": "Europe/Amsterdam"},
                         "quietHours": {"start": "21:00", "end": "08:00"}}, True),
    ("CampaignRequest", {"name": "c", "template": "Hi", "templateId": "t1",
                         "audience": {"audienceId": "a1"}}, False),
    ("CampaignRequest", {"name": "c", "audience": {"audienceId": "a1"}}, False),
    ("CampaignRequest", {"name": "c", "template": "", "audience": {"audienceId": "a1"}}, False),
    ("CampaignRequest", {"name": "", "template": "Hi", "audience": {"audienceId": "a1"}}, False),
    ("CampaignRequest", {"name": "n" * 201, "template": "Hi", "audience": {"audienceId": "a1"}},
     False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {}}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi",
                         "audience": {"audienceId": "a1", "csv": "to\n+14255550123"}}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "schedule": {}}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "schedule": {"cron": "0 9 * * 1", "sendAt": "2030-01-31T09:00:00Z"}},
     False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "schedule": {"sendAt": "2030-01-31T09:00:00Z", "timezone": "UTC"}},
     False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "quietHours": {"start": "24:00", "end": "08:00"}}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "quietHours": {"start": "21:60", "end": "08:00"}}, False),
    ("CampaignRequest", {"name": "c", "template": "Hi", "audience": {"audienceId": "a1"},
                         "quietHours": {"start": "21:00"}}, False),
    ("AudienceRequest", {"name": "a", "recipients": [{"to": "+14255550123",
                                                     "vars": {"n": 1, "ok": True}}]}, True),
    ("AudienceRequest", {"name": "a", "csv": "to\n+14255550123"}, True),
    ("AudienceRequest", {"name": "a"}, False),
    ("AudienceRequest", {"name": "a", "csv": "to\n+14255550123",
                         "recipients": [{"to": "+14255550123"}]}, False),
    ("AudienceRequest", {"name": "a", "recipients": [{"to": "+14255550123",
                                                     "vars": {"n": [1]}}]}, False),
    ("TemplateRequest", {"name": "t", "text": "Hi {{name}}"}, True),
    ("TemplateRequest", {"name": "t", "text": ""}, False),
    ("TemplateRequest", {"name": "t", "text": "x" * 2049}, False),
    ("OptOutRequest", {"from": "+18005550100", "recipients": [{"to": "+14255550123"}]}, True),
    ("OptOutRequest", {"from": "+18005550100", "recipients": []}, False),
    ("OptOutRequest", {"from": "+18005550100", "recipients": [{"to": "+1"}] * 101}, False),
    ("SendConfirmation", {"confirmationToken": "abc"}, True),
    ("SendConfirmation", {"confirmationToken": ""}, False),
    ("SendConfirmation", {}, False),
]


def _server_model(name: str) -> type[Any]:
    from sms_core.models import campaigns, messages, optouts

    return {"SendRequest": messages.SendRequest, "CampaignRequest": campaigns.CampaignRequest,
            "AudienceRequest": campaigns.AudienceRequest,
            "TemplateRequest": campaigns.TemplateRequest,
            "OptOutRequest": optouts.OptOutRequest,
            "SendConfirmation": campaigns.SendConfirmation}[name]


@pytest.mark.parametrize(("schema", "body", "valid"), _SAME_VERDICT,
                         ids=[f"{s}-{i}" for i, (s, _, _) in enumerate(_SAME_VERDICT)])
def test_the_spec_accepts_and_refuses_bodies_as_the_server_does(
        schema: str, body: dict[str, Any], valid: bool) -> None:
    from sms_core.errors import RequestInvalid
    from sms_core.models.messages import parse_model

    try:
        parse_model(_server_model(schema), json.dumps(body))
        server_accepts = True
    except RequestInvalid:
        server_accepts = False
    spec = yaml.safe_load(SPEC_TEXT)
    validator = Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                                      "components": spec["components"]})
    spec_errors = [e.message for e in validator.iter_errors(body)]
    assert (server_accepts, not spec_errors) == (valid, valid), spec_errors
