"""GET /api/optouts/export?from=: the current opt-out list of a sender as CSV."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.optout_admin import optout_export_csv
from sms_http import handle


def main(req: func.HttpRequest) -> func.HttpResponse:
    return handle(lambda: func.HttpResponse(
        optout_export_csv(get_services(), req.params), mimetype="text/csv", charset="utf-8",
        headers={"Content-Disposition": 'attachment; filename="optouts.csv"'}))
