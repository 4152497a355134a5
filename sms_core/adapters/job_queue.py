"""Putting jobs on a queue (`sms-outbound`, `sms-campaigns`): delayed, and many at once."""

from __future__ import annotations

from collections.abc import Sequence

from azure.storage.queue import QueueClient

from sms_core.adapters.azure_errors import storage_errors
from sms_core.concurrency import run_all
from sms_core.models.messages import MAX_VISIBILITY_S
from sms_core.use_cases.ports import Job


class JobQueue:
    """A queue of jobs."""

    def __init__(self, queue: QueueClient) -> None:
        self._queue = queue
        # Named by its queue: one class serves `sms-outbound` and `sms-campaigns` (a test's
        # stand-in for the client may have no name).
        name = getattr(queue, "queue_name", None)
        self._storage = storage_errors(f"Job queue {name}" if isinstance(name, str)
                                       else "Job queue")

    def enqueue(self, job: Job, delay_s: float = 0) -> None:
        """Put one job on the queue, visible after `delay_s` seconds (capped at ~6 days)."""
        visibility = min(int(max(0.0, delay_s) + 0.999), MAX_VISIBILITY_S) or None
        with self._storage:
            self._queue.send_message(job.encode(), visibility_timeout=visibility)

    def enqueue_many(self, jobs: Sequence[Job], delay_s: float = 0) -> None:
        """Put many jobs on the queue concurrently (the Queue API has no batch send)."""
        run_all(lambda j: self.enqueue(j, delay_s), jobs)
