"""GET /api/audiences/{id} (the audience, without members); DELETE removes it (204)."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_http import handle, json_response


def main(req: func.HttpRequest) -> func.HttpResponse:
    audience_id = req.route_params.get("id", "")

    def run() -> func.HttpResponse:
        audiences = get_services().audiences
        if req.method == "DELETE":
            audiences.delete(audience_id)
            return func.HttpResponse(status_code=204)
        return json_response(audiences.get(audience_id).public())

    return handle(run)
