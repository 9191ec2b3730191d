"""Aggregate debits (DESIGN §10) for people: cohorts, the owner's agent, the buyer's query
and result. The CLI, the demo and tests call these; the protocol itself is
`marketplace.aggregate` (pure) and the contract's client `marketplace.chain.aggregate`.

- `CohortApp`: create a cohort (its schema document stored, its hash on chain), join,
  leave, show.
- `OwnerAgent`: for every open aggregate debit on the owner's cohorts, decides by the
  owner's `AgentPolicy` (each refusal logged with its rule), encodes the owner's latest
  record, Shamir-shares and seals it to the committee of the debit's epoch, stores the
  bundle and calls `contribute`. Safe to rerun: its `AgentState` file (written
  atomically) reserves ε *before* the transaction, and the chain's `contributionOf` is
  read before any send, so a crash at any point never contributes twice nor forgets ε.
- `AggregateBuyer`: `query` stores the query document and pays `requestAggregate`;
  `result` asks every gateway for its sealed partial (`POST /v1/partials`), checks each
  answer's signed receipt, opens the partials, combines t of them (a node whose partial
  disagrees with the others is named and dropped) and decodes the noisy answer.

Nothing here logs or prints a record, a share, a partial or the noise.
"""

from __future__ import annotations

import base64
import binascii
import csv
import hashlib
import io
import json
import logging
import math
import os
import queue
import re
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import nacl.public
from eth_account.signers.local import LocalAccount

from marketplace import jsonsafe
from marketplace.aggregate import (
    AggregateError,
    Aggregation,
    ContributionContext,
    InconsistentShares,
    Partial,
    Query,
    Result,
    combine,
    committee_noise_plan,
    decode,
    dimension,
    encode,
    open_partial,
    seal_contribution,
)
from marketplace.aggregate.query_document import (
    CohortDocument,
    QueryDocument,
    epsilon_matches,
    epsilon_to_micros,
    load_cohort_document,
    load_query_document,
    put_cohort_document,
    put_query_document,
)
from marketplace.app.units import UnitError, parse_wei
from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.aggregate_types import (
    AggregateDebit,
    AggregateRequested,
    AggregateState,
    Cohort,
    ContributionRecorded,
)
from marketplace.chain.market import MarketClient, chain_time
from marketplace.chain.types import CommitteeEpoch, Wei
from marketplace.documents import DocumentError
from marketplace.eip712 import (
    Eip712Domain,
    Eip712Error,
    PartialReceipt,
    PartialRequest,
    recover_signer,
    sign,
)
from marketplace.errors import MarketplaceError
from marketplace.keyclient import (
    REQUEST_LIFETIME,
    Deadline,
    GatewayAnswerError,
    post_raw,
)
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from storage.errors import StorageError
from storage.stores.base import ContentStore

log = logging.getLogger(__name__)

#: Seconds a whole `result` may take by default (every gateway, every byte).
DEFAULT_TIMEOUT = 10.0
#: A partial answer is small (a k-bin histogram's box is ~4k + 200 bytes, base64'd).
MAX_PARTIAL_ANSWER = 16 * 1024 * 1024
STATE_VERSION = 1


def topic(value: int) -> bytes:
    """An indexed uint256 event argument as its 32-byte topic."""
    return value.to_bytes(32, "big")


# ---------------------------------------------------------------- errors


class AggregateAppError(MarketplaceError):
    """Base of the aggregate application layer's failures."""


class NoSuchAggregate(AggregateAppError, LookupError):
    def __init__(self, debit_id: int) -> None:
        self.debit_id = debit_id
        super().__init__(f"aggregate debit {debit_id} does not exist (or its request event "
                         "is before --from-block)")


class NotYourAggregate(AggregateAppError, PermissionError):
    def __init__(self, debit_id: int, buyer: str, wallet: str) -> None:
        self.debit_id, self.buyer, self.wallet = debit_id, buyer, wallet
        super().__init__(f"aggregate debit {debit_id} was paid by {buyer}, not by {wallet}: "
                         "its partials are sealed to that buyer")


class EpsilonAboveBudget(AggregateAppError):
    """The cohort's remaining ε is less than the query's: refused before paying."""

    def __init__(self, cohort_id: int, asked: int, left: int) -> None:
        self.cohort_id, self.asked, self.left = cohort_id, asked, left
        super().__init__(f"cohort {cohort_id} has ε {left / 1e6:g} left, the query asks "
                         f"{asked / 1e6:g}; nothing was stored or paid")


class ResultNotReady(AggregateAppError):
    """The partials cannot be released yet (before the deadline or the rounds' end)."""

    def __init__(self, debit_id: int, retry_after: int, detail: str) -> None:
        self.debit_id, self.retry_after = debit_id, retry_after
        super().__init__(f"aggregate debit {debit_id} has no result yet ({detail}); "
                         f"try again in {retry_after} s")


