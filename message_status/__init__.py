"""GET /api/messages/{id}: the message, its status and its full history."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(
        get_services().messages.get(req.route_params["id"]).public()))
