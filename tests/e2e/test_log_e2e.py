"""The running stack's log tells what happened to a message: the accepting request, its dispatch
and its delivery report are lines with one correlationId (the batch), and no line holds the
text or the full number."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.numbers import unique_number

pytestmark = pytest.mark.e2e

TEXT = "Your code is 913377"


def _about(stack: Stack, batch: str) -> list[dict[str, Any]]:
    return [line for line in stack.log_lines() if line.get("correlationId") == batch]


def _kinds(lines: list[dict[str, Any]]) -> set[str]:
    return {str(line["logger"]).rsplit(".", 1)[-1] for line in lines}


def test_a_send_and_its_delivery_report_share_one_correlation_id(stack: Stack) -> None:
    to = unique_number()
    answer = stack.api.post("/messages", json={"to": to, "message": TEXT},
                            headers={"x-correlation-id": "e2e-order-7"})
    assert answer.status_code == 202
    message_id = answer.json()["messages"][0]["id"]
    batch = message_id.rpartition("-")[0]
    stack.wait_for(lambda: stack.status_of(message_id) == "delivered", what="delivered")
    # The report's line is written after the status it applied: poll for it too.
    lines = stack.wait_for(
        lambda: (found := _about(stack, batch))
        and {"request_log", "dispatch", "delivery_reports"} <= _kinds(found) and found,
        what=f"the request, dispatch and report lines of batch {batch}")

    (request,) = [x for x in lines if x["logger"] == "sms_http.request_log"
                  and x["method"] == "POST"]
    assert (request["route"], request["status"], request["batch"]) == (
        "/api/messages", 202, batch)
    assert request["clientCorrelationId"] == "e2e-order-7"
    assert isinstance(request["durationMs"], int | float)
    (sent,) = [x for x in lines if x["logger"].endswith(".dispatch")]
    assert (sent["batch"], sent["sent"], sent["failed"]) == (batch, 1, 0)
    reports = [x for x in lines if x["logger"].endswith(".delivery_reports")]
    assert [(r["messageId"], r["messageStatus"]) for r in reports][:1] == [
        (message_id, "delivered")]
    # The status reads (GET /api/messages/{id}) name the batch too.
    assert any(x.get("route") == "/api/messages/{id}" for x in lines)

    every = stack.log_path.read_text("utf-8", errors="replace")
    assert TEXT not in every and to not in every and to.lstrip("+") not in every
