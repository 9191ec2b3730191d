"""The web app as people use it, in a real headless Chromium on the devstack: find a
listing, request it with a purpose, the owner reads that purpose and consents, the buyer
downloads and decrypts in the page; a lying gateway is named, too few gateways is a clear
message, and in neither case is anything saved; the audit page; every page loads without
console errors and is usable from the keyboard.

The owner's side of the set-up (describe, create, publish) goes through the CLI, as an
owner does it; everything the tests assert happens in the browser.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Download, Page, Route, expect

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from marketplace.chain.types import DebitState
from marketplace.committee import load_node_key
from marketplace.eip712 import Eip712Domain, EncryptionKey, sign, typed_data
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.shares import EpochShare, ShareBook
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease import NodeShare, SecretScalar
from scripts.devstack import DevStack
from storage.cid import Cid
from tests.browser.conftest import Pages, readme_screenshot
from tests.integration.test_devstack import datadebit

pytestmark = pytest.mark.integration

#: A word only the described listing's description holds.
WORD = "hydrophone"
PURPOSE = "Map whale song near the harbour for a noise study <b>not markup</b>"
#: 3 MB: three 1 MiB envelope chunks and a dozen 256 KiB UnixFS blocks.
FILE_SIZE = 3_000_000


@dataclass(frozen=True)
class Bought:
    """An auto-approved listing with one 3 MB version and buyer A's debit on it."""

    listing: int
    debit: int
    data: bytes


def _market(stack: DevStack) -> MarketClient:
    return MarketClient(connect(stack.rpc_url), stack.market)


def _wait_indexed(stack: DevStack, listing: int, query: str) -> None:
    """Until the catalog has indexed `listing` with its document (it follows the chain)."""
    deadline = time.monotonic() + 30
    while True:
        found = httpx.get(f"{stack.catalog_url}/v1/listings", params={"q": query},
                          timeout=5.0).json()["listings"]
        if any(item["id"] == listing and item["title"] for item in found):
            return
        assert time.monotonic() < deadline, f"the catalog never indexed listing {listing}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def described(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> int:
    """A listing needing consent, described with a title, WORD and an owner key."""
    folder = tmp_path_factory.mktemp("described")
    document = folder / "listing.json"
    document.write_text(json.dumps({
        "schema": "datadebit/listing/v1",
        "title": "Harbour soundscape",
        "description": f"Underwater sound levels from a {WORD} array at the harbour mouth",
        "tags": ["acoustics", "ocean"],
        "license": "CC-BY-4.0",
        "terms": "Research use only.",
        "fields": [{"name": "time", "type": "timestamp"},
                   {"name": "level", "type": "number", "unit": "dB"}],
        "cadence": "hourly",
    }))
    listing = int(datadebit(stack, "owner", "owner", "create-listing", "--describe",
                            str(document), "--price", "0.001eth", "--period", "1d",
                            "--needs-consent").stdout)
    data = folder / "levels.csv"
    data.write_text("time,level\n" + "".join(f"{i},{40 + i % 7}\n" for i in range(2000)))
    datadebit(stack, "owner", "owner", "publish", "--listing", str(listing), str(data))
    _wait_indexed(stack, listing, WORD)
    return listing


