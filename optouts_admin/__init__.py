"""POST /api/optouts/add|remove|check: ACS Opt-Out API shapes over our opt-out store."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.models import parse_model
from sms_core.optout_admin import OptOutRequest, change_optouts
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(change_optouts(
        get_services(), req.route_params.get("action", ""),
        parse_model(OptOutRequest, req.get_body()))))
