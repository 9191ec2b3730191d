"""A gateway's part in committee ceremonies (DESIGN §9): each background round reads the
latest ceremony at the confirmed head, evaluates its transcript, and posts whatever this
node owes: its dealing, its verdict, its answers to complaints, its signature of the
result, and (once enough nodes signed) the finalization. When an epoch is final it keeps
its new share and erases the older ones.

Everything is recomputed from the chain each round, so a restarted node simply picks up
where the transcript stands; the only local memory a ceremony needs is the dealer's seed
(to answer complaints), sealed in the state database and erased when the ceremony ends.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

from eth_account.signers.local import LocalAccount

from marketplace.ceremony_chain import CeremonyReader, to_typed
from marketplace.chain.market import MarketClient
from marketplace.chain.types import CeremonyInfo, CeremonyStatus
from marketplace.committee import node_encryption_secret
from marketplace.eip712 import sign
from marketplace.errors import MarketplaceError
from marketplace.gateway.shares import EpochShares, ShareBook
from marketplace.keyrelease import KeyReleaseError, NodeShare
from marketplace.keyrelease.ceremony import (
    CeremonyView,
    Phase,
    my_share,
    my_verdict,
    roster_index,
)
from marketplace.keyrelease.dkg import (
    SEED_SIZE,
    CeremonyParams,
    DealerSecret,
    MessageKind,
    encode_result,
)

log = logging.getLogger(__name__)


class CeremonyRunner:
    """Drives this node through the latest ceremony; `tick()` is one round."""

    def __init__(
        self,
        market: MarketClient,
        book: ShareBook,
        shares: EpochShares,
        account: LocalAccount,
        *,
        confirmations: int = 0,
        now: Callable[[], float] = time.time,
        approve_rosters: bool = False,
        from_block: int = 0,
    ) -> None:
        self.market = market
        self.book = book
        self.shares = shares
        self.account = account
        self.confirmations = confirmations
        self.approve_rosters = approve_rosters
        self._now = now
        self._x25519 = node_encryption_secret(account)
        self.reader = CeremonyReader(market, from_block=from_block)
        self._finished: set[int] = set()
        self._approved: set[int] = set()
        self._posted: dict[tuple[int, int], int] = {}  # (ceremony, kind) -> block posted in
        self._params: dict[int, CeremonyParams] = {}
        self._enough_since: dict[int, float] = {}
        self._last_block = -1
        self._skew = 0.0  # how far the chain's clock is ahead of ours (never negative)
        self._caught_up = 0  # the epoch in force when last checked (see `_catch_up`)

    # ------------------------------------------------------------ one round

    def tick(self) -> None:
        latest = self.market.w3.eth.get_block("latest")
        head = max(0, int(latest["number"]) - self.confirmations)
        ceremony_id = self.market.latest_ceremony(block=head)
        if ceremony_id == 0 or ceremony_id in self._finished:
            return
        self._catch_up(head, ceremony_id)
        info = self.market.ceremony(ceremony_id, block=head)
        if info.status is CeremonyStatus.FINALIZED:
            self._adopt(info)
            return
        if info.status is CeremonyStatus.FAILED:
            self.book.erase_seeds(ceremony_id)
            self._finished.add(ceremony_id)
            log.warning("ceremony %d for epoch %d failed (deadline passed)",
                        ceremony_id, info.epoch)
            return
        now = self._chain_now(int(latest["number"]), int(latest["timestamp"]))
        if info.opened_at == 0 or now < info.opened_at:
            self._maybe_approve(info)
            return
        params = self._params_of(info)
        me = self.account.address
        if roster_index(params.dealer_nodes, me) is None and roster_index(params.nodes, me) is None:
            return  # not in this ceremony
        view = self.reader.view(info, to_block=head, now=now, params=params)
        self._act(info, view, head)

    def _catch_up(self, head: int, latest: int) -> None:
        """Adopt the epoch in force if its ceremony is not the latest one: a node that was
        down while it was finalized and a later ceremony was proposed still takes its share
        (it needs it to serve, and to deal in a reshare)."""
        epoch = self.market.current_epoch(block=head)
        if epoch <= self._caught_up:
            return
        final = self.market.committee_at(epoch, block=head)
        if final.ceremony_id != latest and final.ceremony_id not in self._finished:
            self._adopt(self.market.ceremony(final.ceremony_id, block=head))
        self._caught_up = epoch

    def _chain_now(self, number: int, timestamp: int) -> int:
        """The chain's time as this node can best tell it, for closing phases by time: the
        latest block's timestamp, or this node's clock minus 1 s shifted by how far the
        chain's clock runs ahead of it (learnt from each new block as it is first seen).
        A chain that makes blocks only for transactions (anvil's automine, a quiet L2)
        stops its own clock; a chain whose clock is ahead of ours (a time-travelled dev
        chain) would otherwise make every node wait for a cutoff its clock never reaches."""
        wall = self._now()
        if number != self._last_block:
            self._last_block = number
            self._skew = max(self._skew, timestamp - wall)
        return max(timestamp, int(wall + self._skew) - 1)

    def _params_of(self, info: CeremonyInfo) -> CeremonyParams:
        params = self._params.get(info.ceremony_id)
        if params is None:
            params = self.reader.params(info)
            self._params[info.ceremony_id] = params
        return params

    def _act(self, info: CeremonyInfo, view: CeremonyView, head: int) -> None:
        me = self.account.address
        actions = view.actions_for(me)
        dealer = view.dealer_index(me)
        recipient = view.new_index(me)
        if actions.deal and dealer is not None:
            secret = self._dealer_secret(info, dealer)
            if secret is not None:
                self._post(info, MessageKind.DEALING, secret.dealing(view.params), head)
        if actions.verdict and recipient is not None:
            self._post(info, MessageKind.VERDICT, my_verdict(view, recipient, self._x25519), head)
        if actions.answer_to and dealer is not None:
            secret = self._dealer_secret(info, dealer)
            if secret is not None:
                self._post(info, MessageKind.ANSWER, secret.answer(actions.answer_to), head)
        if actions.result and view.result is not None:
            if recipient is not None:
                self._check_my_share(view, recipient)
            signature = sign(self.account, self.reader.domain, to_typed(view.result))
            self._post(info, MessageKind.RESULT, encode_result(signature), head)
        if view.phase is Phase.RESULT and view.result is not None:
            self._maybe_finalize(info, view)

    # ------------------------------------------------------------ messages

    def _dealer_secret(self, info: CeremonyInfo, dealer: int) -> DealerSecret | None:
        """This node's polynomial for the ceremony, from its stored seed (a new one the
        first time); a reshare's constant term is the node's share of the current epoch."""
        old_share: NodeShare | None = None
        if info.is_reshare:
            held = self.book.get(info.epoch - 1)
            if held is None:
                log.warning("cannot deal in reshare %d: no share of epoch %d",
                            info.ceremony_id, info.epoch - 1)
                return None
            old_share = held.share
        seed = self.book.seed(info.ceremony_id)
        if seed is None:
            seed = self.book.put_seed(info.ceremony_id, secrets.token_bytes(SEED_SIZE))
        return DealerSecret(seed, dealer, info.threshold, old_share)

    def _post(self, info: CeremonyInfo, kind: MessageKind, payload: bytes, head: int) -> None:
        """Post once; again only if the confirmed head passed the earlier post's block and
        it still does not count (it was too early for its phase)."""
        key = (info.ceremony_id, int(kind))
        posted = self._posted.get(key)
        if posted is not None and head < posted:
            return
        try:
            sent = self.market.post_ceremony_message(
                self.account, info.ceremony_id, int(kind), payload
            )
        except MarketplaceError as e:
            log.warning("ceremony %d: posting %s failed: %s", info.ceremony_id, kind.name, e)
            return
        self._posted[key] = sent.block_number
        log.info("ceremony %d: posted %s (%d bytes, %d gas)", info.ceremony_id, kind.name,
                 len(payload), sent.gas_used)

    def _check_my_share(self, view: CeremonyView, recipient: int) -> None:
        try:
            my_share(view, recipient, self._x25519)
        except KeyReleaseError as e:  # still sign: the transcript is what is attested
            log.warning("ceremony %d: this node's share is unusable: %s",
                        view.params.ceremony_id, e)

    def _maybe_approve(self, info: CeremonyInfo) -> None:
        """Approve a proposed reshare when the operator's policy says so and this node is
        in the current committee."""
        if not (self.approve_rosters and info.is_reshare) or info.ceremony_id in self._approved:
            return
        current = self.market.committee_at(info.epoch - 1)
        if roster_index(tuple(current.nodes), self.account.address) is None:
            return
        self._approved.add(info.ceremony_id)
        try:
            self.market.approve_committee(self.account, info.ceremony_id)
            log.info("approved ceremony %d (policy: approve every roster)", info.ceremony_id)
        except MarketplaceError as e:
            log.warning("approving ceremony %d failed: %s", info.ceremony_id, e)

    def _maybe_finalize(self, info: CeremonyInfo, view: CeremonyView) -> None:
        """Submit the result once enough nodes signed it: the first signer at once, the
        others one phase later if it is still not final (that node may be down)."""
        assert view.result is not None
        new, old = view.new_signatures, view.old_signatures
        if len(new) < info.threshold:
            return
        old_needed = view.params.previous.keys.threshold if view.params.previous else 0
        if len(old) < old_needed:
            return
        signers = [s.sender.lower() for s in view.result_signatures]
        me = self.account.address.lower()
        if me not in signers:
            return
        # the runner's clock (the chain's on a time-travelling dev chain), not monotonic
        now = self._now()
        first_seen = self._enough_since.setdefault(info.ceremony_id, now)
        if signers.index(me) > 0 and now - first_seen < info.phase_seconds:
            return
        try:
            sent = self.market.finalize_committee(
                self.account, info.ceremony_id, to_typed(view.result),
                new[: info.threshold], old[:old_needed],
            )
        except MarketplaceError as e:
            log.info("ceremony %d: finalization not accepted (%s)", info.ceremony_id, e)
            return
        log.info("ceremony %d finalized epoch %d (%d gas)", info.ceremony_id, info.epoch,
                 sent.gas_used)

    # ------------------------------------------------------------ a final epoch

    def _adopt(self, info: CeremonyInfo) -> None:
        """Keep this node's share of the new epoch (from the transcript, even if the node
        was silent during the ceremony), erase older shares and the ceremony's seed."""
        epoch = info.epoch
        recipient = roster_index(info.roster.nodes, self.account.address)
        if recipient is not None and self.book.get(epoch) is None:
            final = self.market.committee_at(epoch)
            block = self.market.w3.eth.get_block(final.start_block)
            view = self.reader.view(
                info, to_block=final.start_block, now=int(block["timestamp"]),
                params=self._params_of(info),
            )
            try:
                share = my_share(view, recipient, self._x25519)
            except KeyReleaseError as e:
                log.warning("epoch %d is final but this node has no usable share: %s", epoch, e)
                share = None
            if share is not None:
                if share.share_key.point.to_bytes() != final.share_keys[recipient - 1]:
                    log.warning("epoch %d: this node's share does not match its share key", epoch)
                else:
                    self.book.put(epoch, info.ceremony_id, share)
                    log.info("epoch %d is final: holding the share of node %d", epoch, recipient)
        erased = self.book.erase_before(epoch)
        if erased:
            log.info("erased %d share(s) of epochs before %d", erased, epoch)
        self.book.erase_seeds(info.ceremony_id)
        self.shares.forget_cache()
        self._finished.add(info.ceremony_id)
        self._params.pop(info.ceremony_id, None)

