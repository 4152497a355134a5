"""Campaigns (prepare, confirm, cancel, follow, fan out, schedule) and their saved parts."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.adapters.event_grid import queue_text
from sms_core.bootstrap import get_services
from sms_core.models.campaigns import FanoutJob
from sms_core.use_cases.audiences_templates import (
    audiences_list,
    create_audience,
    create_template,
    templates_list,
)
from sms_core.use_cases.campaign_runs import handle_fanout_job, run_due
from sms_core.use_cases.campaigns import (
    campaign_action,
    get_campaign,
    list_campaigns,
    prepare_campaign,
)
from sms_http import handle, json_response, new_blueprint

bp = new_blueprint()
log = logging.getLogger(__name__)


@bp.route(route="campaigns", methods=["GET", "POST"])
def campaigns(req: func.HttpRequest) -> func.HttpResponse:
    """POST prepares (JSON, or text/csv + query fields): 201 with the preview and the
    confirmationToken, nothing sent. GET lists campaigns."""
    if req.method == "GET":
        return handle(lambda: json_response(list_campaigns(get_services(), dict(req.params))))
    return handle(lambda: json_response(prepare_campaign(
        get_services(), req.get_body(), req.headers.get("Content-Type"), dict(req.params)),
        status=201))


@bp.route(route="campaigns/{id}", methods=["GET"])
def campaign(req: func.HttpRequest) -> func.HttpResponse:
    """Status, preview, runs and live counts of one campaign."""
    return handle(lambda: json_response(get_campaign(get_services(),
                                                     req.route_params.get("id", ""))))


@bp.route(route="campaigns/{id}/{action:alpha}", methods=["POST"])
def campaign_actions(req: func.HttpRequest) -> func.HttpResponse:
    """`send` (202, with the confirmationToken) and `cancel` (200)."""
    action = req.route_params.get("action", "")
    return handle(lambda: json_response(campaign_action(
        get_services(), req.route_params.get("id", ""), action, req.get_body()),
        status=202 if action == "send" else 200))


@bp.queue_trigger(arg_name="msg", queue_name="sms-campaigns", connection="AzureWebJobsStorage")
def campaign_fanout(msg: func.QueueMessage) -> None:
    """Fire a due campaign run, or fan out one chunk of a run's recipients."""
    handle_fanout_job(get_services(), FanoutJob.model_validate_json(queue_text(msg.get_body())))


@bp.timer_trigger(arg_name="timer", schedule="0 * * * * *")
def campaign_scheduler(timer: func.TimerRequest) -> None:
    """Every minute: fire campaign runs that are due (sendAt, cron), settle finished ones."""
    log.info("campaign scheduler: %d run(s) fired", run_due(get_services()))


@bp.route(route="audiences", methods=["GET", "POST"])
def audiences(req: func.HttpRequest) -> func.HttpResponse:
    """POST saves an audience (JSON, or text/csv with ?name=); GET lists them."""
    if req.method == "GET":
        return handle(lambda: json_response(audiences_list(get_services())))
    return handle(lambda: json_response(create_audience(
        get_services(), req.get_body(), req.headers.get("Content-Type"), dict(req.params)),
        status=201))


@bp.route(route="audiences/{id}", methods=["GET", "DELETE"])
def audience(req: func.HttpRequest) -> func.HttpResponse:
    """GET the audience (without its members); DELETE removes it (204)."""
    audience_id = req.route_params.get("id", "")

    def run() -> func.HttpResponse:
        store = get_services().audiences
        if req.method == "DELETE":
            store.delete(audience_id)
            return func.HttpResponse(status_code=204)
        return json_response(store.get(audience_id).public())

    return handle(run)


@bp.route(route="templates", methods=["GET", "POST"])
def templates(req: func.HttpRequest) -> func.HttpResponse:
    """POST saves a template ({{var}} placeholders checked); GET lists them."""
    if req.method == "GET":
        return handle(lambda: json_response(templates_list(get_services())))
    return handle(lambda: json_response(create_template(get_services(), req.get_body()),
                                        status=201))


@bp.route(route="templates/{id}", methods=["GET", "DELETE"])
def template(req: func.HttpRequest) -> func.HttpResponse:
    """GET the template; DELETE removes it (204; campaigns keep the text they were given)."""
    template_id = req.route_params.get("id", "")

    def run() -> func.HttpResponse:
        store = get_services().templates
        if req.method == "DELETE":
            store.delete(template_id)
            return func.HttpResponse(status_code=204)
        return json_response(store.get(template_id).public())

    return handle(run)
