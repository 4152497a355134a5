"""POST|OPTIONS /api/inbound: Event Grid delivers inbound SMS here (both schemas, handshakes)."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.inbound import WebhookAnswer, abuse_protection_handshake, handle_webhook
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        answer: WebhookAnswer = (abuse_protection_handshake(dict(req.headers))
                                 if req.method.upper() == "OPTIONS"
                                 else handle_webhook(get_services(), req.get_body()))
        if answer.body is None:
            return func.HttpResponse(status_code=answer.status, headers=answer.headers)
        return json_response(answer.body, answer.status, answer.headers)

    return handle(run)
