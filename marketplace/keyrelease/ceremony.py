"""Committee ceremonies, the phase rules: what counts, when a phase closes, what to do next.

Everything is computed from the ordered `CeremonyMessage` logs, their block numbers and
timestamps, and the latest time `now` the caller has seen; nothing is read or remembered.
So every node, `committee status` and an auditor replaying the logs reach the same
transcript, the same QUAL and the same result (docs/protocol.md, "Committee ceremonies").

Phases (T0 = openedAt, P = phaseSeconds): DEAL counts dealings stamped < T0 + P and closes
early at the block holding the last expected one; VERDICT counts verdicts after that close
and stamped < τ1 + P; ANSWER likewise for answers by accused dealers (closes at once when
nobody is accused); RESULT collects signatures until the deadline. Only the first counted
message of each (sender, kind) counts. A message of a phase posted too early does not count;
the node simply posts it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar

import nacl.public

from marketplace.keyrelease.dkg import (
    Answer,
    CeremonyParams,
    Dealing,
    Exclusion,
    MessageKind,
    Verdict,
    committee_public_keys,
    decode_result,
    final_share,
    open_share,
    parse_dealing,
    transcript_hash,
)
from marketplace.keyrelease.errors import (
    CeremonyIncomplete,
    InvalidDealing,
    MalformedCeremonyMessage,
    ShareKeyMismatchAfterCeremony,
    ShareUnavailable,
)
from marketplace.keyrelease.group import Point, Scalar
from marketplace.keyrelease.keys import CommitteeKeys, NodeIndex, NodeShare, ShareKey

_T = TypeVar("_T")


class Phase(StrEnum):
    NOT_OPEN = "not_open"
    DEAL = "deal"
    VERDICT = "verdict"
    ANSWER = "answer"
    RESULT = "result"


class Failure(StrEnum):
    """Why a ceremony cannot complete; it then fails at its deadline and is re-proposed."""

    TOO_FEW_DEALINGS = "too_few_dealings"
    TOO_FEW_QUALIFIED = "too_few_qualified"
    DEGENERATE_KEY = "degenerate_key"
    DEADLINE_PASSED = "deadline_passed"


#: A time no phase reaches: the end of a phase waiting for its quorum.
_NEVER = 2**64


@dataclass(frozen=True, slots=True)
class CeremonyMessage:
    """One `CeremonyMessage` event with where and when it was mined."""

    sender: str
    kind: int
    payload: bytes
    block_number: int
    log_index: int
    block_timestamp: int


@dataclass(frozen=True, slots=True)
class CeremonySchedule:
    """From the contract's Ceremony: openedAt (0 = not opened), phaseSeconds, deadline."""

    opened_at: int
    phase_seconds: int
    deadline: int


@dataclass(frozen=True, slots=True)
class PhaseClose:
    """When a phase closed: early (at `block`, stamped `time`) or by time (at `time`)."""

    time: int
    block: int | None
    early: bool

    def admits(self, message: CeremonyMessage) -> bool:
        """Is `message` after this close? Early: a later block; by time: stamped >= time."""
        if self.early:
            assert self.block is not None
            return message.block_number > self.block
        return message.block_timestamp >= self.time


@dataclass(frozen=True, slots=True)
class CeremonyResult:
    """What the nodes sign and `finalizeCommittee` takes; the same fields as
    `marketplace.eip712.CommitteeResult`, which the gateway converts it to."""

    ceremony: int
    epoch: int
    committee_key: bytes
    share_keys: tuple[bytes, ...]
    qualified: int
    transcript_hash: bytes


@dataclass(frozen=True, slots=True)
class CountedMessage:
    """A message in the transcript, with its sender's index in its role."""

    kind: MessageKind
    sender_index: int
    message: CeremonyMessage


@dataclass(frozen=True, slots=True)
class IgnoredMessage:
    """A message that does not count, and why (late, early, duplicate, stranger, malformed)."""

    message: CeremonyMessage
    reason: str


@dataclass(frozen=True, slots=True)
class ResultSignature:
    """A counted RESULT: the sender's indices in the new and (reshare) old roster."""

    sender: str
    signature: bytes
    new_index: int | None
    old_index: int | None


