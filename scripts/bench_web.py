"""Benchmark the web app on the devstack in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright): page load times, and the in-browser download-and-decrypt of one
version against the CLI's `buyer fetch` of the same version.

    .venv/bin/python -m scripts.bench_web [--size-mb 50] [--loads 7] [--downloads 3]

Starts a devstack with the web app (anvil, js-ipfs, 3 gateways 2-of-3, catalog, `web
serve`), creates a described listing and an auto-approved one with a random version of
`--size-mb` MB, and buyer A's debit on it. Then:
- page loads: catalog, listing, the buyer's debits and the audit page, `--loads` times each
  in a fresh browser context; the figure is the median of the Navigation Timing `loadEventEnd`
  (server render, HTML, CSS and the page's ES modules: ethers, libsodium, ...);
- in-browser download: click to the page's success message (wallet signatures through
  anvil, t key requests, DLEQ checks, capsule, streaming CID check + secretstream
  decryption into memory, the Blob handed over), median of `--downloads`; the saved file is
  checked byte for byte afterwards (outside the timing);
- `datadebit buyer fetch` of the same version as a subprocess (Python start-up included),
  median of `--downloads`.
Never used by tests; prints a Markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from scripts.devstack import ROOT, DevStack

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PROVIDER_JS = (ROOT / "tests" / "browser" / "provider.js").read_text(encoding="utf-8")
TIMEOUT_MS = 600_000


def cli(stack: DevStack, role: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "marketplace.cli", *args], cwd=ROOT, env=stack.cli_env(role),
        capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"`datadebit {' '.join(args)}` failed: {done.stderr.strip()}")
    return done.stdout


def open_page(browser: Browser, stack: DevStack, role: str) -> Page:
    context = browser.new_context(accept_downloads=True)
    context.set_default_timeout(TIMEOUT_MS)
    wallet = {"rpc": stack.rpc_url, "account": stack.accounts[role].address,
              "filePicker": "none"}
    context.add_init_script(script=PROVIDER_JS.replace("__CONFIG__", json.dumps(wallet)))
    return context.new_page()


def page_load_ms(browser: Browser, stack: DevStack, path: str) -> float:
    page = open_page(browser, stack, "buyer_a")
    try:
        page.goto(stack.web_url + path, wait_until="load")
        loaded: float = page.evaluate(
            "() => performance.getEntriesByType('navigation')[0].loadEventEnd"
        )
        return loaded
    finally:
        page.context.close()


def browser_download_s(
    browser: Browser, stack: DevStack, debit: int, out: Path, digest: str
) -> float:
    page = open_page(browser, stack, "buyer_a")
    try:
        page.goto(f"{stack.web_url}/buyer/{stack.accounts['buyer_a'].address}")
        button = f"button[data-action=download][data-debit-id='{debit}'][data-version='1']"
        with page.expect_download(timeout=TIMEOUT_MS) as info:
            start = time.perf_counter()
            page.click(button)
            page.locator("#messages .message.success").wait_for(timeout=TIMEOUT_MS)
            seconds = time.perf_counter() - start
        info.value.save_as(out)
        if hashlib.sha256(out.read_bytes()).hexdigest() != digest:
            raise SystemExit("the browser saved other bytes than the owner published")
        out.unlink()
        return seconds
    finally:
        page.context.close()


def cli_fetch_s(stack: DevStack, debit: int, out: Path, digest: str) -> float:
    start = time.perf_counter()
    cli(stack, "buyer_a", "buyer", "fetch", "--debit", str(debit), "--version", "1",
        "--out", str(out))
    seconds = time.perf_counter() - start
    if hashlib.sha256(out.read_bytes()).hexdigest() != digest:
        raise SystemExit("the CLI wrote other bytes than the owner published")
    out.unlink()
    return seconds


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench_web", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=50, help="version size in MB (10^6)")
    parser.add_argument("--loads", type=int, default=7, help="loads of each page")
    parser.add_argument("--downloads", type=int, default=3, help="downloads of each kind")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="datadebit-bench-web-"))
    data = folder / "version.bin"
    data.write_bytes(os.urandom(args.size_mb * 10**6))
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    with DevStack.start(folder / "state", web=True) as stack:
        document = folder / "listing.json"
        document.write_text(json.dumps({
            "schema": "datadebit/listing/v1", "title": "Benchmark listing",
            "description": "A listing for the page-load benchmark", "tags": ["bench"],
            "license": "CC0-1.0", "fields": [{"name": "value", "type": "number"}],
        }))
        described = int(cli(stack, "owner", "owner", "create-listing", "--describe",
                            str(document), "--price", "0.001eth", "--period", "1d",
                            "--needs-consent"))
        listing = int(cli(stack, "owner", "owner", "create-listing", "--price", "0.001eth",
                          "--period", "1d", "--auto-approve"))
        cli(stack, "owner", "owner", "publish", "--listing", str(listing), str(data))
        debit = int(cli(stack, "buyer_a", "buyer", "request", "--listing", str(listing),
                        "--periods", "1"))
        paths = {
            "catalog `/`": "/",
            "listing `/listings/{id}`": f"/listings/{described}",
            "debits `/buyer/{address}`": f"/buyer/{stack.accounts['buyer_a'].address}",
            "audit `/audit`": "/audit",
        }
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            loads = {name: [page_load_ms(browser, stack, path) for _ in range(args.loads)]
                     for name, path in paths.items()}
            in_browser = [browser_download_s(browser, stack, debit, folder / "b.bin", digest)
                          for _ in range(args.downloads)]
            browser.close()
        by_cli = [cli_fetch_s(stack, debit, folder / "c.bin", digest)
                  for _ in range(args.downloads)]
    size = args.size_mb * 10**6
    print(f"CPU: {cpu()} ({os.cpu_count()} cores); Chromium at {CHROMIUM}")
    print()
    print(f"| page | median load (ms, n={args.loads}) | min | max |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in loads.items():
        print(f"| {name} | {statistics.median(times):.0f} | {min(times):.0f} | {max(times):.0f} |")
    print()
    print(f"| {args.size_mb} MB version, median of {args.downloads} | seconds | MB/s |")
    print("| --- | ---: | ---: |")
    for name, runs in (("in the browser (click to verified, decrypted file)", in_browser),
                       ("`datadebit buyer fetch` (process start to file)", by_cli)):
        median = statistics.median(runs)
        print(f"| {name} | {median:.2f} | {size / 1e6 / median:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
