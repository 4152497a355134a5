"""GET /api/health: 200 when storage answers, 503 otherwise."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.health import check_health
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(check_health(get_services())))