@dataclass(frozen=True, slots=True)
class NodeActions:
    """What one node should post now (each at most once per phase; repost if it did not count)."""

    deal: bool = False
    verdict: bool = False
    answer_to: tuple[int, ...] = ()
    result: bool = False


RecoverSigner = Callable[[CeremonyResult, bytes], "str | None"]
"""Recovers the address that signed `CeremonyResult` (EIP-712), None if it cannot."""


@dataclass(frozen=True)
class CeremonyView:
    """Everything a node, `committee status` or an auditor needs, as of `now`."""

    params: CeremonyParams
    schedule: CeremonySchedule
    now: int
    phase: Phase
    deal_close: PhaseClose | None = None
    verdict_close: PhaseClose | None = None
    answer_close: PhaseClose | None = None
    dealings: Mapping[int, Dealing] = field(default_factory=dict)
    excluded: Mapping[int, Exclusion] = field(default_factory=dict)
    verdicts: Mapping[int, Verdict] = field(default_factory=dict)
    complaints: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    answers: Mapping[int, Answer] = field(default_factory=dict)
    revealed: Mapping[int, Mapping[int, Scalar]] = field(default_factory=dict)
    qualified: tuple[int, ...] | None = None
    result: CeremonyResult | None = None
    result_signatures: tuple[ResultSignature, ...] = ()
    counted: tuple[CountedMessage, ...] = ()
    ignored: tuple[IgnoredMessage, ...] = ()
    missing: tuple[str, ...] = ()
    failure: Failure | None = None
    #: When the DEAL phase closes by time (later than openedAt + P when its quorum of
    #: usable dealings came late; never, i.e. the deadline, while it has not come).
    deal_end: int = _NEVER

    @property
    def cutoff(self) -> int:
        """When the current phase closes by time (RESULT: the deadline)."""
        p = self.schedule.phase_seconds
        if self.phase is Phase.NOT_OPEN:
            return self.schedule.opened_at + p if self.schedule.opened_at else 0
        if self.phase is Phase.DEAL:  # waits for its quorum of dealings (up to the deadline)
            return min(self.deal_end, self.schedule.deadline)
        if self.phase is Phase.VERDICT:
            assert self.deal_close is not None
            return self.deal_close.time + p
        if self.phase is Phase.ANSWER:
            assert self.verdict_close is not None
            return self.verdict_close.time + p
        return self.schedule.deadline

    @property
    def committee_keys(self) -> CommitteeKeys:
        """The new committee's public keys, stamped with the ceremony's epoch (raises
        CeremonyIncomplete before the result)."""
        result = self._require_result()
        return CommitteeKeys.from_bytes(
            self.params.threshold, result.committee_key, result.share_keys, self.params.epoch
        )

    @property
    def new_signatures(self) -> tuple[bytes, ...]:
        return tuple(s.signature for s in self.result_signatures if s.new_index is not None)

    @property
    def old_signatures(self) -> tuple[bytes, ...]:
        return tuple(s.signature for s in self.result_signatures if s.old_index is not None)

    def new_index(self, address: str) -> int | None:
        """The node's index in the new roster (recipient, verdict, result), or None."""
        return roster_index(self.params.nodes, address)

    def dealer_index(self, address: str) -> int | None:
        """The node's dealer index (new roster for a DKG, current one for a reshare)."""
        return roster_index(self.params.dealer_nodes, address)

    def actions_for(self, address: str) -> NodeActions:
        """What `address` should post now; nothing once the ceremony failed."""
        if self.failure is not None:
            return NodeActions()
        dealer, node = self.dealer_index(address), self.new_index(address)
        signed = {s.sender.lower() for s in self.result_signatures}
        return NodeActions(
            deal=self.phase is Phase.DEAL
            and dealer is not None
            and dealer not in self.excluded
            and dealer not in self.dealings,
            verdict=self.phase is Phase.VERDICT and node is not None and node not in self.verdicts,
            answer_to=self.complaints.get(dealer, ())
            if self.phase is Phase.ANSWER and dealer is not None and dealer not in self.answers
            else (),
            result=self.phase is Phase.RESULT
            and self.result is not None
            and (node is not None or (self.params.is_reshare and dealer is not None))
            and address.lower() not in signed,
        )

    def _require_result(self) -> CeremonyResult:
        if self.result is None:
            raise CeremonyIncomplete(self.phase.value, self.failure and self.failure.value)
        return self.result