class TooFewContributions(AggregateAppError):
    """Fewer than the cohort's k owners contributed: no result, the buyer is refunded."""

    def __init__(self, debit_id: int, have: int, need: int) -> None:
        self.debit_id, self.have, self.need = debit_id, have, need
        super().__init__(f"aggregate debit {debit_id} got {have} contribution(s), the cohort "
                         f"needs {need}: no result will be released; "
                         f"`datadebit buyer refund-aggregate {debit_id}` returns the payment")


class ResultFailed(AggregateAppError):
    """Fewer than t usable partials; `faults` says what each node did."""

    def __init__(self, debit_id: int, have: int, need: int, faults: Mapping[int, str]) -> None:
        self.debit_id, self.have, self.need = debit_id, have, need
        self.faults = dict(faults)
        detail = "; ".join(f"node {i}: {why}" for i, why in sorted(self.faults.items()))
        super().__init__(f"aggregate debit {debit_id}: {have} usable partial(s), {need} needed "
                         f"({detail or 'no answers'})")


class PolicyError(AggregateAppError, ValueError):
    """An owner's policy file that cannot be used."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"policy {path}: {reason}")


class RecordsError(AggregateAppError, ValueError):
    """An owner's records CSV that cannot be used (never quotes a value)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"records {path}: {reason}")


class StateFileError(AggregateAppError):
    """An agent state file that is unreadable, or kept for another contract or owner."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"agent state {path}: {reason}")


# ---------------------------------------------------------------- cohorts


@dataclass(frozen=True, slots=True)
class CohortView:
    """A cohort as the chain keeps it, with its schema document when it verified."""

    cohort: Cohort
    schema_uri: str
    document: CohortDocument | None
    problem: DocumentError | None


class CohortApp:
    """Cohort administration and membership for one wallet on one AggregateMarket."""

    def __init__(self, client: AggregateClient, store: ContentStore | None,
                 wallet: LocalAccount, *, from_block: int = 0) -> None:
        self.client, self.store, self.wallet, self.from_block = client, store, wallet, from_block

    def create(self, document: CohortDocument, epsilon_cap: str | Decimal,
               min_contributors: int) -> tuple[int, str]:
        """Store the schema document and create the cohort; (cohort id, tx hash)."""
        from marketplace.chain.aggregate_types import epsilon_micros  # noqa: PLC0415

        if min_contributors < 1:
            raise ValueError("a cohort needs at least one contributor per query (k >= 1)")
        cap = epsilon_micros(epsilon_cap)
        if self.store is None:
            raise AggregateAppError("creating a cohort stores its schema: no store was given")
        schema_hash, uri = put_cohort_document(self.store, document)
        sent = self.client.create_cohort(self.wallet, schema_hash=schema_hash, schema_uri=uri,
                                         epsilon_cap=cap, min_contributors=min_contributors)
        return int(sent.value), sent.tx_hash

    def join(self, cohort_id: int) -> str:
        return self.client.join_cohort(self.wallet, cohort_id).tx_hash

    def leave(self, cohort_id: int) -> str:
        return self.client.leave_cohort(self.wallet, cohort_id).tx_hash

    def show(self, cohort_id: int) -> CohortView:
        return show_cohort(self.client, self.store, cohort_id, self.from_block)


def show_cohort(client: AggregateClient, store: ContentStore | None, cohort_id: int,
                from_block: int = 0) -> CohortView:
    """The cohort's on-chain record and its schema document, verified by its hash."""
    from marketplace.chain.aggregate_types import CohortCreated  # noqa: PLC0415

    cohort = client.cohort(cohort_id)
    events = client.read_events(from_block, kinds=[CohortCreated], indexed=[topic(cohort_id)])
    created = [e for e in events if isinstance(e, CohortCreated)]
    if not created:
        return CohortView(cohort, "", None, None)
    uri = created[0].schema_uri
    if store is None:
        return CohortView(cohort, uri, None, None)
    try:
        document = load_cohort_document(store, uri, cohort.schema_hash)
    except DocumentError as e:
        return CohortView(cohort, uri, None, e)
    return CohortView(cohort, uri, document, None)


# ---------------------------------------------------------------- the owner's policy


