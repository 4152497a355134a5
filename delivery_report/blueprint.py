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
    swept = delivery.expire_overdue(get_services())
    # Hourly: a sweep that expired nothing is not worth a line at INFO.
    log.log(logging.INFO if swept.expired else logging.DEBUG, "expiry sweep: %s", swept)


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *")
def reconcile_reports(timer: func.TimerRequest) -> None:
    """Every 5 minutes: apply delivery reports that overtook their message; report the rest."""
    done = delivery.reconcile_reports(get_services())
    # Every 5 minutes: only a run that found something is worth a line at INFO.
    busy = done.applied or done.unmatched or done.invalid_inbound
    log.log(logging.INFO if busy else logging.DEBUG, "reconcile: %s", done)
