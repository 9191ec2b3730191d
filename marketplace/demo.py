"""`datadebit demo`: the whole flow on the embedded defaults, told as it runs.

An owner lists an auto-approved feed and one that needs consent, encrypts generated CSV
versions on "their machine", stores the ciphertext by CID and anchors CID + capsule
on-chain. The gateways generate their committee key by a DKG on the chain. Buyer A buys and
decrypts through the 2-of-3 committee (with one gateway down); buyer B asks, is refused
until the owner consents, decrypts, is revoked and then refused the next version; a
tampered stored block is refused; the owner claims and withdraws; an auditor replays it
all; the committee grows to 3-of-4 by a reshare that keeps its key, and a buyer decrypts
an old version from the new shares. Every step checks its outcome and the run fails
loudly if one does not hold.
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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
from rich.progress import Progress as RichProgress
from rich.table import Table

from marketplace.audit.auditor import Auditor
from marketplace.audit.release_log import HttpReleaseLog
from marketplace.audit.render import print_report
from marketplace.chain.market import TRUSTED_DEALER_TRANSCRIPT
from marketplace.chain.types import Sent
from marketplace.errors import MarketplaceError
from marketplace.keyclient import KeyFetchFailed
from marketplace.keyrelease import Point
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, make_capsule
from marketplace.localnet import LocalNetwork
from storage.cid import Cid
from storage.envelope import decrypt_file, encrypt_file
from storage.errors import StorageError
from storage.keys import DataKey
from storage.progress import Progress, ProgressReader, reporting
from storage.stores.base import save

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

    def tx(self, name: str, sent: Sent[T]) -> T:
        self.gas.setdefault(name, sent.gas_used)
        return sent.value

    def timed(self, name: str, work: Callable[[], T]) -> T:
        start = time.perf_counter()
        result = work()
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start
        return result


@dataclass(frozen=True)
class PublishedVersion:
    listing_id: int
    version: int
    ctx: CapsuleContext
    capsule: Capsule
    sha256: str
    size: int
    sealed_size: int


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
        self.tampered_ciphertext = b""

    def say(self, text: str) -> None:
        self.out.print(text)

    @contextmanager
    def bar(self, label: str, total: int) -> Iterator[Progress]:
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

    # ------------------------------------------------------------ owner side

    def publish(self, listing_id: int, rows: int, seed: int) -> PublishedVersion:
        plain = self.work / f"listing{listing_id}-seed{seed}.csv"
        generate_csv(plain, rows, seed)
        version = self.market.listing(listing_id).version_count + 1
        data_key = DataKey.generate()
        sealed = self.work / f"{plain.name}.dde"
        size = plain.stat().st_size
        with self.bar(f"encrypt {listing_id}/v{version}", size) as progress:
            encrypted = self.ledger.timed(
                "encrypt + CID", lambda: encrypt_file(plain, sealed, data_key, progress=progress)
            )
        upload = self.bar(f"upload {listing_id}/v{version}", encrypted.size)
        with sealed.open("rb") as f, upload as progress:
            reader = cast(BinaryIO, ProgressReader(f, progress))
            stored = self.ledger.timed("store put", lambda: self.net.store.put(reader))
        if stored != encrypted.cid:
            raise DemoFailed("the store named the ciphertext differently from our CID")
        ctx = CapsuleContext(
            self.market.chain_id, self.market.address, listing_id, version, encrypted.cid.binary
        )
        capsule = make_capsule(data_key, ctx, self.net.keys.committee_key)
        self.ledger.tx(
            "publishVersion",
            self.market.publish_version(self.owner, listing_id, ctx.cid_bytes, capsule.to_bytes()),
        )
        size_mb = plain.stat().st_size / 1e6
        self.say(
            f"   version {version}: {size_mb:.1f} MB CSV → {encrypted.cid.text[:24]}… "
            "(ciphertext in the store, CID + capsule on-chain)"
        )
        return PublishedVersion(
            listing_id, version, ctx, capsule, _sha256(plain), size, encrypted.size
        )

    # ------------------------------------------------------------ buyer side

    def buy(self, buyer: LocalAccount, listing_id: int, periods: int) -> int:
        key = BuyerSecretKey.from_account(buyer, self.net.domain).public_key().key
        name = "requestDebit (auto-approve)" if self.market.listing(listing_id).auto_approve \
            else "requestDebit (needs consent)"
        return self.ledger.tx(
            name, self.market.request_debit(buyer, listing_id, periods=periods, buyer_key=key)
        )

    def fetch(self, buyer: LocalAccount, debit_id: int, published: PublishedVersion) -> Path:
        """Key from t gateways, ciphertext from the store, decrypt; returns the plaintext."""
        secret = BuyerSecretKey.from_account(buyer, self.net.domain)
        fetched = self.ledger.timed(
            "key release (t of n)",
            lambda: self.net.key_client().fetch(
                buyer, secret, debit_id, published.ctx, published.capsule
            ),
        )
        sealed = self.work / f"download-{debit_id}-{published.version}.dde"
        cid = Cid(published.ctx.cid_bytes)
        with self.bar("download", published.sealed_size) as progress:
            self.ledger.timed(
                "store get (verified)",
                lambda: save(reporting(self.net.store.stream(cid), progress), sealed),
            )
        plain = self.work / f"decrypted-{debit_id}-{published.version}.csv"
        with self.bar("decrypt", published.sealed_size) as progress:
            self.ledger.timed(
                "decrypt",
                lambda: decrypt_file(sealed, plain, fetched.data_key, progress=progress),
            )
        nodes = ", ".join(str(i) for i in fetched.used_nodes)
        self.say(f"   key shares from gateways {nodes}; decrypted {plain.stat().st_size:,} bytes")
        return plain

    def refused(self, buyer: LocalAccount, debit_id: int, published: PublishedVersion) -> str:
        try:
            self.fetch(buyer, debit_id, published)
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

        self.say("[bold]2. The owner lists two feeds and publishes encrypted versions[/]")
        auto = self.ledger.tx("createListing", market.create_listing(
            owner, price_per_period=PRICE, period_seconds=DAY, auto_approve=True,
            metadata_uri="ipfs://air-quality-feed"))
        manual = self.ledger.tx("createListing", market.create_listing(
            owner, price_per_period=2 * PRICE, period_seconds=DAY, auto_approve=False,
            metadata_uri="ipfs://clinic-visits-feed"))
        a_v1 = self.publish(auto, rows=80_000, seed=1)
        b_v1 = self.publish(manual, rows=80_000, seed=2)

        self.say("[bold]3. Buyer A pays on the auto-approved feed; gateway 2 is down[/]")
        buyer_a = net.account()
        debit_a = self.buy(buyer_a, auto, periods=7)
        net.down = {2}
        net.sync()
        plain = self.fetch(buyer_a, debit_a, a_v1)
        self.check(_sha256(plain) == a_v1.sha256, "buyer A's plaintext equals the owner's file")
        net.down = set()

        self.say("[bold]4. Buyer B asks for the consent-only feed[/]")
        buyer_b = net.account()
        debit_b = self.buy(buyer_b, manual, periods=3)
        net.sync()
        why = self.refused(buyer_b, debit_b, b_v1)
        self.check("not_entitled" in why, "before consent every gateway refuses B (not_entitled)")
        self.ledger.tx("consent", market.consent(owner, debit_b))
        net.sync()
        plain = self.fetch(buyer_b, debit_b, b_v1)
        self.check(_sha256(plain) == b_v1.sha256, "after consent B decrypts the owner's file")

        self.say("[bold]5. The owner revokes B and publishes a new version[/]")
        net.dev.advance(DAY // 2)
        self.ledger.tx("revoke", market.revoke(owner, debit_b))
        b_v2 = self.publish(manual, rows=20_000, seed=3)
        net.sync()
        why = self.refused(buyer_b, debit_b, b_v2)
        self.check("not_entitled" in why, "B, revoked, cannot get version 2")

        self.say("[bold]6. Someone tampers with a stored block[/]")
        self.tamper(a_v1)

        self.say("[bold]7. The owner claims what accrued and withdraws[/]")
        net.dev.advance(2 * DAY)
        claimed = self.ledger.tx("claim", market.claim(owner, [debit_a]))
        before = market.balance_of(owner.address)
        withdrawn = self.ledger.tx("withdraw", market.withdraw(owner))
        self.check(withdrawn == before and withdrawn >= claimed > 0,
                   f"claimed {claimed / 1e18:.6f} ETH on A's debit; "
                   f"withdrew {withdrawn / 1e18:.6f} ETH")
        self.check_escrow([debit_a, debit_b], [owner, buyer_a, buyer_b])
        self.check_release_logs()
        self.audit()
        self.reshare(auto, a_v1)

    def check_escrow(self, debits: list[int], accounts: list[LocalAccount]) -> None:
        held = self.market.contract_balance()
        escrow = sum(
            self.market.debit(d).amount - self.market.debit(d).settled for d in debits
        )
        credited = sum(self.market.balance_of(a.address) for a in accounts)
        self.check(held == escrow + credited,
                   "market balance = unaccrued escrow + credited balances")

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

    def reshare(self, listing_id: int, published: PublishedVersion) -> None:
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
            "audit", lambda: Auditor(self.market, self.net.store, logs).run()
        )
        print_report(report, self.out)
        checked = sum(c.checked for c in report.checks)
        self.check(report.clean, f"audit clean: {checked} checks on balances, debits, CIDs "
                                 "and every release passed")

    def tamper(self, published: PublishedVersion) -> None:
        cid = Cid(published.ctx.cid_bytes)
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
