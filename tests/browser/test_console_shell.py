"""The console's shell in a real Chromium: the key asked once and kept for the session, a
refused key asked again, the navigation landmarks, a phone-sized screen, the strict CSP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Watch, enter_key
from tests.stack import FUNCTION_KEY, Stack


def test_the_key_is_asked_once_and_kept_for_the_browser_session(
        page: Page, console_url: str, watch: Watch, shot: Callable[[str], Path]) -> None:
    page.goto(console_url)
    dialog = page.get_by_role("dialog", name="Function key")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Function key")).to_be_focused()
    shot("key-prompt")
    enter_key(page, FUNCTION_KEY)
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sms-console.function-key')") == FUNCTION_KEY
    page.reload()
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="New campaign")).to_be_visible()
    expect(dialog).to_have_count(0)
    assert watch.console_errors == [] and watch.page_errors == []


def test_a_refused_key_is_asked_for_again_with_the_reason(page: Page, console_url: str) -> None:
    page.goto(console_url)
    dialog = page.get_by_role("dialog", name="Function key")
    dialog.get_by_label("Function key").fill("not-the-key")
    dialog.get_by_role("button", name="Use this key").click()
    # The API's 401 brings the dialog back at once, saying why.
    expect(dialog.get_by_role("alert")).to_contain_text("refused (401)")
    enter_key(page, FUNCTION_KEY)
    expect(page.get_by_role("button", name="New campaign")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('sms-console.function-key')") == FUNCTION_KEY


def test_the_navigation_names_every_page_and_marks_the_current_one(console: Page) -> None:
    nav = console.get_by_role("navigation", name="Console pages")
    for label in ("Campaigns", "Messages", "Conversations", "Opt-outs", "Analytics"):
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    expect(nav.get_by_role("link", name="Campaigns")).to_have_attribute("aria-current", "page")
    expect(console.get_by_role("main")).to_be_attached()
    # The skip link is the keyboard's first stop from the top of the document.
    console.reload()
    expect(console.get_by_role("button", name="New campaign")).to_be_visible()
    console.keyboard.press("Tab")
    skip = console.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()


def test_a_phone_sized_screen_has_no_sideways_scrolling(console: Page,
                                                        shot: Callable[[str], Path]) -> None:
    console.set_viewport_size({"width": 390, "height": 844})
    console.get_by_role("button", name="New campaign").click()
    expect(console.get_by_role("heading", name="New campaign")).to_be_visible()
    shot("phone")
    assert console.evaluate("document.documentElement.scrollWidth") <= 390


def test_the_page_is_served_with_the_strict_policy(stack: Stack) -> None:
    r = stack.anonymous.get("/console")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert stack.anonymous.get("/console/pages/campaigns.js").headers["content-type"].startswith(
        "text/javascript")
    assert stack.anonymous.get("/console/../host.json").status_code == 404
    assert stack.anonymous.get("/console/%2e%2e/function_app.py").status_code == 404
