"""POST /api/campaigns prepares a campaign (201, preview + confirmationToken); GET lists them."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaigns import list_campaigns, prepare_campaign
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    if req.method == "GET":
        return handle(lambda: json_response(list_campaigns(get_services(), dict(req.params))))
    return handle(lambda: json_response(prepare_campaign(get_services(), req.get_body()),
                                        status=201))
