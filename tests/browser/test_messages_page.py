"""The Messages page in a real Chromium: a sent message opened by its id shows its history as an
ordered timeline that follows it to `delivered`, its text shown as text; the search finds sent
messages by tag (paged with More) and by recipient and status, and opens one's timeline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import Stack

RECIPIENT = unique_number()
PEOPLE = [unique_number() for _ in range(12)]


def open_messages(page: Page) -> None:
    nav = page.get_by_role("navigation", name="Console pages")
    nav.get_by_role("link", name="Messages").click()
    expect(page.get_by_role("heading", name="Messages", level=1)).to_be_visible()


def follow_more(more: Locator, rows: Locator, status: Locator, at_most: int, *,
                counted: bool = False) -> None:
    """Press More until it is gone, each page adding rows below the ones shown (and, with
    `counted`, the status saying how many are shown)."""
    for _ in range(at_most):
        if not more.is_visible():
            break
        shown = rows.count()
        more.click()
        expect(status).not_to_contain_text("Loading")
        assert rows.count() >= shown
        if counted:
            expect(status).to_contain_text(f"{rows.count()} messages shown")
    expect(more).to_be_hidden()


def assert_timeline(timeline: Locator) -> None:
    """The history in order: queued, sent, delivered (also when the delivery report came back
    before the send was recorded: `sent` is then noted where it happened)."""
    statuses = [li.get_attribute("data-status") for li in timeline.locator("li").all()]
    assert statuses == ["queued", "sent", "delivered"], statuses


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
    expect(timeline.locator("li").last).to_have_attribute("data-status", "delivered")
    expect(timeline.locator("li").last).to_contain_text("delivered")
    assert_timeline(timeline)
    facts = console.locator("#msg-detail-facts")
    expect(facts).to_contain_text(RECIPIENT)
    expect(facts).to_contain_text("otp")
    shot("message-timeline")

    assert detail.locator("script").count() == 0
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []


def test_the_search_finds_sent_messages_and_opens_a_timeline(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    tag = f"search-{uuid.uuid4().hex[:10]}"
    text = "Sale <img src=x onerror=alert(1)>"
    sent = stack.api.post("/messages", json={"to": PEOPLE, "message": text, "tag": tag})
    assert sent.status_code == 202, sent.text
    ids = [m["id"] for m in sent.json()["messages"]]
    stack.wait_for(lambda: all(stack.status_of(i) == "delivered" for i in ids),
                   what="the delivery reports of the twelve messages")

    open_messages(console)
    console.get_by_label("Tag").fill(tag)
    console.get_by_label("Per page").select_option("10")
    console.get_by_role("button", name="Search").click()
    rows = console.locator("#msg-results tbody tr")
    status = console.locator("#msg-results-status")
    expect(status).to_contain_text("more are available")
    more = console.get_by_role("button", name="More")
    # A page may hold fewer than its limit while more remain: follow More until the end.
    follow_more(more, rows, status, len(PEOPLE))
    expect(rows).to_have_count(len(PEOPLE))
    assert sorted(r.get_attribute("data-id") or "" for r in rows.all()) == sorted(ids)
    expect(status).to_have_text(f"{len(PEOPLE)} messages shown.")
    expect(rows.first.locator("td.sample")).to_have_text(text)
    assert console.locator("#msg-results img").count() == 0
    shot("message-search")

    console.get_by_label("Tag").fill("")
    console.get_by_label("Recipient").fill(PEOPLE[3])
    console.get_by_label("Status").select_option("delivered")
    console.get_by_role("button", name="Search").click()
    expect(status).to_have_text("1 message shown.")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-id", ids[3])
    rows.first.get_by_role("button", name="History").click()
    timeline = console.locator("#msg-detail").get_by_role("list", name="History")
    expect(timeline.locator("li").last).to_have_attribute("data-status", "delivered")
    assert_timeline(timeline)
    console.get_by_role("button", name="Close").click()
    expect(rows.first.get_by_role("button", name="History")).to_be_focused()
    shot("message-search-timeline")

    # The message links to its conversation, which shows it as sent to that person.
    rows.first.get_by_role("button", name="History").click()
    console.get_by_role("link", name=f"Conversation with {PEOPLE[3]}").click()
    expect(console.get_by_role("heading", name=f"Conversation with {PEOPLE[3]}")).to_be_visible()
    outbound = console.locator("#conv-messages li[data-direction='outbound']")
    expect(outbound).to_have_count(1)
    expect(outbound.locator(".message-text")).to_have_text(text)
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []


def test_paging_forward_with_more_then_a_new_search_starts_from_the_first_page(
        console: Page, stack: Stack, watch: Watch) -> None:
    tag = f"pages-{uuid.uuid4().hex[:10]}"
    people = [unique_number() for _ in range(12)]
    sent = stack.api.post("/messages", json={"to": people, "message": "Doors open at 9",
                                             "tag": tag})
    assert sent.status_code == 202, sent.text
    ids = sorted(m["id"] for m in sent.json()["messages"])

    open_messages(console)
    console.get_by_label("Tag").fill(tag)
    console.get_by_label("Per page").select_option("10")
    search = console.get_by_role("button", name="Search")
    search.click()
    rows = console.locator("#msg-results tbody tr")
    status = console.locator("#msg-results-status")
    more = console.get_by_role("button", name="More")
    expect(status).to_contain_text("; more are available.")
    expect(more).to_be_visible()
    first_page = sorted(r.get_attribute("data-id") or "" for r in rows.all())
    assert 0 < len(first_page) <= 10

    # Forward: each More adds the next page below the ones shown, until none remains.
    follow_more(more, rows, status, len(people), counted=True)
    expect(rows).to_have_count(len(people))
    assert sorted(r.get_attribute("data-id") or "" for r in rows.all()) == ids
    expect(status).to_have_text(f"{len(people)} messages shown.")

    # Back: the same search again shows the first page only, with More to go on from there.
    search.click()
    expect(rows).to_have_count(len(first_page))
    assert sorted(r.get_attribute("data-id") or "" for r in rows.all()) == first_page
    expect(status).to_have_text(f"{len(first_page)} messages shown; more are available.")
    expect(more).to_be_visible()
    more.click()
    expect(status).not_to_contain_text("Loading")
    assert set(first_page) <= {r.get_attribute("data-id") or "" for r in rows.all()}
    assert watch.page_errors == [] and watch.console_errors == []
