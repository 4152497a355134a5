"""GET /api/conversations/{number}?from=<our number>: both directions, time order, paged."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.conversations import conversation_page
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(conversation_page(
        get_services(), req.route_params.get("number", ""), req.params)))
