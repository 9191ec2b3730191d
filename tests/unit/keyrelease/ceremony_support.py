"""An in-memory chain for ceremony tests: nodes post payloads into blocks, `evaluate` reads.

Nodes follow `CeremonyView.actions_for` like a gateway would; a test changes one node's
behaviour by overriding its hooks (`dealing`, `verdict`, `answer`), returning None for a
silent node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import nacl.public
from eth_hash.auto import keccak

from marketplace.keyrelease import NodeShare
from marketplace.keyrelease.ceremony import (
    CeremonyMessage,
    CeremonyResult,
    CeremonySchedule,
    CeremonyView,
    Phase,
    evaluate,
    my_share,
    my_verdict,
)
from marketplace.keyrelease.dkg import (
    CeremonyParams,
    DealerSecret,
    MessageKind,
    PreviousCommittee,
    encode_result,
)

CHAIN_ID = 31337
MARKET = bytes.fromhex("5FbDB2315678afecb367f032d93F642f64180aa3")
T0 = 1_000
P = 30
DEADLINE = 10_000


def address(i: int, generation: int = 0) -> str:
    return "0x" + f"{generation:02x}" + f"{i:038x}"


def fake_signature(result: CeremonyResult, sender: str) -> bytes:
    """A stand-in for the EIP-712 signature: the sender and a hash of the result."""
    digest = keccak(repr(result).encode())
    return bytes.fromhex(sender[2:]) + digest + bytes(13)


def fake_recover(result: CeremonyResult, signature: bytes) -> str | None:
    if signature[20:52] != keccak(repr(result).encode()):
        return None
    return "0x" + signature[:20].hex()


@dataclass
class Node:
    """One process: its address, X25519 secret, and (when it deals) its dealer secret."""

    address: str
    x25519: nacl.public.PrivateKey = field(default_factory=nacl.public.PrivateKey.generate)
    old_share: NodeShare | None = None
    secret: DealerSecret | None = None
    dealing: Callable[[Node, CeremonyParams], bytes | None] | None = None
    verdict: Callable[[Node, CeremonyView, int], bytes | None] | None = None
    answer: Callable[[Node, Sequence[int]], bytes | None] | None = None
    silent_result: bool = False

    def make_dealing(self, params: CeremonyParams, index: int) -> bytes | None:
        if self.secret is None:
            self.secret = DealerSecret.generate(index, params.threshold, self.old_share)
        if self.dealing is not None:
            return self.dealing(self, params)
        return self.secret.dealing(params)

    def make_verdict(self, view: CeremonyView, index: int) -> bytes | None:
        if self.verdict is not None:
            return self.verdict(self, view, index)
        return my_verdict(view, index, self.x25519)

    def make_answer(self, accusers: Sequence[int]) -> bytes | None:
        if self.answer is not None:
            return self.answer(self, accusers)
        assert self.secret is not None
        return self.secret.answer(accusers)


def silent_dealing(_node: Node, _params: CeremonyParams) -> bytes | None:
    return None


def silent_verdict(_node: Node, _view: CeremonyView, _index: int) -> bytes | None:
    return None


def silent_answer(_node: Node, _accusers: Sequence[int]) -> bytes | None:
    return None


@dataclass
class Chain:
    """Blocks of one message each; `clock` is the next block's timestamp."""

    params: CeremonyParams
    schedule: CeremonySchedule = field(default_factory=lambda: CeremonySchedule(T0, P, DEADLINE))
    messages: list[CeremonyMessage] = field(default_factory=list)
    clock: int = T0
    block: int = 100

    def post(self, sender: str, kind: int, payload: bytes, *, same_block: bool = False) -> None:
        if not same_block:
            self.block += 1
        log_index = sum(1 for m in self.messages if m.block_number == self.block)
        self.messages.append(
            CeremonyMessage(sender, kind, payload, self.block, log_index, self.clock)
        )

    def view(self, now: int | None = None) -> CeremonyView:
        return evaluate(
            self.params,
            self.schedule,
            self.messages,
            self.clock if now is None else now,
            recover_signer=fake_recover,
        )


