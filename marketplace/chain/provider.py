"""Connecting to a chain: the embedded eth-tester chain by default, any JSON-RPC URL else.

`DevChain` adds what only development chains offer (funding from unlocked accounts,
time travel, snapshots) for the demo, the devstack and the tests; it speaks to
eth-tester directly and to anvil through its `evm_*`/`anvil_*` RPC methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.types import Wei

from marketplace.chain.errors import ChainError, ChainUnavailable
from marketplace.chain.jsonrpc import redact

if TYPE_CHECKING:
    from eth_tester import EthereumTester

EMBEDDED = "embedded"


def connect(rpc_url: str | None = None, *, timeout: float = 10.0) -> Web3:
    """A connected Web3: in-process eth-tester for None/"embedded", else the URL's node.

    A URL whose node does not answer raises `ChainUnavailable` at once, not later.
    """
    if rpc_url in (None, EMBEDDED):
        # imported here: py-evm costs ~0.15 s to import, and only the embedded chain needs it
        from eth_tester import EthereumTester, PyEVMBackend  # noqa: PLC0415

        return Web3(EthereumTesterProvider(EthereumTester(PyEVMBackend())))
    assert rpc_url is not None
    if urlsplit(rpc_url).scheme not in ("http", "https"):
        raise ChainError(f"unsupported RPC URL scheme in {redact(rpc_url)} (use http/https)")
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        w3.eth.chain_id  # noqa: B018 - a cheap liveness probe
    except OSError as e:
        raise ChainUnavailable(redact(rpc_url), type(e).__name__) from e
    return w3


def endpoint_name(w3: Web3) -> str:
    """How to name the chain a Web3 talks to, without leaking credentials."""
    provider = w3.provider
    if isinstance(provider, EthereumTesterProvider):
        return EMBEDDED
    uri = getattr(provider, "endpoint_uri", None)
    return redact(str(uri)) if uri else type(provider).__name__


class DevChain:
    """Development-chain controls for eth-tester and anvil."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        provider = w3.provider
        self._tester: EthereumTester | None = (
            provider.ethereum_tester if isinstance(provider, EthereumTesterProvider) else None
        )

    @property
    def is_embedded(self) -> bool:
        return self._tester is not None

    def fund(self, address: str, wei: int) -> None:
        """Send `wei` from the chain's first unlocked account."""
        tx_hash = self.w3.eth.send_transaction(
            {
                "from": self.w3.eth.accounts[0],
                "to": Web3.to_checksum_address(address),
                "value": Wei(wei),
            }
        )
        self.w3.eth.wait_for_transaction_receipt(tx_hash)

    def now(self) -> int:
        """Timestamp of the latest block."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> int:
        """Mine a block `seconds` after the latest one; returns its timestamp."""
        target = self.now() + seconds
        if self._tester is not None:
            # The backend mines its time-travel block one second before the time it is given
            # (the front end's check would also refuse a target behind the wall clock).
            self._tester.backend.time_travel(target + 1)
        else:
            self._rpc("evm_mine", [target])
        return self.now()

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            if self._tester is not None:
                self._tester.mine_blocks(1)
            else:
                self._rpc("evm_mine", [])

    def snapshot(self) -> Any:
        if self._tester is not None:
            return self._tester.take_snapshot()
        return self._rpc("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        if self._tester is not None:
            self._tester.revert_to_snapshot(snapshot)
        else:
            self._rpc("evm_revert", [snapshot])

    def _rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise ChainError(f"{method} failed: {response['error']}")
        return response.get("result")
