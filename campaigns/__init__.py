"""POST /api/campaigns prepares (JSON, or text/csv + query fields): 201 with the preview and
confirmationToken, nothing sent. GET lists campaigns."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaigns import list_campaigns, prepare_campaign
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "GET":
        return handle(lambda: json_response(list_campaigns(get_services(), dict(req.params))))
    return handle(lambda: json_response(prepare_campaign(
        get_services(), req.get_body(), req.headers.get("Content-Type"), dict(req.params)),
        status=201))
