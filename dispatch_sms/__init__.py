"""sms-outbound: send one job's messages through ACS (paced, opt-outs re-checked)."""

from __future__ import annotations

import logging

import azure.functions as func

from sms_core.app import get_services
from sms_core.dispatch import dispatch
from sms_core.events import queue_text
from sms_core.models import DispatchJob


def main(msg: func.QueueMessage) -> None:
    job = DispatchJob.model_validate_json(queue_text(msg.get_body()))
    result = dispatch(get_services(), job, attempt=msg.dequeue_count or 1)
    logging.getLogger(__name__).debug("dispatched %s: %s", job.batch, result)
