"""The web app in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright; no browser is ever downloaded) against one devstack with the web app for the
whole directory: anvil, js-ipfs, three gateway processes (2-of-3), the catalog and
`datadebit web serve`.

The wallet is a test-only EIP-1193 provider (provider.js) injected into every page: it
forwards JSON-RPC to anvil, whose dev accounts are unlocked, so anvil signs the
transactions and the EIP-712 messages as a wallet would.

A failed test leaves a screenshot and the HTML of each of its pages in test-artifacts/,
and the gateways' and the web server's log tails in its report.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    expect,
    sync_playwright,
)

from scripts.devstack import ROOT, DevStack

CHROMIUM = "/usr/bin/chromium"
#: Quiet on a closed network (no background fetches, updates or sync), no GPU, as root.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
#: Set to 1 to (re)write the README's screenshots (docs/img/); never in CI.
README_SHOTS_ENV = "DATADEBIT_README_SCREENSHOTS"
PROVIDER_JS = (Path(__file__).parent / "provider.js").read_text(encoding="utf-8")
#: Milliseconds a page action or an `expect` may wait (a download includes n wallet
#: signatures and t key requests; CI machines are loaded).
ACTION_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    with DevStack.start(tmp_path_factory.mktemp("web-devstack") / "state", web=True) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `bash scripts/dev test` installs Debian's chromium")
    expect.set_options(timeout=ACTION_TIMEOUT_MS)  # Playwright's own default is 5 s
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@dataclass
class OpenedPage:
    """A page with the test wallet of one account, and what its console reported."""

    page: Page
    role: str
    errors: list[str] = field(default_factory=list)


@dataclass
class Pages:
    """Opens pages, each in a fresh browser context (its own storage) with a wallet."""

    browser: Browser
    stack: DevStack
    downloads: Path
    opened: list[OpenedPage] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def open(self, role: str, path: str = "/", *, file_picker: str = "none") -> OpenedPage:
        """A page at `path` of the web app whose wallet is `role`'s dev account. With
        `file_picker` "none" the page has no showSaveFilePicker (Playwright cannot answer
        a native dialog), so a download takes the Blob path; "fake" puts a recording
        stand-in in its place (window.__savedFile)."""
        context = self.browser.new_context(accept_downloads=True)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        self.contexts.append(context)
        wallet = {"rpc": self.stack.rpc_url, "account": self.stack.accounts[role].address,
                  "filePicker": file_picker}
        context.add_init_script(script=PROVIDER_JS.replace("__CONFIG__", json.dumps(wallet)))
        page = context.new_page()
        opened = OpenedPage(page, role)
        page.on("console", lambda m: _console_error(opened, m))
        page.on("pageerror", lambda e: opened.errors.append(f"uncaught: {e}"))
        self.opened.append(opened)
        page.goto(self.stack.web_url + path)
        return opened

    def close(self) -> None:
        for context in self.contexts:
            context.close()


def _console_error(opened: OpenedPage, message: ConsoleMessage) -> None:
    if message.type == "error":
        opened.errors.append(message.text)


@pytest.fixture
def pages(browser: Browser, stack: DevStack, tmp_path: Path) -> Iterator[Pages]:
    opened = Pages(browser, stack, tmp_path)
    yield opened
    opened.close()


def readme_screenshot(page: Page, name: str) -> None:
    """With DATADEBIT_README_SCREENSHOTS=1, save `page` as docs/img/<name>.png."""
    if os.environ.get(README_SHOTS_ENV) == "1":
        folder = ROOT / "docs" / "img"
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure: a screenshot and the HTML of each page the test opened, into
    test-artifacts/, and the gateways' and web server's log tails in the report."""
    report = yield
    if report.failed and report.when in ("call", "setup"):
        funcargs = getattr(item, "funcargs", {})
        opened = funcargs.get("pages")
        if isinstance(opened, Pages):
            _save_artifacts(item.name, opened)
        stack = funcargs.get("stack")
        if isinstance(stack, DevStack):
            report.sections.append(("gateway logs", stack.log_tails()))
            report.sections.append(("web server log", _tail(stack.web_log)))
    return report


def _save_artifacts(test_name: str, opened: Pages) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
    for number, one in enumerate(opened.opened, start=1):
        if one.page.is_closed():
            continue
        try:
            one.page.screenshot(path=str(ARTIFACTS / f"{stem}-{number}-{one.role}.png"),
                                full_page=True)
            (ARTIFACTS / f"{stem}-{number}-{one.role}.html").write_text(
                one.page.content(), encoding="utf-8")
        except Exception as e:  # an artifact must not hide the failure
            (ARTIFACTS / f"{stem}-{number}-{one.role}.txt").write_text(f"no screenshot: {e}")


def _tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-size:]
    except OSError:
        return "(no log)"
