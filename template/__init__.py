"""GET /api/templates/{id}; DELETE removes it (204; campaigns keep the text they were given)."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    template_id = req.route_params.get("id", "")

    def run() -> func.HttpResponse:
        templates = get_services().templates
        if req.method == "DELETE":
            templates.delete(template_id)
            return func.HttpResponse(status_code=204)
        return json_response(templates.get(template_id).public())

    return handle(run)
