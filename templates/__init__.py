"""POST /api/templates saves a template ({{var}} placeholders checked); GET lists them."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaign_library import create_template, templates_list
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "GET":
        return handle(lambda: json_response(templates_list(get_services())))
    return handle(lambda: json_response(create_template(get_services(), req.get_body()),
                                        status=201))
