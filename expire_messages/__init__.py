"""Hourly: messages `sent` with no delivery report after SMS_DLR_TIMEOUT_HOURS become `expired`."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.app import get_services
from sms_core.delivery import expire_overdue


def main(timer: func.TimerRequest) -> None:
    result = expire_overdue(get_services())
    logging.getLogger(__name__).info("expiry sweep: %s", result)
