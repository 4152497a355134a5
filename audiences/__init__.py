"""POST /api/audiences saves an audience (JSON or text/csv with ?name=); GET lists them."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaign_library import audiences_list, create_audience
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "GET":
        return handle(lambda: json_response(audiences_list(get_services())))
    return handle(lambda: json_response(create_audience(
        get_services(), req.get_body(), req.headers.get("Content-Type"), dict(req.params)),
        status=201))