@pytest.fixture(scope="module")
def bought(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Bought:
    data = random.Random(13).randbytes(FILE_SIZE)
    path = tmp_path_factory.mktemp("bought") / "data.bin"
    path.write_bytes(data)
    listing = int(datadebit(stack, "owner", "owner", "create-listing", "--price", "0.001eth",
                            "--period", "1d", "--auto-approve").stdout)
    datadebit(stack, "owner", "owner", "publish", "--listing", str(listing), str(path))
    debit = int(datadebit(stack, "buyer_a", "buyer", "request", "--listing", str(listing),
                          "--periods", "1").stdout)
    return Bought(listing, debit, data)


@pytest.fixture(autouse=True)
def all_gateways_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test that stops gateways leaves the next one a whole committee."""
    yield
    if "stack" in request.fixturenames:
        stack: DevStack = request.getfixturevalue("stack")
        down = [i for i, g in stack.gateways.items() if not g.running]
        for index in down:
            stack.start_gateway(index, wait=False)
        for index in down:
            stack.wait_healthy(index)


def _messages(page: Page) -> str:
    return page.locator("#messages").inner_text()


def _recorded_downloads(page: Page) -> list[Download]:
    """Every download the page starts from now on."""
    downloads: list[Download] = []
    # a lambda: Playwright reads the handler's signature, which a builtin method lacks
    page.on("download", lambda d: downloads.append(d))  # noqa: PLW0108
    return downloads


def _download_button(page: Page, debit: int, version: int) -> str:
    return f"button[data-action=download][data-debit-id='{debit}'][data-version='{version}']"


# -- the wallet the tests inject -------------------------------------------------------------


def test_the_test_wallet_signs_typed_data_as_eth_account_does(
    pages: Pages, stack: DevStack
) -> None:
    """The buyer key is derived from this signature: anvil (RFC 6979) and eth_account must
    give the same bytes, or the page would derive another key than the CLI."""
    opened = pages.open("buyer_a")
    domain = Eip712Domain(31337, stack.market)  # type: ignore[arg-type]
    account = stack.accounts["buyer_a"]
    payload = typed_data(domain, EncryptionKey())
    signed = opened.page.evaluate(
        "([account, data]) => window.ethereum.request("
        "{method: 'eth_signTypedData_v4', params: [account, JSON.stringify(data)]})",
        [account.address, payload],
    )
    from eth_account import Account  # noqa: PLC0415

    expected = sign(Account.from_key(account.private_key), domain, EncryptionKey())
    assert signed == "0x" + expected.hex()


# -- finding, requesting, consenting -----------------------------------------------------------


def test_a_search_finds_the_listing_by_a_word_of_its_description(
    pages: Pages, described: int
) -> None:
    page = pages.open("buyer_b").page
    page.fill("#search-q", WORD)
    page.press("#search-q", "Enter")
    result = page.locator(f"#results li.listing[data-listing-id='{described}']")
    expect(result).to_be_visible()
    expect(result.locator("a")).to_have_text("Harbour soundscape")
    assert page.locator("#results li.listing").count() == 1
    readme_screenshot(page, "catalog")


def test_the_buyer_requests_with_a_purpose_and_the_owner_reads_it_and_consents(
    pages: Pages, stack: DevStack, described: int
) -> None:
    buyer = pages.open("buyer_b", f"/listings/{described}").page
    expect(buyer.locator("#listing-consent")).to_have_text("needs the owner's consent")
    buyer.fill("#request-requester", "Harbour research group")
    buyer.fill("#request-purpose", PURPOSE)
    buyer.fill("#request-retention", "deleted after the study")
    buyer.click("#request-submit")
    result = buyer.locator("#request-result[data-debit-id]")
    expect(result).to_be_visible()
    debit = int(result.get_attribute("data-debit-id") or "")
    market = _market(stack)
    on_chain = market.debit(debit)
    assert on_chain.state == DebitState.REQUESTED
    assert on_chain.buyer == stack.accounts["buyer_b"].address

    owner = pages.open("owner", f"/owner/{stack.accounts['owner'].address}").page
    row = owner.locator(f"li.request[data-debit-id='{debit}']")
    expect(row).to_be_visible()
    purpose = row.locator(".purpose")
    assert PURPOSE not in purpose.inner_text()  # sealed to the owner: the server cannot read it
    row.locator("button[data-action=open-purposes]").click()
    expect(purpose).to_contain_text(PURPOSE)  # as text: the markup is not interpreted
    expect(purpose).to_contain_text("Harbour research group")
    assert purpose.locator("b").count() == 0
    row.locator(f"button[data-action=consent][data-debit-id='{debit}']").click()
    expect(owner.locator(f"li.request[data-debit-id='{debit}'][data-state='active']")
           ).to_be_visible()
    assert market.debit(debit).state == DebitState.ACTIVE

    debits = pages.open("buyer_b", f"/buyer/{stack.accounts['buyer_b'].address}").page
    expect(debits.locator(_download_button(debits, debit, 1))).to_be_visible()


# -- downloading -------------------------------------------------------------------------------


def test_the_buyer_downloads_and_the_saved_bytes_are_the_owners(
    pages: Pages, stack: DevStack, bought: Bought, tmp_path: Path
) -> None:
    page = pages.open("buyer_a", f"/buyer/{stack.accounts['buyer_a'].address}").page
    with page.expect_download() as download_info:
        page.click(_download_button(page, bought.debit, 1))
    download: Download = download_info.value
    saved = tmp_path / "saved.bin"
    download.save_as(saved)
    assert saved.read_bytes() == bought.data
    expect(page.locator("#messages .message.success")).to_contain_text("verified and decrypted")
    bar = page.locator("#download-progress")
    assert bar.evaluate("b => b.value === b.max && b.max > 0")
    assert int(bar.get_attribute("data-received") or 0) > FILE_SIZE  # the ciphertext, streamed
    readme_screenshot(page, "download")


def test_the_audit_page_shows_clean(pages: Pages, bought: Bought) -> None:
    page = pages.open("owner", "/audit").page
    expect(page.locator("#audit-verdict")).to_contain_text("clean")
    assert "violations" not in (page.locator("#audit-verdict").get_attribute("class") or "")


@pytest.mark.parametrize("path", ["/", "/listings/{listing}", "/owner/{owner}",
                                  "/buyer/{buyer}", "/audit"])
def test_pages_load_without_console_errors_and_work_from_the_keyboard(
    pages: Pages, stack: DevStack, described: int, path: str
) -> None:
    url = path.format(listing=described, owner=stack.accounts["owner"].address,
                      buyer=stack.accounts["buyer_b"].address)
    opened = pages.open("buyer_b", url)
    page = opened.page
    page.wait_for_load_state("networkidle")
    assert opened.errors == []
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.classList.contains('skip-link')")
    targets = {"/": "#search-q", "/listings/{listing}": "#request-submit"}
    if path in targets:
        reached = False
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate(f"document.activeElement.matches({targets[path]!r})"):
                reached = True
                break
        assert reached, f"Tab never reaches {targets[path]}"


# -- failures: nothing is saved ---------------------------------------------------------------


def _corrupt_share(stack: DevStack, index: int) -> EpochShare:
    """TEST-ONLY FAULT: give stopped gateway `index` a wrong share (a random secret, not
    the one behind its on-chain share key) in its state database, as a lying or broken
    node would have; its prepared shares are dropped so it answers with the wrong share.
    Returns the real share for `_restore_share`."""
    gateway = stack.gateways[index]
    assert not gateway.running
    key = load_node_key(gateway.node_key, stack.passphrase_file.read_text())
    state = GatewayState(SqliteDatabase(gateway.database))
    try:
        book = ShareBook(state, key.account)
        epoch = max(book.epochs())
        real = book.get(epoch)
        assert real is not None
        wrong = NodeShare.from_secret(index, SecretScalar.random(), real.share.epoch)
        _replace_share(state, book, epoch, wrong)
    finally:
        state.db.close()
    return real


def _restore_share(stack: DevStack, index: int, real: EpochShare) -> None:
    gateway = stack.gateways[index]
    key = load_node_key(gateway.node_key, stack.passphrase_file.read_text())
    state = GatewayState(SqliteDatabase(gateway.database))
    try:
        _replace_share(state, ShareBook(state, key.account), real.epoch, real.share)
    finally:
        state.db.close()


def _replace_share(state: GatewayState, book: ShareBook, epoch: int, share: NodeShare) -> None:
    with state.db.transaction(durable=True) as tx:
        row = tx.one("SELECT ceremony_id FROM committee_shares WHERE epoch = ?", (epoch,))
        assert row is not None
        tx.execute("DELETE FROM committee_shares WHERE epoch = ?", (epoch,))
        tx.execute("DELETE FROM prepared")
    book.put(epoch, int(row[0]), share)


def test_a_gateway_serving_a_wrong_share_is_named_and_nothing_is_saved(
    pages: Pages, stack: DevStack, bought: Bought, tmp_path: Path
) -> None:
    """Node 2 answers with a share whose proof fails against its on-chain share key; with
    node 1 down only node 3's share is good: 1 of 2, so no key and no file. (A version
    published after the fault: a node re-serves a release it made before.)"""
    stack.kill_gateway(2)
    real = _corrupt_share(stack, 2)
    try:
        stack.start_gateway(2)
        data = tmp_path / "v2.bin"
        data.write_bytes(random.Random(2).randbytes(100_000))
        out = datadebit(stack, "owner", "owner", "publish", "--listing", str(bought.listing),
                        str(data)).stdout
        version = int(out.split()[0])
        stack.kill_gateway(1)
        page = pages.open("buyer_a", f"/buyer/{stack.accounts['buyer_a'].address}").page
        downloads = _recorded_downloads(page)
        page.click(_download_button(page, bought.debit, version))
        failure = page.locator("#messages .message.error", has_text="Nothing was saved")
        expect(failure).to_be_visible()
        text = _messages(page)
        named = f"gateway 2 ({stack.gateways[2].url})"
        assert named in text and "proof" in text, text
        assert f"gateway 1 ({stack.gateways[1].url})" in text and "unreachable" in text
        assert downloads == []
    finally:
        stack.kill_gateway(2)
        _restore_share(stack, 2, real)


def test_with_two_gateways_down_the_page_says_so_and_saves_nothing(
    pages: Pages, stack: DevStack, bought: Bought
) -> None:
    stack.kill_gateway(1)
    stack.kill_gateway(3)
    page = pages.open("buyer_a", f"/buyer/{stack.accounts['buyer_a'].address}").page
    downloads = _recorded_downloads(page)
    page.click(_download_button(page, bought.debit, 1))
    failure = page.locator("#messages .message.error", has_text="Nothing was saved")
    expect(failure).to_be_visible()
    text = failure.inner_text()
    assert "1 valid key share, 2 needed" in text, text
    for index in (1, 3):
        assert f"gateway {index} ({stack.gateways[index].url}): unreachable" in text, text
    assert downloads == []
    assert page.locator("#download-progress").evaluate("b => b.value") == 0


def _saved_file(page: Page) -> dict[str, object]:
    """What the page did with the file the (fake) save picker gave it."""
    saved: dict[str, object] = page.evaluate(
        "() => { const f = window.__savedFile; let n = 0; for (const p of f.parts) n += p.length;"
        " return {name: f.name, size: n, closed: f.closed, aborted: f.aborted,"
        " removed: f.removed}; }"
    )
    return saved


def test_with_a_save_picker_the_file_is_streamed_and_committed_only_when_verified(
    pages: Pages, stack: DevStack, bought: Bought
) -> None:
    """The showSaveFilePicker path: written as it streams, committed by close() once all
    verified; the same page with too few gateways aborts and removes the file instead."""
    address = stack.accounts["buyer_a"].address
    page = pages.open("buyer_a", f"/buyer/{address}", file_picker="fake").page
    page.click(_download_button(page, bought.debit, 1))
    expect(page.locator("#messages .message.success")).to_be_visible()
    written = page.evaluate(
        "async () => { const f = window.__savedFile; const all = new Uint8Array("
        "f.parts.reduce((n, p) => n + p.length, 0)); let at = 0;"
        " for (const p of f.parts) { all.set(p, at); at += p.length; }"
        " const d = new Uint8Array(await crypto.subtle.digest('SHA-256', all));"
        " return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join(''); }"
    )
    assert written == hashlib.sha256(bought.data).hexdigest()
    saved = _saved_file(page)
    assert saved["closed"] is True and saved["aborted"] is False
    assert saved["name"] == f"listing-{bought.listing}-version-1.bin"

    stack.kill_gateway(1)
    stack.kill_gateway(3)
    failing = pages.open("buyer_a", f"/buyer/{address}", file_picker="fake").page
    failing.click(_download_button(failing, bought.debit, 1))
    expect(failing.locator("#messages .message.error", has_text="Nothing was saved")
           ).to_be_visible()
    saved = _saved_file(failing)
    assert saved["closed"] is False and saved["aborted"] is True and saved["removed"] is True


def _flip_middle(body: bytes) -> bytes:
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1:]


def _before_final(body: bytes) -> bytes:
    """The envelope up to its last full frame: every frame there authenticates."""
    header, frame = 65, (1 << 20) + 17  # docs/protocol.md §3: 1 MiB chunks by default
    return body[: header + (len(body) - header) // frame * frame]


#: The single-block raw CID of `hello world\n`: a real CID, of other content.
OTHER_CID = Cid.parse("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4")


def _other_cid_text(body: bytes) -> bytes:
    return json.dumps({**json.loads(body), "cid": OTHER_CID.text}).encode()


def _other_cid_bytes(body: bytes) -> bytes:
    return json.dumps({**json.loads(body), "cidBytes": "0x" + OTHER_CID.binary.hex()}).encode()


#: What a lying web server (or store) could send instead of the real answers, and the
#: page's words for it: (route pattern, rewrite of the real body, expected message).
LIES = {
    "a flipped ciphertext byte": ("**/content/*", _flip_middle, "failed decryption"),
    "a ciphertext cut short": ("**/content/*", lambda b: b[:-100], "failed decryption"),
    "a ciphertext cut before FINAL": ("**/content/*", _before_final, "before its FINAL frame"),
    "bytes appended": ("**/content/*", lambda b: b + b"\0" * 32, "failed decryption"),
    "another CID for the version": ("**/api/listings/*/versions/*", _other_cid_text, "CID"),
    "another CID's bytes for the version": (
        "**/api/listings/*/versions/*", _other_cid_bytes, "CID",
    ),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_server_gets_nothing_saved(
    pages: Pages, stack: DevStack, bought: Bought, lie: str
) -> None:
    """The page checks what the web server sends (the ciphertext chunk by chunk and against
    its CID, the version's CID against the page's): a lie stops the download, the picked
    file is aborted and removed, never committed."""
    pattern, rewrite, expected = LIES[lie]
    page = pages.open("buyer_a", f"/buyer/{stack.accounts['buyer_a'].address}",
                      file_picker="fake").page

    def lying(route: Route) -> None:
        real = route.fetch()
        route.fulfill(response=real, body=rewrite(real.body()))

    page.route(pattern, lying)
    downloads = _recorded_downloads(page)
    page.click(_download_button(page, bought.debit, 1))
    failure = page.locator("#messages .message.error", has_text="Nothing was saved")
    expect(failure).to_be_visible()
    assert expected in failure.inner_text()
    saved = _saved_file(page)
    assert saved["closed"] is False and saved["aborted"] is True and saved["removed"] is True
    assert downloads == []
