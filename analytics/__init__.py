"""GET /api/analytics?from=YYYY-MM-DD&to=YYYY-MM-DD[&tag=][&sender=]: figures per day."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.usage import analytics_report
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: json_response(analytics_report(get_services(), req.params)))
