"""Browser tests: the console in Debian's Chromium, driven by Playwright, on the whole local stack
(tests/stack.py, package-scoped as for tests/e2e).

Playwright drives the system browser through `executable_path`; `playwright install` (a download
from a CDN) is never used. `make install` installs Debian's `chromium` when it is missing. Each
test gets a fresh profile (user data dir) and leaves a screenshot of its last state in its
tmp dir (`shot` takes more along the way).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from tests.stack import FUNCTION_KEY, Stack, start_stack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# Playwright's auto-waiting deadline for each expect/locator action: room for a loaded machine.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="package")
def stack(azurite_connection_string: str, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    with start_stack(azurite_connection_string, tmp_path_factory.mktemp("host")) as running:
        yield running


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    with sync_playwright() as p:
        yield p


@dataclass
class Watch:
    """What the page did that a test may assert on: dialogs (alert() from an injected script
    would be one), console errors (a CSP violation is one), uncaught page errors."""

    dialogs: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def context(playwright: Playwright, tmp_path: Path) -> Iterator[BrowserContext]:
    ctx = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900})
    try:
        yield ctx
    finally:
        ctx.close()
        shutil.rmtree(tmp_path / "profile", ignore_errors=True)


@pytest.fixture
def page(context: BrowserContext, watch: Watch, tmp_path: Path) -> Iterator[Page]:
    p = context.pages[0] if context.pages else context.new_page()

    def on_dialog(dialog: Dialog) -> None:
        watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watch.console_errors.append(message.text)

    p.on("dialog", on_dialog)
    p.on("console", on_console)
    p.on("pageerror", lambda error: watch.page_errors.append(str(error)))
    yield p
    p.screenshot(path=str(tmp_path / "last.png"), full_page=True)


@pytest.fixture
def shot(page: Page, tmp_path: Path) -> Callable[[str], Path]:
    """Save a full-page screenshot named `name` in the test's tmp dir; returns its path."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def console_url(stack: Stack) -> str:
    return str(stack.api.base_url).rstrip("/") + "/console"


def enter_key(page: Page, key: str) -> None:
    """Answer the key dialog as a user does: the labelled field, then the button."""
    dialog = page.get_by_role("dialog", name="Function key")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Function key").fill(key)
    dialog.get_by_role("button", name="Use this key").click()
    expect(dialog).to_be_hidden()


@pytest.fixture
def console(page: Page, console_url: str) -> Page:
    """The console open with the right key, on the Campaigns page."""
    page.goto(console_url)
    enter_key(page, FUNCTION_KEY)
    expect(page.get_by_role("heading", name="Campaigns", level=1)).to_be_visible()
    return page
