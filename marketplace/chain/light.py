"""Chain reads for the CLI without web3: what `datadebit buyer status` needs.

`import web3` alone takes 0.7-0.9 s (web3 imports eth_account, whose eth_keyfile builds
py_ecc's BLS pairing tables at import), over the 0.6 s a chain read may take from
start to exit (issue 11). `LightMarket` makes the same reads as `MarketClient` over
bare JSON-RPC (`jsonrpc.JsonRpc`, the gateway's hot-read transport), encodes and
decodes with eth_abi from the committed ABI, and raises the same errors: the
contract's custom errors by name (`UnknownDebit`, ...), `ChainUnavailable` when the
node does not answer. Transactions, and every other read, stay on `MarketClient`.

`private_key_address` gives a hex private key's address with coincurve, so a command
that only needs the address of `$DATADEBIT_PRIVATE_KEY` does not import eth_account.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from eth_abi.abi import decode as abi_decode
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address

from marketplace.chain.artifacts import ContractArtifact, load_artifact
from marketplace.chain.assets import ETHER_INFO, AssetInfo, shown_asset
from marketplace.chain.errors import ChainError, ChainUnavailable
from marketplace.chain.jsonrpc import DEFAULT_TIMEOUT, JsonRpc, hex_bytes, quantity, redact
from marketplace.chain.reverts import RevertDecoder, abi_type
from marketplace.chain.types import ETHER, Debit

#: `MarketClient.events()`'s default: blocks per `eth_getLogs` call.
DEFAULT_MAX_BLOCK_RANGE = 500


class _Function:
    """One view of the ABI: selector, input and output types."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.name = str(entry["name"])
        self.inputs = [abi_type(i) for i in entry["inputs"]]
        self.outputs = [abi_type(o) for o in entry["outputs"]]
        self.selector = keccak(f"{self.name}({','.join(self.inputs)})".encode())[:4]


