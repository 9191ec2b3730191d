"""`datadebit demo`: the whole flow on the embedded defaults, told as it runs.

An owner describes and lists an auto-approved feed and one that needs consent (listing
documents in the store), encrypts generated CSV versions on "their machine", stores the
ciphertext by CID and anchors CID + capsule on-chain. The gateways generate their committee
key by a DKG on the chain. Buyer A finds the feed by a word of its description, buys and
decrypts through the 2-of-3 committee (with one gateway down); buyer B asks with a purpose
sealed to the owner, is refused until the owner, having read it, consents, decrypts, is
revoked and then refused the next version; a tampered stored block is refused; the owner
claims and withdraws; an auditor replays it all; the committee grows to 3-of-4 by a
reshare that keeps its key, and a buyer decrypts an old version from the new shares.
Every operation is an application-layer call (`marketplace.app`), as the CLI's are.
Every step checks its outcome and the run fails loudly if one does not hold.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from marketplace.app.audit import run_audit
from marketplace.app.buyer import BuyerApp
from marketplace.app.owner import OwnerApp, PublishedVersion
from marketplace.app.progress import Stages
from marketplace.app.units import format_duration, format_eth, format_in
from marketplace.audit.release_log import HttpReleaseLog
from marketplace.audit.render import print_report
from marketplace.chain.devtoken import TUSD, deploy_dev_stablecoin, mint_dev_stablecoin
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT
from marketplace.chain.tokens import asset_info
from marketplace.chain.types import ETHER
from marketplace.documents import ListingDocument, PurposeDocument
from marketplace.errors import MarketplaceError
from marketplace.keyclient import KeyFetchFailed
from marketplace.keyrelease import Point
from marketplace.localnet import LocalNetwork
from storage.errors import StorageError
from storage.progress import Progress

T = TypeVar("T")
PRICE = 10**15  # 0.001 ether per period
DAY = 86_400


class DemoFailed(MarketplaceError):
    """A step of the demo did not turn out as the protocol promises."""


@dataclass
class Ledger:
    """Gas and time per step, for the closing table."""

    gas: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
        return result


@dataclass(frozen=True)
class Version:
    """A version the owner published, and the SHA-256 of its plaintext (to check what a
    buyer decrypts against)."""

    published: PublishedVersion
    sha256: str


def generate_csv(path: Path, rows: int, seed: int) -> None:
    """A realistic-looking air-quality feed: station, timestamp, pollutants."""
    rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
    stations = [f"ST-{n:03d}" for n in range(40)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["station", "timestamp", "pm25", "pm10", "no2", "o3", "temp_c"])
        start = 1_767_225_600
        for i in range(rows):
            writer.writerow([
                rng.choice(stations), start + 60 * i, round(rng.uniform(2, 90), 1),
                round(rng.uniform(5, 140), 1), round(rng.uniform(3, 80), 1),
                round(rng.uniform(10, 120), 1), round(rng.uniform(-5, 35), 1),
            ])


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


class Demo:
    def __init__(self, console: Console, workdir: Path) -> None:
        self.out = console
        self.work = workdir
        self.ledger = Ledger()
        started = time.perf_counter()
        self.net = LocalNetwork.start(workdir / "store", dkg=True)
        self.ledger.timings["committee DKG (3 nodes)"] = time.perf_counter() - started
        self.owner = self.net.account()
        self.market = self.net.market
        self.owner_app = OwnerApp(self.market, self.net.store, self.owner)
        #: the test dollar the consent-only feed is priced in (6 decimals, permit)
        self.tusd = deploy_dev_stablecoin(self.market.w3, self.owner)
        self.tampered_ciphertext = b""

    def say(self, text: str) -> None:
        self.out.print(text)

    @contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Progress]:
        """A byte progress bar; the callback it yields takes byte counts only."""
        columns = (
            TextColumn("   {task.description:<12}"), BarColumn(bar_width=30),
            DownloadColumn(), TransferSpeedColumn(),
        )
        with RichProgress(*columns, console=self.out, disable=not self.out.is_terminal) as bar:
            task = bar.add_task(label, total=total)
            yield lambda count: bar.advance(task, count)

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise DemoFailed(what)
        self.out.print(f"   [green]✓[/] {what}")

    def buyer(self, wallet: LocalAccount) -> BuyerApp:
        return BuyerApp(self.market, self.net.store, wallet, self.net.key_client)

    # ------------------------------------------------------------ owner side

    def describe(self, title: str, description: str, tags: list[str]) -> ListingDocument:
        return ListingDocument.model_validate({
            "title": title, "description": description, "tags": tags,
            "license": "CC-BY-NC-4.0", "terms": "Research use only; no re-identification.",
            "cadence": "daily", "contact": "data@example.org",
            "fields": [{"name": c, "type": "number", "unit": u} for c, u in
                       (("pm25", "µg/m³"), ("no2", "µg/m³"), ("temp_c", "°C"))],
        })

    def create(self, price: int, auto_approve: bool, document: ListingDocument,
               asset: str = ETHER) -> int:
        created = self.owner_app.create_listing(price, DAY, auto_approve, document, asset=asset)
        self.ledger.gas.setdefault("createListing", created.gas_used)
        shown = asset_info(self.market.w3, asset)
        self.say(f"   listing {created.listing_id} \"{document.title}\": "
                 f"{format_in(price, shown.decimals, shown.symbol)} "
                 f"per {format_duration(DAY)}, described at {created.metadata_uri[:30]}…")
        return created.listing_id

    def publish(self, listing_id: int, rows: int, seed: int) -> Version:
        plain = self.work / f"listing{listing_id}-seed{seed}.csv"
        generate_csv(plain, rows, seed)
        published = self.owner_app.publish(listing_id, plain, progress=self.stages(listing_id))
        self.ledger.gas.setdefault("publishVersion", published.gas_used)
        self.add_timings(published.timings, {"encrypt": "encrypt + CID", "upload": "store put"})
        size_mb = published.plaintext_size / 1e6
        self.say(
            f"   version {published.version}: {size_mb:.1f} MB CSV → "
            f"{published.cid.text[:24]}… (ciphertext in the store, CID + capsule on-chain)"
        )
        return Version(published, _sha256(plain))

    def stages(self, listing_id: int | None = None) -> Stages:
        def stage(name: str, total: int | None) -> AbstractContextManager[Progress]:
            label = name if listing_id is None else f"{name} {listing_id}"
            return self.bar(label, total)
        return stage

    def add_timings(self, timings: dict[str, float], names: dict[str, str]) -> None:
        for step, seconds in timings.items():
            if step in names:
                name = names[step]
                self.ledger.timings[name] = self.ledger.timings.get(name, 0.0) + seconds

    # ------------------------------------------------------------ buyer side

    def buy(self, buyer: LocalAccount, listing_id: int, periods: int,
            purpose: PurposeDocument | None = None) -> int:
        listing = self.market.listing(listing_id)
        name = "requestDebit (auto-approve)" if listing.auto_approve \
            else "requestDebit (needs consent)"
        if not listing.is_ether:
            name = name.replace("requestDebit", "requestDebitWithPermit")
        requested = self.buyer(buyer).request(listing_id, periods, purpose)
        self.ledger.gas.setdefault(name, requested.gas_used)
        return requested.debit.debit_id

    def fetch(self, buyer: LocalAccount, debit_id: int, version: Version) -> Path:
        """Key from t gateways, ciphertext from the store, decrypt; returns the plaintext."""
        plain = self.work / f"decrypted-{debit_id}-{version.published.version}.csv"
        result = self.buyer(buyer).fetch(debit_id, plain, version.published.version,
                                         progress=self.stages())
        self.add_timings(result.timings, {"key": "key release (t of n)",
                                          "download": "store get (verified)",
                                          "decrypt": "decrypt"})
        nodes = ", ".join(str(i) for i in result.used_nodes)
        self.say(f"   key shares from gateways {nodes}; decrypted {result.size:,} bytes")
        return plain

    def refused(self, buyer: LocalAccount, debit_id: int, version: Version) -> str:
        try:
            self.fetch(buyer, debit_id, version)
        except KeyFetchFailed as e:
            return str(e)
        raise DemoFailed("a gateway committee released a key it should have refused")

    # ------------------------------------------------------------ the story

    def run(self) -> None:
        net, market, owner = self.net, self.market, self.owner
        self.say("[bold]1. A market, a 2-of-3 key-release committee, and a data owner[/]")
        self.ledger.gas["deploy"] = net.deploy_gas
        self.say(f"   DataMarket at {market.address} (chain {market.chain_id}); the three "
                 "gateways generated the committee key among themselves on the chain")
        self.committee_story()

        self.say("[bold]2. The owner describes and lists two feeds, and publishes encrypted "
                 "versions[/]")
        auto = self.create(PRICE, True, self.describe(
            "Air quality, 40 stations", "PM2.5, PM10, NO2 and O3 every minute",
            ["air", "pollution"]))
        manual = self.create(2 * TUSD, False, self.describe(
            "Clinic visits near the stations", "Daily respiratory visits by district",
            ["health", "air"]), asset=self.tusd)
        a_v1 = self.publish(auto, rows=80_000, seed=1)
        b_v1 = self.publish(manual, rows=80_000, seed=2)

        self.say("[bold]3. Buyer A finds the air-quality feed and pays; gateway 2 is down[/]")
        buyer_a = net.account()
        found = [e.listing.listing_id for e in self.buyer(buyer_a).browse()
                 if e.document is not None and "pm2.5" in e.document.description.lower()]
        self.check(found == [auto], "buyer A finds the feed by a word of its description")
        debit_a = self.buy(buyer_a, auto, periods=7)
        net.down = {2}
        net.sync()
        plain = self.fetch(buyer_a, debit_a, a_v1)
        self.check(_sha256(plain) == a_v1.sha256, "buyer A's plaintext equals the owner's file")
        net.down = set()

        buyer_b = net.account()
        debit_b = self.consent_story(buyer_b, manual, b_v1)

        self.say("[bold]5. The owner revokes B and publishes a new version[/]")
        net.dev.advance(DAY // 2)
        self.ledger.gas.setdefault("revoke", self.owner_app.revoke(debit_b).gas_used)
        b_v2 = self.publish(manual, rows=20_000, seed=3)
        net.sync()
        why = self.refused(buyer_b, debit_b, b_v2)
        self.check("not_entitled" in why, "B, revoked, cannot get version 2")

        self.say("[bold]6. Someone tampers with a stored block[/]")
        self.tamper(a_v1)

        self.refund_story(buyer_b, debit_b)
        self.payout_story(debit_a)
        self.check_escrow([debit_a, debit_b], [owner, buyer_a, buyer_b])
        self.check_release_logs()
        self.audit()
        self.reshare(auto, a_v1)

    def consent_story(self, buyer_b: LocalAccount, manual: int, b_v1: Version) -> int:
        """Step 4: B asks with a purpose sealed to the owner; refused until the owner,
        having read it in the inbox, consents."""
        self.say("[bold]4. Buyer B asks for the consent-only feed, priced in a test dollar, "
                 "with a purpose[/]")
        mint_dev_stablecoin(self.market.w3, self.tusd, self.owner, buyer_b.address, 100 * TUSD)
        words = "Correlate PM2.5 peaks with respiratory visits, district level only"
        debit_b = self.buy(buyer_b, manual, periods=3, purpose=PurposeDocument.model_validate({
            "requester": "Lyon Asthma Study", "purpose": words, "retention": "90 days",
        }))
        self.net.sync()
        why = self.refused(buyer_b, debit_b, b_v1)
        self.check("not_entitled" in why, "before consent every gateway refuses B (not_entitled)")
        [pending] = [r for r in self.owner_app.inbox() if r.debit.debit_id == debit_b]
        shown = pending.purpose.purpose if pending.purpose is not None else None
        if pending.purpose is not None:
            self.say(f"   inbox: debit {debit_b} from {pending.purpose.requester}: "
                     f"\"{shown}\" (kept {pending.purpose.retention})")
        self.check(shown == words, "the owner reads B's purpose, sealed to them and verified "
                                   "against its on-chain hash, before consenting")
        self.ledger.gas.setdefault("consent", self.owner_app.consent(debit_b).gas_used)
        self.net.sync()
        plain = self.fetch(buyer_b, debit_b, b_v1)
        self.check(_sha256(plain) == b_v1.sha256, "after consent B decrypts the owner's file")
        return debit_b

    def refund_story(self, buyer_b: LocalAccount, debit_b: int) -> None:
        """After the revoke of step 5, B withdraws the unaccrued rest of the escrow, in the
        listing's token."""
        debit = self.market.debit(debit_b)
        credited = self.market.balance_of(buyer_b.address, self.tusd)
        payout = self.buyer(buyer_b).withdraw(self.tusd)
        kept = debit.amount - payout.amount
        self.check(payout.amount == credited and 0 < kept < debit.amount,
                   f"B withdrew the unaccrued {format_in(payout.amount, 6, 'TUSD')} of "
                   f"{format_in(debit.amount, 6, 'TUSD')}; the {format_in(kept, 6, 'TUSD')} "
                   "that accrued until the revoke stays the owner's")

    def payout_story(self, debit_a: int) -> None:
        """Step 7: the owner claims what accrued on A's debit and withdraws it."""
        self.say("[bold]7. The owner claims what accrued and withdraws[/]")
        self.net.dev.advance(2 * DAY)
        claim = self.owner_app.claim([debit_a])
        self.ledger.gas.setdefault("claim", claim.gas_used)
        payout = self.owner_app.withdraw()
        self.ledger.gas.setdefault("withdraw", payout.gas_used)
        self.check(payout.amount == claim.balance and payout.amount >= claim.amount > 0,
                   f"claimed {format_eth(claim.amount)} on A's debit; "
                   f"withdrew {format_eth(payout.amount)}")

    def check_escrow(self, debits: list[int], accounts: list[LocalAccount]) -> None:
        """Per asset: what the market holds = unsettled escrow + credited balances."""
        for asset, name in ((ETHER, "ether"), (self.tusd, "TUSD")):
            held = self.market.contract_balance(asset)
            escrow = sum(
                self.market.debit(d).amount - self.market.debit(d).settled for d in debits
                if self.market.listing(self.market.debit(d).listing_id).asset == asset
            )
            credited = sum(self.market.balance_of(a.address, asset) for a in accounts)
            self.check(held == escrow + credited,
                       f"market's {name} = unsettled escrow + credited balances")

    def check_release_logs(self) -> None:
        releases = sum(len(g.state.releases_after(0)) for g in self.net.gateways.values())
        anchors = sum(len(g.state.anchors()) for g in self.net.gateways.values())
        self.check(releases > 0 and anchors > 0,
                   f"{releases} signed releases across gateways, "
                   f"anchored in {anchors} Merkle roots")

    def committee_story(self) -> None:
        """What the DKG left on the chain: a transcript anyone can replay, one share per
        gateway, and no machine that ever held the committee secret."""
        epoch = self.market.committee_at(1)
        messages = self.market.ceremony_messages(epoch.ceremony_id, 0)
        self.check(epoch.transcript_hash != TRUSTED_DEALER_TRANSCRIPT and len(messages) >= 6,
                   f"epoch 1 from a DKG: {len(messages)} ceremony messages on chain "
                   f"(dealings, verdicts, signatures), no dealer")
        held = [g.share_book.get(1) for g in self.net.gateways.values()]
        self.check(all(h is not None for h in held) and self.net.keys.committee_key
                   == Point.from_bytes(epoch.committee_key),
                   "each gateway holds its own share; the committee key is on chain")

    def reshare(self, listing_id: int, published: Version) -> None:
        """The committee grows to 3-of-4 by a reshare: same key, new shares, and a version
        published before it opens from the new shares alone."""
        self.say("[bold]9. The committee grows to 3-of-4; its key stays the same[/]")
        net = self.net
        before = self.market.committee().committee_key
        started = time.perf_counter()
        roster = net.roster_with([*net.node_accounts, net.account()], threshold=3)
        epoch = net.reshare(roster)
        self.ledger.timings["committee reshare (3 -> 4 nodes)"] = time.perf_counter() - started
        self.check(epoch == 2 and self.market.committee().committee_key == before,
                   "epoch 2 is final and the committee key is byte-identical: no re-encryption")
        buyer_c = net.account()
        debit_c = self.buy(buyer_c, listing_id, periods=1)
        net.sync()
        plain = self.fetch(buyer_c, debit_c, published)
        self.check(_sha256(plain) == published.sha256,
                   "buyer C decrypts a version published in epoch 1 from epoch-2 shares")

    def audit(self) -> None:
        """Run the auditor over the in-process gateways; the tampered block of step 6 is the
        one finding expected, so it is repaired first (the owner re-puts the file)."""
        self.say("[bold]8. An auditor replays the chain and the gateways' logs[/]")
        self.net.store.put(io.BytesIO(self.tampered_ciphertext))
        logs = {i: HttpReleaseLog(i, client) for i, client in self.net.clients.items()}
        report = self.ledger.timed(
            "audit", lambda: run_audit(self.market, self.net.store, logs)
        )
        print_report(report, self.out)
        checked = sum(c.checked for c in report.checks)
        self.check(report.clean, f"audit clean: {checked} checks on balances, debits, CIDs "
                                 "and every release passed")

    def tamper(self, version: Version) -> None:
        cid = version.published.cid
        self.tampered_ciphertext = b"".join(self.net.store.stream(cid))
        block = self.work / "store" / "blocks" / cid.text[-2:] / cid.text
        raw = bytearray(block.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        block.write_bytes(bytes(raw))
        target = self.work / "tampered.dde"
        try:
            self.net.store.get(cid, target)
        except StorageError as e:
            self.say(f"   refused: {e}")
        else:
            raise DemoFailed("the store served a tampered block")
        self.check(not target.exists(), "a flipped bit in the store is refused; nothing written")

    def summary(self) -> None:
        table = Table(title="gas per transaction (first of its kind)")
        table.add_column("transaction")
        table.add_column("gas", justify="right")
        for name, gas in self.ledger.gas.items():
            table.add_row(name, f"{gas:,}")
        self.out.print(table)
        timings = Table(title="time spent")
        timings.add_column("step")
        timings.add_column("seconds", justify="right")
        for name, seconds in self.ledger.timings.items():
            timings.add_row(name, f"{seconds:.3f}")
        self.out.print(timings)


def run_demo(console: Console | None = None) -> int:
    """Run the story; 0 when every step held, 1 (with the reason) otherwise."""
    console = console or Console()
    logging.getLogger("marketplace.keyclient").setLevel(logging.ERROR)  # refusals are the story
    with tempfile.TemporaryDirectory(prefix="datadebit-demo-") as folder:
        demo = Demo(console, Path(folder))
        try:
            demo.run()
        except (MarketplaceError, StorageError) as e:
            console.print(f"[bold red]demo failed:[/] {e}")
            return 1
        finally:
            demo.net.close()
        demo.summary()
    console.print("[bold green]demo passed[/]: every step held")
    return 0