def roster_index(roster: tuple[str, ...], address: str) -> int | None:
    """`address`'s 1-based position in `roster` (case-insensitive), or None."""
    lowered = address.lower()
    for i, node in enumerate(roster, start=1):
        if node.lower() == lowered:
            return i
    return None


@dataclass
class _Window:
    """The messages of one kind counted in one phase, and when the phase closed."""

    counted: dict[int, tuple[CeremonyMessage, object]]
    close: PhaseClose | None
    end: int = _NEVER


class _Evaluation:
    """One pass over the logs; `evaluate` is its only user."""

    def __init__(
        self,
        params: CeremonyParams,
        schedule: CeremonySchedule,
        messages: Iterable[CeremonyMessage],
        now: int,
        recover_signer: RecoverSigner | None,
    ) -> None:
        self.params, self.schedule, self.now = params, schedule, now
        self.recover_signer = recover_signer
        self.ignored: list[IgnoredMessage] = []
        self.dealers = {a.lower(): i for i, a in enumerate(params.dealer_nodes, start=1)}
        self.recipients = {a.lower(): i for i, a in enumerate(params.nodes, start=1)}
        self.messages: list[CeremonyMessage] = []
        for message in sorted(messages, key=lambda m: (m.block_number, m.log_index)):
            sender = message.sender.lower()
            if message.kind not in MessageKind._value2member_map_:
                self.ignored.append(IgnoredMessage(message, f"unknown kind {message.kind}"))
            elif sender not in self.dealers and sender not in self.recipients:
                self.ignored.append(IgnoredMessage(message, "sender is not in either roster"))
            else:
                self.messages.append(message)

    def window(
        self,
        kind: MessageKind,
        senders: Mapping[str, int],
        start: PhaseClose,
        end: int,
        expected: set[int] | None,
        parse: Callable[[CeremonyMessage, int], object],
        *,
        quorum: int = 0,
        usable: Callable[[object], bool] = lambda _parsed: True,
    ) -> _Window:
        """Count the first well-formed message per sender within (start, end); close early
        when every expected sender is counted (at once if none is expected; never if
        `expected` is None), else by time once `now` >= end.

        With a `quorum`, the phase cannot close by time before `quorum` usable messages
        are counted; when the quorum is reached only after `end`, the phase ends one phase
        after the message that reached it. So gateways started long after the ceremony
        opened still deal in it instead of finding a phase that closed without them (the
        deadline bounds the wait)."""
        counted: dict[int, tuple[CeremonyMessage, object]] = {}
        phase = end - start.time
        usable_count = 0
        if quorum > 0:
            end = _NEVER
        close = start if expected is not None and not expected else None
        for message in self.messages:
            if message.kind != kind:
                continue
            index = senders.get(message.sender.lower())
            reason = _refusal(kind, message, index, start, end, close, counted)
            if reason is None and index is not None:
                parsed = parse(message, index)
                if not isinstance(parsed, MalformedCeremonyMessage):
                    counted[index] = (message, parsed)
                    if usable(parsed):
                        usable_count += 1
                        if usable_count == quorum:
                            on_time = start.time + phase
                            late = message.block_timestamp >= on_time
                            end = message.block_timestamp + phase if late else on_time
                    if expected is not None and expected <= counted.keys():
                        close = PhaseClose(message.block_timestamp, message.block_number, True)
                    continue
                reason = parsed.reason
            self.ignored.append(IgnoredMessage(message, reason or "no role"))
        if close is None and self.now >= end:
            close = PhaseClose(end, None, False)
        return _Window(counted, close, end)


