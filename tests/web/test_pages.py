"""The server-rendered pages on a LocalNetwork: what each shows, the DOM hooks the page
scripts and the browser tests rely on, and hostile listing and purpose texts escaped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from marketplace.app.browse import versions_of
from tests.web.conftest import HOSTILE, WebWorld

ESCAPED = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;"


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text of the page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def find(self, tag: str | None = None, **attrs: str) -> list[dict[str, str]]:
        wanted = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(a.get(k) == v for k, v in wanted.items())]

    def one(self, tag: str | None = None, **attrs: str) -> dict[str, str]:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]


def scripts_in(html: str) -> list[str]:
    """The bodies of the page's <script> elements (the import map is the only inline one)."""
    return re.findall(r"<script[^>]*>(.*?)</script>", html, flags=re.S)


def assert_layout(html: str) -> Elements:
    """What every page has: messages region, wallet controls, main, skip link, import map."""
    page = Elements(html)
    page.one("div", id="messages", role="status", aria_live="polite")
    page.one("button", id="connect-wallet")
    page.one("span", id="wallet-address")
    page.one("main", id="main")
    page.one("a", href="#main", **{"class": "skip-link"})
    page.one("script", type="importmap")
    assert '"ethers"' in html and "Traceback" not in html
    return page


def test_catalog_searches_by_a_word_of_the_description(world: WebWorld) -> None:
    response = world.client().get("/", params={"q": "sensors"})
    assert response.status_code == 200
    page = assert_layout(response.text)
    page.one("form", role="search", method="get", action="/")
    page.one("input", id="search-q", name="q", value="sensors")
    assert page.find("label", **{"for": "search-q"})
    rows = page.find("li", **{"class": "listing"})
    assert [r["data-listing-id"] for r in rows] == [str(world.air.listing_id)]
    page.one("a", href=f"/listings/{world.air.listing_id}")
    assert "Air quality in Lyon" in response.text and "0.001 ETH" in response.text
    assert "needs the owner's consent" in response.text


def test_catalog_filters_and_empty_results(world: WebWorld) -> None:
    client = world.client()
    tagged = Elements(client.get("/", params={"tag": "evil"}).text)
    assert [r["data-listing-id"] for r in tagged.find("li", **{"class": "listing"})] == [
        str(world.hostile.listing_id)]
    cheap = client.get("/", params={"max_price": "0.0001eth"})
    assert cheap.status_code == 200 and "No listings found" in cheap.text
    assert not Elements(cheap.text).find("li", **{"class": "listing"})


def test_hostile_listing_texts_are_escaped(world: WebWorld) -> None:
    client = world.client()
    found = client.get("/", params={"q": "evil"}).text
    listing = client.get(f"/listings/{world.hostile.listing_id}").text
    for html in (found, listing):
        assert HOSTILE not in html and ESCAPED in html
        assert all("alert" not in body for body in scripts_in(html))
    assert listing.count(ESCAPED) >= 4  # title (twice: <title> and <h1>), description, terms


def test_listing_page_shows_terms_versions_and_request_form(world: WebWorld) -> None:
    response = world.client().get(f"/listings/{world.air.listing_id}")
    assert response.status_code == 200
    page = assert_layout(response.text)
    for text in ("Air quality in Lyon", "Hourly PM2.5 readings", "CC-BY-4.0", "hourly",
                 "No resale.", "pm25", "µg/m³", "0.001 ETH per period", "1d",
                 "needs the owner's consent", world.owner.address):
        assert text in response.text, text
    [published] = versions_of(world.net.market, world.air.listing_id)
    row = page.one("tr", **{"class": "version"})
    assert (row["data-version"], row["data-cid"]) == ("1", published.cid.text)
    form = page.one("form", id="request-form")
    assert form["data-listing-id"] == str(world.air.listing_id)
    assert form["data-owner-key"] == world.owner.owner_key_hex()
    assert form["data-document-ok"] == "true" and form["data-auto-approve"] == "false"
    names = {a["name"] for a in page.find("input") + page.find("textarea") if "name" in a}
    assert {"requester", "purpose", "intendedUse", "retention", "contact", "periods",
            "consentWithin"} <= names
    assert page.one("input", name="periods")["value"] == "1"
    for control in page.find("input") + page.find("textarea"):
        if control.get("id", "").startswith("request-"):
            assert page.find("label", **{"for": control["id"]}), control
    page.one("button", id="request-submit", type="submit")
    page.one("script", src="/static/js/request.js")


