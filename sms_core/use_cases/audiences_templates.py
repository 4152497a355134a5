"""`/api/audiences` and `/api/templates`: the saved parts a campaign picks by id."""

from __future__ import annotations

from sms_core.errors import FieldError, RequestInvalid
from sms_core.models.campaign_views import (
    AudienceCountPublic,
    AudienceListPublic,
    AudiencePublic,
    TemplateListPublic,
    TemplatePublic,
)
from sms_core.models.campaigns import TemplateRequest
from sms_core.models.queries import AudienceUpload
from sms_core.use_cases.campaigns import checked_rule, compile_template, ready_audience
from sms_core.use_cases.ports import Audiences, Templates


def create_audience(audiences: Audiences, upload: AudienceUpload) -> AudiencePublic:
    """Save an audience (its members in the order given)."""
    if not upload.members:
        raise RequestInvalid("The audience has no members.",
                             [FieldError("recipients", "at least one member is required")])
    return AudiencePublic.of(audiences.create(upload.name, upload.members))


def audiences_list(audiences: Audiences) -> AudienceListPublic:
    """Every saved audience."""
    return AudienceListPublic(audiences=[AudiencePublic.of(a) for a in audiences.all()])


def get_audience(audiences: Audiences, audience_id: str) -> AudiencePublic:
    """One audience, without its members (NotFound when there is none)."""
    return AudiencePublic.of(audiences.get(audience_id))


def count_audience(audiences: Audiences, audience_id: str,
                   rule: str | None) -> AudienceCountPublic:
    """How many members a saved audience has and how many of them `rule` matches (all without
    one); NotFound for an unknown audience, a 400 naming `filter` for a bad or unknown-column
    rule, checked exactly as a campaign's `audience.filter` is."""
    info = ready_audience(audiences.get(audience_id))
    if rule is None:
        return AudienceCountPublic(members=info.size, matching=info.size)
    matcher = checked_rule(rule, info.columns if info.size else None, "filter")
    # The members go by one at a time: an audience of any size counts in constant memory.
    return AudienceCountPublic(members=info.size, matching=sum(
        1 for m in audiences.each_member(audience_id) if matcher.matches(m.attributes)))


def delete_audience(audiences: Audiences, audience_id: str) -> None:
    """Remove a saved audience; campaigns prepared from it keep their own snapshot."""
    audiences.delete(audience_id)


def create_template(templates: Templates, request: TemplateRequest) -> TemplatePublic:
    """Save a template after checking its placeholders."""
    template = compile_template(request.text, "text")
    return TemplatePublic.of(templates.create(request.name, request.text, template.variables))


def templates_list(templates: Templates) -> TemplateListPublic:
    """Every saved template."""
    return TemplateListPublic(templates=[TemplatePublic.of(t) for t in templates.all()])


def get_template(templates: Templates, template_id: str) -> TemplatePublic:
    """One template (NotFound when there is none)."""
    return TemplatePublic.of(templates.get(template_id))


def delete_template(templates: Templates, template_id: str) -> None:
    """Remove a saved template; campaigns keep the text they were given."""
    templates.delete(template_id)
