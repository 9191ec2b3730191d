"""The auditor on aggregate debits (DESIGN §10, docs/protocol.md §15 items 10-14).

One honest history on the in-process `LocalNetwork` (2-of-3, with its AggregateMarket):
a cohort with k = 2, an aggregate debit with three contributions answered by nodes 1 and 2
(their partial releases sit in their logs between key releases and are anchored with
them), a second debit with one contribution refunded, two claims and a withdrawal. The
history is built once for the module; every cheat is staged without touching the chain:
forged entries served in a node's log (unanchored, so they also show as `pending`), or
forged events replayed against the real views (for what the contract itself refuses).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import nacl.public
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console

from marketplace.aggregate import ContributionContext, Query, dimension, encode, seal_contribution
from marketplace.aggregate.query_document import (
    QueryDocument,
    epsilon_to_micros,
    put_query_document,
)
from marketplace.app.audit import run_audit
from marketplace.audit.aggregates import AggregateRuns, check_aggregates
from marketplace.audit.auditor import Auditor
from marketplace.audit.chain_view import PinnedAggregator, PinnedMarket
from marketplace.audit.epochs import EpochHistory
from marketplace.audit.release_log import (
    REQUEST_MISSING,
    LogEntry,
    LoggedPartial,
    ReleaseLogSource,
    ReleasePage,
    fetch_log,
    parse_page,
)
from marketplace.audit.report import AuditReport
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import (
    AggregateEvent,
    AggregateRequested,
    CohortCreated,
    ContributionClaimed,
    ContributionRecorded,
    EpsilonMicros,
)
from marketplace.chain.events import ReleasesAnchored
from marketplace.chain.types import Wei
from marketplace.cli.audit_commands import AggregatorMismatch, emit, open_aggregator
from marketplace.eip712 import Eip712Domain, PartialReceipt, PartialRequest, digest, sign
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.merkle import PARTIAL_ITEM, merkle_root
from tests.audit.forge import ListLog
from tests.audit.scenario import DAY, PRICE, Scenario, warning_kinds

AGES = Query("histogram", "age", 1.0, 1e-6, bins=(0, 30, 60, 120))
ROUND_SECONDS = 30
#: Not a multiple of 3: the buyer gets a remainder when the payout is fixed.
AGGREGATE_PRICE = 10**15 + 2


@dataclass
class History:
    s: Scenario
    cohort: int
    answered: int
    refunded: int
    buyer: LocalAccount
    owners: list[LocalAccount]
    deadline: int
    request_block: int

    @property
    def aggregator(self) -> AggregateClient:
        assert self.s.net.aggregator is not None
        return self.s.net.aggregator

    @property
    def domain(self) -> Eip712Domain:
        return Eip712Domain(self.s.net.market.chain_id, self.aggregator.address)

    def audit(self, sources: dict[int, ReleaseLogSource] | None = None) -> AuditReport:
        auditor = Auditor(self.s.net.market, self.s.net.store, sources or self.s.sources(),
                          aggregator=self.aggregator)
        return auditor.run()

    def contribute(self, owner: LocalAccount, debit_id: int, age: int) -> None:
        committee = self.s.net.market.committee_at(1)
        context = ContributionContext(
            self.s.net.market.chain_id, bytes.fromhex(self.aggregator.address[2:]), debit_id,
            bytes.fromhex(owner.address[2:]), dimension(AGES),
        )
        bundle = seal_contribution(context, encode(AGES, age), committee.encryption_keys,
                                   committee.threshold)
        cid = self.s.net.store.put(io.BytesIO(bundle))
        self.aggregator.contribute(owner, debit_id, cid.binary)

    def ask_partial(self, node: int) -> None:
        request = PartialRequest(self.answered, self.s.now() + 300, os.urandom(32))
        body = {"request": request.to_message(),
                "signature": "0x" + sign(self.buyer, self.domain, request).hex()}
        response = self.s.net.clients[node].post("/v1/partials", json=body)
        assert response.status_code == 200, response.text

    def forged(
        self, node: int, debit_id: int, *, signer: LocalAccount | None = None,
        block: int | None = None, requester: LocalAccount | None = None, epoch: int = 1,
        lifetime: int = 60,
    ) -> LoggedPartial:
        """A partial release as node `node` would log it, signed by `signer` (default: the
        node), dated `block` (default: the latest), on a request live at that block signed
        by `requester` (default: the debit's buyer)."""
        w3 = self.s.net.market.w3
        block = w3.eth.block_number if block is None else block
        stamp = int(w3.eth.get_block(block)["timestamp"])
        request = PartialRequest(debit_id, stamp + lifetime, os.urandom(32))
        receipt = PartialReceipt(debit_id, node, os.urandom(32), block, epoch)
        node_account = self.s.net.node_accounts[node - 1]
        return LoggedPartial(
            0, self.aggregator.address, receipt, sign(signer or node_account, self.domain, receipt),
            request, sign(requester or self.buyer, self.domain, request), "",
        )

    def log_of(self, node: int) -> list[LogEntry]:
        return fetch_log(self.s.sources()[node]).entries

    def serve(self, node: int, log: Sequence[LogEntry]) -> dict[int, ReleaseLogSource]:
        sources = self.s.sources()
        sources[node] = ListLog(list(log), node)  # type: ignore[arg-type]
        return sources

    def replay(self, events: list[AggregateEvent]) -> AggregateRuns:
        """The aggregate checks over `events` (forged or not) and the real views."""
        market = self.s.net.market
        chain = PinnedMarket(market, market.w3.eth.block_number)
        return check_aggregates(PinnedAggregator(self.aggregator, chain), events,
                                EpochHistory.of(chain.finalized_epochs()), market.chain_id, {})


def build_history(folder: Path) -> History:
    from marketplace.localnet import LocalNetwork  # noqa: PLC0415

    net = LocalNetwork.start(folder / "store")
    assert net.aggregator is not None and net.deployer is not None
    s = Scenario(net, net.account(), 0, 0)
    s.auto_listing = net.market.create_listing(s.owner, price_per_period=PRICE,
                                               period_seconds=DAY, auto_approve=True).value
    key_buyer = s.buyer()
    v1 = s.publish(s.auto_listing, 1_000)
    key_debit = s.request(key_buyer, s.auto_listing)
    s.release(key_buyer, key_debit, v1)  # seq 1 on every node

    agg = net.aggregator
    cohort = agg.create_cohort(net.deployer, schema_hash=bytes(32), schema_uri="ipfs://cohort",
                               epsilon_cap=epsilon_to_micros(3.0), min_contributors=2).value
    owners = [net.account() for _ in range(3)]
    for owner in owners:
        agg.join_cohort(owner, cohort)
    buyer = net.account()
    secret = BuyerSecretKey.from_account(buyer, net.domain)
    public = bytes(nacl.public.PrivateKey(secret.to_secret_bytes()).public_key)
    query_hash, uri = put_query_document(
        net.store, QueryDocument.build(AGES, public, ROUND_SECONDS, "auditor test", "ages"))
    deadline = net.dev.now() + 600
    sent = agg.request_aggregate(buyer, cohort, query_hash=query_hash, query_uri=uri,
                                 epsilon=epsilon_to_micros(AGES.epsilon), deadline=deadline,
                                 price=AGGREGATE_PRICE)
    refunded = agg.request_aggregate(buyer, cohort, query_hash=query_hash, query_uri=uri,
                                     epsilon=epsilon_to_micros(AGES.epsilon), deadline=deadline,
                                     price=PRICE).value
    h = History(s, cohort, sent.value, refunded, buyer, owners, deadline, sent.block_number)
    for owner, age in zip(owners, (12, 40, 70), strict=True):
        h.contribute(owner, h.answered, age)
    h.contribute(owners[0], refunded, 33)  # one of k = 2: refunded
    net.dev.advance(deadline - net.dev.now() + 1)
    for _ in range(4):
        net.sync()  # round 1, round 2, the partial: each needs every node's post before
    h.ask_partial(1)  # seq 2 on nodes 1 and 2; node 3 answers nobody
    h.ask_partial(2)
    agg.refund(buyer, refunded)
    agg.claim_contribution(owners[0], h.answered)
    agg.claim_contribution(owners[1], h.answered)
    agg.withdraw(owners[0])
    v2 = s.publish(s.auto_listing, 1_000)
    s.release(key_buyer, key_debit, v2)  # seq 3 on nodes 1 and 2, seq 2 on node 3
    net.sync()
    return h


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    built = build_history(tmp_path_factory.mktemp("aggregate-audit"))
    yield built
    built.s.net.close()


def partial_entries(log: list[LogEntry]) -> list[LoggedPartial]:
    return [e for e in log if isinstance(e, LoggedPartial)]


# ---------------------------------------------------------------- honest


def test_an_honest_aggregate_market_audits_clean(history: History) -> None:
    report = history.audit()
    assert report.clean, [v.detail for v in report.violations]
    assert warning_kinds(report) == []
    assert report.check("aggregate contributions").checked == 4
    assert report.check("aggregate epsilon").checked == 3  # two requests, one cohort
    assert report.check("aggregate payouts").checked == 4  # payout fixed, 2 claims, refund
    assert report.check("partial releases").checked == 2
    assert report.check("partial releases").failed == 0
    # the partials are anchored with the key releases: 3 + 3 + 2 entries
    assert report.check("release anchoring").checked == 8
    assert history.aggregator.cohort(history.cohort).epsilon_spent == epsilon_to_micros(1.0)


def test_partial_releases_share_the_log_and_its_anchors(history: History) -> None:
    page = history.s.net.clients[1].get("/v1/releases").json()
    entries = page["releases"]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert [e.get("kind") for e in entries] == [None, "partial", None]  # key entries unchanged
    assert "kind" not in entries[0] and entries[0]["receipt"]["version"] == 1
    partial = entries[1]
    assert partial["aggregator"] == history.aggregator.address
    assert partial["receipt"]["debitId"] == history.answered
    log = parse_page(1, page).releases
    (logged,) = partial_entries(list(log))
    assert logged.request is not None and logged.request.debit_id == history.answered
    # the anchored roots are over: key digests as they are, 0x02 || the partial's digest
    items = [PARTIAL_ITEM + digest(history.domain, e.receipt) if isinstance(e, LoggedPartial)
             else digest(history.s.net.domain, e.receipt) for e in log]
    market = history.s.net.market
    node = history.s.net.node_accounts[0].address
    anchors = [a for a in market.events().read(0)
               if isinstance(a, ReleasesAnchored) and a.node == node]
    assert sum(a.count for a in anchors) == 3
    first = 0
    for anchor in anchors:
        assert merkle_root(items[first:first + anchor.count]) == anchor.root
        first += anchor.count


def test_a_log_page_with_an_unknown_kind_is_malformed(history: History) -> None:
    page = history.s.net.clients[1].get("/v1/releases").json()
    page["releases"][1]["kind"] = "bonus"
    with pytest.raises(ValueError, match="unknown kind"):
        parse_page(1, page)
    page["releases"][1]["kind"] = "partial"
    page["releases"][1]["aggregator"] = "0x1234"
    with pytest.raises(ValueError, match="AggregateMarket"):
        parse_page(1, page)


# ---------------------------------------------------------------- tampered logs


class AlteredPartial:
    """A node's log whose partial release had its sealed-partial hash changed after
    signing and anchoring."""

    def __init__(self, inner: ReleaseLogSource) -> None:
        self.inner = inner

    def page(self, after: int, limit: int) -> ReleasePage:
        page = self.inner.page(after, limit)
        rows = tuple(
            replace(e, receipt=replace(e.receipt, sealed_partial_hash=bytes(32)))
            if isinstance(e, LoggedPartial) else e
            for e in page.releases
        )
        return ReleasePage(page.node, page.address, rows)


def test_a_tampered_partial_receipt_breaks_its_anchor_and_signature(history: History) -> None:
    sources = history.s.sources()
    sources[1] = AlteredPartial(sources[1])
    report = history.audit(sources)
    assert report.kinds() == {"anchor_mismatch", "partial_bad_signature"}
    assert all(v.fields["node"] == 1 for v in report.violations)


def test_a_dropped_partial_release_breaks_the_anchor(history: History) -> None:
    # the node serves its log without the partial, renumbered so the sequence has no gap
    log = [e for e in history.log_of(2) if not isinstance(e, LoggedPartial)]
    report = history.audit(history.serve(2, log))
    assert report.kinds() == {"anchor_mismatch"}
    assert report.violations[0].fields["node"] == 2


def test_two_partials_for_one_debit_in_a_log_are_malformed(history: History) -> None:
    extra = history.forged(1, history.answered)
    report = history.audit(history.serve(1, [*history.log_of(1), extra]))
    assert report.kinds() == {"log_malformed"}
    assert "two partial releases" in report.violations[0].detail


# ---------------------------------------------------------------- forged partial releases


def audit_with_extra(history: History, extra: LoggedPartial) -> AuditReport:
    """Node 3 (which released no partial) logs `extra` after its real entries, unanchored."""
    report = history.audit(history.serve(3, [*history.log_of(3), extra]))
    assert "pending" in warning_kinds(report)
    return report


def test_audit_catches_a_partial_released_before_the_deadline(history: History) -> None:
    extra = history.forged(3, history.answered, block=history.request_block)
    report = audit_with_extra(history, extra)
    assert report.kinds() == {"partial_before_deadline"}
    (violation,) = report.violations
    assert violation.fields["node"] == 3 and str(history.deadline) in violation.detail


def test_audit_catches_a_partial_released_to_a_non_buyer(history: History) -> None:
    stranger = history.s.net.account()
    report = audit_with_extra(history, history.forged(3, history.answered, requester=stranger))
    assert report.kinds() == {"partial_wrong_buyer"}
    assert stranger.address in report.violations[0].detail


def test_audit_catches_a_partial_for_a_debit_with_fewer_than_k(history: History) -> None:
    report = audit_with_extra(history, history.forged(3, history.refunded))
    assert report.kinds() == {"partial_too_few", "partial_for_refunded"}
    assert "fewer than the cohort's k = 2" in report.violations[0].detail


def test_audit_catches_a_partial_signed_by_a_non_committee_key(history: History) -> None:
    forged = history.forged(3, history.answered, signer=Account.create())
    report = audit_with_extra(history, forged)
    assert report.kinds() == {"partial_bad_signature"}
    assert "not a node of the debit's committee epoch 1" in report.violations[0].detail


def test_audit_catches_a_partial_signed_by_another_committee_node(history: History) -> None:
    forged = history.forged(3, history.answered, signer=history.s.net.node_accounts[0])
    report = audit_with_extra(history, forged)
    assert report.kinds() == {"partial_bad_signature"}
    assert "node 1 of epoch 1" in report.violations[0].detail


def test_audit_catches_a_partial_naming_another_epoch(history: History) -> None:
    report = audit_with_extra(history, history.forged(3, history.answered, epoch=2))
    assert report.kinds() == {"partial_wrong_epoch"}


def test_audit_catches_a_partial_on_a_request_not_live_at_its_block(history: History) -> None:
    expired = history.forged(3, history.answered, lifetime=0)  # expiry == the block's time
    report = audit_with_extra(history, expired)
    assert report.kinds() == {"partial_outside_request_window"}
    early = history.forged(3, history.answered, lifetime=601 + 600)  # beyond 600 s + maxLag
    assert audit_with_extra(history, early).kinds() == {"partial_outside_request_window"}


def test_audit_catches_a_partial_signed_for_another_aggregate_market(history: History) -> None:
    forged = replace(history.forged(3, history.answered), aggregator=Account.create().address)
    report = audit_with_extra(history, forged)
    assert report.kinds() == {"partial_foreign_aggregator"}


def test_audit_catches_a_partial_with_no_request(history: History) -> None:
    forged = replace(history.forged(3, history.answered), request=None, request_signature=b"",
                     request_problem=REQUEST_MISSING)
    report = audit_with_extra(history, forged)
    assert report.kinds() == {"partial_request_missing"}


def test_without_the_aggregator_partials_are_anchored_but_named_unaudited(
    history: History,
) -> None:
    report = Auditor(history.s.net.market, history.s.net.store, history.s.sources()).run()
    assert report.clean
    assert warning_kinds(report) == ["partials_unaudited", "partials_unaudited"]
    assert report.check("release anchoring").checked == 8


# ---------------------------------------------------------------- forged chain histories


def chain_events(history: History) -> list[AggregateEvent]:
    return history.aggregator.read_events(0)


def kinds(runs: AggregateRuns) -> set[str]:
    return {v.kind for run in runs.all() for v in run.violations}


def test_the_real_events_replay_clean(history: History) -> None:
    runs = history.replay(chain_events(history))
    assert kinds(runs) == set()
    assert [w.kind for w in runs.balance.warnings] == []


def swap(events: list[AggregateEvent], old: AggregateEvent, new: AggregateEvent) -> list[
        AggregateEvent]:
    return [new if e is old else e for e in events]


def test_epsilon_over_the_cap_is_found_in_a_forged_history(history: History) -> None:
    # the contract refuses such a request (EpsilonCapExceeded, tests/chain): the auditor's
    # arithmetic is checked on a history that claims one
    events = chain_events(history)
    request = next(e for e in events if isinstance(e, AggregateRequested)
                   and e.debit_id == history.answered)
    forged = replace(request, epsilon=EpsilonMicros(epsilon_to_micros(3.5)))
    runs = history.replay(swap(events, request, forged))
    assert kinds(runs) == {"epsilon_over_cap", "epsilon_mismatch"}
    # at the forged request, at the next one (3.5 + 1), and at the audited block (refunded)
    over = [v.fields["spentMicros"] for v in runs.epsilon.violations
            if v.kind == "epsilon_over_cap"]
    assert over == [epsilon_to_micros(3.5), epsilon_to_micros(4.5), epsilon_to_micros(3.5)]


def test_a_contribution_by_a_non_member_is_found(history: History) -> None:
    events = chain_events(history)
    last = [e for e in events if isinstance(e, ContributionRecorded)
            and e.debit_id == history.answered][-1]
    stranger = Account.create().address
    runs = history.replay(swap(events, last, replace(last, owner=stranger)))
    assert kinds(runs) == {"contribution_not_member"}
    assert stranger in runs.contributions.violations[0].detail


def test_a_late_contribution_is_found(history: History) -> None:
    events = chain_events(history)
    last = [e for e in events if isinstance(e, ContributionRecorded)
            and e.debit_id == history.answered][-1]
    late = next(e for e in events if isinstance(e, ContributionClaimed))
    runs = history.replay(swap(events, last, replace(last, ref=late.ref)))
    assert kinds(runs) == {"contribution_late"}


def test_a_second_contribution_by_one_owner_is_found(history: History) -> None:
    events = chain_events(history)
    first, _, third = [e for e in events if isinstance(e, ContributionRecorded)
                       and e.debit_id == history.answered]
    runs = history.replay(swap(events, third, replace(third, owner=first.owner)))
    # one owner twice is also one contribution fewer than the contract counted, so the
    # equal shares it paid no longer divide the price by the replayed count
    assert "contribution_duplicate" in kinds(runs)
    assert "aggregate_state_mismatch" in kinds(runs)


def test_a_refund_with_enough_contributions_is_found(history: History) -> None:
    events = chain_events(history)
    created = next(e for e in events if isinstance(e, CohortCreated))
    runs = history.replay(swap(events, created, replace(created, min_contributors=1)))
    assert kinds(runs) == {"refund_with_enough"}


class Holding(PinnedAggregator):
    """The real views, but the contract's ether off by `delta` wei."""

    def __init__(self, inner: PinnedAggregator, delta: int) -> None:
        super().__init__(inner.client, inner.chain)
        self.delta = delta

    def contract_balance(self) -> Wei:
        return Wei(super().contract_balance() + self.delta)


@pytest.mark.parametrize(("delta", "violations", "warnings"), [
    (-1, {"aggregate_balance_invariant"}, []),
    (5, set(), ["aggregate_balance_surplus"]),
])
def test_the_ether_held_must_cover_credits_and_escrow(
    history: History, delta: int, violations: set[str], warnings: list[str]
) -> None:
    market = history.s.net.market
    chain = PinnedMarket(market, market.w3.eth.block_number)
    view = Holding(PinnedAggregator(history.aggregator, chain), delta)
    runs = check_aggregates(view, chain_events(history),
                            EpochHistory.of(chain.finalized_epochs()), market.chain_id, {})
    assert kinds(runs) == violations
    assert [w.kind for w in runs.balance.warnings] == warnings


def test_an_unequal_claim_is_found(history: History) -> None:
    events = chain_events(history)
    claim = [e for e in events if isinstance(e, ContributionClaimed)][-1]  # not withdrawn
    runs = history.replay(swap(events, claim, replace(claim, amount=Wei(claim.amount + 1))))
    assert kinds(runs) == {"claim_amount", "aggregate_balance_mismatch",
                           "aggregate_state_mismatch"}


# ---------------------------------------------------------------- the operation and the CLI


def test_run_audit_with_the_aggregator_renders_the_new_rows(
    history: History, tmp_path: Path
) -> None:
    report = run_audit(history.s.net.market, history.s.net.store, history.s.sources(),
                       aggregator=history.aggregator)
    out = tmp_path / "table.txt"
    with out.open("w") as f:
        assert emit(report, None, Console(file=f, width=200)) == 0
    table = out.read_text()
    for row in ("aggregate contributions", "aggregate epsilon", "aggregate payouts",
                "aggregate balance", "partial releases"):
        assert row in table


def test_the_aggregator_option_refuses_what_is_not_this_markets_aggregator(
    history: History,
) -> None:
    market = history.s.net.market
    assert open_aggregator(market, history.aggregator.address).address == (
        history.aggregator.address)
    with pytest.raises(AggregatorMismatch, match="not an Ethereum address"):
        open_aggregator(market, "0x1234")
    with pytest.raises(AggregatorMismatch, match="no AggregateMarket answers"):
        open_aggregator(market, market.address)  # a contract without market()
    with pytest.raises(AggregatorMismatch, match="no AggregateMarket answers"):
        open_aggregator(market, Account.create().address)  # no code at all


def test_a_node_restarted_without_its_aggregator_refuses_to_serve_a_gapped_log(
    history: History,
) -> None:
    from fastapi.testclient import TestClient  # noqa: PLC0415

    from marketplace.gateway.api import create_app  # noqa: PLC0415
    from marketplace.gateway.service import GatewayService  # noqa: PLC0415

    running = history.s.net.gateways[1]
    assert running.state.last_release_seq() == 3  # counts the partial release too
    bare = GatewayService(market=history.s.net.market, state=running.state, node=running.node)
    client = TestClient(create_app(bare, run_background=False))
    refused = client.get("/v1/releases")
    assert refused.status_code == 503
    assert refused.json()["code"] == "state_unavailable"
    assert "--aggregator" in refused.json()["message"]
    after = client.get("/v1/releases", params={"after": 2})  # past the partial: served
    assert after.status_code == 200
    assert [e["seq"] for e in after.json()["releases"]] == [3]
