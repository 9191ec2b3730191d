"""Helpers for the ceremony tests on `LocalNetwork` (tests/gateway/test_ceremonies.py):
publishing and buying through the gateways, reading a gateway's whole state, rebuilding
a gateway on a file, and misbehaving ceremony runners (a dealer that seals one peer a
broken share, a node that accuses an honest dealer)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount
from fastapi.testclient import TestClient

from marketplace.ceremony_chain import CeremonyReader
from marketplace.chain.types import CeremonyInfo, Roster
from marketplace.committee import NodeKey, node_encryption_key
from marketplace.gateway.api import create_app
from marketplace.gateway.ceremony_runner import CeremonyRunner
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService
from marketplace.gateway.state import GatewayState
from marketplace.keyclient import FetchedKey
from marketplace.keyrelease import NodeShare
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext, make_capsule
from marketplace.keyrelease.ceremony import CeremonyView
from marketplace.keyrelease.dkg import (
    SEALED_SHARE_SIZE,
    CeremonyParams,
    DealerSecret,
    MessageKind,
    Verdict,
)
from marketplace.keyrelease.group import Scalar
from marketplace.keyrelease.shamir import lagrange_coefficients
from marketplace.localnet import LocalNetwork
from storage.keys import DataKey

PRICE = 10**15
DAY = 86_400


@dataclass
class Published:
    ctx: CapsuleContext
    capsule: Capsule
    data_key: DataKey


def roster(accounts: Sequence[LocalAccount], threshold: int) -> Roster:
    return Roster(
        tuple(a.address for a in accounts),
        tuple(node_encryption_key(a) for a in accounts),
        threshold,
    )


def new_listing(net: LocalNetwork, owner: LocalAccount) -> int:
    return net.market.create_listing(
        owner, price_per_period=PRICE, period_seconds=DAY, auto_approve=True
    ).value


def publish(net: LocalNetwork, owner: LocalAccount, listing_id: int) -> Published:
    """Store a small file and publish it sealed to the committee key in force now."""
    market = net.market
    cid = net.store.put(io.BytesIO(os.urandom(2_000)))
    version = market.listing(listing_id).version_count + 1
    ctx = CapsuleContext(market.chain_id, market.address, listing_id, version, cid.binary)
    data_key = DataKey.generate()
    capsule = make_capsule(data_key, ctx, net.keys.committee_key)
    market.publish_version(owner, listing_id, cid.binary, capsule.to_bytes())
    return Published(ctx, capsule, data_key)


def buy(net: LocalNetwork, listing_id: int) -> tuple[LocalAccount, BuyerSecretKey, int]:
    """A new buyer with an auto-approved debit on `listing_id`, seen by every live gateway."""
    buyer = net.account()
    secret = BuyerSecretKey.from_account(buyer, net.domain)
    debit_id = net.market.request_debit(
        buyer, listing_id, periods=3, buyer_key=secret.public_key().key
    ).value
    net.sync()
    return buyer, secret, debit_id


def fetch(net: LocalNetwork, published: Published, listing_id: int) -> FetchedKey:
    """Buy `listing_id` and fetch the version's data key through the live gateways."""
    buyer, secret, debit_id = buy(net, listing_id)
    return net.key_client().fetch(buyer, secret, debit_id, published.ctx, published.capsule)


# ------------------------------------------------------------ secrets and state


def scalar_of(share: NodeShare) -> Scalar:
    return Scalar.from_bytes(share.secret.to_secret_bytes())


def interpolate_secret(shares: Sequence[NodeShare]) -> Scalar:
    """Σ λ_i·s_i at 0 over the given shares (the test, not a node, adds them up)."""
    lambdas = lagrange_coefficients([int(s.index) for s in shares])
    total = Scalar.from_int(0)
    for share in shares:
        total = total + lambdas[int(share.index)] * scalar_of(share)
    return total


def state_values(gateway: GatewayService) -> list[object]:
    """Every value in every row of every table of the gateway's state database."""
    values: list[object] = []
    with gateway.state.db.read() as tx:
        tables = sorted(tx.tables())
    for table in tables:
        with gateway.state.db.read() as tx:
            for row in tx.all(f'SELECT * FROM "{table}"'):
                values.extend(row)
    return values


def secret_encodings(secret: Scalar) -> list[bytes]:
    """The ways a 32-byte scalar could have been written down: LE and BE bytes, as hex
    (either case) and as a decimal number."""
    le = secret.to_bytes()
    be = le[::-1]
    forms = [le, be]
    for raw in (le, be):
        forms += [raw.hex().encode(), raw.hex().upper().encode()]
    forms.append(str(secret.to_int()).encode())
    return forms


def contains_any(value: object, needles: Sequence[bytes]) -> bool:
    if isinstance(value, str):
        data = value.encode()
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    else:
        data = str(value).encode()
    return any(needle in data for needle in needles)


