"""Every 5 minutes: apply delivery reports that overtook their message; report the rest."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.app import get_services
from sms_core.delivery import reconcile_reports


def main(timer: func.TimerRequest) -> None:
    result = reconcile_reports(get_services())
    logging.getLogger(__name__).info("reconcile: %s", result)
