"""The `sms-delivery-reports` trigger and the timers that expire and reconcile messages."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.adapters.event_grid import delivery_reports
from sms_core.bootstrap import get_services
from sms_core.use_cases import delivery_reports as delivery
from sms_http import new_blueprint

bp = new_blueprint()
log = logging.getLogger(__name__)


@bp.queue_trigger(arg_name="msg", queue_name="sms-delivery-reports",
                  connection="AzureWebJobsStorage")
def delivery_report(msg: func.QueueMessage) -> None:
    """ACS delivery reports (Event Grid -> Storage queue) update the messages' statuses."""
    delivery.apply_delivery_reports(get_services(), delivery_reports(msg.get_body()))


@bp.timer_trigger(arg_name="timer", schedule="0 5 * * * *")
def expire_messages(timer: func.TimerRequest) -> None:
    """Hourly: `sent` with no report after SMS_DLR_TIMEOUT_HOURS becomes `expired`."""
    log.info("expiry sweep: %s", delivery.expire_overdue(get_services()))


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def reconcile_reports(timer: func.TimerRequest) -> None:
    """Every 5 minutes: apply delivery reports that overtook their message; report the rest."""
    log.info("reconcile: %s", delivery.reconcile_reports(get_services()))
