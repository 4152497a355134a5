"""POST|OPTIONS /api/inbound (Event Grid, both schemas and handshakes) and conversations."""

from __future__ import annotations

import azure.functions as func

from sms_core.bootstrap import get_services
from sms_core.use_cases import conversations as conversation_cases
from sms_core.use_cases.conversations import conversation_list, conversation_page
from sms_http import handle, json_response, new_blueprint
from sms_http.event_grid import WebhookAnswer, abuse_protection_handshake, inbound_post
from sms_http.requests import conversation_list_query, conversation_query

bp = new_blueprint()


@bp.route(route="inbound", methods=["POST", "OPTIONS"])
def inbound_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Event Grid delivers inbound SMS here; OPTIONS is the CloudEvents abuse protection."""

    def run() -> func.HttpResponse:
        answer: WebhookAnswer = (abuse_protection_handshake(dict(req.headers))
                                 if req.method.upper() == "OPTIONS"
                                 else inbound_post(get_services(), req.get_body()))
        if answer.body is None:
            return func.HttpResponse(status_code=answer.status, headers=answer.headers)
        return json_response(answer.body, answer.status, answer.headers)

    return handle(req, run)


@bp.route(route="conversations", methods=["GET"])
def conversation_index(req: func.HttpRequest) -> func.HttpResponse:
    """`?from=&limit=&continuationToken=`: the sender's conversations, newest first."""
    return handle(req, lambda: json_response(conversation_list(
        get_services(), conversation_list_query(req.params)).public()))


@bp.route(route="conversations/{number}", methods=["GET"])
def conversations(req: func.HttpRequest) -> func.HttpResponse:
    """Both directions of one conversation (`?from=<our number>`), in time order, paged."""
    return handle(req, lambda: json_response(conversation_page(
        get_services(), conversation_query(req.route_params["number"], req.params)).public()))


# On start-up too: a new deployment has nothing to copy, and until the backfill says so,
# conversation reads also query the earlier layout (one more request each).
@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
def backfill_conversations(timer: func.TimerRequest) -> None:
    """Every five minutes until done: copy conversation rows of the earlier layout (a partition
    per conversation) into their senders' partitions and lists, a few pages at a time."""
    conversation_cases.backfill_conversations(get_services())
