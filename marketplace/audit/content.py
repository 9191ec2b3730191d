"""Check 3: every published version's ciphertext is retrievable and is what its CID says,
its CID is the one the contract committed to, and its capsule belongs to it.

The store is untrusted twice over: its own verification is not relied on, the bytes are
recomputed into a CID here (the same UnixFS builder `ipfs add --cid-version=1` matches).
The capsule's proof must bind it to (chain, market, listing, version, CID), so a capsule
copied from another listing is caught even before any gateway is asked about it.
"""

from __future__ import annotations

from eth_utils.crypto import keccak

from marketplace.audit.chain_view import ChainView
from marketplace.audit.history import MarketHistory
from marketplace.audit.report import CheckRun
from marketplace.chain.errors import ContractRevert
from marketplace.chain.events import VersionPublished
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from marketplace.keyrelease.errors import KeyReleaseError
from storage.cid import Cid
from storage.errors import ContentNotFound, StorageError, StoreResponseError, StoreUnavailable
from storage.stores.base import ContentStore
from storage.unixfs import compute_cid

NAME = "content (CIDs)"

#: The contract keeps the first 27 bytes of keccak256(cid) (IDataMarket.Version).
CID_DIGEST_SIZE = 27


def check_content(
    history: MarketHistory, chain: ChainView, store: ContentStore, market: str, chain_id: int
) -> CheckRun:
    run = CheckRun(NAME)
    for _, event in sorted(history.versions.items()):
        run.count(_check_version(event, chain, store, market, chain_id, run))
    return run


def _check_version(
    event: VersionPublished, chain: ChainView, store: ContentStore, market: str, chain_id: int,
    run: CheckRun,
) -> bool:
    where = f"listing {event.listing_id} version {event.version}"
    ids: dict[str, int | str] = {"listingId": event.listing_id, "version": event.version}
    ok = _digest_matches(event, chain, run, where, ids)
    ok = _capsule_binds(event, market, chain_id, run, where, ids) and ok
    try:
        cid = Cid(event.cid)
    except StorageError as e:
        run.violation("cid_malformed", f"{where}: {e}", **ids)
        return False
    ids["cid"] = cid.text
    try:
        recomputed = compute_cid(store.stream(cid))
    except (ContentNotFound, StoreUnavailable, StoreResponseError) as e:
        run.violation("cid_unretrievable", f"{where}: {e}", **ids)
        return False
    except StorageError as e:
        run.violation("cid_mismatch", f"{where}: the store's bytes are not {cid}: {e}", **ids)
        return False
    if recomputed != cid:
        run.violation("cid_mismatch", f"{where}: the bytes recompute to {recomputed}", **ids)
        return False
    return ok


def _digest_matches(
    event: VersionPublished, chain: ChainView, run: CheckRun, where: str,
    ids: dict[str, int | str],
) -> bool:
    try:
        committed = chain.version(event.listing_id, event.version).cid_digest
    except ContractRevert as e:
        run.violation("cid_digest_mismatch", f"{where}: the chain refuses it ({e})", **ids)
        return False
    if committed != keccak(event.cid)[:CID_DIGEST_SIZE]:
        run.violation("cid_digest_mismatch",
                      f"{where}: the event's CID is not the one the contract stored", **ids)
        return False
    return True


def _capsule_binds(
    event: VersionPublished, market: str, chain_id: int, run: CheckRun, where: str,
    ids: dict[str, int | str],
) -> bool:
    try:
        ctx = CapsuleContext(chain_id, market, event.listing_id, event.version, event.cid)
        Capsule.from_bytes(event.capsule).bind(ctx)
    except (KeyReleaseError, ValueError) as e:
        run.violation("capsule_unbound", f"{where}: capsule refused: {e}", **ids)
        return False
    return True
