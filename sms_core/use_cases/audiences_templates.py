"""`/api/audiences` and `/api/templates`: the saved parts a campaign picks by id."""

from __future__ import annotations

from typing import Any

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.campaigns import TemplateRequest
from sms_core.models.queries import AudienceUpload
from sms_core.use_cases.campaigns import compile_template
from sms_core.use_cases.ports import Audiences, Templates


def create_audience(audiences: Audiences, upload: AudienceUpload) -> dict[str, Any]:
    """Save an audience (its members in the order given)."""
    if not upload.members:
        raise RequestInvalid("The audience has no members.",
                             [FieldError("recipients", "at least one member is required")])
    return audiences.create(upload.name, upload.members).public()


def audiences_list(audiences: Audiences) -> dict[str, Any]:
    """Every saved audience."""
    return {"audiences": [a.public() for a in audiences.all()]}


def get_audience(audiences: Audiences, audience_id: str) -> dict[str, Any]:
    """One audience, without its members (NotFound when there is none)."""
    return audiences.get(audience_id).public()


def delete_audience(audiences: Audiences, audience_id: str) -> None:
    """Remove a saved audience; campaigns prepared from it keep their own snapshot."""
    audiences.delete(audience_id)


def create_template(templates: Templates, request: TemplateRequest) -> dict[str, Any]:
    """Save a template after checking its placeholders."""
    template = compile_template(request.text, "text")
    return templates.create(request.name, request.text, template.variables).public()


def templates_list(templates: Templates) -> dict[str, Any]:
    """Every saved template."""
    return {"templates": [t.public() for t in templates.all()]}


def get_template(templates: Templates, template_id: str) -> dict[str, Any]:
    """One template (NotFound when there is none)."""
    return templates.get(template_id).public()


def delete_template(templates: Templates, template_id: str) -> None:
    """Remove a saved template; campaigns keep the text they were given."""
    templates.delete(template_id)
