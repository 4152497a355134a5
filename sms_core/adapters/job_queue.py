"""Putting jobs on a queue (`sms-outbound`, `sms-campaigns`): delayed, and many at once."""

from __future__ import annotations

from collections.abc import Sequence

from azure.core.exceptions import AzureError
from azure.storage.queue import QueueClient

from sms_core.concurrency import run_all
from sms_core.errors import StorageUnavailable
from sms_core.models.messages import MAX_VISIBILITY_S
from sms_core.use_cases.ports import Job


class JobQueue:
    """A queue of jobs."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue

    def enqueue(self, job: Job, delay_s: float = 0) -> None:
        """Put one job on the queue, visible after `delay_s` seconds (capped at ~6 days)."""
        visibility = min(int(max(0.0, delay_s) + 0.999), MAX_VISIBILITY_S) or None
        try:
            self._queue.send_message(job.encode(), visibility_timeout=visibility)
        except AzureError as exc:
            raise StorageUnavailable(f"Queue storage failed: {exc}") from exc

    def enqueue_many(self, jobs: Sequence[Job], delay_s: float = 0) -> None:
        """Put many jobs on the queue concurrently (the Queue API has no batch send)."""
        run_all(lambda j: self.enqueue(j, delay_s), jobs)