@dataclass(frozen=True, slots=True)
class AgentPolicy:
    """What the owner consents to: fields it shares, ε per query and in total, and the
    least it accepts per contribution (wei). From a TOML file:

        fields = ["age", "resting_hr"]
        max_epsilon = 1.0
        max_total_epsilon = 4.0
        min_price_per_contribution = "0.0001eth"   # or wei as an integer
    """

    fields: frozenset[str]
    max_epsilon_micros: int
    max_total_epsilon_micros: int
    min_price_per_contribution: Wei

    @classmethod
    def from_toml(cls, path: Path) -> AgentPolicy:
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(path, f"not TOML ({e})") from e
        known = {"fields", "max_epsilon", "max_total_epsilon", "min_price_per_contribution"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PolicyError(path, f"unknown key(s) {', '.join(unknown)[:200]}; "
                                    f"expected {', '.join(sorted(known))}")
        missing = sorted(known - set(data))
        if missing:
            raise PolicyError(path, f"missing {', '.join(missing)}")
        fields = data["fields"]
        if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
            raise PolicyError(path, "fields must be a list of field names")
        price = data["min_price_per_contribution"]
        try:
            wei = parse_wei(str(price)) if not isinstance(price, bool) else -1
        except UnitError as e:
            raise PolicyError(path, f"min_price_per_contribution: {e}") from e
        if wei < 0:
            raise PolicyError(path, "min_price_per_contribution must be an amount")
        return cls(frozenset(fields), _policy_epsilon(path, data, "max_epsilon"),
                   _policy_epsilon(path, data, "max_total_epsilon"), Wei(wei))


def _policy_epsilon(path: Path, data: Mapping[str, Any], key: str) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PolicyError(path, f"{key} must be a number")
    try:
        return epsilon_to_micros(float(value))
    except AggregateError as e:
        raise PolicyError(path, f"{key}: {e}") from e


def read_records(path: Path) -> dict[str, str]:
    """The owner's record: the LAST row of a CSV with a header (earlier rows are history;
    one row per owner is what is contributed). Values are never put in an error."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise RecordsError(path, "not UTF-8 text") from e
    reader = csv.DictReader(io.StringIO(text))
    last: dict[str, str] | None = None
    try:
        for row in reader:
            if any((v or "").strip() for v in row.values() if isinstance(v, str)):
                last = row
    except csv.Error as e:
        raise RecordsError(path, f"not CSV (line {reader.line_num})") from e
    if reader.fieldnames is None or last is None:
        raise RecordsError(path, "needs a header row and at least one record row")
    return {k.strip(): (v or "").strip() for k, v in last.items() if isinstance(k, str)}


def _value_for(query: Query, raw: str) -> float | bool | None:
    """The record's value as the query's statistic needs it (None: unusable)."""
    if query.stat == "count":
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "y"):
            return True
        if lowered in ("0", "false", "no", "n", ""):
            return False
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- the agent's state


@dataclass(slots=True)
class DebitRecord:
    """What the agent did about one debit (`status`: pending | contributed | refunded)."""

    status: str
    epsilon_micros: int
    deadline: int
    bundle_cid: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "epsilonMicros": self.epsilon_micros,
                "deadline": self.deadline, "bundleCid": self.bundle_cid}


@dataclass(slots=True)
class AgentState:
    """The agent's memory (a small JSON file, replaced atomically on every change): ε
    spent so far, and each debit it contributed to or is about to."""

    path: Path
    aggregator: str
    owner: str
    #: per cohort, the first block whose requests may still be open (a cohort served for
    #: the first time is read from --from-block)
    cursors: dict[int, int] = field(default_factory=dict)
    spent_micros: int = 0
    debits: dict[int, DebitRecord] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, aggregator: str, owner: str) -> AgentState:
        if not path.exists():
            return cls(path, aggregator, owner)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise StateFileError(path, f"version {data.get('version')!r}, expected 1")
            if (str(data["aggregator"]).lower(), str(data["owner"]).lower()) != (
                    aggregator.lower(), owner.lower()):
                raise StateFileError(path, "kept for another AggregateMarket or owner wallet")
            debits = {int(k): DebitRecord(str(v["status"]), int(v["epsilonMicros"]),
                                          int(v["deadline"]), str(v.get("bundleCid", "")))
                      for k, v in data["debits"].items()}
            cursors = {int(k): int(v) for k, v in data["cursors"].items()}
            return cls(path, aggregator, owner, cursors, int(data["spentMicros"]), debits)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise StateFileError(path, f"unreadable ({type(e).__name__})") from e

    def save(self) -> None:
        """Write to a temporary file in the same folder, fsync, rename over the old one."""
        data = {"version": STATE_VERSION, "aggregator": self.aggregator, "owner": self.owner,
                "cursors": {str(k): v for k, v in sorted(self.cursors.items())},
                "spentMicros": self.spent_micros,
                "debits": {str(k): v.to_json() for k, v in sorted(self.debits.items())}}
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".agent-state-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# ---------------------------------------------------------------- the owner's agent


@dataclass(frozen=True, slots=True)
class Decision:
    """One debit the agent looked at: `action` contributed | refused | skipped | failed
    (retried on the next run while open), and why
    (`rule` names the policy rule or condition, `reason` says it in words)."""

    debit_id: int
    action: str
    rule: str
    reason: str
    bundle_cid: str = ""


class OwnerAgent:
    """Contributes the owner's record to the open aggregate debits of `cohorts` that its
    policy allows. `run_once()` handles what is open now; call it again (or `watch`)."""

    def __init__(
        self,
        client: AggregateClient,
        market: MarketClient,
        store: ContentStore,
        wallet: LocalAccount,
        policy: AgentPolicy,
        records: Mapping[str, str],
        state_path: Path,
        cohorts: Sequence[int],
        *,
        from_block: int = 0,
    ) -> None:
        self.client, self.market, self.store, self.wallet = client, market, store, wallet
        self.policy, self.records, self.cohorts = policy, dict(records), tuple(cohorts)
        self.from_block = from_block
        self.state = AgentState.load(state_path, client.address, wallet.address)

    def run_once(self) -> list[Decision]:
        """Settle earlier reservations, then decide every open debit of the cohorts."""
        self._reconcile()
        head = int(self.client.w3.eth.block_number)
        requests: list[AggregateRequested] = []
        for cohort in self.cohorts:
            start = max(self.state.cursors.get(cohort, self.from_block), self.from_block)
            events = self.client.read_events(start, head, [AggregateRequested],
                                             [None, topic(cohort)])
            requests += [e for e in events if isinstance(e, AggregateRequested)]
        requests.sort(key=lambda e: (e.ref.block_number, e.ref.log_index))
        now = chain_time(self.client.w3)
        decisions = [self._decide_safely(r, now) for r in requests]
        # later runs rescan only what could still be open: from the oldest open request
        for cohort in self.cohorts:
            still_open = [r.ref.block_number for r in requests
                          if r.cohort_id == cohort and r.deadline > now]
            self.state.cursors[cohort] = min(still_open, default=head + 1)
        self.state.save()
        return decisions

    def watch(self, poll_seconds: float, on_decision: Callable[[Decision], None],
              stop: Callable[[], bool] = lambda: False) -> None:
        """`run_once` every `poll_seconds` until `stop()`; each decision to `on_decision`."""
        while not stop():
            for decision in self.run_once():
                on_decision(decision)
            time.sleep(poll_seconds)

    def _reconcile(self) -> None:
        """Pending reservations become contributions (the tx went through before a crash)
        or are released once the deadline passed without one; ε of a refunded debit
        (no answer will be released) is given back."""
        now = chain_time(self.client.w3)
        changed = False
        for debit_id, record in self.state.debits.items():
            if record.status == "pending":
                contributed, _ = self.client.contribution_of(debit_id, self.wallet.address)
                if contributed:
                    record.status = "contributed"
                elif now >= record.deadline:
                    self.state.spent_micros -= record.epsilon_micros
                    record.status = "released"
                else:
                    continue
                changed = True
            elif record.status == "contributed" and now >= record.deadline and (
                    self.client.aggregate(debit_id).state is AggregateState.REFUNDED):
                self.state.spent_micros -= record.epsilon_micros
                record.status = "refunded"
                changed = True
        if changed:
            self.state.save()

    def _decide_safely(self, request: AggregateRequested, now: int) -> Decision:
        """`_decide`, with a failure (store, chain, a document) reported for this debit
        alone: the others are still decided, and an open one is retried on the next run."""
        try:
            return self._decide(request, now)
        except (MarketplaceError, StorageError, OSError) as e:
            log.warning("aggregate debit %d: not handled (%s)", request.debit_id,
                        type(e).__name__)
            return Decision(int(request.debit_id), "failed", type(e).__name__, str(e)[:300])

    def _decide(self, request: AggregateRequested, now: int) -> Decision:
        debit_id = int(request.debit_id)
        known = self.state.debits.get(debit_id)
        if known is not None and known.status in ("contributed", "refunded", "released"):
            return Decision(debit_id, "skipped", "already_handled",
                            f"already handled ({known.status})", known.bundle_cid)
        debit = self.client.aggregate(debit_id)
        if not debit.is_open_at(now):
            return Decision(debit_id, "skipped", "closed", "contributions are closed")
        contributed, _ = self.client.contribution_of(debit_id, self.wallet.address)
        if contributed:  # e.g. the state file was lost: the chain remembers
            self._remember(debit_id, debit, "contributed", "")
            return Decision(debit_id, "skipped", "already_contributed",
                            "already contributed (on chain)")
        if not self.client.is_member(debit.cohort_id, self.wallet.address):
            return self._refuse(debit_id, "not_member",
                                f"not a member of cohort {debit.cohort_id}")
        try:
            document = load_query_document(self.store, request.query_uri, request.query_hash)
        except DocumentError as e:
            return self._refuse(debit_id, "bad_query", f"query document unusable: {e}")
        query = document.parsed
        refusal = self._policy_refusal(debit_id, query, debit, known)
        if refusal is not None:
            return refusal
        value = _value_for(query, self.records.get(query.field, ""))
        if query.field not in self.records or value is None:
            return self._refuse(debit_id, "no_value",
                                f"the record has no usable {query.field!r} value")
        return self._contribute(debit, query, value, known)

    def _policy_refusal(self, debit_id: int, query: Query, debit: AggregateDebit,
                        known: DebitRecord | None) -> Decision | None:
        policy = self.policy
        if not epsilon_matches(query, debit.epsilon):
            return self._refuse(debit_id, "epsilon_mismatch",
                                f"the query document's ε {query.epsilon:g} is not the paid "
                                f"ε {debit.epsilon / 1e6:g}")
        if query.field not in policy.fields:
            return self._refuse(debit_id, "field_not_allowed",
                                f"field {query.field!r} is not in the policy's fields")
        if debit.epsilon > policy.max_epsilon_micros:
            return self._refuse(debit_id, "epsilon_above_max",
                                f"ε {debit.epsilon / 1e6:g} is above max_epsilon "
                                f"{policy.max_epsilon_micros / 1e6:g}")
        reserved = known.epsilon_micros if known is not None else 0
        total = self.state.spent_micros - reserved + debit.epsilon
        if total > policy.max_total_epsilon_micros:
            return self._refuse(debit_id, "total_epsilon_exceeded",
                                f"ε spent would be {total / 1e6:g}, above max_total_epsilon "
                                f"{policy.max_total_epsilon_micros / 1e6:g}")
        # the escrow is split among the contributors at the deadline; the members now are
        # the most contributors there can be unless more join (an estimate)
        members = max(self.client.cohort(debit.cohort_id).members, 1)
        per_contribution = debit.price // members
        if per_contribution < policy.min_price_per_contribution:
            return self._refuse(debit_id, "price_too_low",
                                f"about {per_contribution} wei per contribution "
                                f"({debit.price} wei / {members} members), below "
                                f"min_price_per_contribution {policy.min_price_per_contribution}")
        return None

    def _refuse(self, debit_id: int, rule: str, reason: str) -> Decision:
        log.info("aggregate debit %d refused (%s): %s", debit_id, rule, reason)
        return Decision(debit_id, "refused", rule, reason)

    def _remember(self, debit_id: int, debit: AggregateDebit, status: str, cid: str) -> None:
        known = self.state.debits.get(debit_id)
        if known is None:
            self.state.spent_micros += debit.epsilon
            known = DebitRecord(status, debit.epsilon, debit.deadline, cid)
            self.state.debits[debit_id] = known
        known.status, known.bundle_cid = status, cid or known.bundle_cid
        self.state.save()

    def _contribute(self, debit: AggregateDebit, query: Query, value: float | bool,
                    known: DebitRecord | None) -> Decision:
        debit_id = int(debit.debit_id)
        epoch = self.market.committee_at(debit.epoch)
        if 2 * epoch.threshold - 1 > len(epoch.nodes):
            return self._refuse(debit_id, "committee", "the committee is too small for the "
                                "validity check (n < 2t - 1): the nodes could not aggregate")
        context = ContributionContext(
            chain_id=self.market.chain_id, aggregator=bytes.fromhex(self.client.address[2:]),
            debit_id=debit_id, owner=bytes.fromhex(self.wallet.address[2:]),
            dimension=dimension(query),
        )
        bundle = seal_contribution(context, encode(query, value), list(epoch.encryption_keys),
                                   epoch.threshold)
        cid = self.store.put(io.BytesIO(bundle))
        # reserve ε before the transaction: a crash after it must not forget the spend
        if known is None:
            self._remember(debit_id, debit, "pending", cid.text)
        self.client.contribute(self.wallet, debit_id, cid.binary)
        self._remember(debit_id, debit, "contributed", cid.text)
        log.info("aggregate debit %d: contributed bundle %s", debit_id, cid.text)
        return Decision(debit_id, "contributed", "ok", f"bundle {cid.text} recorded", cid.text)


# ---------------------------------------------------------------- the buyer


@dataclass(frozen=True, slots=True)
class RequestedAggregate:
    debit: AggregateDebit
    query_hash: bytes
    query_uri: str
    tx_hash: str
    gas_used: int


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """The decoded noisy answer; `used_nodes` the partials combined, `faults` every node
    that did not help (or disagreed) and why, `excluded` the contributions the nodes left
    out (owner, reason), `dealers` the nodes whose noise is in the answer."""

    debit_id: int
    query: Query
    result: Result
    used_nodes: tuple[int, ...]
    faults: dict[int, str]
    excluded: tuple[tuple[str, str], ...]
    dealers: tuple[int, ...]
    candidates: int


class NodeNotReady(GatewayAnswerError):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"not ready (retry after {retry_after} s)")


class NodeRefused(GatewayAnswerError):
    def __init__(self, code: str, status: int) -> None:
        self.code, self.status = code, status
        super().__init__(f"refused with {code} (HTTP {status})")


class PartialsClient:
    """Asks every gateway for its partial at once with one wallet-signed `PartialRequest`
    (each node keeps its own nonce log), all within one deadline; answers are parsed with
    `jsonsafe` and capped in size (gateways are not trusted)."""

    def __init__(self, domain: Eip712Domain, nodes: Mapping[int, httpx.Client], *,
                 timeout: float = DEFAULT_TIMEOUT, now: Callable[[], float] = time.time) -> None:
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.domain, self.nodes, self.timeout, self._now = domain, dict(nodes), timeout, now

    def collect(self, wallet: LocalAccount, debit_id: int
                ) -> dict[int, dict[str, object] | GatewayAnswerError]:
        request = PartialRequest(debit_id=debit_id, expiry=int(self._now()) + REQUEST_LIFETIME,
                                 nonce=os.urandom(32))
        body: dict[str, object] = {"request": request.to_message(),
                                   "signature": "0x" + sign(wallet, self.domain, request).hex()}
        deadline = Deadline(time.monotonic() + self.timeout)
        answers: queue.SimpleQueue[tuple[int, dict[str, object] | GatewayAnswerError]] = (
            queue.SimpleQueue())
        for index, client in self.nodes.items():
            threading.Thread(target=_ask_partial, args=(index, client, body, deadline, answers),
                             name=f"partials-node-{index}", daemon=True).start()
        got: dict[int, dict[str, object] | GatewayAnswerError] = {}
        while len(got) < len(self.nodes):
            try:
                index, answer = answers.get(timeout=deadline.remaining())
            except queue.Empty:
                break
            got[index] = answer
        for index in self.nodes:
            got.setdefault(index, GatewayAnswerError(
                f"timed out (no complete answer within {self.timeout:g} s)"))
        return got


def _ask_partial(index: int, client: httpx.Client, body: dict[str, object], deadline: Deadline,
                 answers: queue.SimpleQueue[tuple[int, dict[str, object] | GatewayAnswerError]]
                 ) -> None:
    try:
        status, raw = post_raw(client, "/v1/partials", body, deadline, MAX_PARTIAL_ANSWER)
        answers.put((index, _partial_answer(status, raw)))
    except GatewayAnswerError as e:
        answers.put((index, e))
    except Exception as e:  # a bug or a closed client: a fault now, not a silent wait
        log.error("asking node %d for its partial failed", index, exc_info=True)
        answers.put((index, GatewayAnswerError(f"failed ({type(e).__name__})")))


def _partial_answer(status: int, raw: bytes) -> dict[str, object]:
    try:
        payload = jsonsafe.loads(raw)
    except (ValueError, RecursionError) as e:
        raise GatewayAnswerError(f"HTTP {status}, not JSON") from e
    if not isinstance(payload, dict):
        raise GatewayAnswerError(f"HTTP {status}, answer is not a JSON object")
    if status == 200:
        return payload
    code = str(payload.get("code", "?"))[:40]
    retry = payload.get("retryAfter")
    if code == "not_ready":
        wait = retry if type(retry) is int and 0 <= retry <= 86_400 else 5
        raise NodeNotReady(wait)
    raise NodeRefused(code if code.isidentifier() else "?", status)


#: Builds the partials client for a result (gateways from committee.json, or in-process).
PartialsClientFactory = Callable[[], PartialsClient]


class AggregateBuyer:
    """One buyer wallet on one AggregateMarket (its DataMarket gives the committee and the
    buyer-key domain)."""

    def __init__(
        self,
        client: AggregateClient,
        market: MarketClient,
        store: ContentStore | None,
        wallet: LocalAccount,
        partials_client_factory: PartialsClientFactory | None = None,
        *,
        from_block: int = 0,
    ) -> None:
        self.client, self.market, self.store, self.wallet = client, market, store, wallet
        self.partials_client_factory = partials_client_factory
        self.from_block = from_block

    @property
    def domain(self) -> Eip712Domain:
        """The AggregateMarket's EIP-712 domain (partial requests and receipts)."""
        return Eip712Domain(self.market.chain_id, self.client.address)

    def buyer_secret(self) -> BuyerSecretKey:
        return BuyerSecretKey.from_account(self.wallet, self.market.domain)

    def query(self, cohort_id: int, query: Query, *, deadline_seconds: int, price: int,
              round_seconds: int = 30, requester: str | None = None,
              purpose: str = "aggregate statistics") -> RequestedAggregate:
        """Store the query document and pay for the query; the contribution deadline is
        chain time + `deadline_seconds`."""
        if price <= 0:
            raise ValueError("an aggregate query must be paid for (price > 0)")
        if deadline_seconds <= 0:
            raise ValueError("the deadline is a positive number of seconds away")
        micros = epsilon_to_micros(query.epsilon)
        cohort = self.client.cohort(cohort_id)
        if micros > cohort.epsilon_left:
            raise EpsilonAboveBudget(cohort_id, micros, cohort.epsilon_left)
        document = QueryDocument.build(query, self.buyer_secret().public_key().key,
                                       round_seconds, requester or self.wallet.address, purpose)
        if self.store is None:
            raise AggregateAppError("a query stores its document: no store was given")
        query_hash, uri = put_query_document(self.store, document)
        deadline = chain_time(self.client.w3) + deadline_seconds
        sent = self.client.request_aggregate(self.wallet, cohort_id, query_hash=query_hash,
                                             query_uri=uri, epsilon=micros, deadline=deadline,
                                             price=price)
        return RequestedAggregate(self.client.aggregate(sent.value), query_hash, uri,
                                  sent.tx_hash, sent.gas_used)

    def refund(self, debit_id: int) -> Wei:
        """Refund a debit with fewer than k contributions (credited; `withdraw` pays)."""
        return self.client.refund(self.wallet, debit_id).value

    def requested(self, debit_id: int) -> AggregateRequested:
        events = self.client.read_events(self.from_block, kinds=[AggregateRequested],
                                         indexed=[topic(debit_id)])
        found = [e for e in events if isinstance(e, AggregateRequested)]
        if not found:
            raise NoSuchAggregate(debit_id)
        return found[0]

    def result(self, debit_id: int) -> AggregateResult:
        """Collect, check, open and combine the partials; decode the answer."""
        debit = self.client.aggregate(debit_id)
        if debit.state is AggregateState.NONE:
            raise NoSuchAggregate(debit_id)
        if debit.buyer.lower() != self.wallet.address.lower():
            raise NotYourAggregate(debit_id, debit.buyer, self.wallet.address)
        requested = self.requested(debit_id)
        if self.store is None:
            raise AggregateAppError("reading the query document needs a store")
        query = load_query_document(self.store, requested.query_uri, requested.query_hash).parsed
        now = chain_time(self.client.w3)
        if now < debit.deadline:
            raise ResultNotReady(debit_id, debit.deadline - now, "contributions are open")
        contributions = self.client.contributions(debit_id, requested.ref.block_number)
        k = self.client.cohort(debit.cohort_id).min_contributors
        if len(contributions) < k or debit.state is AggregateState.REFUNDED:
            raise TooFewContributions(debit_id, len(contributions), k)
        epoch = self.market.committee_at(debit.epoch)
        agg = aggregation_for(self.market.chain_id, self.client.address, debit_id, query,
                              epoch, contributions)
        if self.partials_client_factory is None:
            raise AggregateAppError("a result needs the committee's gateways: no client given")
        answers = self.partials_client_factory().collect(self.wallet, debit_id)
        return self._combined(agg, epoch, answers)

    def _open_all(self, agg: Aggregation, epoch: CommitteeEpoch,
                  answers: Mapping[int, dict[str, object] | GatewayAnswerError]
                  ) -> tuple[dict[int, tuple[Partial, Mapping[str, object]]], dict[int, str],
                             list[int]]:
        """Each answer checked and opened; otherwise its fault (and any retry delay)."""
        secret = nacl.public.PrivateKey(self.buyer_secret().to_secret_bytes())
        faults: dict[int, str] = {}
        opened: dict[int, tuple[Partial, Mapping[str, object]]] = {}
        waits: list[int] = []
        for node, answer in sorted(answers.items()):
            try:
                if isinstance(answer, GatewayAnswerError):
                    raise answer
                opened[node] = (self._checked(agg, epoch, node, answer, secret), answer)
            except NodeNotReady as e:
                waits.append(e.retry_after)
                faults[node] = str(e)
            except (MarketplaceError, ValueError) as e:
                faults[node] = str(e)
                log.warning("partial from node %d refused: %s", node, e)
        return opened, faults, waits

    def _combined(self, agg: Aggregation, epoch: CommitteeEpoch,
                  answers: Mapping[int, dict[str, object] | GatewayAnswerError]
                  ) -> AggregateResult:
        opened, faults, waits = self._open_all(agg, epoch, answers)
        # honest nodes agree on what they counted and whose noise they added
        groups: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for node, (part, said) in opened.items():
            groups.setdefault((part.counted, _dealers(said)), []).append(node)
        if not groups or max(len(g) for g in groups.values()) < agg.t:
            if waits and len(opened) < agg.t:
                raise ResultNotReady(agg.debit_id, min(waits), "the nodes have not finished")
            raise ResultFailed(agg.debit_id, max((len(g) for g in groups.values()), default=0),
                               agg.t, faults)
        (counted, dealers), members = max(groups.items(), key=lambda kv: len(kv[1]))
        for node in opened:
            if node not in members:
                faults[node] = "counted other contributions or dealers than the others"
        values = {node: opened[node][0].values for node in members}
        aggregate = None
        while aggregate is None:
            try:
                aggregate = combine(values, agg.t)
            except InconsistentShares as e:
                if e.culprit is None or e.culprit not in values:
                    raise ResultFailed(agg.debit_id, len(values), agg.t, {
                        **faults, 0: "the partials disagree and the culprit cannot be told "
                                     "(ask again when more nodes answer)"}) from e
                faults[e.culprit] = "its partial disagrees with the others' (named by the check)"
                del values[e.culprit]
            except AggregateError as e:
                raise ResultFailed(agg.debit_id, len(values), agg.t, faults) from e
        sigma = agg.plan.total_sigma(len(dealers))
        result = decode(agg.query, aggregate, counted, sigma)
        first = opened[min(values)][1]
        return AggregateResult(agg.debit_id, agg.query, result, tuple(sorted(values)), faults,
                               _excluded(first), dealers, agg.count)

    def _checked(self, agg: Aggregation, epoch: CommitteeEpoch, node: int,
                 answer: Mapping[str, object], secret: nacl.public.PrivateKey) -> Partial:
        """The node's opened partial, after its answer and signed receipt check out."""
        said_node, said_debit = answer.get("node"), answer.get("debitId")
        if type(said_node) is not int or type(said_debit) is not int or (
                said_node, said_debit) != (node, agg.debit_id):
            raise GatewayAnswerError("answer names another node or debit")
        try:
            sealed = base64.b64decode(str(answer.get("sealedPartial")), validate=True)
        except (binascii.Error, ValueError) as e:
            raise GatewayAnswerError("answer has no valid sealedPartial") from e
        receipt_json = answer.get("receipt")
        signature = answer.get("receiptSignature")
        if not isinstance(receipt_json, dict) or not isinstance(signature, str):
            raise GatewayAnswerError("answer has no receipt and signature")
        try:
            receipt = PartialReceipt.from_message(receipt_json)
            signer = recover_signer(self.domain, receipt,
                                    bytes.fromhex(signature.removeprefix("0x")))
        except (Eip712Error, ValueError) as e:
            raise GatewayAnswerError(f"receipt unusable: {e}") from e
        if (receipt.debit_id, receipt.node, receipt.epoch) != (agg.debit_id, node, epoch.epoch):
            raise GatewayAnswerError("receipt names another debit, node or epoch")
        if receipt.sealed_partial_hash != hashlib.sha256(sealed).digest():
            raise GatewayAnswerError("receipt is for another sealed partial")
        if signer.lower() != epoch.nodes[node - 1].lower():
            raise GatewayAnswerError(f"receipt not signed by node {node}'s address")
        part = open_partial(agg, sealed, node, secret)
        if answer.get("counted") != part.counted or len(_dealers(answer)) != part.dealers:
            raise GatewayAnswerError("answer's counted/dealers differ from its sealed partial")
        return part


def _dealers(answer: Mapping[str, object]) -> tuple[int, ...]:
    dealers = answer.get("dealers")
    if not isinstance(dealers, list) or not all(type(d) is int for d in dealers):
        raise GatewayAnswerError("answer's dealers is not a list of node indices")
    return tuple(sorted(set(dealers)))


def _excluded(answer: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    """The excluded contributions a gateway names, reduced to what is safe to print (an
    address and a reason word): a hostile gateway cannot put terminal escapes in them."""
    excluded = answer.get("excluded")
    if not isinstance(excluded, list):
        return ()
    out = []
    for item in excluded[:10_000]:
        if isinstance(item, dict):
            owner, reason = str(item.get("owner")), str(item.get("reason"))
            out.append((owner if _ADDRESS.fullmatch(owner) else "?",
                        reason if _REASON.fullmatch(reason) else "?"))
    return tuple(out)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_REASON = re.compile(r"[a-z_]{1,40}")


def aggregation_for(chain_id: int, aggregator: str, debit_id: int, query: Query,
                    epoch: CommitteeEpoch, contributions: Sequence[ContributionRecorded]
                    ) -> Aggregation:
    """The debit as every party derives it from the chain: candidates in chain order, the
    committee of the request's epoch, the query's noise plan (`committee_noise_plan`, the
    gateways' own: the buyer's sigma must be theirs)."""
    n, t = len(epoch.nodes), epoch.threshold
    return Aggregation(
        chain_id=chain_id, aggregator=bytes.fromhex(aggregator[2:]), debit_id=debit_id,
        query=query, n=n, t=t,
        candidates=tuple(bytes.fromhex(c.owner[2:]) for c in contributions),
        plan=committee_noise_plan(query, n, t),
    )
