"""Receipt dating and the buyer's logged request (issue 9, item 3), on histories and logs
built by hand against a fake chain view: each test stages one way a node could date or
attribute a release falsely, signed with real node and buyer keys."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address

from marketplace.audit.epochs import EpochHistory
from marketplace.audit.history import MarketHistory
from marketplace.audit.release_log import LoggedRelease, parse_page
from marketplace.audit.releases import MAX_LAG, REQUEST_WINDOW, ReleaseRuns, check_releases
from marketplace.chain.events import (
    DebitRequested,
    ListingCreated,
    LogRef,
    MarketEvent,
    ReleasesAnchored,
    VersionPublished,
)
from marketplace.chain.types import (
    ETHER,
    Committee,
    Debit,
    DebitId,
    ListingId,
    VersionNumber,
    VersionRecord,
    Wei,
)
from marketplace.eip712 import Eip712Domain, digest
from marketplace.merkle import merkle_root
from tests.audit.forge import entry, resign, signed_request, without_request

MARKET = to_checksum_address("0x" + "ab" * 20)
DOMAIN = Eip712Domain(1337, MARKET)
NODES: list[LocalAccount] = [Account.create() for _ in range(3)]
COMMITTEE = Committee(bytes(32), 2, tuple(a.address for a in NODES), (bytes(32),) * 3)
BUYER: LocalAccount = Account.create()
BUYER_KEY = os.urandom(32)
OWNER = to_checksum_address("0x" + "11" * 20)
GENESIS = 1_700_000_000
BLOCK_TIME = 12
HEAD = 100
RELEASED_AT = 10


def stamp(block: int) -> int:
    return GENESIS + BLOCK_TIME * block


def ref(block: int) -> LogRef:
    return LogRef(block, "0x" + "00" * 32, "0x" + "00" * 32, 0)


@dataclass
class FakeChain:
    """Timestamps every 12 s; the debit is entitled to version 1 before `revoked_at`."""

    revoked_at: int = 10**9
    head: int = HEAD
    asked: list[int] = field(default_factory=list)

    def is_entitled(self, debit_id: int, version: int, block: int) -> bool:
        return debit_id == 1 and version == 1 and block < self.revoked_at

    def timestamp(self, block: int) -> int:
        self.asked.append(block)
        return stamp(block)

    def contract_balance(self, asset: str = ETHER) -> Wei:
        raise NotImplementedError

    def balance_of(self, account: str, asset: str = ETHER) -> Wei:
        raise NotImplementedError

    def debit(self, debit_id: int) -> Debit:
        raise NotImplementedError

    def debit_count(self) -> int:
        raise NotImplementedError

    def version(self, listing_id: int, version: int) -> VersionRecord:
        raise NotImplementedError

    def version_count(self, listing_id: int) -> int:
        raise NotImplementedError

    def committee(self) -> Committee:
        return COMMITTEE


def history(*extra: MarketEvent) -> MarketHistory:
    events: list[MarketEvent] = [
        ListingCreated(ref(1), ListingId(1), OWNER, Wei(0), 86_400, True, bytes(32), ""),
        VersionPublished(ref(2), ListingId(1), VersionNumber(1), b"cid", bytes(168)),
        DebitRequested(ref(3), DebitId(1), ListingId(1), BUYER.address, 1, Wei(0), BUYER_KEY,
                       bytes(32), True, stamp(3), stamp(3) + 86_400),
        *extra,
    ]
    return MarketHistory.from_events(events, head=HEAD)


def honest(block: int = RELEASED_AT, *, signed_at: int | None = None, node: int = 1,
           buyer: LocalAccount = BUYER, version: int = 1) -> LoggedRelease:
    """Node `node`'s release at `block` for a request the buyer signed at block `signed_at`
    (default: `block`) with a minute to live."""
    request, signature = signed_request(
        buyer, DOMAIN, 1, version, stamp(block if signed_at is None else signed_at) + 60
    )
    return entry(1, domain=DOMAIN, node=node, node_account=NODES[node - 1], request=request,
                 request_signature=signature, buyer=BUYER.address, buyer_key=BUYER_KEY,
                 block=block)


def anchor(at: int, *entries: LoggedRelease, node: int = 1) -> ReleasesAnchored:
    root = merkle_root([digest(DOMAIN, e.receipt) for e in entries])
    return ReleasesAnchored(ref(at), NODES[node - 1].address, 1, root, len(entries))


def audit(log: list[LoggedRelease], *extra: MarketEvent, chain: FakeChain | None = None,
          latest: int | None = None, max_lag: int = MAX_LAG) -> ReleaseRuns:
    return check_releases(history(*extra), chain or FakeChain(), EpochHistory.single(COMMITTEE),
                          DOMAIN, {NODES[0].address: log},
                          max_lag=max_lag, latest=latest)


def kinds(runs: ReleaseRuns) -> set[str]:
    return {v.kind for run in runs.all() for v in run.violations}


def test_an_honest_anchored_release_passes_every_check() -> None:
    release = honest()
    runs = audit([release], anchor(12, release))
    assert kinds(runs) == set()
    assert [(r.checked, r.failed, r.pending) for r in runs.all()] == [(1, 0, 0)] * 4
    assert all(not r.warnings for r in runs.all())


def test_an_anchored_receipt_dated_after_its_anchor_is_a_violation() -> None:
    """Issue 9 item 3: passed the audit before (a date after the anchor was not compared)."""
    release = honest(block=15)
    runs = audit([release], anchor(12, release))
    assert kinds(runs) == {"dated_after_anchor"}
    assert runs.anchoring.failed == 1 and runs.anchoring.violations[0].fields["block"] == 15


def test_an_unanchored_receipt_dated_far_in_the_future_is_a_violation() -> None:
    """Issue 9 item 3: before, a receipt dated after the head was only an `after_head`
    warning, for ever: a release to anyone hid as "pending" and never failed the audit."""
    runs = audit([honest(block=HEAD + 1_000_000)])
    assert kinds(runs) == {"dated_after_head"}
    assert runs.entitlement.failed == 1


def test_an_anchored_receipt_dated_in_the_future_fails_both_ways() -> None:
    """Passed before: anchored (the root matched) and dated after the head (a warning)."""
    release = honest(block=HEAD + 1_000_000)
    assert kinds(audit([release], anchor(12, release))) == {"dated_after_anchor",
                                                           "dated_after_head"}


def test_a_release_made_during_the_audit_is_pending_not_a_violation() -> None:
    # dated after the audited block, but not after the chain's head once the log was read
    runs = audit([honest(block=HEAD + 3)], latest=HEAD + 5)
    assert kinds(runs) == set()
    assert [w.kind for w in runs.entitlement.warnings] == ["after_head"]
    assert runs.entitlement.pending == 1


def test_a_receipt_backdated_before_a_revoke_is_a_violation() -> None:
    """Issue 9 item 3: the debit is revoked at block 20; the buyer signs a request at block
    400 and a colluding node dates its receipt at block 10, when the debit was entitled.
    The audit was clean before (entitlement was asked at the node's chosen block)."""
    chain = FakeChain(revoked_at=20)
    release = honest(block=10, signed_at=400)
    runs = audit([release], anchor(450, release), chain=chain)
    assert kinds(runs) == {"outside_request_window"}
    (violation,) = runs.requests.violations
    assert violation.fields["seq"] == 1 and violation.fields["debitId"] == 1


def test_a_release_after_the_request_expired_is_a_violation() -> None:
    request, signature = signed_request(BUYER, DOMAIN, 1, 1, stamp(RELEASED_AT))  # expiry == T
    release = entry(1, domain=DOMAIN, node=1, node_account=NODES[0], request=request,
                    request_signature=signature, buyer=BUYER.address, buyer_key=BUYER_KEY,
                    block=RELEASED_AT)
    assert kinds(audit([release], anchor(12, release))) == {"outside_request_window"}


@pytest.mark.parametrize("max_lag", [0, 60, MAX_LAG])
def test_the_request_window_reaches_back_exactly_600_s_plus_max_lag(max_lag: int) -> None:
    def at_distance(seconds: int) -> set[str]:
        expiry = stamp(RELEASED_AT) + seconds
        request, signature = signed_request(BUYER, DOMAIN, 1, 1, expiry)
        release = entry(1, domain=DOMAIN, node=1, node_account=NODES[0], request=request,
                        request_signature=signature, buyer=BUYER.address, buyer_key=BUYER_KEY,
                        block=RELEASED_AT)
        return kinds(audit([release], anchor(12, release), max_lag=max_lag))

    assert at_distance(REQUEST_WINDOW + max_lag) == set()
    assert at_distance(REQUEST_WINDOW + max_lag + 1) == {"outside_request_window"}
    assert at_distance(1) == set()


def test_a_release_without_its_request_is_a_violation() -> None:
    """Issue 9 item 3: a node that logs no request cannot show who asked (new field)."""
    release = without_request(honest())
    runs = audit([release], anchor(12, release))
    assert kinds(runs) == {"request_missing"}


def test_an_unreadable_request_is_recorded_and_reported_not_a_crash() -> None:
    release = honest()
    raw = {"seq": 1, "receipt": release.receipt.to_message(),
           "receiptSignature": "0x" + release.signature.hex(),
           "request": {"debitId": 1, "version": 1, "expiry": 5, "nonce": "0x12"},
           "requestSignature": "0x" + release.request_signature.hex()}
    (parsed,) = parse_page(1, {"releases": [raw]}).releases
    assert parsed.request is None and "nonce" in parsed.request_problem
    assert parsed.receipt == release.receipt and parsed.signature == release.signature
    assert kinds(audit([parsed], anchor(12, parsed))) == {"request_malformed"}
    raw["request"] = release.request.to_message() if release.request else {}
    raw["requestSignature"] = "0xzz"
    (parsed,) = parse_page(1, {"releases": [raw]}).releases
    assert kinds(audit([parsed], anchor(12, parsed))) == {"request_malformed"}


def test_a_request_signature_that_recovers_to_no_key_is_malformed() -> None:
    release = replace(honest(), request_signature=bytes(64) + b"\x1b")
    assert kinds(audit([release], anchor(12, release))) == {"request_malformed"}


def test_a_logged_request_the_receipt_does_not_name_is_a_mismatch() -> None:
    release = honest()
    other, signature = signed_request(BUYER, DOMAIN, 1, 1, stamp(RELEASED_AT) + 60)
    swapped = replace(release, request=other, request_signature=signature)
    assert kinds(audit([swapped], anchor(12, swapped))) == {"request_mismatch"}


def test_a_request_for_another_version_is_a_mismatch() -> None:
    # the receipt names the request's digest, but the request asked for version 2
    request, signature = signed_request(BUYER, DOMAIN, 1, 2, stamp(RELEASED_AT) + 60)
    release = entry(1, domain=DOMAIN, node=1, node_account=NODES[0], request=request,
                    request_signature=signature, buyer=BUYER.address, buyer_key=BUYER_KEY,
                    block=RELEASED_AT)
    release = resign(release, NODES[0], DOMAIN, version=1)
    assert kinds(audit([release], anchor(12, release))) == {"request_mismatch"}


def test_a_request_signed_by_someone_else_is_a_violation() -> None:
    release = honest(buyer=Account.create())
    assert kinds(audit([release], anchor(12, release))) == {"wrong_request_signer"}


def test_a_receipt_naming_another_buyer_is_a_violation() -> None:
    release = resign(honest(), NODES[0], DOMAIN, buyer=Account.create().address)
    assert kinds(audit([release], anchor(12, release))) == {"buyer_mismatch"}


def test_a_share_sealed_to_another_key_is_a_violation() -> None:
    release = resign(honest(), NODES[0], DOMAIN, buyer_key_hash=os.urandom(32))
    assert kinds(audit([release], anchor(12, release))) == {"buyer_key_mismatch"}


def test_a_receipt_for_an_epoch_that_does_not_exist_is_a_violation() -> None:
    release = resign(honest(), NODES[0], DOMAIN, epoch=2)
    assert kinds(audit([release], anchor(12, release))) == {"unknown_epoch"}


def test_two_buyer_keys_may_each_get_a_release_of_the_same_version() -> None:
    # releases are unique per (debit, version, buyer key) (wire §2): the same key twice is not
    first = honest()
    again = replace(honest(), seq=2)
    runs = audit([first, again], anchor(12, first, again))
    assert kinds(runs) == {"log_malformed"}
    other_key = resign(again, NODES[0], DOMAIN, buyer_key_hash=os.urandom(32))
    runs = audit([first, other_key], anchor(12, first, other_key))
    assert kinds(runs) == {"buyer_key_mismatch"}  # not log_malformed: a distinct release

