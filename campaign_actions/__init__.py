"""POST /api/campaigns/{id}/send (202, with the confirmationToken) and /cancel (200)."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaigns import campaign_action
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    action = req.route_params.get("action", "")
    return handle(lambda: json_response(campaign_action(
        get_services(), req.route_params.get("id", ""), action, req.get_body()),
        status=202 if action == "send" else 200))
