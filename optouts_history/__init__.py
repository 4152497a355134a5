"""GET /api/optouts/history?from=&to=: the audit trail of one sender/recipient pair."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.optout_admin import optout_history
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(optout_history(get_services(), req.params)))
