"""Campaigns (prepare, confirm, cancel, follow, fan out, schedule) and their saved parts."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.adapters.event_grid import queue_text
from sms_core.bootstrap import get_services
from sms_core.errors import NotFound
from sms_core.models.campaigns import FanoutJob
from sms_core.use_cases import audiences_templates as saved
from sms_core.use_cases.audience_import import new_upload, put_upload_part, start_import
from sms_core.use_cases.campaign_jobs import campaign_tick, handle_campaign_job
from sms_core.use_cases.campaigns import (
    cancel_campaign,
    confirm_send,
    get_campaign,
    list_campaigns,
    prepare_campaign,
    review_campaign,
)
from sms_http import handle, json_response, new_blueprint
from sms_http.requests import (
    audience_filter_query,
    audience_upload,
    campaign_request,
    page_query,
    send_confirmation,
    template_request,
)

bp = new_blueprint()
log = logging.getLogger(__name__)


@bp.route(route="campaigns", methods=["GET", "POST"])
def campaigns(req: func.HttpRequest) -> func.HttpResponse:
    """POST prepares (JSON, or text/csv + query fields): 201 with the preview and the
    confirmationToken, nothing sent; 202 `preparing` for a large saved audience, prepared in
    the background. GET lists campaigns."""
    if req.method == "GET":
        return handle(req, lambda: json_response(list_campaigns(
            get_services().campaigns, page_query(req.params)).public()))

    def run() -> func.HttpResponse:
        prepared = prepare_campaign(get_services(), campaign_request(
            req.get_body(), req.headers.get("Content-Type"), req.params))
        return json_response(prepared.public(),
                             status=202 if prepared.status == "preparing" else 201)

    return handle(req, run)


@bp.route(route="campaigns/{id}", methods=["GET"])
def campaign(req: func.HttpRequest) -> func.HttpResponse:
    """Status, preview, runs and live counts of one campaign."""
    return handle(req, lambda: json_response(
        get_campaign(get_services(), req.route_params["id"]).public()))


@bp.route(route="campaigns/{id}/review", methods=["POST"])
def campaign_review(req: func.HttpRequest) -> func.HttpResponse:
    """A prepared campaign's preview again with a new confirmationToken (the old one lapses)."""
    return handle(req, lambda: json_response(
        review_campaign(get_services(), req.route_params["id"]).public()))


@bp.route(route="campaigns/{id}/{action:alpha}", methods=["POST"])
def campaign_actions(req: func.HttpRequest) -> func.HttpResponse:
    """`send` (202, with the confirmationToken) and `cancel` (200)."""
    campaign_id, action = req.route_params["id"], req.route_params["action"]

    def run() -> func.HttpResponse:
        if action == "send":
            return json_response(confirm_send(get_services(), campaign_id,
                                              send_confirmation(req.get_body())).public(),
                                 status=202)
        if action == "cancel":
            return json_response(cancel_campaign(get_services(), campaign_id).public())
        raise NotFound(f"No campaign action '{action}': use send or cancel.")

    return handle(req, run)


@bp.queue_trigger(arg_name="msg", queue_name="sms-campaigns", connection="AzureWebJobsStorage")
def campaign_fanout(msg: func.QueueMessage) -> None:
    """Fire a due campaign run, fan out one chunk of a run's recipients, import (a slice
    of) an uploaded audience file, or prepare a part of a large campaign."""
    handle_campaign_job(get_services(),
                        FanoutJob.model_validate_json(queue_text(msg.get_body())))


@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *")
def campaign_scheduler(timer: func.TimerRequest) -> None:
    """Every minute: fire campaign runs that are due (sendAt, cron), settle finished ones,
    resume preparations that lost a job."""
    fired = campaign_tick(get_services())
    # Every minute: only a tick that fired something is worth a line at INFO.
    log.log(logging.INFO if fired else logging.DEBUG, "campaign scheduler: %d run(s) fired", fired)


@bp.route(route="audiences", methods=["GET", "POST"])
def audiences(req: func.HttpRequest) -> func.HttpResponse:
    """POST saves an audience (JSON, or text/csv with ?name=): 201; from an upload, 202 while
    it imports. GET lists them."""
    if req.method == "GET":
        return handle(req, lambda: json_response(
            saved.audiences_list(get_services().audiences).public()))

    def run() -> func.HttpResponse:
        upload = audience_upload(req.get_body(), req.headers.get("Content-Type"), req.params)
        if upload.upload_id is not None:
            return json_response(start_import(get_services(), upload.name, upload.upload_id,
                                              upload.parts).public(), status=202)
        return json_response(saved.create_audience(get_services().audiences, upload).public(),
                             status=201)

    return handle(req, run)


@bp.route(route="audiences/uploads", methods=["POST"])
def audience_uploads(req: func.HttpRequest) -> func.HttpResponse:
    """A new upload for a large audience file, sent in parts of at most 4 MiB."""
    return handle(req, lambda: json_response(new_upload(get_services()).public(), status=201))


@bp.route(route="audiences/uploads/{id}/parts/{n}", methods=["PUT"])
def audience_upload_part(req: func.HttpRequest) -> func.HttpResponse:
    """Part n (from 0) of an upload's file; sending a part again replaces it."""
    return handle(req, lambda: json_response(put_upload_part(
        get_services(), req.route_params["id"], req.route_params["n"],
        req.get_body()).public()))


@bp.route(route="audiences/{id}", methods=["GET", "DELETE"])
def audience(req: func.HttpRequest) -> func.HttpResponse:
    """GET the audience (without its members); DELETE removes it (204)."""
    audience_id = req.route_params["id"]

    def run() -> func.HttpResponse:
        if req.method == "DELETE":
            saved.delete_audience(get_services().audiences, audience_id)
            return func.HttpResponse(status_code=204)
        return json_response(saved.get_audience(get_services().audiences, audience_id).public())

    return handle(req, run)


@bp.route(route="audiences/{id}/count", methods=["GET"])
def audience_count(req: func.HttpRequest) -> func.HttpResponse:
    """`?filter=<rule>`: the audience's members and how many the rule matches."""
    return handle(req, lambda: json_response(saved.count_audience(
        get_services().audiences, req.route_params["id"],
        audience_filter_query(req.params)).public()))


@bp.route(route="templates", methods=["GET", "POST"])
def templates(req: func.HttpRequest) -> func.HttpResponse:
    """POST saves a template ({{var}} placeholders checked); GET lists them."""
    if req.method == "GET":
        return handle(req, lambda: json_response(
            saved.templates_list(get_services().templates).public()))
    return handle(req, lambda: json_response(saved.create_template(
        get_services().templates, template_request(req.get_body())).public(), status=201))


@bp.route(route="templates/{id}", methods=["GET", "DELETE"])
def template(req: func.HttpRequest) -> func.HttpResponse:
    """GET the template; DELETE removes it (204; campaigns keep the text they were given)."""
    template_id = req.route_params["id"]

    def run() -> func.HttpResponse:
        if req.method == "DELETE":
            saved.delete_template(get_services().templates, template_id)
            return func.HttpResponse(status_code=204)
        return json_response(saved.get_template(get_services().templates, template_id).public())

    return handle(req, run)