def _refusal(
    kind: MessageKind,
    message: CeremonyMessage,
    index: int | None,
    start: PhaseClose,
    end: int,
    close: PhaseClose | None,
    counted: Mapping[int, object],
) -> str | None:
    """Why `message` does not count in its phase's window (None: it may, if well formed)."""
    if index is None:
        return f"sender has no role in phase {kind.name}"
    if not start.admits(message):
        return "posted before its phase opened"
    if message.block_timestamp >= end or close is not None:
        return "posted after its phase closed"
    if index in counted:
        return "an earlier message of this sender and kind counts"
    return None


def _parsed(window: _Window, kind: type[_T]) -> dict[int, _T]:
    result: dict[int, _T] = {}
    for index, (_, parsed) in window.counted.items():
        assert isinstance(parsed, kind)
        result[index] = parsed
    return result


def _try(
    parse: Callable[[bytes, CeremonyParams], _T], params: CeremonyParams
) -> Callable[[CeremonyMessage, int], object]:
    def run(message: CeremonyMessage, _index: int) -> object:
        try:
            return parse(message.payload, params)
        except MalformedCeremonyMessage as e:
            return e

    return run


def evaluate(
    params: CeremonyParams,
    schedule: CeremonySchedule,
    messages: Iterable[CeremonyMessage],
    now: int,
    *,
    recover_signer: RecoverSigner | None = None,
) -> CeremonyView:
    """The state of a ceremony from its logs, as of `now`.

    `now` is the latest block timestamp seen: a block stamped >= a cutoff proves that no
    later message can count before it. A node deciding to act on its own clock passes
    `max(latest block timestamp, wall clock - 1)` (the 1 s margin of dkg.md). An auditor
    replaying a finalized ceremony passes the finalization block's timestamp.
    `recover_signer` checks RESULT signatures (the gateway passes an EIP-712 recover);
    without it every well-formed RESULT is listed unverified.
    Never raises on message contents: bad messages are ignored or exclude their dealer.
    """
    run = _Evaluation(params, schedule, messages, now, recover_signer)
    if schedule.opened_at == 0 or now < schedule.opened_at:
        return CeremonyView(params, schedule, now, Phase.NOT_OPEN, ignored=tuple(run.ignored))
    p = schedule.phase_seconds
    all_dealers = set(range(1, params.dealer_count + 1))
    deal = run.window(
        MessageKind.DEALING,
        run.dealers,
        PhaseClose(schedule.opened_at, None, False),  # the contract refuses earlier posts
        schedule.opened_at + p,
        all_dealers,
        lambda message, index: parse_dealing(message.payload, params, index),
        quorum=params.required_qualified,
        usable=lambda parsed: not isinstance(parsed, InvalidDealing),
    )
    state = _State(run)
    state.deal(deal)
    if deal.close is None:
        return state.view(Phase.DEAL, list(_missing(params.dealer_nodes, deal.counted)))
    verdict = run.window(
        MessageKind.VERDICT,
        run.recipients,
        deal.close,
        deal.close.time + p,
        set(range(1, params.size + 1)),
        _try(Verdict.from_bytes, params),
    )
    state.verdict(verdict)
    if verdict.close is None:
        return state.view(Phase.VERDICT, list(_missing(params.nodes, verdict.counted)))
    accused = set(state.complaints)
    answer = run.window(
        MessageKind.ANSWER,
        {a: i for a, i in run.dealers.items() if i in accused},
        verdict.close,
        verdict.close.time + p,
        accused,
        _try(Answer.from_bytes, params),
    )
    state.answer(answer)
    if answer.close is None:
        missing = [params.dealer_nodes[j - 1] for j in sorted(accused) if j not in answer.counted]
        return state.view(Phase.ANSWER, missing)
    state.finish(answer.close)
    return state.view(Phase.RESULT, state.results(answer.close))


def _missing(roster: tuple[str, ...], counted: Mapping[int, object]) -> Iterable[str]:
    return (node for i, node in enumerate(roster, start=1) if i not in counted)


