"""`/api/audiences` and `/api/templates`: saving the parts a campaign picks by id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sms_core.bootstrap import Services
from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.campaigns import MAX_NAME_CHARS, AudienceRequest, TemplateRequest
from sms_core.models.messages import parse_model
from sms_core.models.records import Member
from sms_core.use_cases.campaigns import compile_template, csv_text, is_csv, parse_csv_audience


def create_audience(services: Services, body: bytes, content_type: str | None,
                    params: Mapping[str, str]) -> dict[str, Any]:
    """Save an audience from JSON (`recipients` or `csv`) or a `text/csv` upload (`?name=`)."""
    if is_csv(content_type):
        name = (params.get("name") or "").strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise RequestInvalid("A CSV upload names its audience with ?name=.",
                                 [FieldError("name", "required query parameter (1-200 chars)")])
        members = [Member(r.to, r.attributes) for r in parse_csv_audience(csv_text(body))]
    else:
        request: AudienceRequest = parse_model(AudienceRequest, body)
        name = request.name
        if request.csv is not None:
            members = [Member(r.to, r.attributes) for r in parse_csv_audience(request.csv,
                                                                              "csv")]
        else:
            members = [Member(r.to, r.attributes()) for r in request.recipients or []]
    if not members:
        raise RequestInvalid("The audience has no members.",
                             [FieldError("recipients", "at least one member is required")])
    return services.audiences.create(name, members).public()


def audiences_list(services: Services) -> dict[str, Any]:
    """Every saved audience."""
    return {"audiences": [a.public() for a in services.audiences.all()]}


def create_template(services: Services, body: bytes) -> dict[str, Any]:
    """Save a template after checking its placeholders."""
    request: TemplateRequest = parse_model(TemplateRequest, body)
    template = compile_template(request.text, "text")
    return services.templates.create(request.name, request.text, template.variables).public()


def templates_list(services: Services) -> dict[str, Any]:
    """Every saved template."""
    return {"templates": [t.public() for t in services.templates.all()]}
