"""Posting app events to the app's webhook (`deliver_webhook`), signed, with retries."""

from __future__ import annotations

import json

from sms_core.models.app_events import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_MAX_ATTEMPTS,
    WebhookDelivery,
    event_envelope,
    verify,
)
from sms_core.use_cases.webhook_delivery import deliver_webhook
from tests.unit.fakes import FakeDeps, FakeWebhookPoster

URL = "https://app.example.com/sms-events"
SECRET = "s3cret"
EVENT = event_envelope("sms.received", "received-in-1", {"from": "+14255550101",
                                                         "message": "hi"})


def webhook_deps(*statuses: int | None) -> FakeDeps:
    deps = FakeDeps.build(SMS_APP_WEBHOOK_URL=URL, SMS_APP_WEBHOOK_SECRET=SECRET)
    deps.webhook_poster = FakeWebhookPoster(*statuses)
    return deps


def deliver(deps: FakeDeps, attempt: int = 1) -> bool:
    return deliver_webhook(deps.settings, deps.webhook_outbox, deps.webhook_poster,
                           WebhookDelivery(EVENT, attempt).encode())


def test_a_2xx_answer_delivers_the_event_signed() -> None:
    deps = webhook_deps(204)
    assert deliver(deps) is True
    ((url, body, headers),) = deps.webhook_poster.posts
    assert url == URL and json.loads(body) == EVENT
    assert headers["X-SMS-Event-Type"] == "sms.received"
    assert headers["X-SMS-Delivery-Attempt"] == "1"
    assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert deps.webhook_outbox.retried == [] and deps.webhook_outbox.given_up == []


def test_without_a_secret_the_post_is_unsigned() -> None:
    deps = FakeDeps.build(SMS_APP_WEBHOOK_URL=URL)
    assert deliver(deps) is True
    ((_, _, headers),) = deps.webhook_poster.posts
    assert SIGNATURE_HEADER not in headers


def test_a_failed_post_is_retried_later_with_backoff() -> None:
    for status, attempt, delay in ((500, 1, 30), (None, 2, 60), (302, 3, 120), (429, 9, 3600)):
        deps = webhook_deps(status)
        assert deliver(deps, attempt) is False
        ((retry, delay_s),) = deps.webhook_outbox.retried
        assert (retry.event, retry.attempt, delay_s) == (EVENT, attempt + 1, delay)
        assert deps.webhook_outbox.given_up == []


def test_the_last_attempt_gives_up() -> None:
    deps = webhook_deps(503)
    assert deliver(deps, WEBHOOK_MAX_ATTEMPTS) is False
    assert deps.webhook_outbox.given_up == [WebhookDelivery(EVENT, WEBHOOK_MAX_ATTEMPTS)]
    assert deps.webhook_outbox.retried == []


def test_nothing_is_posted_once_the_webhook_is_no_longer_set(deps: FakeDeps) -> None:
    assert deliver(deps) is False
    assert deps.webhook_poster.posts == [] and deps.webhook_outbox.retried == []