class LightMarket:
    """Reads of one deployed DataMarket over an http(s) JSON-RPC node, without web3."""

    def __init__(
        self,
        rpc_url: str,
        address: str,
        *,
        artifact: ContractArtifact | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_block_range: int = DEFAULT_MAX_BLOCK_RANGE,
    ) -> None:
        if urlsplit(rpc_url).scheme not in ("http", "https"):  # as provider.connect says
            raise ChainError(
                f"unsupported RPC URL scheme in {redact(rpc_url)} (use http/https)"
            )
        if max_block_range < 1:
            raise ValueError("max_block_range must be >= 1")
        if not is_address(address):
            raise ValueError(f"{address!r} is not an address")
        self.artifact = artifact or load_artifact()
        self.address: ChecksumAddress = to_checksum_address(address)
        self.max_block_range = max_block_range
        self._rpc = JsonRpc(rpc_url, RevertDecoder(self.artifact.abi), timeout=timeout)
        self.endpoint = self._rpc.endpoint
        self._functions = {
            str(e["name"]): _Function(e) for e in self.artifact.abi if e.get("type") == "function"
        }
        requested = _event(self.artifact.abi, "DebitRequested")
        indexed = [i["name"] for i in requested["inputs"] if i.get("indexed")]
        self._requested_topic = _event_topic(requested)
        self._buyer_position = 1 + indexed.index("buyer")  # topics[0] is the event's
        self._debit_position = 1 + indexed.index("debitId")
        self._chain_id: int | None = None
        self._assets: dict[str, AssetInfo] = {ETHER: ETHER_INFO}

    # ------------------------------------------------------------ node

    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = quantity(self._rpc.call("eth_chainId", []), "chain id")
        return self._chain_id

    def block_number(self) -> int:
        return quantity(self._rpc.call("eth_blockNumber", []), "block number")

    def has_code(self) -> bool:
        """Whether a contract is deployed at the market's address (latest block)."""
        code = self._rpc.call("eth_getCode", [self.address, "latest"])
        return len(hex_bytes(code, "eth_getCode", self.endpoint)) > 0

    def close(self) -> None:
        self._rpc.close()

    # ------------------------------------------------------------ views

    def debit(self, debit_id: int) -> Debit:
        """`getDebit(debitId)` at the latest block, as `MarketClient.debit` returns it;
        an id never created raises `UnknownDebit`, as there."""
        (values,) = self._view("getDebit", debit_id)
        return Debit.from_view(debit_id, values)

    def listing_asset(self, listing_id: int) -> ChecksumAddress:
        """What `listing_id` is priced in (`ETHER` or a token), from `getListing`."""
        (values,) = self._view("getListing", listing_id)
        return to_checksum_address(values[-1])

    def asset_info(self, asset: str) -> AssetInfo:
        """`tokens.asset_info` without web3: a token's `symbol()` and `decimals()` by
        eth_call, read once per token (metadata does not change); a view the token lacks
        (a revert, or an answer that does not decode) counts as absent, an unreachable node
        is raised."""
        if int(asset, 16) == 0:
            return ETHER_INFO
        address = to_checksum_address(asset)
        if address not in self._assets:
            symbol = self._token_view(address, b"symbol()", "string")
            decimals = self._token_view(address, b"decimals()", "uint8")
            self._assets[address] = shown_asset(address, symbol, decimals)
        return self._assets[address]

    def _token_view(self, token: str, signature: bytes, output: str) -> object:
        try:
            result = self._rpc.call("eth_call", [
                {"to": token, "data": "0x" + keccak(signature)[:4].hex()}, "latest"])
            (value,) = abi_decode([output], hex_bytes(result, signature.decode(), self.endpoint))
        except ChainUnavailable:
            raise
        except Exception:  # a revert, a missing function, undecodable bytes: absent
            return None
        return value

    def debit_ids_requested_by(
        self, buyer: str, from_block: int = 0, to_block: int | None = None
    ) -> list[int]:
        """Ids of the debits `buyer` requested in [from_block, to_block] (default: the
        latest block), in chain order: `DebitRequested` logs of the market only, read in
        ranges of `max_block_range` blocks like `EventReader.read`."""
        if not is_address(buyer):
            raise ValueError(f"{buyer!r} is not an address")
        last = self.block_number() if to_block is None else to_block
        topics: list[str | None] = [None] * (self._buyer_position + 1)
        topics[0] = "0x" + self._requested_topic.hex()
        topics[self._buyer_position] = "0x" + bytes(12).hex() + buyer.lower().removeprefix("0x")
        ids: list[int] = []
        start = max(from_block, 0)
        while start <= last:
            end = min(start + self.max_block_range - 1, last)
            logs = self._rpc.call("eth_getLogs", [{
                "address": self.address, "fromBlock": hex(start), "toBlock": hex(end),
                "topics": topics,
            }])
            if not isinstance(logs, list):
                raise ChainError(f"chain node {self.endpoint} answered eth_getLogs with a "
                                 "non-list")
            ids.extend(self._requested_id(log, buyer) for log in logs)
            start = end + 1
        return ids

    def _requested_id(self, log: Any, buyer: str) -> int:
        """The debit id of a `DebitRequested` log, checked to be the market's own log
        for `buyer` (a node must not slip in another contract's or another buyer's)."""
        ok = isinstance(log, dict) and str(log.get("address", "")).lower() == self.address.lower()
        topics = log.get("topics") if ok else None
        if not isinstance(topics, list) or len(topics) <= self._buyer_position:
            raise ChainError(f"chain node {self.endpoint} answered eth_getLogs with a log "
                             "that is not the market's DebitRequested")
        words = [hex_bytes(t, "eth_getLogs", self.endpoint, 32) for t in topics]
        if (words[0] != self._requested_topic
                or words[self._buyer_position][12:] != bytes.fromhex(buyer[-40:])):
            raise ChainError(f"chain node {self.endpoint} answered eth_getLogs with a log "
                             "that is not the market's DebitRequested for this buyer")
        return int.from_bytes(words[self._debit_position], "big")

    def _view(self, name: str, *args: Any) -> tuple[Any, ...]:
        fn = self._functions[name]
        data = fn.selector + abi_encode(fn.inputs, list(args))
        result = self._rpc.call("eth_call", [{"to": self.address, "data": "0x" + data.hex()},
                                             "latest"])
        raw = hex_bytes(result, name, self.endpoint)
        try:
            return tuple(abi_decode(fn.outputs, raw))
        except Exception as e:  # eth_abi's DecodingError and friends: a misbehaving node
            raise ChainError(f"chain node {self.endpoint} answered {name} with "
                             f"undecodable data ({len(raw)} bytes)") from e


def _event(abi: Iterable[dict[str, Any]], name: str) -> dict[str, Any]:
    for entry in abi:
        if entry.get("type") == "event" and entry.get("name") == name:
            return entry
    raise ValueError(f"the market's ABI has no event {name}")


def _event_topic(entry: dict[str, Any]) -> bytes:
    types = ",".join(abi_type(i) for i in entry["inputs"])
    return keccak(f"{entry['name']}({types})".encode())


def private_key_address(key: str, source: str) -> ChecksumAddress:
    """The address of a hex private key (with or without 0x), as eth_account computes it
    (keccak of the uncompressed public point, last 20 bytes, EIP-55), without importing
    eth_account. `source` names where the key came from for the error, which never
    holds the key (the same checks and messages as `marketplace.wallet.from_private_key`).
    """
    from coincurve import PublicKey  # noqa: PLC0415 - only for this

    from marketplace.wallet import WalletError  # noqa: PLC0415

    body = key.strip().removeprefix("0x").removeprefix("0X")
    if len(body) != 64:
        raise WalletError(f"{source} is not a private key (expected 32 bytes of hex)")
    try:
        point = PublicKey.from_secret(bytes.fromhex(body)).format(compressed=False)
    except ValueError as e:  # not hex, zero, or >= the curve order
        raise WalletError(f"{source} is not a valid private key") from e
    return to_checksum_address(keccak(point[1:])[12:])
