"""The chain reads a gateway makes on its request path, over bare JSON-RPC.

A gateway asks the chain for its head every `head_ttl`, for `isEntitled(debit,
version)` once per (debit, version) per head, and on a first release for `getDebit`.
Through web3 one `isEntitled` costs about 3 ms of CPU (request formatting, validation
middleware asking for the chain id, requests' proxy and netrc lookups) against about
0.1 ms for the same `eth_call` posted here on a kept-alive connection: at a new block,
every buyer asking pays it. Only these few calls are made this way; everything else
stays on `MarketClient`.

`HotReads.for_market` gives None for chains that are not a plain http(s) URL (the
embedded eth-tester, URLs with credentials, custom request options): the caller then
uses web3.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from eth_hash.auto import keccak
from web3 import HTTPProvider

from marketplace.chain.errors import ChainError
from marketplace.chain.jsonrpc import DEFAULT_TIMEOUT, JsonRpc, hex_bytes, quantity
from marketplace.chain.market import MarketClient
from marketplace.chain.reverts import RevertDecoder

_IS_ENTITLED = keccak(b"isEntitled(uint256,uint32)")[:4]
_GET_DEBIT = keccak(b"getDebit(uint256)")[:4]
_DEBIT_COUNT = keccak(b"debitCount()")[:4]
_DEFAULT_TIMEOUT = DEFAULT_TIMEOUT


class HotReads:
    """`eth_blockNumber`, a block's hash and `isEntitled` on one keep-alive connection per
    thread; transport failures raise ChainUnavailable, error answers ChainError (reverts
    decoded by name, as `MarketClient` does)."""

    def __init__(
        self, url: str, market: str, reverts: RevertDecoder, *, timeout: float = _DEFAULT_TIMEOUT
    ) -> None:
        self._rpc = JsonRpc(url, reverts, timeout=timeout)  # ValueError: not http(s)
        self._endpoint = self._rpc.endpoint
        self._market = market

    @classmethod
    def for_market(cls, market: MarketClient) -> HotReads | None:
        """Bare reads for `market`'s chain, or None when it is not reached by plain URL."""
        provider = market.w3.provider
        if type(provider) is not HTTPProvider or not provider.endpoint_uri:
            return None
        url = str(provider.endpoint_uri)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.username or parts.password:
            return None
        kwargs = dict(provider.get_request_kwargs())
        if set(kwargs) - {"headers", "timeout"} or kwargs.get("headers") != (
            provider.get_request_headers()
        ):
            return None  # custom headers, proxies, certificates: leave them to web3
        timeout = kwargs.get("timeout", _DEFAULT_TIMEOUT)
        return cls(url, market.address, RevertDecoder(market.artifact.abi), timeout=float(timeout))

    # ------------------------------------------------------------ the three reads

    def block_number(self) -> int:
        return quantity(self._rpc.call("eth_blockNumber", []), "block number")

    def block_hash(self, number: int) -> str | None:
        """The hash of block `number`, None if the chain has no such block (yet)."""
        return self._hash_of(self._rpc.call("eth_getBlockByNumber", [hex(number), False]))

    def header(self, number: int | None = None) -> tuple[int, str, str] | None:
        """(number, hash, parent hash) of block `number` (None: the latest), in one call;
        None if the chain has no such block (yet)."""
        tag = "latest" if number is None else hex(number)
        block = self._rpc.call("eth_getBlockByNumber", [tag, False])
        block_hash = self._hash_of(block)
        if block_hash is None:
            return None
        parent = self._hash_of({"hash": block.get("parentHash")})
        assert parent is not None
        return quantity(block.get("number"), "block number"), block_hash, parent

    def _hash_of(self, block: Any) -> str | None:
        if block is None:
            return None
        if not isinstance(block, dict) or not isinstance(block.get("hash"), str):
            raise ChainError(f"chain node {self._endpoint} answered a block without a hash")
        try:
            return "0x" + bytes.fromhex(block["hash"].removeprefix("0x")).hex()
        except ValueError as e:
            raise ChainError(f"chain node {self._endpoint} answered a malformed block hash") from e

    def is_entitled(self, debit_id: int, version: int, block_hash: str) -> bool:
        """`DataMarket.isEntitled(debitId, version)` in the block with this hash (EIP-1898:
        by hash, so a block that a same-height reorg replaced is never asked by mistake)."""
        data = _IS_ENTITLED + debit_id.to_bytes(32, "big") + version.to_bytes(32, "big")
        word = self._eth_call(data, {"blockHash": block_hash}, "isEntitled", 32)
        if word[:31] != bytes(31) or word[31] > 1:
            raise ChainError(f"chain node {self._endpoint} answered isEntitled with 0x{word.hex()}")
        return word[31] == 1

    def debit_owner_and_block(
        self, debit_id: int, block_hash: str, log_block: int | None
    ) -> tuple[int, str, str | None]:
        """(listingId, buyer) of `getDebit(debitId)` in the block with this hash (reverts,
        e.g. UnknownDebit, as ChainError subclasses) and the hash of block `log_block`
        (None: not asked), in one round trip (a JSON-RPC batch): what a first release
        confirms."""
        data = _GET_DEBIT + debit_id.to_bytes(32, "big")
        calls: list[tuple[str, list[Any]]] = [
            ("eth_call", [{"to": self._market, "data": "0x" + data.hex()},
                          {"blockHash": block_hash}]),
        ]
        if log_block is not None:
            calls.append(("eth_getBlockByNumber", [hex(log_block), False]))
        results = self._rpc.batch(calls)
        words = self._words(results[0], "getDebit", 9 * 32)
        if words[32:44] != bytes(12):
            raise ChainError(f"chain node {self._endpoint} answered getDebit with a bad address")
        log_hash = self._hash_of(results[1]) if log_block is not None else None
        return int.from_bytes(words[:32], "big"), "0x" + words[44:64].hex(), log_hash

    def debit_count(self) -> int:
        """`debitCount()` at the latest block."""
        return int.from_bytes(self._eth_call(_DEBIT_COUNT, "latest", "debitCount", 32), "big")

    def _eth_call(self, data: bytes, block: object, name: str, size: int) -> bytes:
        result = self._rpc.call("eth_call",
                                [{"to": self._market, "data": "0x" + data.hex()}, block])
        return self._words(result, name, size)

    def _words(self, result: Any, name: str, size: int) -> bytes:
        return hex_bytes(result, name, self._endpoint, size)
