"""A node's committee shares, one per epoch, and which one is in force at a block.

Shares come from ceremonies (DESIGN §9) or, as a development option, from a trusted
dealer's node key file. They rest in the gateway's state database sealed with a key
derived from the node's Ethereum key (a replicated Postgres never holds them in the
clear), and are erased once a later epoch is final: proactive security rests on that
erasure. Ceremony seeds (a dealer's polynomial, kept so it can answer complaints after a
restart) are stored and erased the same way.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

import nacl.exceptions
import nacl.secret
from eth_account.signers.local import LocalAccount

from marketplace.errors import MarketplaceError
from marketplace.gateway.database import Tx
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease import NodeIndex, NodeShare, Point, SecretScalar, ShareKey

_SEALING_TAG = b"datadebit/node-state-key/v1"

SHARES_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS committee_shares (
        epoch BIGINT PRIMARY KEY, ceremony_id BIGINT NOT NULL, node_index BIGINT NOT NULL,
        share_key TEXT NOT NULL, sealed_secret TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS ceremony_seeds (
        ceremony_id BIGINT PRIMARY KEY, sealed_seed TEXT NOT NULL)""",
)


class NotInCommittee(MarketplaceError):
    """This node holds no share of the committee epoch in force (wire code
    `not_in_committee`, 503): it is not in that roster, or its ceremony share is missing."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"this node holds no share of committee epoch {epoch}")


class SealedStateCorrupt(MarketplaceError):
    """A sealed share or seed in the state database does not open with this node's key."""


@dataclass(frozen=True, slots=True)
class EpochShare:
    """The share a node releases with while `epoch` is in force."""

    epoch: int
    share: NodeShare

    @property
    def index(self) -> NodeIndex:
        return self.share.index

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EpochShare(epoch={self.epoch}, index={self.index}, <secret>)"


class ShareBook:
    """Sealed per-epoch shares and ceremony seeds in the gateway's state database."""

    def __init__(self, state: GatewayState, account: LocalAccount) -> None:
        self._db = state.db
        key = hashlib.blake2b(bytes(account.key), key=_SEALING_TAG, digest_size=32).digest()
        self._box = nacl.secret.SecretBox(key)
        with self._db.transaction() as tx:
            for statement in SHARES_SCHEMA:
                tx.execute(statement)

    def _seal(self, secret: bytes) -> str:
        return bytes(self._box.encrypt(secret)).hex()

    def _open(self, sealed: str) -> bytes:
        try:
            return bytes(self._box.decrypt(bytes.fromhex(sealed)))
        except (nacl.exceptions.CryptoError, ValueError) as e:
            raise SealedStateCorrupt(
                "a sealed share in the state database does not open with this node's key "
                "(another node's database?)"
            ) from e

    # ------------------------------------------------------------ shares

    def put(self, epoch: int, ceremony_id: int, share: NodeShare) -> None:
        with self._db.transaction(durable=True) as tx:
            tx.execute(
                "INSERT INTO committee_shares VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (
                    epoch, ceremony_id, share.index, share.share_key.point.to_bytes().hex(),
                    self._seal(share.secret.to_secret_bytes()),
                ),
            )

    def get(self, epoch: int) -> EpochShare | None:
        with self._db.read() as tx:
            row = tx.one(
                "SELECT node_index, share_key, sealed_secret FROM committee_shares "
                "WHERE epoch = ?",
                (epoch,),
            )
        if row is None:
            return None
        index, share_key, sealed = int(row[0]), str(row[1]), str(row[2])
        point = Point.from_bytes(bytes.fromhex(share_key), "stored share key")
        secret = SecretScalar.from_secret_bytes(self._open(sealed))
        return EpochShare(epoch, NodeShare(ShareKey(NodeIndex(index), point), secret))

    def epochs(self) -> list[int]:
        with self._db.read() as tx:
            return [int(r[0]) for r in tx.all("SELECT epoch FROM committee_shares ORDER BY epoch")]

    def erase_before(self, epoch: int) -> int:
        """Delete every share of an epoch before `epoch`; returns how many were erased."""
        with self._db.transaction(durable=True) as tx:
            count = _count(tx, "SELECT COUNT(*) FROM committee_shares WHERE epoch < ?", epoch)
            # overwrite first: a deleted row's bytes may otherwise linger in a free page
            tx.execute(
                "UPDATE committee_shares SET sealed_secret = ? WHERE epoch < ?",
                ("00" * 72, epoch),
            )
            tx.execute("DELETE FROM committee_shares WHERE epoch < ?", (epoch,))
        return count

    # ------------------------------------------------------------ ceremony seeds

    def seed(self, ceremony_id: int) -> bytes | None:
        with self._db.read() as tx:
            row = tx.one(
                "SELECT sealed_seed FROM ceremony_seeds WHERE ceremony_id = ?", (ceremony_id,)
            )
        return self._open(str(row[0])) if row else None

    def put_seed(self, ceremony_id: int, seed: bytes) -> bytes:
        """Store `seed` unless one is stored already; returns the stored one (a restarted
        dealer must keep dealing the same polynomial)."""
        with self._db.transaction(durable=True) as tx:
            tx.execute(
                "INSERT INTO ceremony_seeds VALUES (?, ?) ON CONFLICT DO NOTHING",
                (ceremony_id, self._seal(seed)),
            )
        stored = self.seed(ceremony_id)
        assert stored is not None
        return stored

    def erase_seeds(self, up_to: int) -> None:
        """Forget the polynomials of every ceremony up to `up_to` (they are over)."""
        with self._db.transaction(durable=True) as tx:
            tx.execute(
                "UPDATE ceremony_seeds SET sealed_seed = ? WHERE ceremony_id <= ?",
                ("00" * 72, up_to),
            )
            tx.execute("DELETE FROM ceremony_seeds WHERE ceremony_id <= ?", (up_to,))


def _count(tx: Tx, sql: str, value: int) -> int:
    row = tx.one(sql, (value,))
    return int(row[0]) if row else 0


class EpochShares:
    """Which of this node's shares is in force at a confirmed block.

    The epoch in force is read from the chain once per new confirmed block (at most one
    `currentEpoch` call per block) so a release dated at block b always carries the epoch
    final at b, the one the auditor checks it against.
    """

    def __init__(self, book: ShareBook, epoch_at: Callable[[int], int]) -> None:
        self.book = book
        self._epoch_at = epoch_at
        self._lock = threading.Lock()
        self._known: tuple[int, int] | None = None  # (block, epoch in force at it)
        self._cached: EpochShare | None = None

    def epoch_at(self, block: int) -> int:
        with self._lock:
            known = self._known
        if known is not None and known[0] == block:
            return known[1]
        epoch = self._epoch_at(block)
        with self._lock:
            if self._known is None or block >= self._known[0]:
                self._known = (block, epoch)
        return epoch

    def at(self, block: int) -> EpochShare:
        """The share to release with at `block`; NotInCommittee when there is none."""
        epoch = self.epoch_at(block)
        with self._lock:
            cached = self._cached
        if cached is not None and cached.epoch == epoch:
            return cached
        found = self.book.get(epoch) if epoch > 0 else None
        if found is None:
            raise NotInCommittee(epoch)
        with self._lock:
            self._cached = found
        return found

    def latest(self) -> EpochShare | None:
        """The newest share this node holds (for health and the release log's header)."""
        epochs = self.book.epochs()
        return self.book.get(epochs[-1]) if epochs else None

    def forget_cache(self) -> None:
        with self._lock:
            self._cached = None
            self._known = None

