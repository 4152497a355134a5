"""Every minute: fire campaign runs that are due (sendAt, cron) and settle finished ones."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaign_runs import run_due


def main(timer: func.TimerRequest) -> None:
    fired = run_due(get_services())
    logging.getLogger(__name__).info("campaign scheduler: %d run(s) fired", fired)