class _State:
    """What the phases established so far; turned into a `CeremonyView`."""

    def __init__(self, run: _Evaluation) -> None:
        self.run = run
        self.params = run.params
        self.closes: list[PhaseClose] = []
        self.counted: list[CountedMessage] = []
        self.dealings: dict[int, Dealing] = {}
        self.excluded: dict[int, Exclusion] = {}
        self.verdicts: dict[int, Verdict] = {}
        self.complaints: dict[int, tuple[int, ...]] = {}
        self.answers: dict[int, Answer] = {}
        self.revealed: dict[int, dict[int, Scalar]] = {}
        self.qualified: tuple[int, ...] | None = None
        self.result: CeremonyResult | None = None
        self.signatures: tuple[ResultSignature, ...] = ()
        self.failure: Failure | None = None
        self.deal_end = _NEVER

    def _count(self, kind: MessageKind, window: _Window) -> None:
        for index, (message, _) in window.counted.items():
            self.counted.append(CountedMessage(kind, index, message))
        if window.close is not None:
            self.closes.append(window.close)

    def deal(self, window: _Window) -> None:
        self._count(MessageKind.DEALING, window)
        self.deal_end = window.end
        for index, (_, parsed) in window.counted.items():
            if isinstance(parsed, Dealing):
                self.dealings[index] = parsed
            else:
                assert isinstance(parsed, InvalidDealing)
                self.excluded[index] = Exclusion(parsed.fault)
        if window.close is None:
            return
        for index in range(1, self.params.dealer_count + 1):
            if index not in window.counted:
                self.excluded[index] = Exclusion.NO_DEALING
        if len(self.dealings) < self.params.required_qualified:
            self.failure = Failure.TOO_FEW_DEALINGS

    def verdict(self, window: _Window) -> None:
        self._count(MessageKind.VERDICT, window)
        self.verdicts = _parsed(window, Verdict)
        if window.close is None:
            return
        accusers: dict[int, list[int]] = {}
        for recipient in sorted(self.verdicts):
            for dealer in self.verdicts[recipient].accused:
                if dealer in self.dealings:
                    accusers.setdefault(dealer, []).append(recipient)
        self.complaints = {dealer: tuple(found) for dealer, found in sorted(accusers.items())}

    def answer(self, window: _Window) -> None:
        self._count(MessageKind.ANSWER, window)
        self.answers = _parsed(window, Answer)

    def finish(self, close: PhaseClose) -> None:
        """Judge the answers, fix QUAL, compute the result (when QUAL is large enough)."""
        for dealer, accusers in self.complaints.items():
            self.revealed[dealer] = {}
            answer = self.answers.get(dealer)
            for accuser in accusers:
                value = None if answer is None else answer.revealed.get(accuser)
                if value is None:
                    self.excluded[dealer] = Exclusion.UNANSWERED_COMPLAINT
                elif not self.dealings[dealer].check_value(accuser, value):
                    self.excluded[dealer] = Exclusion.INVALID_ANSWER
                else:
                    self.revealed[dealer][accuser] = value
        self.qualified = tuple(sorted(set(self.dealings) - set(self.excluded)))
        if self.failure is not None:
            return
        if len(self.qualified) < self.params.required_qualified:
            self.failure = Failure.TOO_FEW_QUALIFIED
            return
        committee_key, share_keys = committee_public_keys(
            self.params, self.dealings, self.qualified
        )
        if committee_key.is_identity or any(key.is_identity for key in share_keys):
            self.failure = Failure.DEGENERATE_KEY
            return
        self.result = CeremonyResult(
            ceremony=self.params.ceremony_id,
            epoch=self.params.epoch,
            committee_key=committee_key.to_bytes(),
            share_keys=tuple(key.to_bytes() for key in share_keys),
            qualified=sum(1 << (j - 1) for j in self.qualified),
            transcript_hash=transcript_hash(
                self.params.ceremony_id,
                ((c.kind, c.sender_index, c.message.payload) for c in self.counted),
            ),
        )

    def results(self, close: PhaseClose) -> list[str]:
        """Count RESULT signatures after ANSWER closed; return who has not signed yet."""
        if self.result is None:
            return []
        result, recover = self.result, self.run.recover_signer
        everyone = list(self.params.nodes)
        if self.params.previous is not None:
            everyone += [
                a for a in self.params.previous.nodes if roster_index(self.params.nodes, a) is None
            ]
        signers = {a.lower(): n for n, a in enumerate(everyone, start=1)}

        def parse(message: CeremonyMessage, _index: int) -> object:
            try:
                signature = decode_result(message.payload)
            except MalformedCeremonyMessage as e:
                return e
            signer = None if recover is None else recover(result, signature)
            if recover is not None and (signer or "").lower() != message.sender.lower():
                return MalformedCeremonyMessage(MessageKind.RESULT, "not signed by its sender")
            return signature

        deadline = self.run.schedule.deadline
        window = self.run.window(MessageKind.RESULT, signers, close, deadline, None, parse)
        signatures = []
        for message, signature in window.counted.values():
            assert isinstance(signature, bytes)
            signatures.append(
                ResultSignature(
                    message.sender,
                    signature,
                    self.run.recipients.get(message.sender.lower()),
                    self.run.dealers.get(message.sender.lower())
                    if self.params.is_reshare
                    else None,
                )
            )
        self.signatures = tuple(signatures)
        return [a for a in everyone if signers[a.lower()] not in window.counted]

    def view(self, phase: Phase, missing: list[str]) -> CeremonyView:
        failure = self.failure
        if failure is None and self.run.now >= self.run.schedule.deadline:
            short = phase is Phase.DEAL and len(self.dealings) < self.params.required_qualified
            failure = Failure.TOO_FEW_DEALINGS if short else Failure.DEADLINE_PASSED
        closes = [*self.closes, None, None, None]
        transcript = sorted(self.counted, key=lambda c: (c.kind, c.sender_index))
        return CeremonyView(
            params=self.params,
            schedule=self.run.schedule,
            now=self.run.now,
            phase=phase,
            deal_close=closes[0],
            verdict_close=closes[1],
            answer_close=closes[2],
            dealings=self.dealings,
            excluded=self.excluded,
            verdicts=self.verdicts,
            complaints=self.complaints,
            answers=self.answers,
            revealed=self.revealed,
            qualified=self.qualified,
            result=self.result,
            result_signatures=self.signatures,
            counted=tuple(transcript),
            ignored=tuple(sorted(self.run.ignored, key=_position)),
            missing=tuple(missing),
            failure=failure,
            deal_end=self.deal_end,
        )


