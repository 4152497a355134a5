"""A client generated from openapi.yaml by openapi-python-client drives the local stack: send,
follow the message to delivered, prepare and confirm a campaign, read the analytics.

Everything goes through the generated package (its models parse every answer), so a spec that
does not describe what the server answers fails here the way it would fail a user's client.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.e2e.conftest import FUNCTION_KEY, Stack
from tests.numbers import unique_number
from tests.openapi_tools import generate_client, import_client


@pytest.fixture(scope="module")
def sms_client(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    out: Path = tmp_path_factory.mktemp("generated") / "sms_functions_client"
    run = generate_client(out)
    assert run.returncode == 0, run.stdout + run.stderr
    return import_client(out)


def module(client_pkg: ModuleType, name: str) -> Any:
    """A module of the generated package (`models`, `api.default.send_messages`)."""
    return importlib.import_module(f"{client_pkg.__name__}.{name}")


def test_generated_client_sends_follows_a_campaign_and_reads_analytics(
        stack: Stack, sms_client: ModuleType) -> None:
    models = module(sms_client, "models")
    send_messages, get_message, prepare_campaign, campaign_action, get_campaign, get_analytics = (
        module(sms_client, f"api.default.{name}") for name in (
            "send_messages", "get_message", "prepare_campaign", "campaign_action",
            "get_campaign", "get_analytics"))

    client = sms_client.AuthenticatedClient(
        base_url=str(stack.api.base_url), token=FUNCTION_KEY, prefix="",
        auth_header_name="x-functions-key", raise_on_unexpected_status=True, timeout=None)
    tag = f"generated-client-{unique_number()[-4:]}"
    day = datetime.now(UTC).date()

    # Send, then follow the message to delivered.
    to = unique_number()
    sent = send_messages.sync_detailed(client=client, body=models.SendRequest(
        to=to, message="Hello from a generated client", tag=tag))
    assert sent.status_code == 202, sent.content
    (entry,) = sent.parsed.messages
    assert (entry.to, entry.status) == (to, models.Status.QUEUED)

    def message_delivered() -> Any:
        msg = get_message.sync(client=client, id=entry.id)
        return msg if msg.status == models.Status.DELIVERED else None

    msg = stack.wait_for(message_delivered, what="the message to be delivered")
    assert [h.status for h in msg.history] == [models.Status.QUEUED, models.Status.SENT,
                                              models.Status.DELIVERED]
    assert msg.tag == tag and msg.to == to
    assert [m["message"] for m in stack.emulator.state.inbox(to)] == [
        "Hello from a generated client"]

    # Prepare a campaign, confirm it with the token of the preview, wait for it to complete.
    people = [unique_number() for _ in range(3)]
    recipients = [models.Recipient(to=n, vars_=models.RecipientVars.from_dict({"name": f"P{i}"}))
                  for i, n in enumerate(people)]
    prepared = prepare_campaign.sync_detailed(client=client, body=models.CampaignRequest(
        name="generated client campaign", template="Hi {{name}}, from the generated client",
        tag=tag, audience=models.CampaignRequestAudience(recipients=recipients)))
    assert prepared.status_code == 201, prepared.content
    campaign = prepared.parsed
    assert campaign.status == models.CampaignStatus.PREPARED
    assert campaign.preview.recipients.valid == 3
    assert all(stack.emulator.state.inbox(n) == [] for n in people)  # nothing sent yet

    confirmed = campaign_action.sync_detailed(
        id=campaign.id, action=models.CampaignActionAction.SEND, client=client,
        body=models.SendConfirmation(confirmation_token=campaign.confirmation_token))
    assert confirmed.status_code == 202, confirmed.content

    def campaign_completed() -> Any:
        c = get_campaign.sync(client=client, id=campaign.id)
        return c if c.status == models.CampaignStatus.COMPLETED else None

    done = stack.wait_for(campaign_completed, 60, "the campaign to complete")
    assert done.counts.sent + done.counts.delivered == 3
    for i, n in enumerate(people):
        assert [m["message"] for m in stack.emulator.state.inbox(n)] == [
            f"Hi P{i}, from the generated client"]

    # The analytics count the message and the campaign's three (the tag is this test's own).
    def counted() -> Any:
        figures = get_analytics.sync(client=client, from_=day, to=day, tag=tag)
        return figures if figures.totals.sent == 4 else None

    figures = stack.wait_for(counted, what="the four messages to be counted")
    assert [d.date for d in figures.days] == [day]
    assert (figures.totals.rejected, figures.totals.blocked, figures.totals.opt_outs) == (0, 0, 0)

    def all_delivered() -> Any:
        figures = get_analytics.sync(client=client, from_=day, to=day, tag=tag)
        return figures if figures.totals.delivered == 4 else None

    assert stack.wait_for(all_delivered, what="four deliveries").totals.delivery_rate == 1.0
