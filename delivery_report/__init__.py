"""sms-delivery-reports: ACS delivery reports (Event Grid -> Storage queue) update statuses."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.delivery import handle_delivery_reports


def main(msg: func.QueueMessage) -> None:
    handle_delivery_reports(get_services(), msg.get_body())
