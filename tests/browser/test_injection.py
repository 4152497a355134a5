"""Values a user or a recipient supplied render as text: `<script>`, `<img onerror>` and
`=HYPERLINK(...)` in a template, a CSV cell and a tag stay inert (no dialog, no element
injected, the text shown literally), in the template preview, the review and the list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import FilePayload, Page, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import Stack

SCRIPT = "<script>alert('template')</script>"
IMG = '<img src=x onerror="window.__injected=1;alert(1)">'
FORMULA = '=HYPERLINK("http://example.invalid/x","click")'


def assert_inert(page: Page, watch: Watch) -> None:
    assert watch.dialogs == []
    assert page.evaluate("window.__injected") is None
    # The console itself has no <img>, and its only script is the module in <head>.
    assert page.locator("body img").count() == 0
    assert page.locator("body script").count() == 0
    assert page.locator("body [onerror]").count() == 0


def test_payloads_in_a_template_a_csv_cell_and_a_tag_render_as_text(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    to = unique_number()
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    # A cell with a quoted comma and quotes, as a spreadsheet writes the formula.
    formula_cell = '"' + FORMULA.replace('"', '""') + '"'
    console.get_by_label("CSV file").set_input_files(files=[FilePayload(
        name="payloads.csv", mimeType="text/csv",
        buffer=f"phone,first_name,city\n{to},{IMG},{formula_cell}\n".encode())])
    console.get_by_label("Audience name").fill(f"payloads {SCRIPT}")
    console.get_by_role("button", name="Upload audience").click()
    expect(console.locator("#upload-ok")).to_contain_text(f"payloads {SCRIPT}")

    tag = f"{SCRIPT}{IMG}"
    template = f"Hi {{{{first_name}}}} {SCRIPT} in {{{{city}}}} {IMG}"
    console.get_by_label("Campaign name").fill(f"inject {IMG}")
    console.get_by_label("Tag (optional)").fill(tag)
    console.get_by_label("Text", exact=True).fill(template)
    expect(console.locator("#template-preview")).to_have_text(template)
    assert_inert(console, watch)

    console.get_by_role("button", name="Prepare and review").click()
    expect(console.get_by_role("heading", name=f"Review: inject {IMG}")).to_be_visible()
    rendered = f"Hi {IMG} {SCRIPT} in {FORMULA} {IMG}"
    expect(console.locator("#review-samples .sample")).to_have_text(rendered)
    shot("injection-review")
    assert_inert(console, watch)

    console.get_by_role("button", name="Back to the list").click()
    row = console.locator("tr", has_text=f"inject {IMG}").first
    # The list is oldest first, 50 at a time: with more campaigns stored (other tests made
    # them), this one is on a later page.
    more = console.get_by_role("button", name="More campaigns")
    expect(console.locator("#campaign-list tbody tr").first).to_be_visible()
    for _ in range(20):
        if row.count() or not more.is_visible():
            break
        more.click()
        expect(console.locator("#campaigns-live")).to_contain_text("more campaign(s)")
    expect(row.locator("td").nth(3)).to_have_text(tag)
    assert_inert(console, watch)
    assert watch.page_errors == []


def test_a_problem_detail_with_markup_is_shown_as_text(console: Page, watch: Watch) -> None:
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    console.get_by_label("CSV file").set_input_files(files=[FilePayload(
        name="bad.csv", mimeType="text/csv",
        buffer=f"phone,{IMG}\n{unique_number()},a,b\n".encode())])
    console.get_by_role("button", name="Upload audience").click()
    error = console.locator("#upload-error")
    expect(error).to_contain_text("line 2")
    assert_inert(console, watch)
