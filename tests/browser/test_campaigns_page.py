"""The README's campaign walk-through in the console, end to end on the local stack: a CSV with a
bad row (the line is named), then a good one; a filter; a template with placeholders; the review's
exact counts; the confirmation; progress until completed; the texts in the handsets' inboxes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from playwright.sync_api import FilePayload, Page, Route, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import SENDER, Stack


def upload(page: Page, name: str, csv: str | bytes, file_name: str | None = None) -> None:
    """Pick the file, name the audience, press Upload audience."""
    data = csv.encode() if isinstance(csv, str) else csv
    page.get_by_label("CSV file").set_input_files(
        files=[FilePayload(name=file_name or f"{name}.csv", mimeType="text/csv", buffer=data)])
    page.get_by_label("Audience name").fill(name)
    page.get_by_role("button", name="Upload audience").click()


def stat(page: Page, block: str, key: str) -> str:
    return page.locator(f"#{block} [data-stat='{key}'] dd").inner_text()


def test_a_campaign_from_csv_to_the_handsets(console: Page, stack: Stack, watch: Watch,
                                             shot: Callable[[str], Path]) -> None:
    ann, bo, cy, dee = (unique_number() for _ in range(4))
    # Cy opted out earlier, as if Cy had replied STOP.
    stack.api.post("/optouts/add", json={"from": SENDER, "recipients": [{"to": cy}]}
                   ).raise_for_status()
    console.get_by_role("button", name="New campaign").click()
    expect(console.get_by_role("heading", name="New campaign")).to_be_focused()
    console.get_by_label("Upload a CSV").check()

    # A row with a field too many: the 400's detail names its line, shown as text.
    upload(console, "broken", f"phone,first_name,city,plan\n{ann},Ann,Seattle,pro\n"
                              f"{bo},Bo,Seattle,free,extra\n")
    expect(console.locator("#upload-error")).to_contain_text("line 3")
    expect(console.locator("#upload-error")).to_contain_text("expected 4 fields")
    shot("csv-error")

    good = (f"phone,first_name,city,plan\n{ann},Ann,Seattle,pro\n{bo},Bo,Seattle,free\n"
            f"{cy},Cy,Portland,pro\n{ann},Ann,Seattle,pro\n+1425555,Dee,Seattle,pro\n"
            f"{dee},,Seattle,pro\n")
    upload(console, "customers", good)
    expect(console.locator("#upload-ok")).to_contain_text("6 member(s)")
    # The uploaded audience is now the selected saved audience.
    expect(console.get_by_role("combobox", name="Saved audience")).to_contain_text("customers")
    console.get_by_label("Filter (optional)").fill("plan = 'pro'")
    # The live count as the rule is typed (GET /api/audiences/{id}/count).
    expect(console.locator("#match-count")).to_have_text(
        re.compile(r"^5 of 6 member\(s\) match$"))

    console.get_by_label("Campaign name").fill("spring sale")
    text = "Hi {{first_name}}, spring sale in {{city}}: 20% off today. Reply STOP to opt out."
    console.get_by_label("Text", exact=True).fill(text)
    preview = console.locator("#template-preview")
    expect(preview.locator("mark.placeholder")).to_have_text(["{{first_name}}", "{{city}}"])
    expect(preview).to_have_text(text)
    expect(console.locator("#segment-counter")).to_contain_text("GSM-7")
    console.get_by_label("Hold messages during quiet hours").check()
    expect(console.get_by_label("Quiet from")).to_have_value("21:00")
    # Quiet hours that cannot hold the message back now (the handsets' numbers are in Seattle):
    # the default evening hours would defer the run whenever the suite runs in them.
    later = datetime.now(ZoneInfo("America/Los_Angeles")) + timedelta(hours=3)
    console.get_by_label("Quiet from").fill(later.strftime("%H:%M"))
    console.get_by_label("Quiet until").fill((later + timedelta(hours=1)).strftime("%H:%M"))
    shot("new-campaign")

    console.get_by_role("button", name="Prepare and review").click()
    expect(console.get_by_role("heading", name="Review: spring sale")).to_be_visible()
    # The README's exact counts: Bo is not pro, Ann's second row is a duplicate, Cy opted out,
    # +1425555 is no number and the last row has no first name.
    for key, value in {"total": "5", "valid": "1", "invalid": "2", "duplicates": "1",
                       "optedOut": "1", "deferred": "0"}.items():
        assert stat(console, "review-counts", key) == value, key
    invalid = console.locator("table").filter(has_text="Why")
    expect(invalid).to_contain_text("+1425555")
    expect(invalid).to_contain_text("missing variable(s): first_name")
    expect(console.locator("#review-samples")).to_contain_text(
        "Hi Ann, spring sale in Seattle: 20% off today.")
    expect(console.locator("#review-estimate")).to_contain_text("messages a minute")
    shot("review")

    # Send asks first; "Not yet" sends nothing.
    console.get_by_role("button", name="Send…").click()
    confirm = console.get_by_role("dialog", name="Send this campaign?")
    expect(confirm).to_contain_text("1 recipient(s)")
    confirm.get_by_role("button", name="Not yet").click()
    expect(confirm).to_be_hidden()
    assert stack.emulator.state.inbox(ann) == []
    console.get_by_role("button", name="Send…").click()
    confirm.get_by_role("button", name="Yes, send").click()

    expect(console.locator("#campaign-status")).to_have_text("completed", timeout=60_000)
    expect(console.locator("#progress-label")).to_contain_text("1 of 1")
    expect(console.get_by_role("button", name="Cancel campaign")).to_be_disabled()
    shot("progress")
    inbox = stack.wait_for(lambda: stack.emulator.state.inbox(ann), 30, "Ann's text")
    assert [m["message"] for m in inbox] == [
        "Hi Ann, spring sale in Seattle: 20% off today. Reply STOP to opt out."]
    for nobody in (bo, cy, dee):
        assert stack.emulator.state.inbox(nobody) == []

    # The list shows it with its status.
    console.get_by_role("button", name="Back to the list").click()
    row = console.locator("tr", has_text="spring sale").first
    expect(row).to_contain_text("completed")
    shot("list")
    assert watch.dialogs == [] and watch.page_errors == []


def test_a_campaign_prepared_earlier_is_reviewed_and_sent_from_the_list(
        console: Page, stack: Stack, watch: Watch) -> None:
    """Prepared in another session (here through the API): its token is not in this browser;
    opening it from the list reviews it again, and Send works."""
    to = unique_number()
    prepared = stack.api.post("/campaigns", json={
        "name": "prepared yesterday", "template": "Hi {{name}}, doors open at 9.",
        "audience": {"recipients": [{"to": to, "vars": {"name": "Ann"}}]}})
    assert prepared.status_code == 201, prepared.text
    console.get_by_role("button", name="Refresh").click()
    row = console.locator("tr", has_text="prepared yesterday")
    expect(row).to_contain_text("prepared")
    row.get_by_role("button", name="prepared yesterday").click()
    expect(console.get_by_role("heading", name="Review: prepared yesterday")).to_be_focused()
    assert stat(console, "review-counts", "valid") == "1"
    expect(console.locator("#review-samples")).to_contain_text("Hi Ann, doors open at 9.")
    console.get_by_role("button", name="Send…").click()
    console.get_by_role("dialog", name="Send this campaign?").get_by_role(
        "button", name="Yes, send").click()
    expect(console.locator("#campaign-status")).to_have_text("completed", timeout=60_000)
    inbox = stack.wait_for(lambda: stack.emulator.state.inbox(to), 30, "Ann's text")
    assert [m["message"] for m in inbox] == ["Hi Ann, doors open at 9."]
    # The token of the preparation lapsed with the review: it confirms nothing now.
    stale = stack.api.post(f"/campaigns/{prepared.json()['id']}/send",
                           json={"confirmationToken": prepared.json()["confirmationToken"]})
    assert stale.status_code == 409
    assert watch.page_errors == []


def test_the_list_pages_on_past_the_first_fifty(console: Page, stack: Stack) -> None:
    """More than 50 campaigns: the first page shows 50, More shows the rest, each once."""
    def every_campaign() -> list[str]:
        ids: list[str] = []
        after: str | None = None
        while True:
            page = stack.api.get("/campaigns", params={"limit": 200, **(
                {"after": after} if after else {})}).json()
            ids += [c["id"] for c in page["campaigns"]]
            if not (after := page["next"]):
                return ids

    for i in range(max(0, 52 - len(every_campaign()))):
        stack.api.post("/campaigns", json={
            "name": f"filler {i}", "template": "x",
            "audience": {"recipients": [{"to": unique_number()}]}}).raise_for_status()
    stack.api.post("/campaigns", json={
        "name": "one more", "template": "x",
        "audience": {"recipients": [{"to": unique_number()}]}}).raise_for_status()
    stored = every_campaign()
    console.get_by_role("button", name="Refresh").click()
    rows = console.locator("#campaign-list tbody tr")
    expect(rows).to_have_count(50)
    more = console.get_by_role("button", name="More campaigns")
    for _ in range(len(stored) // 50 + 1):
        if more.is_hidden():
            break
        shown = rows.count()
        more.click()
        expect(rows).not_to_have_count(shown)
    expect(more).to_be_hidden()
    listed = [r.get_attribute("data-campaign") for r in rows.all()]
    assert sorted(listed) == sorted(stored)  # every campaign once (the API's order)
    expect(console.locator("tr", has_text="one more")).to_contain_text("prepared")


def test_a_prepared_campaign_can_be_canceled_instead_of_sent(console: Page, stack: Stack) -> None:
    to = unique_number()
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Paste numbers").check()
    console.get_by_label("Phone numbers").fill(to)
    console.get_by_label("Campaign name").fill("never sent")
    console.get_by_label("Text", exact=True).fill("Not today")
    console.get_by_role("button", name="Prepare and review").click()
    expect(console.get_by_role("heading", name="Review: never sent")).to_be_visible()
    console.get_by_role("button", name="Cancel campaign").click()
    expect(console.locator("#campaign-status")).to_have_text("canceled")
    assert stack.emulator.state.inbox(to) == []


def test_a_bad_request_shows_the_problem_per_field(console: Page) -> None:
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Paste numbers").check()
    console.get_by_label("Phone numbers").fill(unique_number())
    console.get_by_label("Text", exact=True).fill("Hello")
    # No campaign name: the server's 400 names the field.
    console.get_by_role("button", name="Prepare and review").click()
    error = console.locator("#prepare-error")
    expect(error.locator(".problem-errors li").first).to_contain_text("name")
    expect(error).to_contain_text("(400)")


def counter_text(stack: Stack, text: str) -> str:
    """What #segment-counter says for `text`: POST /api/segments's answer, in its words."""
    answer = stack.api.post("/segments", json={"message": text})
    answer.raise_for_status()
    s = answer.json()
    forcing = f"; forcing UCS-2: {' '.join(s['ucs2Characters'])}" if s["ucs2Characters"] else ""
    return f"{s['segments']} segment(s), {s['encoding']}, {s['characters']} character(s){forcing}"


def test_the_counter_marks_the_characters_that_force_ucs2(console: Page, stack: Stack) -> None:
    text = "Café ☕ at 5? {{first_name}}"
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Text", exact=True).fill(text)
    preview = console.locator("#template-preview")
    # é is in the GSM-7 alphabet; the cup is not.
    expect(preview.locator("mark.ucs2")).to_have_text(["☕"])
    expect(preview.locator("mark.placeholder")).to_have_text(["{{first_name}}"])
    counter = console.locator("#segment-counter")
    expect(counter).to_contain_text("UCS-2")
    expect(counter).to_contain_text("forcing UCS-2: ☕")
    # The counter is POST /api/segments's answer, word for word.
    expect(counter).to_have_text(counter_text(stack, text))


def test_a_text_typed_in_steps_ends_with_the_count_of_the_final_text(
        console: Page, stack: Stack, watch: Watch) -> None:
    """Every draft's count is held at the network until the next draft is typed; the final
    text's answer comes first and the earlier drafts' answers after it. The counter says it is
    counting while the answer is out (no local guess, no stale count), then shows the final
    text's count and marks, and the late answers change nothing."""
    held: list[Route] = []
    console.route("**/api/segments", lambda route: held.append(route))
    console.get_by_role("button", name="New campaign").click()
    field = console.get_by_label("Text", exact=True)
    counter = console.locator("#segment-counter")
    preview = console.locator("#template-preview")
    drafts = ["Tea", "Tea ☕ at 5", "Tea ☕ at 5 or ✈ {{first_name}}?"]
    for draft in drafts:
        with console.expect_request("**/api/segments") as request:
            field.fill(draft)
            expect(counter).to_have_text("Counting segments…")
        assert request.value.post_data_json == {"message": draft}
    final = drafts[-1]
    # While the final text is being counted nothing is marked as forcing UCS-2 yet.
    expect(preview).to_have_text(final)
    expect(preview.locator("mark.placeholder")).to_have_text(["{{first_name}}"])
    expect(preview.locator("mark.ucs2")).to_have_count(0)
    assert [r.request.post_data_json for r in held] == [{"message": d} for d in drafts]

    held[2].continue_()
    expect(counter).to_have_text(counter_text(stack, final))
    expect(preview.locator("mark.ucs2")).to_have_text(["☕", "✈"])

    for late in reversed(held[:2]):
        with console.expect_event("requestfinished",
                                  lambda r, late=late: r.url == late.request.url
                                  and r.post_data == late.request.post_data):
            late.continue_()
    # The page has run its handlers of the late answers (a round trip through its event loop).
    console.evaluate("() => new Promise((done) => setTimeout(done, 0))")
    expect(counter).to_have_text(counter_text(stack, final))
    expect(preview.locator("mark.ucs2")).to_have_text(["☕", "✈"])
    expect(preview).to_have_text(final)
    assert watch.page_errors == []


def test_a_count_that_fails_says_so_in_the_counter(console: Page) -> None:
    console.route("**/api/segments", lambda route: route.fulfill(
        status=503, content_type="application/problem+json",
        body='{"type": "about:blank", "title": "Service Unavailable", "status": 503, '
             '"detail": "The count <b>is</b> down"}'))
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Text", exact=True).fill("Tea ☕")
    counter = console.locator("#segment-counter")
    expect(counter).to_have_text(
        "Segments not counted: Service Unavailable (503). The count <b>is</b> down")
    expect(console.locator("#template-preview mark.ucs2")).to_have_count(0)
    assert counter.locator("b").count() == 0


def test_a_recurring_campaign_is_scheduled_and_can_be_canceled(console: Page,
                                                               stack: Stack) -> None:
    to = unique_number()
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Paste numbers").check()
    console.get_by_label("Phone numbers").fill(to)
    console.get_by_label("Campaign name").fill("every monday")
    console.get_by_label("Text", exact=True).fill("Weekly news")
    console.get_by_label("Recurring (cron)").check()
    console.get_by_label("Cron (minute hour day month weekday)").fill("0 9 * * 1")
    console.get_by_label("Time zone").fill("Europe/Amsterdam")
    console.get_by_role("button", name="Prepare and review").click()
    expect(console.get_by_role("heading", name="Review: every monday")).to_be_visible()
    console.get_by_role("button", name="Send…").click()
    confirm = console.get_by_role("dialog", name="Send this campaign?")
    expect(confirm).to_contain_text("on its schedule")
    confirm.get_by_role("button", name="Yes, send").click()
    expect(console.locator("#campaign-status")).to_have_text("scheduled")
    expect(console.locator("#progress-label")).to_contain_text("next run")
    console.get_by_role("button", name="Cancel campaign").click()
    expect(console.locator("#campaign-status")).to_have_text("canceled")
    assert stack.emulator.state.inbox(to) == []


def test_a_saved_template_at_a_time(console: Page, stack: Stack) -> None:
    to = unique_number()
    saved = stack.api.post("/templates", json={"name": "reminder {{x}}",
                                                "text": "Your visit is tomorrow, {{name}}"})
    saved.raise_for_status()
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Paste numbers").check()
    console.get_by_label("Phone numbers").fill(to)
    console.get_by_label("Campaign name").fill("reminders")
    console.get_by_role("radio", name="Saved template").check()
    console.get_by_role("combobox", name="Saved template").select_option(saved.json()["id"])
    expect(console.locator("#template-preview mark.placeholder")).to_have_text(["{{name}}"])
    console.get_by_label("At a time").check()
    console.get_by_label("Send at (your local time)").fill("2030-01-31T09:00")
    console.get_by_role("button", name="Prepare and review").click()
    # The pasted number has no `name`: the review says so rather than sending a blank.
    expect(console.get_by_role("heading", name="Review: reminders")).to_be_visible()
    assert stat(console, "review-counts", "invalid") == "1"
    expect(console.locator("table").filter(has_text="Why")).to_contain_text("name")
    expect(console.get_by_role("button", name="Send…")).to_be_disabled()


PART_BYTES = 1024  # the parts' size the tests' uploads are told (the server's is 4 MiB)


def in_small_parts(page: Page, part_bytes: int = PART_BYTES) -> list[tuple[str, str]]:
    """Make the page's uploads go in parts of `part_bytes`: the real server makes each upload,
    and its answer reaches the page with a smaller `partBytes` (any size up to the server's
    is allowed). Returns the audience requests the page makes, (method, path), in order."""
    def shrink(route: Route) -> None:
        answer = route.fetch()
        route.fulfill(response=answer, json={**answer.json(), "partBytes": part_bytes})

    page.route("**/api/audiences/uploads", shrink)
    sent: list[tuple[str, str]] = []
    page.on("request", lambda r: sent.append((r.method, urlsplit(r.url).path))
            if "/api/audiences" in r.url else None)
    return sent


def parts_put(sent: list[tuple[str, str]]) -> list[int]:
    return [int(path.rsplit("/", 1)[1]) for method, path in sent if method == "PUT"]


def test_a_csv_larger_than_a_part_is_sent_in_parts_and_imported(
        console: Page, stack: Stack, watch: Watch, shot: Callable[[str], Path]) -> None:
    """A file of many parts: each part PUT in order (the third is refused once with a 503 and
    sent again), the progress shown as text and in a <progress>, the import followed until
    ready; then it is the selected audience, the rule builder counts it and a campaign's review
    has the exact counts."""
    people = [unique_number() for _ in range(500)]
    rows = [f"{p},Zoë{i},Münster,{'pro' if i % 5 == 0 else 'free'}\n"
            for i, p in enumerate(people)]
    # Ann's second row is a duplicate and +1425555 is no number: members both, pro both.
    data = ("phone,first_name,city,plan\n" + "".join(rows)
            + f"{people[0]},Zoë0,Münster,pro\n+1425555,Nobody,Münster,pro\n").encode()
    parts = -(-len(data) // PART_BYTES)
    assert 15 < parts < 30
    sent = in_small_parts(console)
    held: list[Route] = []
    # Part 2 (the third) is held at its first try, then answered 503; its retry goes through.
    console.route("**/api/audiences/uploads/*/parts/2",
                  lambda route: held.append(route) if not held else route.continue_())
    # The looks at the import wait until the page has shown the 202's progress.
    looks: list[Route] = []
    shown: list[bool] = []
    console.route(re.compile(r"/api/audiences/a[^/]*$"),
                  lambda route: route.continue_() if shown else looks.append(route))

    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    upload(console, "big file", data, "big.csv")

    label = console.locator("#upload-progress-label")
    bar = console.get_by_role("progressbar", name=re.compile("^Sending part"))
    expect(label).to_have_text(f"Sending part 3 of {parts}")
    expect(bar).to_have_attribute("max", str(parts))
    expect(bar).to_have_attribute("value", "2")
    expect(console.get_by_role("button", name="Upload audience")).to_be_disabled()
    shot("parts-sending")
    held[0].fulfill(status=503, content_type="application/problem+json",
                    body='{"title": "Service Unavailable", "status": 503}')

    expect(label).to_have_text(re.compile(
        rf"^Importing: 0 members so far \(0 of {len(data)} bytes\)$"))
    assert parts_put(sent) == [0, 1, 2, 2, *range(3, parts)]
    assert ("POST", "/api/audiences") in sent
    shot("parts-importing")
    shown.append(True)
    for look in looks:
        look.continue_()

    expect(console.locator("#upload-ok")).to_contain_text("502 member(s)")
    expect(console.locator("#campaigns-live")).to_contain_text("502 member(s)")
    select = console.get_by_role("combobox", name="Saved audience")
    expect(select).to_contain_text("big file (502 members)")
    expect(select).to_be_focused()
    console.get_by_label("Filter (optional)").fill("plan = 'pro'")
    expect(console.locator("#match-count")).to_have_text(
        re.compile(r"^102 of 502 member\(s\) match$"))

    console.get_by_label("Campaign name").fill("from a big file")
    console.get_by_label("Text", exact=True).fill("Hallo {{first_name}} in {{city}}")
    console.get_by_role("button", name="Prepare and review").click()
    expect(console.get_by_role("heading", name="Review: from a big file")).to_be_visible()
    for key, value in {"total": "102", "valid": "100", "invalid": "1",
                       "duplicates": "1", "optedOut": "0"}.items():
        assert stat(console, "review-counts", key) == value, key
    expect(console.locator("#review-samples")).to_contain_text("Hallo Zoë0 in Münster")
    assert watch.dialogs == [] and watch.page_errors == []


def test_a_large_csv_with_a_bad_row_far_down_names_its_line(
        console: Page, watch: Watch, shot: Callable[[str], Path]) -> None:
    """The import fails in the background: its error's line and reason are shown as text."""
    good = "".join(f"{unique_number()},P{i},Seattle,free\n" for i in range(300))
    data = (f"phone,first_name,city,plan\n{good}{unique_number()},Bo,Seattle,free,<b>x</b>\n"
            + "".join(f"{unique_number()},Q{i},Seattle,free\n" for i in range(40))).encode()
    sent = in_small_parts(console)
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    upload(console, "broken big file", data, "broken.csv")

    error = console.locator("#upload-error")
    expect(error).to_contain_text("line 302")
    expect(error).to_contain_text("expected 4 fields")
    expect(console.get_by_role("alert").filter(has_text="line 302")).to_be_visible()
    assert parts_put(sent) == list(range(-(-len(data) // PART_BYTES)))
    expect(console.get_by_role("button", name="Upload audience")).to_be_enabled()
    # The audience is not offered (the Saved audience panel is hidden behind the CSV one).
    expect(console.locator("#audience-select")).not_to_contain_text("broken big file")
    expect(console.locator("#campaigns-live")).to_contain_text("could not be imported")
    shot("import-failed")
    assert watch.page_errors == []


def test_a_part_refused_every_time_shows_the_error_after_three_retries(console: Page) -> None:
    sent = in_small_parts(console)
    console.route("**/api/audiences/uploads/*/parts/1", lambda route: route.fulfill(
        status=503, content_type="application/problem+json",
        body='{"title": "Service Unavailable", "status": 503, "detail": "Blob <b>down</b>"}'))
    data = ("phone,first_name\n" + "".join(f"{unique_number()},P{i}\n"
                                           for i in range(100))).encode()
    console.get_by_role("button", name="New campaign").click()
    console.get_by_label("Upload a CSV").check()
    console.get_by_label("CSV file").set_input_files(
        files=[FilePayload(name="flaky.csv", mimeType="text/csv", buffer=data)])
    console.get_by_role("button", name="Upload audience").click()
    error = console.locator("#upload-error")
    expect(error).to_contain_text("Service Unavailable (503)")
    expect(error).to_contain_text("Blob <b>down</b>")
    assert error.locator("b").count() == 0
    assert parts_put(sent) == [0, 1, 1, 1, 1]
    assert ("POST", "/api/audiences") not in sent
    expect(console.get_by_role("button", name="Upload audience")).to_be_enabled()