def new_params(
    n: int,
    t: int,
    nodes: Sequence[Node],
    *,
    previous: PreviousCommittee | None = None,
    ceremony_id: int = 1,
    epoch: int = 1,
) -> CeremonyParams:
    assert len(nodes) == n
    return CeremonyParams(
        chain_id=CHAIN_ID,
        market=MARKET,
        ceremony_id=ceremony_id,
        epoch=epoch,
        threshold=t,
        encryption_keys=tuple(bytes(node.x25519.public_key) for node in nodes),
        nodes=tuple(node.address for node in nodes),
        previous=previous,
    )


@dataclass
class Ceremony:
    """A chain plus the processes (new roster and, for a reshare, the old one) acting on it."""

    chain: Chain
    new_nodes: list[Node]
    old_nodes: list[Node]

    @property
    def everyone(self) -> list[Node]:
        seen: dict[str, Node] = {}
        for node in [*self.old_nodes, *self.new_nodes]:
            seen.setdefault(node.address, node)
        return list(seen.values())

    def step(self) -> bool:
        """Every node does what its view says; False when nobody posted anything."""
        view = self.chain.view()
        posted = False
        for node in self.everyone:
            actions = view.actions_for(node.address)
            payload: bytes | None = None
            kind = 0
            if actions.deal:
                index = view.dealer_index(node.address)
                assert index is not None
                kind, payload = MessageKind.DEALING, node.make_dealing(self.chain.params, index)
            elif actions.verdict:
                index = view.new_index(node.address)
                assert index is not None
                kind, payload = MessageKind.VERDICT, node.make_verdict(view, index)
            elif actions.answer_to:
                kind, payload = MessageKind.ANSWER, node.make_answer(actions.answer_to)
            elif actions.result and not node.silent_result:
                assert view.result is not None
                signature = fake_signature(view.result, node.address)
                kind, payload = MessageKind.RESULT, encode_result(signature)
            if payload is not None:
                self.chain.post(node.address, kind, payload)
                posted = True
        return posted

    def run(self) -> CeremonyView:
        """Act until RESULT signatures are in (or failure); advance the clock when stuck."""
        for _ in range(20):
            view = self.chain.view()
            if view.failure is not None:
                return view
            posted = self.step()
            if not posted and view.phase is Phase.RESULT:
                return self.chain.view()
            if posted:
                self.chain.clock += 1
            else:
                self.chain.clock = max(self.chain.clock, view.cutoff)
        raise AssertionError("the ceremony did not settle")

    def share_of(self, view: CeremonyView, node: Node) -> NodeShare:
        index = view.new_index(node.address)
        assert index is not None
        return my_share(view, index, node.x25519)


def dkg(n: int, t: int, *, ceremony_id: int = 1) -> Ceremony:
    nodes = [Node(address(i)) for i in range(1, n + 1)]
    params = new_params(n, t, nodes, ceremony_id=ceremony_id)
    return Ceremony(Chain(params), nodes, nodes)


def reshare(
    old_nodes: list[Node],
    old_view: CeremonyView,
    new_nodes: list[Node],
    t: int,
    *,
    ceremony_id: int = 2,
) -> Ceremony:
    """A reshare from a finished ceremony's committee to `new_nodes` (which may reuse some)."""
    keys = old_view.committee_keys
    for node in old_nodes:
        index = old_view.new_index(node.address)
        assert index is not None
        node.old_share = my_share(old_view, index, node.x25519)
        node.secret = None
        node.dealing = node.verdict = node.answer = None
    previous = PreviousCommittee(keys, tuple(node.address for node in old_nodes))
    params = new_params(
        len(new_nodes), t, new_nodes, previous=previous, ceremony_id=ceremony_id, epoch=2
    )
    return Ceremony(Chain(params), new_nodes, old_nodes)