def test_owner_inbox_lists_pending_and_active_debits(world: WebWorld) -> None:
    response = world.client().get(f"/owner/{world.owner.address.lower()}")
    assert response.status_code == 200
    page = assert_layout(response.text)
    rows = {r["data-debit-id"]: r for r in page.find("li", **{"class": "request"})}
    sealed, plain, active = (str(d.debit.debit_id)
                             for d in (world.sealed, world.plain, world.active))
    assert rows[sealed]["data-state"] == rows[plain]["data-state"] == "requested"
    assert rows[active]["data-state"] == "active"
    for debit_id in (sealed, plain):
        page.one("button", data_action="consent", data_debit_id=debit_id)
        page.one("button", data_action="reject", data_debit_id=debit_id)
    page.one("button", data_action="revoke", data_debit_id=active)
    assert page.find("button", data_action="open-purposes")
    sealed_block = page.one("div", data_sealed="true")
    assert sealed_block["data-purpose-cid"] == world.sealed.purpose_cid.text  # type: ignore[union-attr]
    # the plain purpose is on the page as text, its hostile parts escaped
    assert f"study {ESCAPED}" in response.text and HOSTILE not in response.text
    assert "asthma study" not in response.text  # sealed: only the owner's key opens it
    page.one("script", src="/static/js/inbox.js")


def test_buyer_page_lists_debits_and_download_buttons(world: WebWorld) -> None:
    response = world.client().get(f"/buyer/{world.buyer.wallet.address}")
    assert response.status_code == 200
    page = assert_layout(response.text)
    rows = {r["data-debit-id"]: r for r in page.find("li", **{"class": "debit"})}
    assert set(rows) == {str(d.debit.debit_id) for d in (world.sealed, world.plain, world.active)}
    assert rows[str(world.active.debit.debit_id)]["data-state"] == "active"
    [published] = versions_of(world.net.market, world.air.listing_id)
    button = page.one("button", data_action="download")
    assert button == {
        "type": "button", "data-action": "download",
        "data-debit-id": str(world.active.debit.debit_id),
        "data-listing-id": str(world.air.listing_id), "data-version": "1",
        "data-cid": published.cid.text,
    }
    page.one("progress", id="download-progress")


def test_audit_page_shows_a_clean_market(world: WebWorld) -> None:
    response = world.client().get("/audit")
    assert response.status_code == 200
    page = assert_layout(response.text)
    page.one("p", id="audit-verdict")
    verdict = re.search(r'id="audit-verdict"[^>]*>(.*?)</p>', response.text, re.S)
    assert verdict is not None and "clean" in verdict.group(1)
    checks = [a["data-check"] for t, a in page.tags if t == "tr" and "data-check" in a]
    assert {"balance invariant", "state transitions", "content (CIDs)"} <= set(checks)
    assert 'id="audit-violations"' not in response.text  # none to list


@pytest.mark.parametrize("role", ["owner", "buyer"])
def test_connect_pages_work_without_javascript(world: WebWorld, role: str) -> None:
    client = world.client()
    page = assert_layout(client.get(f"/{role}").text)
    page.one("div", id="connect-prompt", data_target=f"/{role}/")
    page.one("input", id="address-input", name="address")
    address = world.owner.address
    moved = client.get(f"/{role}", params={"address": address.lower()}, follow_redirects=False)
    assert moved.status_code == 303 and moved.headers["location"] == f"/{role}/{address}"


def test_static_files_are_served(world: WebWorld) -> None:
    client = world.client()
    for path in ("/static/js/wallet.js", "/static/js/request.js", "/static/js/inbox.js",
                 "/static/js/messages.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert "javascript" in response.headers["content-type"]
    assert "text/css" in client.get("/static/css/site.css").headers["content-type"]


def test_an_audit_report_is_reused_briefly_and_concurrent_visits_share_one_run() -> None:
    """A visit to /audit must not let anyone make the server rerun a full audit at will:
    within the reuse window the same report is shown with its age; after it, a fresh run."""
    import threading  # noqa: PLC0415

    from marketplace.web.app import RecentAudit  # noqa: PLC0415

    runs: list[int] = []
    clock = RecentAudit(reuse_seconds=3600.0)

    def run() -> object:
        runs.append(1)
        return object()

    first, age = clock.get(run)  # type: ignore[arg-type]
    again, later = clock.get(run)  # type: ignore[arg-type]
    assert again is first and age == 0.0 and later >= 0.0 and len(runs) == 1
    threads = [threading.Thread(target=clock.get, args=(run,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1
    fresh = RecentAudit(reuse_seconds=0.0)
    fresh.get(run)  # type: ignore[arg-type]
    fresh.get(run)  # type: ignore[arg-type]
    assert len(runs) == 3
