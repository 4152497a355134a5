"""Health, opt-out administration, analytics and the app webhook."""

from __future__ import annotations

import azure.functions as func

from sms_core.adapters.event_grid import queue_text
from sms_core.adapters.storage import StorageClients
from sms_core.bootstrap import get_services
from sms_core.models.messages import parse_model
from sms_core.settings import get_settings
from sms_core.use_cases.announcements import analytics_report
from sms_core.use_cases.health import check_health
from sms_core.use_cases.optouts import (
    OptOutRequest,
    change_optouts,
    optout_export_csv,
    optout_history,
)
from sms_core.use_cases.webhook_delivery import deliver_webhook
from sms_http import handle, json_response, new_blueprint

bp = new_blueprint()

# Its own clients: health must answer even when storage was down at start-up.
_health_storage: StorageClients | None = None


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when storage answers, 503 otherwise."""

    def run() -> func.HttpResponse:
        global _health_storage
        _health_storage = _health_storage or StorageClients(get_settings())
        return json_response(check_health(_health_storage))

    return handle(run)


@bp.route(route="optouts/{action:alpha}", methods=["POST"])
def optouts_admin(req: func.HttpRequest) -> func.HttpResponse:
    """`add`, `remove`, `check`: ACS Opt-Out API shapes over our opt-out store."""
    return handle(lambda: json_response(change_optouts(
        get_services(), req.route_params.get("action", ""),
        parse_model(OptOutRequest, req.get_body()))))


@bp.route(route="optouts/history", methods=["GET"])
def optouts_history(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=&to=`: the audit trail of one sender/recipient pair."""
    return handle(lambda: json_response(optout_history(get_services(), req.params)))


@bp.route(route="optouts/export", methods=["GET"])
def optouts_export(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=`: the current opt-out list of a sender as CSV."""
    return handle(lambda: func.HttpResponse(
        optout_export_csv(get_services(), req.params), mimetype="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="optouts.csv"'}))


@bp.route(route="analytics", methods=["GET"])
def analytics(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=YYYY-MM-DD&to=YYYY-MM-DD[&tag=][&sender=]`: figures per day."""
    return handle(lambda: json_response(analytics_report(get_services(), req.params)))


@bp.queue_trigger(arg_name="msg", queue_name="sms-webhook-out", connection="AzureWebJobsStorage")
def app_webhook(msg: func.QueueMessage) -> None:
    """POST app events to SMS_APP_WEBHOOK_URL, signed, retried with backoff."""
    services = get_services()
    deliver_webhook(services.settings, services.webhook_outbox, services.webhook_poster,
                    queue_text(msg.get_body()))
