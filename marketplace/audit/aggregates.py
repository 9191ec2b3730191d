"""Checks of aggregate debits (DESIGN §10, docs/protocol.md §15 items 10-14): the
AggregateMarket rebuilt from its own events, and the partial releases in the nodes' logs.

The replay walks the contract's events in chain order and judges each one as it comes:
a contribution by a member of the debit's cohort before the deadline, once per owner; the
cohort's spent ε the sum of its non-refunded queries' ε, never above its cap; payouts
equal shares of the price with the remainder to the buyer, only with at least k
contributions; refunds of the whole price only with fewer; withdrawals of the whole
credited balance. At the audited block the replay must equal the contract's views, and the
ether held must cover Σ credited + Σ unsettled escrow.

Every partial release a node logged must be signed by the node of the debit's committee
epoch it names, dated at or after the deadline (the timestamp of the receipt's block), for
a debit with at least k contributions and no refund, asked for by the debit's buyer with a
request live at the receipt's block. The receipt binds no request (a partial is sealed to
the query document's buyer key, so only the buyer can open it whoever asks); the logged
request is the node's evidence, judged like a key release's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from marketplace.audit.chain_view import AggregateView
from marketplace.audit.epochs import EpochHistory
from marketplace.audit.release_log import REQUEST_MISSING, LogEntry, LoggedPartial
from marketplace.audit.releases import MAX_LAG, REQUEST_WINDOW
from marketplace.audit.report import CheckRun
from marketplace.chain.aggregate_types import (
    AggregateEvent,
    AggregatePayoutFixed,
    AggregateRefunded,
    AggregateRequested,
    AggregateState,
    AggregateWithdrawn,
    CohortCreated,
    CohortJoined,
    CohortLeft,
    ContributionClaimed,
    ContributionRecorded,
)
from marketplace.eip712 import Eip712Domain, MalformedSignature, recover_signer

CONTRIBUTIONS = "aggregate contributions"
EPSILON = "aggregate epsilon"
PAYOUTS = "aggregate payouts"
BALANCE = "aggregate balance"
PARTIALS = "partial releases"


@dataclass
class _Cohort:
    created: CohortCreated
    members: set[str] = field(default_factory=set)
    spent: int = 0


@dataclass
class _Debit:
    requested: AggregateRequested
    contributors: set[str] = field(default_factory=set)
    payout: AggregatePayoutFixed | None = None
    claimed: set[str] = field(default_factory=set)
    refund: AggregateRefunded | None = None
    settled: int = 0

    @property
    def count(self) -> int:
        return len(self.contributors)


@dataclass(frozen=True, slots=True)
class AggregateRuns:
    contributions: CheckRun
    epsilon: CheckRun
    payouts: CheckRun
    balance: CheckRun
    partials: CheckRun

    def all(self) -> list[CheckRun]:
        return [self.contributions, self.epsilon, self.payouts, self.balance, self.partials]


class AggregateChecker:
    """Replays one AggregateMarket's events against its views, then checks partial logs."""

    def __init__(
        self,
        view: AggregateView,
        epochs: EpochHistory,
        chain_id: int,
        *,
        latest: int | None = None,
        max_lag: int = MAX_LAG,
    ) -> None:
        """`latest`: the chain's head once the logs were read (default: the audited head)."""
        self.view = view
        self.epochs = epochs
        self.domain = Eip712Domain(chain_id, view.address)
        self.latest = max(view.head, view.head if latest is None else latest)
        self.max_lag = max_lag
        self.runs = AggregateRuns(CheckRun(CONTRIBUTIONS), CheckRun(EPSILON), CheckRun(PAYOUTS),
                                  CheckRun(BALANCE), CheckRun(PARTIALS))
        self.cohorts: dict[int, _Cohort] = {}
        self.debits: dict[int, _Debit] = {}
        self.credits: dict[str, int] = {}
        self.paid_in = 0
        self.paid_out = 0

    # ------------------------------------------------------------ the replay

    def replay(self, events: Sequence[AggregateEvent]) -> None:
        """Judge every event in chain order, then compare the result with the views."""
        for event in events:
            if isinstance(event, CohortCreated):
                self.cohorts[event.cohort_id] = _Cohort(event)
            elif isinstance(event, CohortJoined | CohortLeft):
                self._membership(event)
            elif isinstance(event, AggregateRequested):
                self._requested(event)
            elif isinstance(event, ContributionRecorded):
                self._contributed(event)
            elif isinstance(event, AggregatePayoutFixed):
                self._payout(event)
            elif isinstance(event, ContributionClaimed):
                self._claimed(event)
            elif isinstance(event, AggregateRefunded):
                self._refunded(event)
            elif isinstance(event, AggregateWithdrawn):
                self._withdrawn(event)
            # rounds are events only; their payloads are the nodes' business
        self._compare_views()

    def _membership(self, event: CohortJoined | CohortLeft) -> None:
        cohort = self.cohorts.get(event.cohort_id)
        if cohort is None:
            self.runs.contributions.violation(
                "aggregate_unknown_cohort", f"block {event.ref.block_number}: "
                f"{type(event).__name__} for cohort {event.cohort_id}, never created",
                cohortId=event.cohort_id)
            return
        if isinstance(event, CohortJoined):
            cohort.members.add(event.owner.lower())
        else:
            cohort.members.discard(event.owner.lower())

    def _requested(self, event: AggregateRequested) -> None:
        run = self.runs.epsilon
        ids: dict[str, int | str] = {"debitId": event.debit_id, "cohortId": event.cohort_id}
        self.paid_in += event.price
        self.debits[event.debit_id] = _Debit(event)
        cohort = self.cohorts.get(event.cohort_id)
        if cohort is None:
            run.violation("aggregate_unknown_cohort", f"aggregate debit {event.debit_id} on "
                          f"cohort {event.cohort_id}, never created", **ids)
            run.count(False)
            return
        cap = cohort.created.epsilon_cap
        cohort.spent += event.epsilon
        ok = cohort.spent <= cap
        if not ok:
            run.violation("epsilon_over_cap", f"aggregate debit {event.debit_id} takes cohort "
                          f"{event.cohort_id}'s spent epsilon to {_eps(cohort.spent)}, over its "
                          f"cap {_eps(cap)}", **ids, spentMicros=cohort.spent, capMicros=cap)
        in_force = self.epochs.in_force_at(event.ref.block_number)
        if in_force is None or in_force.epoch != event.epoch:
            ok = False
            run.violation("aggregate_wrong_epoch", f"aggregate debit {event.debit_id} names "
                          f"committee epoch {event.epoch}; epoch "
                          f"{in_force.epoch if in_force else 0} was in force at its block", **ids)
        run.count(ok)

    def _contributed(self, event: ContributionRecorded) -> None:
        run = self.runs.contributions
        owner = event.owner.lower()
        ids: dict[str, int | str] = {"debitId": event.debit_id, "owner": event.owner}
        where = f"aggregate debit {event.debit_id}: contribution by {event.owner}"
        debit = self.debits.get(event.debit_id)
        if debit is None:
            run.violation("contribution_unknown_debit", f"{where} to a debit never requested",
                          **ids)
            run.count(False)
            return
        findings: list[tuple[str, str]] = []
        cohort = self.cohorts.get(debit.requested.cohort_id)
        if cohort is None or owner not in cohort.members:
            findings.append(("contribution_not_member", f"{where}, not a member of cohort "
                             f"{debit.requested.cohort_id} at block {event.ref.block_number}"))
        stamp = self.view.timestamp(event.ref.block_number)
        if stamp >= debit.requested.deadline:
            findings.append(("contribution_late", f"{where} at timestamp {stamp}, not before "
                             f"the deadline {debit.requested.deadline}"))
        if owner in debit.contributors:
            findings.append(("contribution_duplicate", f"{where}, who contributed before"))
        else:
            debit.contributors.add(owner)
        for kind, detail in findings:
            run.violation(kind, detail, **ids)
        run.count(not findings)

    def _payout(self, event: AggregatePayoutFixed) -> None:
        run = self.runs.payouts
        debit = self.debits.get(event.debit_id)
        ids: dict[str, int | str] = {"debitId": event.debit_id}
        if debit is None:
            run.violation("payout_unknown_debit", f"payout fixed for aggregate debit "
                          f"{event.debit_id}, never requested", **ids)
            run.count(False)
            return
        findings = self._answerable(debit, event.ref.block_number, "payout")
        price, count = debit.requested.price, debit.count
        if debit.payout is not None:
            findings.append(("payout_mismatch", "its payout was fixed twice"))
        if count and (event.contributions, event.share, event.remainder) != (
            count, price // count, price % count
        ):
            findings.append(("payout_mismatch", f"fixed {event.contributions} shares of "
                             f"{event.share} wei + {event.remainder} wei to the buyer; price "
                             f"{price} wei over {count} contributions is {price // count} each "
                             f"+ {price % count}"))
        if event.buyer.lower() != debit.requested.buyer.lower():
            findings.append(("payout_mismatch", f"remainder to {event.buyer}, not to the "
                             f"buyer {debit.requested.buyer}"))
        debit.payout = event
        debit.settled += event.remainder
        self._credit(event.buyer, event.remainder)
        self._report(run, f"aggregate debit {event.debit_id}", findings, ids)

    def _claimed(self, event: ContributionClaimed) -> None:
        run = self.runs.payouts
        debit = self.debits.get(event.debit_id)
        ids: dict[str, int | str] = {"debitId": event.debit_id, "owner": event.owner}
        if debit is None:
            run.violation("payout_unknown_debit", f"claim by {event.owner} on aggregate debit "
                          f"{event.debit_id}, never requested", **ids)
            run.count(False)
            return
        owner = event.owner.lower()
        findings = self._answerable(debit, event.ref.block_number, "claim")
        if owner not in debit.contributors:
            findings.append(("claim_not_contributor", f"{event.owner} claimed without "
                             "contributing"))
        if owner in debit.claimed:
            findings.append(("claim_duplicate", f"{event.owner} claimed twice"))
        share = debit.requested.price // debit.count if debit.count else 0
        if event.amount != share:
            findings.append(("claim_amount", f"{event.owner} was credited {event.amount} wei; "
                             f"an equal share is {share} wei"))
        if debit.payout is None:
            findings.append(("payout_mismatch", "a claim before the payout was fixed"))
        debit.claimed.add(owner)
        debit.settled += event.amount
        self._credit(event.owner, event.amount)
        self._report(run, f"aggregate debit {event.debit_id}", findings, ids)

    def _answerable(self, debit: _Debit, block: int, what: str) -> list[tuple[str, str]]:
        """A payout needs the deadline passed, at least k contributions and no refund."""
        findings: list[tuple[str, str]] = []
        k = self._k(debit)
        if debit.count < k:
            findings.append(("payout_too_few", f"a {what} with {debit.count} contributions, "
                             f"fewer than the cohort's k = {k}"))
        if debit.refund is not None:
            findings.append(("payout_after_refund", f"a {what} after the refund"))
        stamp = self.view.timestamp(block)
        if stamp < debit.requested.deadline:
            findings.append(("payout_early", f"a {what} at timestamp {stamp}, before the "
                             f"deadline {debit.requested.deadline}"))
        return findings

    def _refunded(self, event: AggregateRefunded) -> None:
        run = self.runs.payouts
        debit = self.debits.get(event.debit_id)
        ids: dict[str, int | str] = {"debitId": event.debit_id}
        if debit is None:
            run.violation("payout_unknown_debit", f"refund of aggregate debit {event.debit_id}, "
                          "never requested", **ids)
            run.count(False)
            return
        findings: list[tuple[str, str]] = []
        k = self._k(debit)
        if debit.count >= k:
            findings.append(("refund_with_enough", f"refunded with {debit.count} contributions "
                             f"(k = {k})"))
        if debit.refund is not None or debit.payout is not None:
            findings.append(("refund_after_settlement", "refunded after a refund or payout"))
        requested = debit.requested
        if (event.refund, event.epsilon, event.buyer.lower()) != (
            requested.price, requested.epsilon, requested.buyer.lower()
        ):
            findings.append(("refund_mismatch", f"refunded {event.refund} wei and "
                             f"{_eps(event.epsilon)} epsilon to {event.buyer}; the debit paid "
                             f"{requested.price} wei for {_eps(requested.epsilon)} by "
                             f"{requested.buyer}"))
        stamp = self.view.timestamp(event.ref.block_number)
        if stamp < requested.deadline:
            findings.append(("payout_early", f"refunded at timestamp {stamp}, before the "
                             f"deadline {requested.deadline}"))
        debit.refund = event
        debit.settled += event.refund
        self._credit(event.buyer, event.refund)
        cohort = self.cohorts.get(requested.cohort_id)
        if cohort is not None:
            cohort.spent -= event.epsilon  # no answer: no privacy spent
        self._report(run, f"aggregate debit {event.debit_id}", findings, ids)

    def _withdrawn(self, event: AggregateWithdrawn) -> None:
        run = self.runs.balance
        credited = self.credits.get(event.account.lower(), 0)
        ok = event.amount == credited
        if not ok:
            run.violation("aggregate_withdraw_mismatch", f"{event.account} withdrew "
                          f"{event.amount} wei at block {event.ref.block_number}; its replayed "
                          f"credit was {credited} wei", account=event.account)
        self.credits[event.account.lower()] = 0
        self.paid_out += event.amount
        run.count(ok)

    def _credit(self, account: str, amount: int) -> None:
        self.credits[account.lower()] = self.credits.get(account.lower(), 0) + amount

    def _k(self, debit: _Debit) -> int:
        cohort = self.cohorts.get(debit.requested.cohort_id)
        return cohort.created.min_contributors if cohort else 1

    @staticmethod
    def _report(
        run: CheckRun, where: str, findings: list[tuple[str, str]], ids: dict[str, int | str]
    ) -> None:
        for kind, detail in findings:
            run.violation(kind, f"{where}: {detail}", **ids)
        run.count(not findings)

    # ------------------------------------------------------------ at the audited block

    def _compare_views(self) -> None:
        for cohort_id, cohort in sorted(self.cohorts.items()):
            on_chain = self.view.cohort(cohort_id)
            ok = on_chain.epsilon_spent == cohort.spent and cohort.spent <= on_chain.epsilon_cap
            if on_chain.epsilon_spent != cohort.spent:
                self.runs.epsilon.violation(
                    "epsilon_mismatch", f"cohort {cohort_id} has spent "
                    f"{_eps(on_chain.epsilon_spent)} epsilon on chain; its non-refunded queries "
                    f"sum to {_eps(cohort.spent)}", cohortId=cohort_id)
            if cohort.spent > on_chain.epsilon_cap:
                self.runs.epsilon.violation(
                    "epsilon_over_cap", f"cohort {cohort_id}'s non-refunded queries spend "
                    f"{_eps(cohort.spent)} epsilon, over its cap {_eps(on_chain.epsilon_cap)}",
                    cohortId=cohort_id, spentMicros=cohort.spent,
                    capMicros=on_chain.epsilon_cap)
            self.runs.epsilon.count(ok)
        count = self.view.aggregate_count()
        if count != len(self.debits) or set(self.debits) != set(range(1, count + 1)):
            self.runs.payouts.violation(
                "aggregate_state_mismatch", f"the contract counts {count} aggregate debits; "
                f"its events request {len(self.debits)}")
        unsettled = 0
        for debit_id, debit in sorted(self.debits.items()):
            viewed = self.view.aggregate(debit_id)
            state = (AggregateState.REFUNDED if debit.refund else
                     AggregateState.PAYING if debit.payout else AggregateState.OPEN)
            replayed = (debit.count, len(debit.claimed), debit.settled, state)
            if (viewed.contributions, viewed.claims, viewed.settled, viewed.state) != replayed:
                self.runs.payouts.violation(
                    "aggregate_state_mismatch", f"aggregate debit {debit_id}: the contract says "
                    f"{viewed.contributions} contributions, {viewed.claims} claims, "
                    f"{viewed.settled} wei settled, {viewed.state.name}; its events give "
                    f"{replayed[0]}, {replayed[1]}, {replayed[2]} wei, {state.name}",
                    debitId=debit_id)
            unsettled += debit.requested.price - debit.settled
        self._balance(unsettled)

    def _balance(self, unsettled: int) -> None:
        run = self.runs.balance
        for account, credited in sorted(self.credits.items()):
            actual = self.view.balance_of(account)
            if actual != credited:
                run.violation("aggregate_balance_mismatch", f"{account} has {actual} wei "
                              f"credited on chain; its replayed credit is {credited} wei",
                              account=account)
            run.count(actual == credited)
        credited = sum(self.credits.values())
        owed = credited + unsettled
        held = self.view.contract_balance()
        ok = owed == self.paid_in - self.paid_out and held >= owed
        if owed != self.paid_in - self.paid_out:
            run.violation("aggregate_balance_invariant", f"credited {credited} + unsettled "
                          f"{unsettled} wei differs from paid in {self.paid_in} - paid out "
                          f"{self.paid_out} wei")
        if held < owed:
            run.violation("aggregate_balance_invariant", f"the AggregateMarket holds {held} "
                          f"wei; it owes credited {credited} + unsettled {unsettled} = {owed}")
        elif held > owed:
            run.warning("aggregate_balance_surplus", f"the AggregateMarket holds {held - owed} "
                        "wei more than it owes (ether can be forced into any contract)")
        run.count(ok)

    # ------------------------------------------------------------ partial releases

    def check_partials(self, address: str, log: Sequence[LogEntry]) -> None:
        """The partial releases in the log of the node with address `address`."""
        node = self.epochs.label(address)
        for entry in log:
            if isinstance(entry, LoggedPartial):
                self._check_partial(node, address, entry)

    def _check_partial(self, node: int, address: str, entry: LoggedPartial) -> None:
        run = self.runs.partials
        receipt = entry.receipt
        ids: dict[str, int | str] = {"node": node, "seq": entry.seq, "debitId": receipt.debit_id,
                                     "block": receipt.block}
        where = f"node {node} seq {entry.seq} (partial of aggregate debit {receipt.debit_id})"
        if entry.aggregator.lower() != self.view.address.lower():
            run.violation("partial_foreign_aggregator", f"{where}: signed for AggregateMarket "
                          f"{entry.aggregator}, not the audited {self.view.address}", **ids)
            run.count(False)
            return
        if receipt.block > self.latest:
            run.violation("dated_after_head", f"{where}: dated block {receipt.block}, after "
                          f"the chain's head ({self.latest}) when the log was read", **ids)
            run.count(False)
            return
        if receipt.block > self.view.head:
            run.warning("after_head", f"{where}: released at block {receipt.block}, during the "
                        "audit; the next audit checks it", **ids)
            run.pending += 1
            return
        debit = self.debits.get(receipt.debit_id)
        if debit is None:
            run.violation("partial_unknown_debit", f"{where}: no such aggregate debit", **ids)
            run.count(False)
            return
        findings = self._signer_findings(address, entry, debit)
        stamp = self.view.timestamp(receipt.block)
        deadline = debit.requested.deadline
        if stamp < deadline:
            findings.append(("partial_before_deadline", f"released at block {receipt.block} "
                             f"(timestamp {stamp}), before the deadline {deadline}"))
        k = self._k(debit)
        if debit.count < k:
            findings.append(("partial_too_few", f"released with {debit.count} contributions, "
                             f"fewer than the cohort's k = {k}"))
        if debit.refund is not None:
            findings.append(("partial_for_refunded", "released for a refunded debit"))
        findings += self._request_findings(entry, debit, stamp)
        self._report(run, where, findings, ids)

    def _signer_findings(
        self, address: str, entry: LoggedPartial, debit: _Debit
    ) -> list[tuple[str, str]]:
        """Signed by this log's node, as node `receipt.node` of the debit's epoch."""
        receipt = entry.receipt
        epoch_number = debit.requested.epoch
        findings: list[tuple[str, str]] = []
        if receipt.epoch != epoch_number:
            findings.append(("partial_wrong_epoch", f"receipt names committee epoch "
                             f"{receipt.epoch}; the debit was requested in epoch {epoch_number}"))
        try:
            signer = recover_signer(self.domain, receipt, entry.signature)
        except MalformedSignature as e:
            return [*findings, ("partial_bad_signature", f"receipt signature: {e}")]
        epoch = self.epochs.get(epoch_number)
        nodes = epoch.nodes if epoch else ()
        expected = nodes[receipt.node - 1] if 1 <= receipt.node <= len(nodes) else None
        if signer.lower() != address.lower() or (expected or "").lower() != address.lower():
            member = epoch.index_of(signer) if epoch else None
            who = f"node {member} of epoch {epoch_number}" if member else (
                f"not a node of the debit's committee epoch {epoch_number}")
            findings.append(("partial_bad_signature", f"receipt recovers to {signer} ({who}); "
                             f"this log is {address}'s, epoch {epoch_number}'s node "
                             f"{receipt.node} is {expected or 'nobody'}"))
        return findings

    def _request_findings(
        self, entry: LoggedPartial, debit: _Debit, stamp: int
    ) -> list[tuple[str, str]]:
        """The logged `PartialRequest` names the debit, is the buyer's, and was live at the
        receipt's block (a node takes it only while now < expiry <= now + 600 s)."""
        request = entry.request
        if request is None:
            kind = ("partial_request_missing" if entry.request_problem == REQUEST_MISSING
                    else "partial_request_malformed")
            return [(kind, f"no readable buyer request logged ({entry.request_problem})")]
        findings: list[tuple[str, str]] = []
        if request.debit_id != entry.receipt.debit_id:
            findings.append(("partial_request_mismatch", f"the logged request names aggregate "
                             f"debit {request.debit_id}"))
        buyer = debit.requested.buyer
        try:
            signer = recover_signer(self.domain, request, entry.request_signature)
        except MalformedSignature as e:
            findings.append(("partial_request_malformed", f"request signature: {e}"))
        else:
            if signer.lower() != buyer.lower():
                findings.append(("partial_wrong_buyer", f"released on a request signed by "
                                 f"{signer}, not by the debit's buyer {buyer}"))
        earliest = request.expiry - REQUEST_WINDOW - self.max_lag
        if not earliest <= stamp < request.expiry:
            findings.append(("partial_outside_request_window", f"receipt block timestamp "
                             f"{stamp} outside the request's window [{earliest}, "
                             f"{request.expiry})"))
        return findings


def check_aggregates(
    view: AggregateView,
    events: Sequence[AggregateEvent],
    epochs: EpochHistory,
    chain_id: int,
    logs: Mapping[str, Sequence[LogEntry]],
    *,
    latest: int | None = None,
    max_lag: int = MAX_LAG,
) -> AggregateRuns:
    """Replay the AggregateMarket's `events` against `view`, then check every node's
    partial releases (node address -> its log entries)."""
    checker = AggregateChecker(view, epochs, chain_id, latest=latest, max_lag=max_lag)
    checker.replay(events)
    for address, log in sorted(logs.items(), key=lambda item: epochs.label(item[0])):
        checker.check_partials(address, log)
    return checker.runs


def _eps(micros: int) -> str:
    return f"{micros / 1e6:g}"
