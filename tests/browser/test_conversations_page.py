"""The Conversations page in a real Chromium: a handset's text shown in the thread, a reply from
the console reaching that handset, the person's opt-out changed from the thread (and a reply
then blocked), and an inbound text holding markup shown as text, never run."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import SENDER, Stack

PERSON = unique_number()
INJECTOR = unique_number()
LISTED = unique_number()


def inbox(stack: Stack, number: str) -> list[str]:
    return [m["message"] for m in stack.emulator.state.inbox(number)]


def open_thread(page: Page, number: str) -> None:
    page.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Conversations").click()
    expect(page.get_by_role("heading", name="Conversations", level=1)).to_be_visible()
    page.get_by_label("Our number (sender)").fill(SENDER)
    page.get_by_role("button", name="Show conversations").click()
    page.get_by_label("Open the conversation with").fill(number)
    page.get_by_role("button", name="Open", exact=True).click()
    expect(page.get_by_role("heading", name=f"Conversation with {number}")).to_be_focused()


def test_a_reply_in_a_conversation_reaches_the_handset(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    stack.emulator.reply(PERSON, SENDER, "Is my order ready?")
    open_thread(console, PERSON)
    thread = console.locator("#conv-messages")
    expect(thread.locator("li")).to_have_count(1)
    expect(thread.locator("li").first).to_have_attribute("data-direction", "inbound")
    expect(thread.locator("li").first).to_contain_text(f"Received from {PERSON}")
    expect(thread.locator("li").first).to_contain_text("Is my order ready?")
    expect(console.locator("#conv-optout-state")).to_contain_text("has not opted out")

    reply = "Yes, pick it up at 5 <b>today</b>"
    console.get_by_label(f"Reply to {PERSON}").fill(reply)
    console.get_by_role("button", name="Send reply").click()
    expect(console.locator("#conv-reply-status")).to_have_text("Reply queued.")
    expect(thread.locator("li")).to_have_count(2)
    expect(thread.locator("li").nth(1)).to_have_attribute("data-direction", "outbound")
    expect(thread.locator("li").nth(1)).to_contain_text(f"Sent to {PERSON}")
    expect(console.get_by_label(f"Reply to {PERSON}")).to_have_value("")
    stack.wait_for(lambda: reply in inbox(stack, PERSON), what="the reply in the handset's inbox")
    shot("conversation-replied")

    # Reloading shows both directions from the API, in time order.
    console.reload()
    open_thread(console, PERSON)
    expect(thread.locator("li")).to_have_count(2)
    assert [li.get_attribute("data-direction") for li in thread.locator("li").all()] == [
        "inbound", "outbound"]
    expect(thread.locator("li").nth(1)).to_contain_text(reply)

    # The opt-out state is changed from the thread; a reply is then blocked, not sent.
    console.get_by_role("button", name="Opt out (add an opt-out)").click()
    expect(console.locator("#conv-optout-state")).to_contain_text("has opted out")
    check = stack.api.post("/optouts/check", json={"from": SENDER, "recipients": [{"to": PERSON}]})
    assert check.json()["value"][0]["isOptedOut"] is True
    console.get_by_label(f"Reply to {PERSON}").fill("Are you still there?")
    console.get_by_role("button", name="Send reply").click()
    expect(console.locator("#conv-reply-status")).to_contain_text("has opted out")
    console.get_by_role("button", name="Opt back in (remove the opt-out)").click()
    expect(console.locator("#conv-optout-state")).to_contain_text("has not opted out")
    check = stack.api.post("/optouts/check", json={"from": SENDER, "recipients": [{"to": PERSON}]})
    assert check.json()["value"][0]["isOptedOut"] is False
    assert inbox(stack, PERSON) == [reply]
    assert watch.dialogs == [] and watch.page_errors == []


def test_an_inbound_text_holding_markup_is_shown_inert(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    payloads = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>",
                '=HYPERLINK("http://example.invalid","click")']
    for text in payloads:
        stack.emulator.reply(INJECTOR, SENDER, text)
    open_thread(console, INJECTOR)
    items = console.locator("#conv-messages li .message-text")
    expect(items).to_have_count(len(payloads))
    # Texts that arrive within the same clock tick may sort either way: compare as a set.
    assert sorted(items.all_text_contents()) == sorted(payloads)
    # On a phone-sized screen the thread fits without sideways scrolling.
    console.set_viewport_size({"width": 390, "height": 844})
    expect(console.get_by_label(f"Reply to {INJECTOR}")).to_be_visible()
    assert console.evaluate("document.documentElement.scrollWidth") <= 390
    shot("conversation-inert")
    thread = console.locator("#conv-thread")
    assert thread.locator("img").count() == 0
    assert thread.locator("script").count() == 0
    assert thread.locator("a").count() == 0
    assert watch.dialogs == [] and watch.page_errors == []


def test_the_senders_recent_conversations_open_their_threads(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    stack.emulator.reply(LISTED, SENDER, "<script>alert(3)</script> when do you open?")
    nav = console.get_by_role("navigation", name="Console pages")
    nav.get_by_role("link", name="Conversations").click()
    console.get_by_label("Our number (sender)").fill(SENDER)
    console.get_by_role("button", name="Show conversations").click()
    entry = console.locator(f"#conv-list button[data-number='{LISTED}']")
    expect(entry).to_contain_text("Received:")
    expect(entry.locator(".sample")).to_have_text("<script>alert(3)</script> when do you open?")
    assert console.locator("#conv-list script").count() == 0
    assert console.evaluate("sessionStorage.getItem('sms-console.sender')") == SENDER
    shot("conversation-list")

    entry.click()
    expect(console.get_by_role("heading", name=f"Conversation with {LISTED}")).to_be_focused()
    expect(console.locator("#conv-messages li")).to_have_count(1)
    console.get_by_label(f"Reply to {LISTED}").fill("From 9 to 5")
    console.get_by_role("button", name="Send reply").click()
    expect(console.locator("#conv-reply-status")).to_have_text("Reply queued.")
    stack.wait_for(lambda: "From 9 to 5" in inbox(stack, LISTED), what="the reply at the handset")

    # The list now leads with our reply; the sender was remembered for the tab.
    console.reload()
    expect(console.get_by_label("Our number (sender)")).to_have_value(SENDER)
    entry = console.locator(f"#conv-list button[data-number='{LISTED}']")
    expect(entry).to_contain_text("Sent:")
    expect(entry.locator(".sample")).to_have_text("From 9 to 5")
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []


def conversation_page(number: str, text: str, token: str | None) -> str:
    page: dict[str, Any] = {"conversations": [{
        "number": number, "lastMessage": text, "lastDirection": "inbound",
        "lastAt": "2026-12-01T09:00:00Z", "optedOut": False}]}
    if token:
        page["continuationToken"] = token
    return json.dumps(page)


def test_a_new_list_is_not_mixed_with_a_page_of_the_one_before(console: Page,
                                                               watch: Watch) -> None:
    """More is clicked and, while its page is out, the list is asked for again: the late page
    of the old list is dropped, not added below the new one. (The API's answers are stood in
    for at the network, so the order they arrive in is the test's.)"""
    held: list[Route] = []
    firsts = iter([conversation_page("+14255550101", "first list", "page-2"),
                   conversation_page("+14255550102", "second list", None)])

    def answer(route: Route) -> None:
        if "continuationToken=" in route.request.url:
            held.append(route)
        else:
            route.fulfill(status=200, content_type="application/json", body=next(firsts))

    console.route(re.compile(r"/api/conversations\?"), answer)
    console.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Conversations").click()
    entries = console.locator("#conv-list li")
    expect(entries).to_have_count(1)
    expect(entries).to_contain_text("first list")
    more = console.get_by_role("button", name="More conversations")
    with console.expect_request(lambda r: "continuationToken=page-2" in r.url):
        more.click()
    console.get_by_role("button", name="Show conversations").click()
    expect(entries).to_have_text([re.compile("second list")])
    expect(more).to_be_hidden()
    assert len(held) == 1

    late = held[0]
    with console.expect_event("requestfinished", lambda r: r.url == late.request.url):
        late.fulfill(status=200, content_type="application/json",
                     body=conversation_page("+14255550103", "late page of the first list",
                                            "page-3"))
    # The page has run its handler of the late answer (a round trip through its event loop).
    console.evaluate("() => new Promise((done) => setTimeout(done, 0))")
    expect(entries).to_have_text([re.compile("second list")])
    expect(more).to_be_hidden()
    expect(console.locator("#conv-list-status")).to_have_text("1 conversation.")
    assert watch.page_errors == []


def test_the_opt_out_state_changed_in_the_thread_shows_in_the_list_at_once(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    person = unique_number()
    stack.emulator.reply(person, SENDER, "Hello, is the shop open?")
    console.get_by_role("navigation", name="Console pages").get_by_role(
        "link", name="Conversations").click()
    console.get_by_label("Our number (sender)").fill(SENDER)
    console.get_by_role("button", name="Show conversations").click()
    entry = console.locator(f"#conv-list button[data-number='{person}']")
    expect(entry).to_contain_text("Received:")
    expect(entry).not_to_contain_text("opted out")
    entry.click()
    expect(console.get_by_role("heading", name=f"Conversation with {person}")).to_be_focused()
    state = console.locator("#conv-optout-state")
    expect(state).to_contain_text("has not opted out")

    # Changed from the thread: the list's badge follows without a reload.
    console.get_by_role("button", name="Opt out (add an opt-out)").click()
    expect(state).to_contain_text("has opted out")
    expect(entry.locator(".badge")).to_have_text("opted out")
    shot("conversation-list-opted-out")
    console.get_by_role("button", name="Opt back in (remove the opt-out)").click()
    expect(state).to_contain_text("has not opted out")
    expect(entry).not_to_contain_text("opted out")

    # The person texts STOP: opening the thread again shows it there and in the list.
    stack.emulator.reply(person, SENDER, "STOP")
    stack.wait_for(lambda: stack.api.post("/optouts/check", json={
        "from": SENDER, "recipients": [{"to": person}]}).json()["value"][0]["isOptedOut"],
        what="the STOP recorded as an opt-out")
    entry.click()
    expect(console.locator("#conv-messages li[data-direction='inbound']").last).to_contain_text(
        "STOP")
    expect(state).to_contain_text("has opted out")
    expect(entry.locator(".badge")).to_have_text("opted out")
    assert watch.dialogs == [] and watch.page_errors == []
