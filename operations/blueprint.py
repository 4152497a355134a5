"""Health, opt-out administration, analytics and the app webhook."""

from __future__ import annotations

import azure.functions as func

from sms_core.adapters.event_grid import queue_text
from sms_core.bootstrap import get_health_probe, get_services
from sms_core.models.messages import parse_model
from sms_core.models.optouts import OptOutRequest
from sms_core.use_cases.analytics import analytics_report
from sms_core.use_cases.health import check_health
from sms_core.use_cases.optouts import change_optouts, optout_export_csv, optout_history
from sms_core.use_cases.webhook_delivery import deliver_webhook
from sms_http import handle, json_response, new_blueprint
from sms_http.requests import analytics_query, optout_pair_query, sender_query

bp = new_blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when storage answers, 503 otherwise."""
    return handle(req, lambda: json_response(check_health(get_health_probe())))


@bp.route(route="optouts/{action:alpha}", methods=["POST"])
def optouts_admin(req: func.HttpRequest) -> func.HttpResponse:
    """`add`, `remove`, `check`: ACS Opt-Out API shapes over our opt-out store."""
    return handle(req, lambda: json_response(change_optouts(
        get_services(), req.route_params.get("action", ""),
        parse_model(OptOutRequest, req.get_body())).public()))


@bp.route(route="optouts/history", methods=["GET"])
def optouts_history(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=&to=`: the audit trail of one sender/recipient pair."""

    def run() -> func.HttpResponse:
        pair = optout_pair_query(req.params)
        return json_response(optout_history(get_services().optouts, pair.sender,
                                            pair.recipient).public())

    return handle(req, run)


@bp.route(route="optouts/export", methods=["GET"])
def optouts_export(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=`: the current opt-out list of a sender as CSV."""
    return handle(req, lambda: func.HttpResponse(
        optout_export_csv(get_services().optouts, sender_query(req.params)),
        mimetype="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="optouts.csv"'}))


@bp.route(route="analytics", methods=["GET"])
def analytics(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD[&tag=][&sender=]`: figures per day."""

    def run() -> func.HttpResponse:
        report = analytics_report(get_services().analytics, analytics_query(req.params))
        return json_response(report.public())

    return handle(req, run)


@bp.queue_trigger(arg_name="msg", queue_name="sms-webhook-out", connection="AzureWebJobsStorage")
def app_webhook(msg: func.QueueMessage) -> None:
    """POST app events to SMS_APP_WEBHOOK_URL, signed, retried with backoff."""
    services = get_services()
    deliver_webhook(services.settings, services.webhook_outbox, services.webhook_poster,
                    queue_text(msg.get_body()))
