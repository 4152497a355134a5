"""GET /api/campaigns/{id}: status, preview, runs and live counts."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaigns import get_campaign
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(get_campaign(get_services(),
                                                     req.route_params.get("id", ""))))
