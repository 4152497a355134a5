"""POST /api/messages, GET /api/messages (search), GET /api/messages/{id}, POST /api/segments,
the `sms-outbound` dispatcher and the outbox sweeper."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.adapters.event_grid import queue_text
from sms_core.bootstrap import get_services
from sms_core.models.messages import DispatchJob, SegmentsRequest, SendRequest, parse_model
from sms_core.use_cases import outbox
from sms_core.use_cases.dispatch import dispatch
from sms_core.use_cases.messages import get_message, search_messages, segment_count
from sms_core.use_cases.sending import accept_send
from sms_http import handle, json_response, new_blueprint
from sms_http.requests import message_search_query

bp = new_blueprint()
log = logging.getLogger(__name__)


@bp.route(route="messages", methods=["POST"])
def send_sms(req: func.HttpRequest) -> func.HttpResponse:
    """Accept an SMS for one or many recipients (202, one entry each)."""

    def run() -> func.HttpResponse:
        request = parse_model(SendRequest, req.get_body())
        response = accept_send(get_services(), request, req.headers.get("Idempotency-Key"))
        return json_response(response.public(), status=202)

    return handle(req, run)


@bp.route(route="messages", methods=["GET"])
def find_messages(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=&to=&status=&tag=&since=&until=&limit=&continuationToken=`: newest first."""
    return handle(req, lambda: json_response(search_messages(
        get_services(), message_search_query(req.params)).public()))


@bp.route(route="messages/{id}", methods=["GET"])
def message_status(req: func.HttpRequest) -> func.HttpResponse:
    """The message, its status and its full history."""
    return handle(req, lambda: json_response(
        get_message(get_services().messages, req.route_params["id"]).public()))


@bp.route(route="segments", methods=["POST"])
def segments(req: func.HttpRequest) -> func.HttpResponse:
    """`{"message"}`: its characters, segments, encoding and the characters forcing UCS-2."""
    return handle(req, lambda: json_response(segment_count(
        parse_model(SegmentsRequest, req.get_body()).message).public()))


@bp.queue_trigger(arg_name="msg", queue_name="sms-outbound", connection="AzureWebJobsStorage")
def dispatch_sms(msg: func.QueueMessage) -> None:
    """Send one job's messages through ACS (paced, opt-outs re-checked)."""
    job = DispatchJob.model_validate_json(queue_text(msg.get_body()))
    result = dispatch(get_services(), job, attempt=msg.dequeue_count or 1)
    log.debug("dispatched %s: %s", job.batch, result)


@bp.timer_trigger(arg_name="timer", schedule="30 * * * * *")
def sweep_outbox(timer: func.TimerRequest) -> None:
    """Every minute: accepted messages whose job was never written go on `sms-outbound`."""
    handed = outbox.sweep_outbox(get_services())
    if handed:
        log.warning("outbox sweep handed over %d stranded messages", handed)
