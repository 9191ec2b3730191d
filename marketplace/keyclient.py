"""The buyer's side of key release: ask every gateway at once, stop at t valid shares.

One wallet-signed `KeyRequest` goes to all nodes in parallel (each node keeps its own
nonce log, so one signature serves all). Each answer is opened with the buyer's X25519
key and its DLEQ proof checked against Y_i from the contract; a node whose share fails
is named, never used. With fewer than t valid shares the error lists every node's fault.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import httpx
from eth_account.signers.local import LocalAccount

from marketplace.eip712 import Eip712Domain, KeyRequest, sign
from marketplace.errors import MarketplaceError
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.capsule import Capsule, CapsuleContext
from marketplace.keyrelease.combine import combine
from marketplace.keyrelease.errors import KeyReleaseError
from marketplace.keyrelease.keys import CommitteeKeys
from marketplace.keyrelease.share import VerifiedKeyShare, open_sealed_share
from storage.keys import DataKey

log = logging.getLogger(__name__)

#: How long a request stays valid; gateways accept at most 600 s.
REQUEST_LIFETIME = 120


class KeyFetchFailed(MarketplaceError):
    """Fewer than t gateways gave a valid share; `faults` says what each node did."""

    def __init__(self, have: int, need: int, faults: Mapping[int, str]) -> None:
        self.have = have
        self.need = need
        self.faults = dict(faults)
        detail = "; ".join(f"node {i}: {why}" for i, why in sorted(self.faults.items()))
        super().__init__(f"got {have} valid key shares, need {need} ({detail or 'no answers'})")


@dataclass(frozen=True, slots=True)
class FetchedKey:
    """The recovered data key and what each node did (for receipts and blame)."""

    data_key: DataKey
    used_nodes: tuple[int, ...]
    faults: dict[int, str] = field(default_factory=dict)
    receipts: dict[int, dict[str, object]] = field(default_factory=dict)


class KeyClient:
    """Fetches data keys from a committee's gateways over HTTP."""

    def __init__(
        self,
        committee: CommitteeKeys,
        domain: Eip712Domain,
        nodes: Mapping[int, httpx.Client],
        *,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.committee = committee
        self.domain = domain
        self.nodes = dict(nodes)
        self._now = now

    def fetch(
        self,
        wallet: LocalAccount,
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> FetchedKey:
        """Sign one request, ask all nodes at once, combine the first t valid shares."""
        request = KeyRequest(
            debit_id=debit_id,
            version=ctx.version,
            expiry=int(self._now()) + REQUEST_LIFETIME,
            nonce=os.urandom(32),
        )
        body: dict[str, object] = {
            "request": request.to_message(),
            "signature": "0x" + sign(wallet, self.domain, request).hex(),
        }
        valid: dict[int, VerifiedKeyShare] = {}
        faults: dict[int, str] = {}
        receipts: dict[int, dict[str, object]] = {}
        need = self.committee.threshold
        pool = ThreadPoolExecutor(max_workers=max(len(self.nodes), 1))
        try:
            pending: dict[Future[dict[str, object]], int] = {
                pool.submit(_post_keys, client, body): index
                for index, client in self.nodes.items()
            }
            while pending and len(valid) < need:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    index = pending.pop(future)
                    try:
                        answer = future.result()
                        valid[index] = self._verified(
                            index, answer, buyer_secret, debit_id, ctx, capsule
                        )
                        receipts[index] = answer
                    except (GatewayAnswerError, KeyReleaseError) as e:
                        faults[index] = str(e)
                        log.warning("key share from node %d refused: %s", index, e)
        finally:
            # do not wait for slow nodes once t shares are in: their answers are not needed
            pool.shutdown(wait=False, cancel_futures=True)
        if len(valid) < need:
            raise KeyFetchFailed(len(valid), need, faults)
        chosen = sorted(valid)[:need]
        data_key = combine(self.committee, capsule, ctx, [valid[i] for i in chosen])
        return FetchedKey(data_key, tuple(chosen), faults, receipts)

    def _verified(
        self,
        index: int,
        answer: Mapping[str, object],
        buyer_secret: BuyerSecretKey,
        debit_id: int,
        ctx: CapsuleContext,
        capsule: Capsule,
    ) -> VerifiedKeyShare:
        try:
            sealed = base64.b64decode(str(answer["sealedShare"]), validate=True)
        except (KeyError, binascii.Error) as e:
            raise GatewayAnswerError("answer has no valid sealedShare") from e
        share = open_sealed_share(sealed, buyer_secret, debit_id, ctx.version)
        if share.index != index:
            raise GatewayAnswerError(f"answered with node {share.index}'s share")
        return share.verify(self.committee.share_key(index), capsule)


class GatewayAnswerError(MarketplaceError):
    """A gateway refused, was unreachable, or answered something unusable."""


#: A real answer is under 1 KiB; a gateway cannot make the buyer read (or parse) more.
MAX_ANSWER_SIZE = 64 * 1024


def _post_keys(client: httpx.Client, body: dict[str, object]) -> dict[str, object]:
    try:
        with client.stream("POST", "/v1/keys", json=body) as response:
            raw = bytearray()
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) > MAX_ANSWER_SIZE:
                    raise GatewayAnswerError(f"answer larger than {MAX_ANSWER_SIZE} bytes")
    except httpx.HTTPError as e:
        raise GatewayAnswerError(f"unreachable ({type(e).__name__})") from e
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise GatewayAnswerError(f"HTTP {response.status_code}, not JSON") from e
    if response.status_code != 200:
        code = payload.get("code", "?") if isinstance(payload, dict) else "?"
        raise GatewayAnswerError(f"refused with {code} (HTTP {response.status_code})")
    if not isinstance(payload, dict):
        raise GatewayAnswerError("answer is not a JSON object")
    return payload
