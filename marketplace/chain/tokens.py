"""ERC-20 helpers for token-priced listings: the ABI subset the market's clients use and
EIP-2612 permits (an approval signed off-chain, so approval and purchase are one
transaction, `MarketClient.request_debit_with_permit`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from web3 import Web3

from marketplace.chain.assets import ETHER_INFO, AssetInfo, shown_asset


def _fn(name: str, inputs: list[tuple[str, str]], outputs: list[str],
        mutability: str = "view") -> dict[str, Any]:
    return {
        "type": "function", "name": name, "stateMutability": mutability,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": "", "type": t} for t in outputs],
    }


#: What the clients call on a token: balances, allowances, approve, metadata and the
#: EIP-2612 / EIP-5267 views a permit needs.
ERC20_ABI: list[dict[str, Any]] = [
    _fn("balanceOf", [("account", "address")], ["uint256"]),
    _fn("allowance", [("owner", "address"), ("spender", "address")], ["uint256"]),
    _fn("approve", [("spender", "address"), ("value", "uint256")], ["bool"], "nonpayable"),
    _fn("transfer", [("to", "address"), ("value", "uint256")], ["bool"], "nonpayable"),
    _fn("decimals", [], ["uint8"]),
    _fn("symbol", [], ["string"]),
    _fn("name", [], ["string"]),
    _fn("nonces", [("owner", "address")], ["uint256"]),
    _fn("eip712Domain", [], ["bytes1", "string", "string", "uint256", "address", "bytes32",
                             "uint256[]"]),
]

_PERMIT_TYPES = {
    "Permit": [
        {"name": "owner", "type": "address"},
        {"name": "spender", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "nonce", "type": "uint256"},
        {"name": "deadline", "type": "uint256"},
    ],
}


@dataclass(frozen=True, slots=True)
class Permit:
    """An EIP-2612 permit signature and its deadline (the value and spender are the
    market's to fill: the exact price, the market itself)."""

    deadline: int
    v: int
    r: bytes
    s: bytes


def sign_permit(
    w3: Web3, token: str, owner: LocalAccount, spender: str, value: int, deadline: int
) -> Permit:
    """Sign `owner`'s permit of `value` to `spender`, under the token's own EIP-712 domain
    (read with EIP-5267 `eip712Domain()`) and its next nonce."""
    contract = w3.eth.contract(address=to_checksum_address(token), abi=ERC20_ABI)
    _, name, version, chain_id, verifying, _, _ = contract.functions.eip712Domain().call()
    nonce = int(contract.functions.nonces(owner.address).call())
    signed = owner.sign_message(encode_typed_data(
        domain_data={"name": name, "version": version, "chainId": int(chain_id),
                     "verifyingContract": to_checksum_address(verifying)},
        message_types=_PERMIT_TYPES,
        message_data={"owner": owner.address, "spender": to_checksum_address(spender),
                      "value": value, "nonce": nonce, "deadline": deadline},
    ))
    return Permit(deadline, int(signed.v), int(signed.r).to_bytes(32, "big"),
                  int(signed.s).to_bytes(32, "big"))


_cache: dict[tuple[int, str], AssetInfo] = {}


def asset_info(w3: Web3, asset: str | None) -> AssetInfo:
    """Symbol and decimals of `asset` (None or `ETHER`: ether), read with eth_call once
    per chain and token (a token's metadata does not change). A token without `symbol()`
    or `decimals()` (they are optional in ERC-20) has no symbol and 0 decimals."""
    if asset is None or int(asset, 16) == 0:
        return ETHER_INFO
    address = to_checksum_address(asset)
    key = (int(w3.eth.chain_id), address)
    if key not in _cache:
        token = w3.eth.contract(address=address, abi=ERC20_ABI)
        raw_symbol = _optional_view(token.functions.symbol())
        raw_decimals = _optional_view(token.functions.decimals())
        _cache[key] = shown_asset(address, raw_symbol, raw_decimals)
    return _cache[key]


def supports_permit(w3: Web3, asset: str, owner: str) -> bool:
    """Whether the token answers the EIP-5267 domain and EIP-2612 nonce views a permit
    needs (`sign_permit`); a token without them is paid by approve + request."""
    token = w3.eth.contract(address=to_checksum_address(asset), abi=ERC20_ABI)
    return (_optional_view(token.functions.eip712Domain()) is not None
            and _optional_view(token.functions.nonces(to_checksum_address(owner))) is not None)


def _optional_view(fn: Any) -> Any:
    """The view's answer, or None when the token does not implement it: a revert, no such
    function, or output that does not decode (each backend raises its own type for these,
    eth-tester's outside web3's hierarchy). A transport failure is raised, not None: an
    unreachable node must not make a token look symbol-less."""
    try:
        return fn.call()
    except OSError:
        raise
    except Exception:  # any refusal of an optional view means "absent"
        return None


def token_balance(w3: Web3, asset: str, account: str) -> int:
    """`account`'s balance of the ERC-20 `asset` (in its base units)."""
    token = w3.eth.contract(address=to_checksum_address(asset), abi=ERC20_ABI)
    return int(token.functions.balanceOf(to_checksum_address(account)).call())


def allowance(w3: Web3, asset: str, owner: str, spender: str) -> int:
    token = w3.eth.contract(address=to_checksum_address(asset), abi=ERC20_ABI)
    return int(token.functions.allowance(to_checksum_address(owner),
                                         to_checksum_address(spender)).call())
