"""Contribution bundles: a node opens exactly its own share of exactly this contribution."""

from __future__ import annotations

import base64
import json

import nacl.bindings as sodium
import numpy as np
import pytest

from marketplace.aggregate import (
    BundleMismatch,
    ContributionContext,
    InvalidParameters,
    MalformedBundle,
    OpenFailed,
    Query,
    encode,
    open_share,
    reconstruct,
    seal_contribution,
)
from marketplace.aggregate.field import P, to_bytes
from tests.unit.aggregate.support import AGGREGATOR, CHAIN_ID, DEBIT_ID, Committee, owner

QUERY = Query("histogram", "age", 0.5, 1e-6, bins=tuple(range(0, 1001)))
CTX = ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, owner(1), 1000)
COMMITTEE = Committee.make(3, 2)


def sealed() -> bytes:
    return seal_contribution(CTX, encode(QUERY, 417), COMMITTEE.public, 2)


def edit(bundle: bytes, **changes: object) -> bytes:
    document = json.loads(bundle)
    document.update(changes)
    return json.dumps(document).encode()


def test_round_trip_and_size() -> None:
    bundle = sealed()
    shares = {i: open_share(bundle, i, COMMITTEE.keys[i - 1], CTX) for i in (1, 3)}
    assert reconstruct(shares, 2).tolist() == encode(QUERY, 417).tolist()
    per_node = len(bundle) / 3
    assert per_node <= 8 * 1000 + 400  # ~5.4 bytes per element: base64 of 4-byte elements


@pytest.mark.parametrize(
    "other",
    [
        ContributionContext(CHAIN_ID + 1, AGGREGATOR, DEBIT_ID, owner(1), 1000),
        ContributionContext(CHAIN_ID, b"\x01" * 20, DEBIT_ID, owner(1), 1000),
        ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID + 1, owner(1), 1000),
        ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, owner(2), 1000),
        ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID, owner(1), 999),
    ],
)
def test_refuses_a_bundle_for_another_context(other: ContributionContext) -> None:
    with pytest.raises(BundleMismatch):
        open_share(sealed(), 1, COMMITTEE.keys[0], other)


def test_refuses_a_share_copied_from_another_bundle_under_a_rewritten_header() -> None:
    """The header is rewritten to this debit, but the sealed context still names debit+1."""
    other = ContributionContext(CHAIN_ID, AGGREGATOR, DEBIT_ID + 1, owner(1), 1000)
    copied = seal_contribution(other, encode(QUERY, 3), COMMITTEE.public, 2)
    with pytest.raises(BundleMismatch) as info:
        open_share(edit(copied, debitId=DEBIT_ID), 1, COMMITTEE.keys[0], CTX)
    assert "sealed context" in info.value.reason


def test_refuses_another_nodes_share_moved_to_my_slot() -> None:
    document = json.loads(sealed())
    document["shares"]["1"] = document["shares"]["2"]
    with pytest.raises(OpenFailed):  # sealed to node 2's key
        open_share(json.dumps(document).encode(), 1, COMMITTEE.keys[0], CTX)


def test_refuses_a_share_sealed_to_my_key_for_another_node_index() -> None:
    plain = CTX.prefix(2) + to_bytes(np.zeros(1000, dtype=np.int64))
    box = base64.b64encode(sodium.crypto_box_seal(plain, COMMITTEE.public[0])).decode()
    bundle = edit(sealed(), shares={"1": box})
    with pytest.raises(BundleMismatch):
        open_share(bundle, 1, COMMITTEE.keys[0], CTX)


@pytest.mark.parametrize(
    ("values", "length"), [([P] + [0] * 999, 1000), ([0] * 999, 999), ([0] * 1001, 1001)]
)
def test_refuses_non_elements_and_wrong_lengths(values: list[int], length: int) -> None:
    plain = CTX.prefix(1) + np.asarray(values, dtype="<u4").tobytes()
    box = base64.b64encode(sodium.crypto_box_seal(plain, COMMITTEE.public[0])).decode()
    with pytest.raises(MalformedBundle):
        open_share(edit(sealed(), shares={"1": box}), 1, COMMITTEE.keys[0], CTX)


def test_refuses_an_altered_box() -> None:
    document = json.loads(sealed())
    box = bytearray(base64.b64decode(document["shares"]["1"]))
    box[100] ^= 1
    document["shares"]["1"] = base64.b64encode(bytes(box)).decode()
    with pytest.raises(OpenFailed):
        open_share(json.dumps(document).encode(), 1, COMMITTEE.keys[0], CTX)


@pytest.mark.parametrize(
    "bundle",
    [
        b"\xff",
        b"[]",
        b'{"schema": "datadebit/contribution/v1"}',
        None,  # filled in below: bad base64
        None,  # filled in below: chainId as a string
    ],
)
def test_refuses_malformed_bundles(bundle: bytes | None) -> None:
    if bundle is None:
        bundle = edit(sealed(), shares={"1": "not base64!"})
    with pytest.raises(MalformedBundle):
        open_share(bundle, 1, COMMITTEE.keys[0], CTX)
    with pytest.raises(MalformedBundle):
        open_share(edit(sealed(), chainId=str(CHAIN_ID)), 1, COMMITTEE.keys[0], CTX)


def test_refuses_wrong_schema_missing_share_and_bad_index() -> None:
    with pytest.raises(BundleMismatch):
        open_share(edit(sealed(), schema="datadebit/contribution/v2"), 1, COMMITTEE.keys[0], CTX)
    with pytest.raises(BundleMismatch):
        open_share(edit(sealed(), shares={}), 1, COMMITTEE.keys[0], CTX)
    with pytest.raises(InvalidParameters):
        open_share(sealed(), 0, COMMITTEE.keys[0], CTX)
