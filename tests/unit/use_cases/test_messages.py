"""Reading a message with its history (`get_message`)."""

from __future__ import annotations

import pytest

from sms_core.errors import NotFound
from sms_core.use_cases.delivery_reports import apply_delivery_reports
from sms_core.use_cases.messages import get_message
from tests.unit.fakes import SENDER, FakeDeps
from tests.unit.use_cases.steps import ALICE, report, sent


def test_a_message_shows_its_status_and_whole_history(deps: FakeDeps) -> None:
    msg = sent(deps, message="Hello there", tag="t")
    apply_delivery_reports(deps, [report(msg.provider_message_id, "Delivered")])
    view = get_message(deps.messages, msg.id).public()
    assert (view["from"], view["to"], view["message"], view["status"], view["tag"]) == (
        SENDER, ALICE, "Hello there", "delivered", "t")
    assert view["providerMessageId"] == msg.provider_message_id
    assert [h["status"] for h in view["history"]] == ["queued", "sent", "delivered"]


@pytest.mark.parametrize("message_id", ["nope", "20260101000000abcdef012345-00000"])
def test_an_unknown_id_is_not_found(deps: FakeDeps, message_id: str) -> None:
    with pytest.raises(NotFound):
        get_message(deps.messages, message_id)
