"""GET /api/health: 200 when storage answers, 503 otherwise."""

from __future__ import annotations

import azure.functions as func

from sms_core.health import check_health
from sms_core.settings import get_settings
from sms_core.storage import StorageClients
from sms_http import handle, json_response

# Its own clients: health must answer even when storage was down at start-up.
_storage: StorageClients | None = None


def main(req: func.HttpRequest) -> func.HttpResponse:
    def run() -> func.HttpResponse:
        global _storage
        _storage = _storage or StorageClients(get_settings())
        return json_response(check_health(_storage))

    return handle(run)
