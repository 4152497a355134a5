"""A campaign for a large saved audience in the console (more members than the stack's
PREPARE_INLINE_MAX, tests/stack.py; 10,000 by default): POST /api/campaigns answers 202
`preparing` and background jobs prepare it. The page shows the preparation's progress
(rows read, counts so far, stage), follows it every second, then shows the same review as a 201
(with the 202's confirmation token) and sends; a preparation that fails shows its error; a
campaign still preparing opened from the list is followed the same way, then reviewed again for a
new token."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.conftest import Watch
from tests.browser.test_campaigns_page import in_small_parts, stat, upload
from tests.deadlines import scaled
from tests.numbers import unique_number
from tests.stack import PREPARE_CHUNK, PREPARE_INLINE_MAX, Stack

MEMBERS = 1_050  # more than a request prepares itself: three chunk jobs of PREPARE_CHUNK
INVALID = {17: "+1425555", 521: "not-a-number", 1_040: "+99912345"}  # row -> bad number
# row -> the row whose number it repeats: far apart, across the chunks too.
DUPLICATES = {600: 1, 1_045: 2, 120: 950, 1_049: 400}
VALID = MEMBERS - len(INVALID) - len(DUPLICATES)
# A whole import and preparation of the members, on a loaded 2-core machine.
SLOW_MS = 120_000


def slow() -> float:
    return scaled(SLOW_MS / 1000) * 1000


def audience_csv(plan: str = "free") -> tuple[bytes, list[str]]:
    """MEMBERS rows `phone,first_name,plan` with INVALID and DUPLICATES planted at their rows
    (0-based among the members); returns the file and each row's number."""
    assert PREPARE_INLINE_MAX < MEMBERS and -(-MEMBERS // PREPARE_CHUNK) == 3
    numbers: list[str] = []
    for row in range(MEMBERS):
        if row in INVALID:
            numbers.append(INVALID[row])
        elif row in DUPLICATES:
            numbers.append("")  # filled below, once the row it repeats has its number
        else:
            numbers.append(unique_number())
    for row, original in DUPLICATES.items():
        numbers[row] = numbers[original]
    lines = "".join(f"{n},P{row},{plan}\n" for row, n in enumerate(numbers))
    return ("phone,first_name,plan\n" + lines).encode(), numbers


class HeldLooks:
    """Holds the page's GET /api/campaigns/{id} until `release()`: what the page shows from the
    202 alone stays on screen while the test looks at it, however fast the jobs are."""

    def __init__(self, page: Page, let_through: int = 0) -> None:
        self.held: list[Route] = []
        self.released = False
        self.let_through = let_through  # looks answered before holding starts
        page.route(re.compile(r"/api/campaigns/[^/?]+$"), self.route)

    def route(self, route: Route) -> None:
        if route.request.method != "GET" or self.released:
            route.continue_()
        elif self.let_through > 0:
            self.let_through -= 1
            route.continue_()
        else:
            self.held.append(route)

    def release(self) -> None:
        self.released = True
        for route in self.held:
            route.continue_()


@pytest.fixture(scope="module")
def large_audience(stack: Stack) -> Iterator[str]:
    """A saved audience of MEMBERS members, every one on plan 'free' (saved through the API:
    the console's upload of one is the test above)."""
    data, _ = audience_csv()
    saved = stack.api.post("/audiences", params={"name": "large, all free"}, content=data,
                           headers={"content-type": "text/csv"}, timeout=scaled(120))
    assert saved.status_code == 201, saved.text
    audience = saved.json()
    stack.wait_for(lambda: stack.api.get(f"/audiences/{audience['id']}").json()["status"]
                   == "ready", 120, "the audience imported")
    yield audience["id"]


def test_a_preparation_that_fails_shows_its_error(console: Page, large_audience: str,
                                                  watch: Watch,
                                                  shot: Callable[[str], Path]) -> None:
    """A filter that matches none of a large audience: known only once every row is read, the
    campaign is `failed` and the page says why; so does the list's row."""
    console.get_by_role("button", name="New campaign").click()
    console.get_by_role("combobox", name="Saved audience").select_option(large_audience)
    console.get_by_label("Filter (optional)").fill("plan = 'pro'")
    expect(console.locator("#match-count")).to_have_text(
        f"0 of {MEMBERS} member(s) match", timeout=slow())
    console.get_by_label("Campaign name").fill("nobody is pro")
    console.get_by_label("Text", exact=True).fill("Hi {{first_name}}")
    console.get_by_role("button", name="Prepare and review").click()

    error = console.locator("#preparation-error")
    expect(error).to_contain_text(f"the filter matches none of the {MEMBERS} members",
                                  timeout=slow())
    expect(error).to_contain_text("The campaign could not be prepared")
    expect(error).to_be_focused()
    expect(console.get_by_role("heading", name="Not prepared: nobody is pro")).to_be_visible()
    expect(console.locator("#preparation-status")).to_have_text("failed")
    expect(console.get_by_role("button", name="Cancel campaign")).to_be_hidden()
    expect(console.get_by_role("button", name="Send…")).to_have_count(0)
    shot("failed")

    console.get_by_role("button", name="Back to the list").click()
    row = console.locator("tr", has_text="nobody is pro")
    expect(row).to_contain_text("failed")
    row.get_by_role("button", name="nobody is pro").click()
    expect(error).to_contain_text(f"the filter matches none of the {MEMBERS} members")
    # The way on from there: a new campaign.
    console.get_by_role("button", name="New campaign").click()
    expect(console.get_by_role("heading", name="New campaign")).to_be_focused()
    assert watch.dialogs == [] and watch.page_errors == []


def test_a_campaign_preparing_opened_from_the_list_is_followed_then_reviewed_again(
        console: Page, stack: Stack, large_audience: str, watch: Watch) -> None:
    """Prepared in another session (here through the API): its 202's token is not in this
    browser. Opened from the list while preparing, it shows the progress; once prepared it is
    reviewed again (POST .../review, a new token) and that token sends it."""
    started = stack.api.post("/campaigns", json={
        "name": "preparing elsewhere", "template": "Hi {{first_name}}",
        "audience": {"audienceId": large_audience, "filter": "first_name = 'P3'"}})
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "preparing"
    looks = HeldLooks(console, let_through=1)  # the open's look answers, the first poll waits
    calls: list[tuple[str, str]] = []
    console.on("request", lambda r: calls.append((r.method, r.url.split("/api", 1)[-1]))
               if "/api/campaigns/" in r.url else None)
    console.get_by_role("button", name="Refresh").click()
    row = console.locator("tr", has_text="preparing elsewhere")
    expect(row).to_contain_text("preparing")  # listed before the jobs can have finished
    row.get_by_role("button", name="preparing elsewhere").click()
    review = console.get_by_role("heading", name="Review: preparing elsewhere")
    expect(console.locator("#preparation-panel").or_(review)).to_be_visible()
    if not review.is_visible():  # still preparing when it was opened: its progress
        expect(console.get_by_role("heading", name="Preparing: preparing elsewhere")
               ).to_be_focused()
        expect(console.locator("#preparation-label")).to_contain_text(f"of {MEMBERS:,} rows read")
    looks.release()
    expect(review).to_be_focused(timeout=slow())
    campaign = started.json()["id"]
    assert ("POST", f"/campaigns/{campaign}/review") in calls
    for key, value in {"total": 1, "valid": 1, "invalid": 0, "duplicates": 0}.items():
        assert stat(console, "review-counts", key) == str(value), key
    console.get_by_role("button", name="Send…").click()
    console.get_by_role("dialog", name="Send this campaign?").get_by_role(
        "button", name="Yes, send").click()
    expect(console.locator("#campaign-status")).to_have_text(
        re.compile("^(sending|completed)$"), timeout=slow())
    # The 202's token lapsed with the review: it confirms nothing.
    stale = stack.api.post(f"/campaigns/{campaign}/send",
                           json={"confirmationToken": started.json()["confirmationToken"]})
    assert stale.status_code == 409, stale.text
    assert watch.page_errors == []


# Last in the module: the fan-out of its 1,043 messages keeps the host's campaign jobs busy for a
# while, and the tests above wait on those jobs.
def test_a_large_audience_is_prepared_in_the_background_then_reviewed_and_sent(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    data, numbers = audience_csv()
    sent = in_small_parts(console, 8 * 1024)
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    upload(console, "a thousand and fifty", data, "large.csv")
    expect(console.locator("#upload-ok")).to_contain_text(f"{MEMBERS} member(s)", timeout=slow())
    assert len([m for m, _ in sent if m == "PUT"]) == -(-len(data) // (8 * 1024)) > 1

    looks = HeldLooks(console)
    console.get_by_label("Campaign name").fill("large audience")
    console.get_by_label("Text", exact=True).fill("Hi {{first_name}}, doors open at 9.")
    # Quiet hours around now in every US zone the numbers are in (Pacific to Eastern): the run
    # starts `sending` with every message deferred, so none of 1,043 texts is handed to the
    # emulator while the later tests of the package run (a sent one each is what they wait for).
    console.get_by_label("Hold messages during quiet hours").check()
    pacific = datetime.now(ZoneInfo("America/Los_Angeles"))
    console.get_by_label("Quiet from").fill((pacific - timedelta(hours=1)).strftime("%H:%M"))
    console.get_by_label("Quiet until").fill((pacific + timedelta(hours=5)).strftime("%H:%M"))
    with console.expect_response(lambda r: r.url.endswith("/api/campaigns")
                                 and r.request.method == "POST") as prepared:
        console.get_by_role("button", name="Prepare and review").click()
    assert prepared.value.status == 202
    token = prepared.value.json()["confirmationToken"]

    # The progress panel, from the 202 itself: preparing, the rows read of 1,050, the stage.
    panel = console.locator("#preparation-panel")
    expect(console.get_by_role("heading", name="Preparing: large audience")).to_be_focused()
    expect(console.locator("#preparation-status")).to_have_text("preparing")
    expect(console.locator("#preparation-label")).to_have_text(
        re.compile(rf"^Preparing: [\d,]+ of {MEMBERS:,} rows read \(.+\)$"))
    expect(console.get_by_role("progressbar", name=re.compile("^Preparing:"))).to_have_attribute(
        "max", str(MEMBERS))
    expect(panel.locator("#preparation-counts [data-stat='total'] dd")).to_have_text(
        re.compile(r"^\d+$"))
    expect(console.get_by_role("button", name="Send…")).to_have_count(0)
    shot("preparing")
    looks.release()

    # Prepared: the review of a 201, with the exact counts, and the 202's token sends it.
    expect(console.get_by_role("heading", name="Review: large audience")).to_be_visible(
        timeout=slow())
    expect(panel).to_have_count(0)
    for key, value in {"total": MEMBERS, "valid": VALID, "invalid": len(INVALID),
                       "duplicates": len(DUPLICATES), "optedOut": 0, "deferred": VALID}.items():
        assert stat(console, "review-counts", key) == str(value), key
    invalid = console.locator("table").filter(has_text="Why")
    for bad in INVALID.values():
        expect(invalid).to_contain_text(bad)
    expect(console.locator("#review-samples")).to_contain_text("doors open at 9.")
    expect(console.locator("#review-estimate")).to_contain_text("deferred recipients wait until")
    shot("review")

    console.get_by_role("button", name="Send…").click()
    confirm = console.get_by_role("dialog", name="Send this campaign?")
    expect(confirm).to_contain_text(f"{VALID} recipient(s)")
    with console.expect_request(lambda r: r.url.endswith("/send")) as send:
        confirm.get_by_role("button", name="Yes, send").click()
    assert send.value.post_data_json == {"confirmationToken": token}
    expect(console.locator("#campaign-status")).to_have_text("sending", timeout=slow())
    expect(console.locator("#progress-label")).to_contain_text(f"of {VALID} message(s)")
    shot("sending")
    # Not waiting for the end of quiet hours: canceled, every deferred message with it.
    console.get_by_role("button", name="Cancel campaign").click()
    expect(console.locator("#campaign-status")).to_have_text("canceled", timeout=slow())
    assert all(stack.emulator.state.inbox(n) == [] for n in numbers[:50])
    assert watch.dialogs == [] and watch.page_errors == []
