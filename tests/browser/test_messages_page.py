"""The Messages page in a real Chromium: a sent message opened by its id shows its history as an
ordered timeline that follows it to `delivered`, its text shown as text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Watch
from tests.stack import Stack

RECIPIENT = "+14255552101"


def open_messages(page: Page) -> None:
    nav = page.get_by_role("navigation", name="Console pages")
    nav.get_by_role("link", name="Messages").click()
    expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()


def test_a_sent_message_opens_with_its_history_as_a_timeline(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    text = "Your code is 1234 <script>alert(1)</script>"
    sent = stack.api.post("/messages", json={"to": RECIPIENT, "message": text, "tag": "otp"})
    assert sent.status_code == 202, sent.text
    message_id = sent.json()["messages"][0]["id"]
    stack.wait_for(lambda: stack.status_of(message_id) == "delivered", what="the delivery report")

    open_messages(console)
    console.get_by_label("Message id").fill(message_id)
    console.get_by_role("button", name="Open", exact=True).click()

    detail = console.locator("#msg-detail")
    expect(detail.get_by_role("heading", name=f"Message {message_id}")).to_be_focused()
    expect(console.locator("#msg-detail-text")).to_have_text(text)
    timeline = detail.get_by_role("list", name="History")
    expect(timeline.locator("li")).to_have_count(3)
    assert [li.get_attribute("data-status") for li in timeline.locator("li").all()] == [
        "queued", "sent", "delivered"]
    expect(timeline.locator("li").nth(2)).to_contain_text("delivered")
    facts = console.locator("#msg-detail-facts")
    expect(facts).to_contain_text(RECIPIENT)
    expect(facts).to_contain_text("otp")
    shot("message-timeline")

    assert detail.locator("script").count() == 0
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []
