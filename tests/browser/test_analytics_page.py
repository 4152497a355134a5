"""The Analytics page in a real Chromium: a chart drawn from real figures. Messages with their own
tag are sent (three delivered, one failed, one blocked by an opt-out); once the API counts them,
the page's bars, points, text alternatives and totals show exactly those figures."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import Watch
from tests.numbers import unique_number
from tests.stack import SENDER, Stack

DELIVERED = [unique_number() for _ in range(3)]
FAILING = "+14255550000"  # the emulator fails numbers ending in 0000 (4006)
BLOCKED = unique_number()


def figures(stack: Stack, tag: str) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    answer = stack.api.get("/analytics", params={
        "from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat(), "tag": tag})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def bar_values(page: Page, series: str) -> list[int]:
    bars = page.locator(f"#chart-counts rect.bar[data-series='{series}']")
    return [int(v or 0) for v in (b.get_attribute("data-value") for b in bars.all())]


def test_the_charts_are_drawn_from_real_figures(console: Page, stack: Stack, watch: Watch,
                                                shot: Callable[[str], Path]) -> None:
    tag = f"chart-{uuid.uuid4().hex[:10]}"
    added = stack.api.post("/optouts/add", json={"from": SENDER, "recipients": [{"to": BLOCKED}]})
    assert added.status_code == 200, added.text
    sent = stack.api.post("/messages", json={
        "from": SENDER, "to": [*DELIVERED, FAILING, BLOCKED], "message": "Spring sale", "tag": tag})
    assert sent.status_code == 202, sent.text
    assert [m["status"] for m in sent.json()["messages"]] == ["queued"] * 4 + ["blocked"]

    def counted() -> dict[str, Any] | None:
        data = figures(stack, tag)
        t = data["totals"]
        return data if (t["delivered"], t["failed"], t["blocked"]) == (3, 1, 1) else None

    data = stack.wait_for(counted, what="the analytics to count the tag's outcomes",
                          explain=lambda: figures(stack, tag)["totals"])
    totals = data["totals"]
    day = next(d for d in data["days"] if d["delivered"])

    nav = console.get_by_role("navigation", name="Console pages")
    nav.get_by_role("link", name="Analytics").click()
    expect(console.get_by_role("heading", name="Analytics", level=1)).to_be_visible()
    # The default range is the last 7 days (UTC).
    today = datetime.now(UTC).date()
    week_ago = (today - timedelta(days=6)).isoformat()
    expect(console.get_by_label("From (UTC day)")).to_have_value(week_ago)
    expect(console.get_by_label("To (UTC day, included)")).to_have_value(today.isoformat())
    console.get_by_label("Tag").fill(tag)
    console.get_by_role("button", name="Show").click()
    expect(console.locator("#an-status")).to_contain_text(f"{totals['sent']} sent, 3 delivered")

    # One bar per series and day, each carrying the day's figure.
    chart = console.locator("#chart-counts")
    expect(chart.locator("rect.bar")).to_have_count(4 * len(data["days"]))
    for series in ("sent", "delivered", "failed", "blocked"):
        assert bar_values(console, series) == [d[series] for d in data["days"]], series
    assert sum(bar_values(console, "delivered")) == 3
    assert sum(bar_values(console, "failed")) == 1
    assert sum(bar_values(console, "blocked")) == 1
    # Heights are proportional to the figures: the failed bar is a third of the delivered one.
    bar = f"#chart-counts rect.bar[data-date='{day['date']}']"
    def height(series: str) -> float:
        return float(console.locator(f"{bar}[data-series='{series}']").get_attribute("height") or 0)

    delivered_h, failed_h = height("delivered"), height("failed")
    assert delivered_h > 0 and abs(failed_h * 3 - delivered_h) < 0.05

    # The text alternatives hold the same figures.
    label = chart.get_attribute("aria-label") or ""
    assert f"{day['date']}: sent {day['sent']}, delivered 3, failed 1, blocked 1" in label
    row = console.locator(f"#an-counts-table tr[data-date='{day['date']}']")
    expect(row.locator("td[data-series='delivered']")).to_have_text("3")
    expect(row.locator("td[data-series='failed']")).to_have_text("1")

    # The rates chart: that day's delivery rate point at 3 / (3 + 1).
    point = console.locator(
        f"#chart-rates .point[data-series='deliveryRate'][data-date='{day['date']}']")
    expect(point).to_have_attribute("data-value", "0.75")
    rates_label = console.locator("#chart-rates").get_attribute("aria-label") or ""
    assert "delivery rate 75.0%" in rates_label

    totals_table = console.locator("#an-totals")
    expect(totals_table.locator("tr[data-key='delivered'] td")).to_have_text("3")
    expect(totals_table.locator("tr[data-key='failed'] td")).to_have_text("1")
    expect(totals_table.locator("tr[data-key='blocked'] td")).to_have_text("1")
    expect(totals_table.locator("tr[data-key='deliveryRate'] td")).to_have_text("75.0%")
    shot("analytics")
    assert watch.dialogs == [] and watch.page_errors == [] and watch.console_errors == []
