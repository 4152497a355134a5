"""POST /api/messages: accept an SMS for one or many recipients (202, one entry each)."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.models import SendRequest, parse_model
from sms_core.sending import accept_send
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        request = parse_model(SendRequest, req.get_body())
        response = accept_send(get_services(), request, req.headers.get("Idempotency-Key"))
        return json_response(response.public(), status=202)

    return handle(run)
