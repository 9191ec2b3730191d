"""The owner's contribution bundle (schema `datadebit/contribution/v1`, docs/protocol.md §20).

JSON: {"schema", "chainId", "aggregator", "debitId", "owner", "dimension", "shares":
{"<node index>": base64(SealedBox(node X25519 key, context || vector))}}, where context =
`datadebit/contribution/v1` || chainId(32 BE) || aggregator(20) || debitId(32 BE) ||
owner(20) || node index(1) || dimension(4 BE) and the vector is little-endian uint32s.
The context inside the box binds each share to its debit, owner, node and size: a node
refuses a share copied from another bundle, whatever the JSON around it says.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.bindings as sodium
import nacl.exceptions
import nacl.public

from marketplace.aggregate.errors import (
    BundleMismatch,
    InvalidParameters,
    MalformedBundle,
    OpenFailed,
)
from marketplace.aggregate.field import P, Vector, check_elements, from_bytes, to_bytes
from marketplace.aggregate.shamir import MAX_NODES, share

SCHEMA = "datadebit/contribution/v1"
MAX_DIMENSION = 2**24
_UINT256 = 2**256


@dataclass(frozen=True, slots=True)
class ContributionContext:
    """What a share is for: read from the chain by the node, chosen by the owner."""

    chain_id: int
    aggregator: bytes
    debit_id: int
    owner: bytes
    dimension: int

    def __post_init__(self) -> None:
        if not 0 <= self.chain_id < _UINT256 or not 0 <= self.debit_id < _UINT256:
            raise InvalidParameters("chain id and debit id are uint256")
        if len(self.aggregator) != 20 or len(self.owner) != 20:
            raise InvalidParameters("aggregator and owner are 20-byte addresses")
        if not 1 <= self.dimension <= MAX_DIMENSION:
            raise InvalidParameters(f"dimension must be in 1..{MAX_DIMENSION}")

    def prefix(self, node_index: int) -> bytes:
        """The bytes sealed in front of node `node_index`'s vector."""
        return b"".join(
            (
                SCHEMA.encode(),
                self.chain_id.to_bytes(32, "big"),
                self.aggregator,
                self.debit_id.to_bytes(32, "big"),
                self.owner,
                bytes([node_index]),
                self.dimension.to_bytes(4, "big"),
            )
        )


def seal_shares(
    context: ContributionContext, shares: Mapping[int, Vector], node_keys: Sequence[bytes]
) -> bytes:
    """The bundle for already-made shares (node i's sealed to node_keys[i-1])."""
    sealed: dict[str, str] = {}
    for index in sorted(shares):
        vector = shares[index]
        if not 1 <= index <= len(node_keys) or vector.shape != (context.dimension,):
            raise InvalidParameters(f"share for node {index} does not fit the committee/size")
        plain = context.prefix(index) + to_bytes(vector)
        box = sodium.crypto_box_seal(plain, node_keys[index - 1])
        sealed[str(index)] = base64.b64encode(box).decode()
    document = {
        "schema": SCHEMA,
        "chainId": context.chain_id,
        "aggregator": "0x" + context.aggregator.hex(),
        "debitId": context.debit_id,
        "owner": "0x" + context.owner.hex(),
        "dimension": context.dimension,
        "shares": sealed,
    }
    return json.dumps(document, separators=(",", ":")).encode()


def seal_contribution(
    context: ContributionContext, vector: Vector, node_keys: Sequence[bytes], threshold: int
) -> bytes:
    """Shamir-share an encoded vector over the committee and seal each share to its node."""
    if vector.shape != (context.dimension,):
        raise InvalidParameters(f"vector of shape {vector.shape}, context says {context.dimension}")
    return seal_shares(context, share(vector, len(node_keys), threshold), node_keys)


def _address(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 42 or not value.startswith("0x"):
        raise MalformedBundle(f"{what} is not a 0x-hex address")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as e:
        raise MalformedBundle(f"{what} is not a 0x-hex address") from e


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedBundle(f"{what} is not an integer")
    return value


def open_share(
    bundle: bytes,
    node_index: int,
    node_private_key: nacl.public.PrivateKey,
    expected: ContributionContext,
) -> Vector:
    """Node `node_index`'s share of the bundle, checked against the on-chain context.

    Refuses a malformed bundle, one whose header or sealed context names another chain,
    aggregator, debit, owner, node or dimension, a box that does not open, a wrong length,
    and any element >= p."""
    if not 1 <= node_index <= MAX_NODES:
        raise InvalidParameters(f"node index {node_index} is outside 1..255")
    try:
        document = json.loads(bundle)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedBundle("not JSON") from e
    if not isinstance(document, dict) or not isinstance(document.get("shares"), dict):
        raise MalformedBundle("not a contribution bundle object")
    if document.get("schema") != SCHEMA:
        raise BundleMismatch(f"schema is not {SCHEMA}")
    header = (
        _int(document.get("chainId"), "chainId"),
        _address(document.get("aggregator"), "aggregator"),
        _int(document.get("debitId"), "debitId"),
        _address(document.get("owner"), "owner"),
        _int(document.get("dimension"), "dimension"),
    )
    wanted = (
        expected.chain_id,
        expected.aggregator,
        expected.debit_id,
        expected.owner,
        expected.dimension,
    )
    names = ("chainId", "aggregator", "debitId", "owner", "dimension")
    for name, found, want in zip(names, header, wanted, strict=True):
        if found != want:
            raise BundleMismatch(f"{name} differs from the on-chain contribution")
    encoded = document["shares"].get(str(node_index))
    if not isinstance(encoded, str):
        raise BundleMismatch(f"no share for node {node_index}")
    try:
        box = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise MalformedBundle(f"node {node_index}'s share is not base64") from e
    try:
        plain = sodium.crypto_box_seal_open(
            box, bytes(node_private_key.public_key), bytes(node_private_key)
        )
    except nacl.exceptions.CryptoError as e:
        raise OpenFailed(f"node {node_index}'s share is sealed to another key or altered") from e
    prefix = expected.prefix(node_index)
    if plain[: len(prefix)] != prefix:
        raise BundleMismatch("the sealed context names another debit, owner, node or size")
    body = plain[len(prefix) :]
    if len(body) != 4 * expected.dimension:
        raise MalformedBundle(f"{len(body)} share bytes for dimension {expected.dimension}")
    vector = from_bytes(body, expected.dimension)
    if not check_elements(vector, prime=P):
        raise MalformedBundle("a share element is not below p")
    return vector
