"""A real wallet implementation signs our EIP-712 payloads to the same bytes.

anvil answers `eth_signTypedData_v4` (the MetaMask RPC) for its dev accounts with its own
EIP-712 encoder (Rust, alloy), independent of eth-account. Its account #0 is the vector
buyer wallet and #1 the vector node wallet of tests/vectors/keyrelease.json.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest
from eth_account import Account

from marketplace.eip712 import Eip712Domain, KeyRequest, sign, typed_data
from scripts.make_keyrelease_vectors import VECTORS

pytestmark = pytest.mark.integration


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.load(response)
    assert "error" not in answer, answer
    return answer["result"]


@pytest.mark.parametrize("name", ["encryptionKey", "keyRequest", "releaseReceipt"])
def test_anvil_signs_the_vector_payloads_to_the_vector_signatures(
    anvil_url: str, name: str
) -> None:
    entry = json.loads(VECTORS.read_text())["eip712"][name]
    signature = _rpc(
        anvil_url, "eth_signTypedData_v4", [entry["signer"], json.dumps(entry["typedData"])]
    )
    assert signature == entry["signature"]


def test_anvil_accepts_uint256_values_beyond_javascript_numbers(anvil_url: str) -> None:
    wallet = Account.from_key(json.loads(VECTORS.read_text())["buyer"]["walletKey"])
    domain = Eip712Domain(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")  # type: ignore[arg-type]
    request = KeyRequest(2**255 + 1, 2**32 - 1, 2**64 - 1, b"\xff" * 32)
    signature = _rpc(
        anvil_url,
        "eth_signTypedData_v4",
        [wallet.address, json.dumps(typed_data(domain, request))],
    )
    assert signature == "0x" + sign(wallet, domain, request).hex()
