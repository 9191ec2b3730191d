"""Turn revert data from any backend into the matching `ContractRevert` subclass.

web3 hands custom-error data over as `exc.data` (JSON-RPC nodes such as anvil); the
in-process eth-tester backend only puts a bytes literal in the message, so both are read.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_utils.abi import function_signature_to_4byte_selector
from eth_utils.address import to_checksum_address

from marketplace.chain.errors import ContractRevert

_BYTES_IN_MESSAGE = re.compile(r"execution reverted: (b'.*'|b\".*\")", re.DOTALL)
_BUILTIN_ERRORS: tuple[dict[str, Any], ...] = (
    {"type": "error", "name": "Error", "inputs": [{"name": "reason", "type": "string"}]},
    {"type": "error", "name": "Panic", "inputs": [{"name": "code", "type": "uint256"}]},
)


def revert_data(exc: BaseException) -> bytes | None:
    """The raw revert data carried by a backend's exception, if any."""
    data = getattr(exc, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    message = exc.args[0] if exc.args else None
    if isinstance(message, str):
        match = _BYTES_IN_MESSAGE.fullmatch(message)
        if match:
            value = ast.literal_eval(match.group(1))
            if isinstance(value, bytes):
                return value
    return None


class RevertDecoder:
    """Maps 4-byte error selectors of an ABI to exceptions with decoded arguments."""

    def __init__(self, abi: Iterable[dict[str, Any]]) -> None:
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for entry in (*abi, *_BUILTIN_ERRORS):
            if entry.get("type") != "error":
                continue
            types = [abi_type(i) for i in entry["inputs"]]
            names = [i["name"] for i in entry["inputs"]]
            selector = function_signature_to_4byte_selector(f"{entry['name']}({','.join(types)})")
            self._errors[selector] = (entry["name"], names, types)

    def decode(self, data: bytes) -> ContractRevert:
        """The exception for `data`; unknown selectors keep their raw bytes in `fields`."""
        known = self._errors.get(data[:4])
        if known is None:
            return ContractRevert({"data": data}, name="unknown")
        name, names, types = known
        try:
            values = abi_decode(types, data[4:])
        except Exception:  # malformed data from a misbehaving node
            return ContractRevert({"data": data}, name=name)
        fields = {
            # checksummed, like the addresses in events and views
            n: to_checksum_address(v) if t == "address" else v
            for n, t, v in zip(names, types, values, strict=True)
        }
        return ContractRevert.for_error(name, fields)


def abi_type(param: dict[str, Any]) -> str:
    """The canonical type of an ABI parameter, as selectors and topics hash it."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(abi_type(c) for c in param["components"])
        return f"({inner}){kind[5:]}"
    return kind
