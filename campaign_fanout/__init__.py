"""sms-campaigns: fire a due campaign run, or fan out one chunk of a run's recipients."""

from __future__ import annotations

import azure.functions as func

from sms_core.app import get_services
from sms_core.campaign_models import FanoutJob
from sms_core.campaign_runs import handle_fanout_job
from sms_core.events import queue_text


def main(msg: func.QueueMessage) -> None:
    handle_fanout_job(get_services(), FanoutJob.model_validate_json(queue_text(msg.get_body())))