def file_gateway(net: LocalNetwork, number: int, path: Path) -> GatewayService:
    """Run gateway `number` again, as a new process would: a new service over the SQLite
    file at `path` (its state on disk survives; its memory does not). The old service's
    database is closed first."""
    old = net.gateways[number]
    old.state.db.close()
    gateway = GatewayService(
        market=net.market,
        state=GatewayState(SqliteDatabase(path)),
        node=NodeKey(None, old.node.account),
        now=old.now,
        approve_rosters=True,
    )
    net.clients[number].close()
    net.gateways[number] = gateway
    net.clients[number] = TestClient(
        create_app(gateway, run_background=False), base_url=f"http://node-{number}"
    )
    return gateway


# ------------------------------------------------------------ misbehaving nodes


AnswerMode = str
"""How a tampering dealer meets the complaint: "silent", "wrong" or "honest"."""


def _flip_sealed_share(dealing: bytes, threshold: int, recipient: int) -> bytes:
    """Flip one ciphertext byte of the sealed share to `recipient` (it then fails to open)."""
    start = 2 + 32 * threshold + 65 + SEALED_SHARE_SIZE * (recipient - 1)
    position = start + SEALED_SHARE_SIZE // 2
    return dealing[:position] + bytes([dealing[position] ^ 0x01]) + dealing[position + 1 :]


class _TamperingSecret(DealerSecret):
    """A dealer polynomial whose dealing seals `victim` a share that does not open."""

    __slots__ = ("_mode", "_victim")

    def __init__(self, honest: DealerSecret, victim: int, mode: AnswerMode) -> None:
        super().__init__(
            honest.to_secret_bytes(), honest.dealer_index, honest.threshold, None
        )
        self._victim = victim
        self._mode = mode

    def dealing(self, params: CeremonyParams) -> bytes:
        return _flip_sealed_share(super().dealing(params), self.threshold, self._victim)

    def answer(self, accusers: Iterable[int]) -> bytes:
        payload = super().answer(accusers)
        if self._mode != "wrong":
            return payload
        # the first revealed value (after format, m, accuser index) plus one
        value = Scalar.from_bytes(payload[3:35]) + Scalar.from_int(1)
        return payload[:3] + value.to_bytes() + payload[35:]


def tamper_dealings(runner: CeremonyRunner, victim: int, mode: AnswerMode) -> None:
    """Make this (DKG) dealer seal a broken share to `victim`; it answers the complaint
    honestly, with a wrong value, or not at all (`mode`)."""
    honest_secret = runner._dealer_secret
    honest_post = runner._post

    def dealer_secret(info: CeremonyInfo, dealer: int) -> DealerSecret | None:
        secret = honest_secret(info, dealer)
        return None if secret is None else _TamperingSecret(secret, victim, mode)

    def post(info: CeremonyInfo, kind: MessageKind, payload: bytes, head: int) -> None:
        if kind is MessageKind.ANSWER and mode == "silent":
            return
        honest_post(info, kind, payload, head)

    runner._dealer_secret = dealer_secret  # type: ignore[method-assign]
    runner._post = post  # type: ignore[method-assign]


def accuse(runner: CeremonyRunner, dealers: Sequence[int]) -> None:
    """Make this node's verdict accuse `dealers` whatever it received."""
    honest_post = runner._post

    def post(info: CeremonyInfo, kind: MessageKind, payload: bytes, head: int) -> None:
        if kind is MessageKind.VERDICT:
            payload = Verdict(tuple(sorted(dealers))).to_bytes()
        honest_post(info, kind, payload, head)

    runner._post = post  # type: ignore[method-assign]


def run_until(net: LocalNetwork, done: Callable[[], bool], *, rounds: int = 10) -> None:
    """Sync the live gateways until `done()` (raises if it never is)."""
    for _ in range(rounds):
        if done():
            return
        net.sync()
    if not done():
        raise AssertionError(f"not done after {rounds} rounds")


def final_view(net: LocalNetwork, ceremony_id: int) -> CeremonyView:
    """A finalized ceremony as its transcript gives it at the finalization block (what a
    node adopting its share, or an auditor, evaluates)."""
    info = net.market.ceremony(ceremony_id)
    final = net.market.committee_at(info.epoch)
    block = net.market.w3.eth.get_block(final.start_block)
    return CeremonyReader(net.market).view(
        info, to_block=final.start_block, now=int(block["timestamp"])
    )


def settle(net: LocalNetwork, epoch: int, *, phase_seconds: int, rounds: int = 8) -> int:
    """Run the live gateways until `epoch` is final and its live members hold their
    shares, moving the chain's clock one phase on whenever a round of syncs leaves it
    pending (a silent node's phase closes by time). Returns how many phases were skipped."""
    for skipped in range(rounds):
        for _ in range(6):  # enough for every phase that can close early to close
            net.sync()
            if net.market.current_epoch() >= epoch and net._members_hold(epoch):
                return skipped
        net.dev.advance(phase_seconds + 1)
    raise AssertionError(f"epoch {epoch} not final after {rounds} rounds")