def _position(ignored: IgnoredMessage) -> tuple[int, int]:
    return ignored.message.block_number, ignored.message.log_index


def my_verdict(view: CeremonyView, my_index: int, x25519_secret: nacl.public.PrivateKey) -> bytes:
    """The VERDICT payload for node `my_index`: accuse every counted valid dealing whose
    share to me does not open or does not match its commitments."""
    accused = tuple(
        dealer
        for dealer, dealing in sorted(view.dealings.items())
        if open_share(dealing, view.params, my_index, x25519_secret) is None
    )
    return Verdict(accused).to_bytes()


def my_share(view: CeremonyView, my_index: int, x25519_secret: nacl.public.PrivateKey) -> NodeShare:
    """Node `my_index`'s share of the new committee, checked against its Y_i.

    Uses the value its dealer revealed when it answered this node's complaint, otherwise
    opens the sealed share (so a node silent during the ceremony recovers its share later
    from the logs). Raises CeremonyIncomplete, ShareUnavailable, EncryptionKeyMismatch.
    """
    result = view._require_result()
    assert view.qualified is not None
    values: dict[int, Scalar] = {}
    for dealer in view.qualified:
        value = view.revealed.get(dealer, {}).get(my_index)
        if value is None:
            opened = open_share(view.dealings[dealer], view.params, my_index, x25519_secret)
            if opened is None:
                raise ShareUnavailable(my_index, dealer)
            value = opened._scalar
        values[dealer] = value
    secret = final_share(view.params, view.qualified, values)
    share_key = Point.from_bytes(result.share_keys[my_index - 1], f"share key of node {my_index}")
    if secret.public_point() != share_key:
        raise ShareKeyMismatchAfterCeremony(my_index)
    return NodeShare(ShareKey(NodeIndex(my_index), share_key, view.params.epoch), secret)
