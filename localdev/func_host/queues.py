"""Queue triggers: a poller per queue (batchSize, newBatchThreshold, polling back-off), base64
decoding, retries with visibilityTimeout, the dequeue-count rules and the `<queue>-poison` queue;
and the Storage queue clients, which share one connection pool."""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import threading
from typing import Any

from azure.functions.queue import QueueMessage as FuncQueueMessage

from localdev.func_host.config import QueueOptions
from localdev.func_host.errors import FunctionTimeoutError
from localdev.func_host.indexing import FunctionDef
from localdev.func_host.invocation import Invoker

# The host's one logger: every module of the package logs as "localdev.func_host".
log = logging.getLogger("localdev.func_host")

# The real host receives with a 10-minute invisibility and renews it while the function runs;
# the local host does not renew, so it receives for longer when functionTimeout is longer.
RECEIVE_VISIBILITY_S = 600


def receive_visibility_s(function_timeout_s: float | None) -> int:
    """The invisibility a poller receives messages with, for host.json's functionTimeout."""
    limit = function_timeout_s
    if limit is None or limit + 60 <= RECEIVE_VISIBILITY_S:
        return RECEIVE_VISIBILITY_S
    return min(int(limit) + 60, 7 * 86400)


class QueuePoller:
    """One queue trigger: fetch batches, run them on the shared pool, retry or poison failures."""

    def __init__(self, function: FunctionDef, queue_name: str, client: Any, poison: Any,
                 options: QueueOptions, *, invoker: Invoker, stop_event: threading.Event,
                 visibility_s: int) -> None:
        self.invoker = invoker
        self.stop_event = stop_event
        self.visibility_s = visibility_s  # receive_visibility_s() of host.json's functionTimeout
        self.function = function
        self.queue_name = queue_name
        self.client = client
        self.poison = poison
        self.options = options
        self.running = 0
        self.cond = threading.Condition()
        self.thread = threading.Thread(
            target=self._run, name=f"queue-poller-{queue_name}", daemon=True
        )

    # The poller loop -------------------------------------------------------------------------

    def _run(self) -> None:
        stop = self.stop_event
        failures = 0
        while not stop.is_set() and not self._ensure_queues(failures):
            failures += 1
            stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
        failures = 0
        delay = 0.1
        opts = self.options
        visibility = self.visibility_s
        while not stop.is_set():
            with self.cond:
                # Fetch again only when the running count drops to newBatchThreshold, so at most
                # batchSize + newBatchThreshold messages of this queue run at once.
                while self.running > opts.new_batch_threshold and not stop.is_set():
                    self.cond.wait(0.5)
            if stop.is_set():
                break
            try:
                pages = self.client.receive_messages(
                    messages_per_page=opts.batch_size, visibility_timeout=visibility
                ).by_page()
                messages = list(next(pages, []))
            except Exception as exc:
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "queue %s: receive failed (retrying): %r", self.queue_name, exc)
                stop.wait(min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if failures:
                log.info("queue %s: receiving again", self.queue_name)
                failures = 0
            if not messages:
                stop.wait(delay)
                delay = min(delay * 2, opts.max_polling_interval_s)
                continue
            delay = 0.1
            with self.cond:
                self.running += len(messages)
            for msg in messages:
                self.invoker.workers.submit(self._process, msg)

    def _ensure_queues(self, failures: int) -> bool:
        from azure.core.exceptions import ResourceExistsError

        try:
            for client in (self.client, self.poison):
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
        except Exception as exc:
            level = logging.WARNING if failures == 0 else logging.DEBUG
            log.log(level, "queue %s: cannot create the queue (retrying): %r", self.queue_name, exc)
            return False
        return True

    # One message -----------------------------------------------------------------------------

    def _done(self) -> None:
        with self.cond:
            self.running -= 1
            self.cond.notify()

    def _process(self, msg: Any) -> None:
        try:
            if self.stop_event.is_set():
                self._release(msg)
                return
            if (msg.dequeue_count or 0) > self.options.max_dequeue_count:
                # The real host checks this on receive: a message that came back without being
                # counted as a failure (the host crashed or stopped mid-invocation).
                log.error("%s: message %s on %s has dequeue count %s, over maxDequeueCount (%d); "
                          "moving it to %s-poison", self.function.name, msg.id, self.queue_name,
                          msg.dequeue_count, self.options.max_dequeue_count, self.queue_name)
                self._poison(msg)
                return
            text: str = msg.content if msg.content is not None else ""
            try:
                body = self._decode(text)
            except ValueError:
                # The real host moves a message it cannot decode straight to the poison queue.
                log.error("%s: message %s on %s is not valid base64; moving it to %s-poison",
                          self.function.name, msg.id, self.queue_name, self.queue_name)
                self._poison(msg)
                return
            trigger = FuncQueueMessage(  # type: ignore[no-untyped-call]
                id=msg.id,
                body=body,
                dequeue_count=msg.dequeue_count,
                expiration_time=msg.expires_on,
                insertion_time=msg.inserted_on,
                time_next_visible=msg.next_visible_on,
                pop_receipt=msg.pop_receipt,
            )
            try:
                self.invoker.invoke(self.function, trigger)
            except FunctionTimeoutError:
                self._failed(msg)  # a failed attempt; invoke() logged the timeout
                return
            except Exception:
                log.error("%s failed on message %s (dequeue count %s)", self.function.name,
                          msg.id, msg.dequeue_count, exc_info=True)
                self._failed(msg)
                return
            try:
                self.client.delete_message(msg.id, msg.pop_receipt)
            except Exception as exc:
                # The message reappears after its invisibility and runs again (at-least-once).
                log.error("queue %s: delete of %s failed: %r", self.queue_name, msg.id, exc)
        finally:
            self._done()

    def _decode(self, text: str) -> bytes:
        if self.options.message_encoding == "none":
            return text.encode("utf-8")
        try:
            # .NET's base64 decoder ignores whitespace; Python's strict mode does not.
            return base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error as exc:
            raise ValueError(str(exc)) from exc

    def _failed(self, msg: Any) -> None:
        if (msg.dequeue_count or 0) >= self.options.max_dequeue_count:
            log.error("%s: message %s reached maxDequeueCount (%d); moving it to %s-poison",
                      self.function.name, msg.id, self.options.max_dequeue_count, self.queue_name)
            self._poison(msg)
            return
        try:
            self.client.update_message(
                msg.id, msg.pop_receipt,
                visibility_timeout=round(self.options.visibility_timeout_s),
            )
        except Exception as exc:
            log.error("queue %s: cannot make %s visible again (it will be after %d s): %r",
                      self.queue_name, msg.id, self.visibility_s, exc)

    def _poison(self, msg: Any) -> None:
        try:
            # The original text, untouched: base64 stays base64, as the real host copies it.
            self.poison.send_message(msg.content)
        except Exception as exc:
            # Keep the original: it will be retried and poisoned later, never dropped.
            log.error("queue %s: cannot write %s to the poison queue: %r", self.queue_name,
                      msg.id, exc)
            return
        try:
            self.client.delete_message(msg.id, msg.pop_receipt)
        except Exception as exc:
            log.error("queue %s: delete of poisoned %s failed: %r", self.queue_name, msg.id, exc)

    def _release(self, msg: Any) -> None:
        """Make a fetched but unprocessed message visible again (the host is stopping)."""
        with contextlib.suppress(Exception):
            self.client.update_message(msg.id, msg.pop_receipt, visibility_timeout=0)


class QueueClients:
    """Creates QueueClients that share one HTTP connection pool sized for the workers."""

    def __init__(self, pool_size: int) -> None:
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._transport_cls = RequestsTransport
        self._credential: Any = None

    def client(self, connection: str | dict[str, str], queue_name: str) -> Any:
        from azure.storage.queue import QueueClient

        # No message encode/decode policy: the host sees the raw text and decodes it itself.
        transport = self._transport_cls(session=self.session, session_owner=False)
        if isinstance(connection, str):
            return QueueClient.from_connection_string(
                connection, queue_name, transport=transport
            )
        if self._credential is None:
            from azure.identity import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return QueueClient(connection["account_url"], queue_name, credential=self._credential,
                           transport=transport)

    def close(self) -> None:
        self.session.close()
