"""End to end: a handset replies through the emulator's Event Grid, the host's /api/inbound acts
on it, and the opt-out state, replies, conversations and the opt-out API follow over HTTP."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import ResourceNotFoundError

from tests.e2e.conftest import FUNCTION_KEY, SENDER, Stack
from tests.e2e.test_send_e2e import conforms
from tests.numbers import unique_number

STOP_REPLY = ("You have successfully been unsubscribed to messages from this number. "
              "Reply START to resubscribe.")
START_REPLY = ("You have successfully been re-subscribed to messages from this number. "
               "Reply STOP to unsubscribe.")


def number() -> str:
    return unique_number()


def texts(stack: Stack, person: str) -> list[str]:
    return [m["message"] for m in stack.emulator.state.inbox(person)]


def test_stop_blocks_the_next_send_and_start_lets_it_flow(stack: Stack) -> None:
    person = number()
    answer = stack.emulator.reply(person, SENDER, "STOP")
    assert answer["delivered"], answer
    stack.wait_for(lambda: texts(stack, person) == [STOP_REPLY], what="the STOP confirmation")

    r = stack.api.post("/messages", json={"to": person, "message": "Flash sale!"})
    assert r.json()["messages"][0]["status"] == "blocked"
    assert all(person not in c["recipients"] or c["message"] == STOP_REPLY
               for c in stack.emulator.state.requests())

    stack.emulator.reply(person, SENDER, "start", casing="pascal")
    stack.wait_for(lambda: texts(stack, person) == [STOP_REPLY, START_REPLY],
                   what="the START confirmation")
    r = stack.api.post("/messages", json={"to": person, "message": "Welcome back"})
    assert r.json()["messages"][0]["status"] == "queued"
    stack.wait_for(lambda: texts(stack, person)[-1:] == ["Welcome back"], what="the next send")

    # The handset has it as soon as ACS accepts; dispatch records the conversation right after.
    convo = stack.wait_for(lambda: (lambda c: c if len(c["messages"]) == 5 else None)(
        stack.api.get(f"/conversations/{person}", params={"from": SENDER}).json()),
        what="the conversation to hold the last send")
    conforms(convo, "ConversationPage")
    assert [(m["direction"], m["message"]) for m in convo["messages"]] == [
        ("inbound", "STOP"), ("outbound", STOP_REPLY), ("inbound", "start"),
        ("outbound", START_REPLY), ("outbound", "Welcome back")]

    history = stack.api.get("/optouts/history", params={"from": SENDER, "to": person}).json()
    assert [(h["action"], h["keyword"]) for h in history["value"]] == [
        ("opt-out", "STOP"), ("opt-in", "START")]


def test_a_stop_delivered_twice_gets_one_reply(stack: Stack) -> None:
    person = number()
    answer = stack.emulator.reply(person, SENDER, "Stop. Thank you", schema="cloudevents",
                                  deliveries=2)
    assert answer["delivered"], answer
    stack.wait_for(lambda: texts(stack, person), what="the confirmation")
    later = number()  # a later round trip proves the duplicate was fully handled by now
    stack.emulator.reply(later, SENDER, "STOP")
    stack.wait_for(lambda: texts(stack, later), what="the other confirmation")
    assert texts(stack, person) == [STOP_REPLY]


def test_stop_stops_a_backlog_of_200_queued_messages(stack: Stack) -> None:
    person = number()
    # The premise: all 200 are accepted, and the STOP recorded, before they fall due. How long
    # that takes depends on the machine, so time a first round of 8 concurrent sends (to another
    # number, due tomorrow) and leave four times what the 200 would take at that pace.
    def queue_one(to: str, send_at: datetime, i: int) -> str:
        r = stack.api.post("/messages", json={"to": to, "message": f"Update {i}",
                                              "sendAt": send_at.isoformat()})
        assert r.status_code == 202, r.text
        return str(r.json()["messages"][0]["id"])

    with ThreadPoolExecutor(8) as pool:
        started = time.monotonic()
        tomorrow = datetime.now(UTC) + timedelta(days=1)
        list(pool.map(lambda i: queue_one(number(), tomorrow, i), range(8)))
        one_round = time.monotonic() - started
        send_at = datetime.now(UTC) + timedelta(seconds=max(10.0, 4 * 25 * one_round + 5))
        ids = list(pool.map(lambda i: queue_one(person, send_at, i), range(200)))
    stack.emulator.reply(person, SENDER, "STOP")
    stack.wait_for(lambda: texts(stack, person) == [STOP_REPLY], what="the STOP confirmation")
    assert datetime.now(UTC) < send_at, "the machine was too slow for the test's premise"

    def statuses() -> Counter[str]:
        return Counter(stack.status_of(i) for i in ids)

    due_in = (send_at - datetime.now(UTC)).total_seconds()
    stack.wait_for(lambda: statuses() == {"blocked": 200}, due_in + 60,
                   "all 200 to be blocked", explain=statuses)
    assert texts(stack, person) == [STOP_REPLY]


def test_help_is_answered_and_ordinary_text_is_only_relayed(stack: Stack) -> None:
    person = number()
    stack.emulator.reply(person, SENDER, "I am stopping by at 5")
    stack.emulator.reply(person, SENDER, "HELP")
    stack.wait_for(lambda: texts(stack, person), what="the help reply")
    (help_reply,) = texts(stack, person)
    assert "STOP" in help_reply
    r = stack.api.post("/optouts/check", json={"from": SENDER, "recipients": [{"to": person}]})
    assert r.json()["value"][0]["isOptedOut"] is False


def test_optout_api_over_http(stack: Stack) -> None:
    a, b = number(), number()
    r = stack.api.post("/optouts/add", json={"from": SENDER,
                                             "recipients": [{"to": a}, {"to": "+123"}]})
    assert r.status_code == 200
    conforms(r.json(), "OptOutResponse")
    assert [v["httpStatusCode"] for v in r.json()["value"]] == [200, 400]
    r = stack.api.post("/optouts/check", json={"from": SENDER,
                                               "recipients": [{"to": a}, {"to": b}]})
    assert [v["isOptedOut"] for v in r.json()["value"]] == [True, False]
    export = stack.api.get("/optouts/export", params={"from": SENDER})
    assert export.headers["content-type"].startswith("text/csv")
    assert a in [row["to"] for row in csv.DictReader(io.StringIO(export.text))]
    stack.api.post("/optouts/remove", json={"from": SENDER, "recipients": [{"to": a}]})
    r = stack.api.post("/optouts/check", json={"from": SENDER, "recipients": [{"to": a}]})
    assert r.json()["value"][0]["isOptedOut"] is False


@pytest.mark.parametrize(("path", "body"), [
    ("/optouts/add", {"recipients": [{"to": "+13605550123"}]}),
    ("/optouts/add", {"from": SENDER, "recipients": []}),
    ("/optouts/delete", {"from": SENDER, "recipients": [{"to": "+13605550123"}]}),
])
def test_optout_api_bad_input_is_a_problem(stack: Stack, path: str, body: object) -> None:
    r = stack.api.post(path, json=body)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")


def test_inbound_webhook_auth_handshake_and_bad_json(stack: Stack) -> None:
    assert stack.anonymous.post("/inbound", content=b"[]").status_code == 401
    r = stack.anonymous.request("OPTIONS", f"/inbound?code={FUNCTION_KEY}",
                                headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert r.status_code == 200
    assert r.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    r = stack.api.post("/inbound", content=b"{not json")
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")


def test_conversation_paging_and_bad_parameters(stack: Stack) -> None:
    person = number()
    for i in range(3):
        stack.emulator.reply(person, SENDER, f"message {i}")
    first = stack.api.get(f"/conversations/{person}", params={"limit": 2}).json()
    assert len(first["messages"]) == 2 and first["continuationToken"]
    rest = stack.api.get(f"/conversations/{person}", params={
        "limit": 2, "continuationToken": first["continuationToken"]}).json()
    assert [m["message"] for m in first["messages"] + rest["messages"]] == [
        "message 0", "message 1", "message 2"]
    for params in ({"limit": "0"}, {"limit": "x"}, {"continuationToken": "garbage"}):
        assert stack.api.get(f"/conversations/{person}", params=params).status_code == 400
    assert stack.api.get("/conversations/not-a-number").status_code == 400


def test_every_inbound_message_reaches_the_app_webhook_signed(stack: Stack) -> None:
    import json

    from sms_core.models.app_events import verify
    from tests.e2e.conftest import WEBHOOK_SECRET, AppWebhook

    person = number()
    stack.emulator.reply(person, SENDER, "Is my order ready?")
    stack.emulator.reply(person, SENDER, "STOP")

    def mine() -> list[tuple[dict[str, str], dict[str, object]]]:
        found = []
        for headers, body in list(AppWebhook.received):
            event = json.loads(body)
            data = event["data"]
            if person in (data.get("from"), data.get("to")):
                found.append((headers, event))
        return found

    def status_of_reply() -> list[str]:
        return [str(e["data"]["status"]) for _, e in mine()  # type: ignore[index]
                if e["type"] == "sms.status"]

    def all_there() -> bool:
        others = [e for _, e in mine() if e["type"] != "sms.status"]
        return "delivered" in status_of_reply() and len(others) >= 3

    # The reply is sent while the STOP's webhook request is open: its delivery report may
    # well reach the app before the first text's event does.
    stack.wait_for(all_there,
                   what="the app webhook to get the events, the reply's status included")
    events = [(h, e) for h, e in mine() if e["type"] != "sms.status"]
    assert sorted(e["type"] for _, e in events) == ["optout.changed", "sms.received",
                                                    "sms.received"]
    assert set(status_of_reply()) == {"sent", "delivered"}
    received = [e["data"] for _, e in events if e["type"] == "sms.received"]
    assert {d["message"] for d in received} == {"Is my order ready?", "STOP"}  # type: ignore[index]
    assert {d["keyword"] for d in received} == {None, "STOP"}  # type: ignore[index]
    for headers, event in mine():
        body = next(b for h, b in AppWebhook.received if json.loads(b)["id"] == event["id"])
        assert verify(WEBHOOK_SECRET, headers["x-sms-timestamp"], body,
                      headers["x-sms-signature"])


def test_a_new_deployment_has_no_earlier_conversations_to_copy_once_the_host_started(
        stack: Stack) -> None:
    """`backfill_conversations` also runs at start-up: on a table with no conversation rows of
    the earlier layout it records the copy as done, so conversation reads stop looking for
    them (one request fewer for each) without waiting five minutes for the timer."""
    table = stack.services.conversations._table

    def copied() -> bool:
        try:
            return bool(table.get_entity("~conversations-backfill", "state").get("Done"))
        except ResourceNotFoundError:
            return False
    stack.wait_for(copied, what="the start-up backfill run")
    person = number()
    stack.emulator.reply(person, SENDER, "hello after the upgrade")
    stack.wait_for(lambda: [m["message"] for m in stack.api.get(
        f"/conversations/{person}", params={"from": SENDER}).json()["messages"]]
        == ["hello after the upgrade"], what="the conversation")
