"""The Opt-outs page in a real Chromium: check, opt out, check again, see the history, the CSV
export as a download, opt back in; each step agrees with the API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import SENDER, Stack

PERSON = unique_number()


def opted_out(stack: Stack, number: str) -> bool:
    answer = stack.api.post("/optouts/check", json={"from": SENDER, "recipients": [{"to": number}]})
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["value"][0]["isOptedOut"])


def test_an_opt_out_round_trip(console: Page, stack: Stack, watch: Watch,
                               shot: Callable[[str], Path], tmp_path: Path) -> None:
    nav = console.get_by_role("navigation", name="Console pages")
    nav.get_by_role("link", name="Opt-outs").click()
    expect(console.get_by_role("heading", name="Opt-outs", level=1)).to_be_visible()
    form = console.locator("#optout-form")
    form.get_by_label("Our number (sender)").fill(SENDER)
    form.get_by_label("Their number (recipient)").fill(PERSON)
    result = console.locator("#opt-result")

    console.get_by_role("button", name="Check").click()
    expect(result).to_have_text(f"{PERSON} is not opted out of {SENDER}.")
    expect(result).to_have_attribute("data-opted-out", "false")

    console.get_by_role("button", name="Opt out").click()
    expect(result).to_have_text(f"{PERSON} is now opted out of {SENDER}.")
    assert opted_out(stack, PERSON)
    console.get_by_role("button", name="Check").click()
    expect(result).to_have_text(f"{PERSON} is opted out of {SENDER}.")

    console.get_by_role("button", name="History").click()
    history = console.locator("#opt-history-table tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_have_attribute("data-action", "opt-out")
    expect(history.first).to_contain_text("api")

    export = console.locator("#optout-export")
    export.get_by_label("Our number (sender)").fill(SENDER)
    console.get_by_role("button", name="Prepare CSV").click()
    link = console.locator("#opt-export-download")
    expect(link).to_be_focused()
    with console.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == f"optouts-{SENDER}.csv"
    saved = tmp_path / "optouts.csv"
    download.value.save_as(saved)
    lines = saved.read_text("utf-8").splitlines()
    assert lines[0] == "from,to,scope,optedOutAt,source,keyword"
    assert any(line.startswith(f"{SENDER},{PERSON},sender,") for line in lines[1:])
    shot("optouts-exported")

    console.get_by_role("button", name="Opt back in").click()
    expect(result).to_have_text(f"{PERSON} is now opted in to {SENDER}.")
    assert not opted_out(stack, PERSON)
    # The open history follows the change.
    expect(history).to_have_count(2)
    expect(history.nth(1)).to_have_attribute("data-action", "opt-in")
    shot("optouts-history")
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []
