"""EIP-712 messages: our lean digest and signatures equal eth-account's; recovery is strict."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_hash.auto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.eip712 import (
    ENCRYPTION_KEY_PURPOSE,
    CommitteeResult,
    Eip712Domain,
    EncryptionKey,
    InvalidTypedMessage,
    KeyRequest,
    MalformedSignature,
    ReleaseReceipt,
    TypedMessage,
    digest,
    recover_signer,
    sign,
    signature_from_hex,
    typed_data,
)

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
P = 2**256 - 2**32 - 977
MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DOMAIN = Eip712Domain(31337, MARKET)  # type: ignore[arg-type]
SIGNER = Account.from_key(b"\x21" * 32)
REQUEST = KeyRequest(debit_id=12, version=3, expiry=1_700_000_600, nonce=bytes(range(32)))
BUYER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
BUYER_KEY = bytes(range(1, 33))
RECEIPT = ReleaseReceipt.for_sealed_share(
    12, 3, 2, b"sealed share bytes", 4242,
    epoch=1, buyer=BUYER, buyer_key=BUYER_KEY, request_digest=digest(DOMAIN, REQUEST),
)

uint = st.integers(min_value=0, max_value=2**256 - 1)
requests = st.builds(
    KeyRequest,
    debit_id=uint,
    version=st.integers(0, 2**32 - 1),
    expiry=st.integers(0, 2**64 - 1),
    nonce=st.binary(min_size=32, max_size=32),
)
receipts = st.builds(
    ReleaseReceipt,
    debit_id=uint,
    version=st.integers(0, 2**32 - 1),
    node=st.integers(0, 255),
    epoch=st.integers(0, 2**64 - 1),
    buyer=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    buyer_key_hash=st.binary(min_size=32, max_size=32),
    request_digest=st.binary(min_size=32, max_size=32),
    sealed_share_hash=st.binary(min_size=32, max_size=32),
    block=st.integers(0, 2**64 - 1),
)
committee_results = st.builds(
    CommitteeResult,
    ceremony=st.integers(0, 2**64 - 1),
    epoch=st.integers(0, 2**64 - 1),
    committee_key=st.binary(min_size=32, max_size=32),
    share_keys=st.lists(st.binary(min_size=32, max_size=32), max_size=16).map(tuple),
    qualified=uint,
    transcript_hash=st.binary(min_size=32, max_size=32),
)
domains = st.builds(
    Eip712Domain,
    chain_id=st.integers(1, 2**64),
    market=st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
)


def reference_digest(domain: Eip712Domain, message: TypedMessage) -> bytes:
    signable = encode_typed_data(full_message=typed_data(domain, message))
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


@settings(max_examples=40)
@given(domains, st.one_of(requests, receipts, committee_results, st.just(EncryptionKey())))
def test_digest_equals_eth_accounts_encoder(domain: Eip712Domain, message: TypedMessage) -> None:
    assert digest(domain, message) == reference_digest(domain, message)


@settings(max_examples=15)
@given(st.one_of(requests, receipts, committee_results))
def test_sign_equals_eth_accounts_sign_typed_data(message: TypedMessage) -> None:
    expected = SIGNER.sign_typed_data(full_message=typed_data(DOMAIN, message)).signature
    signature = sign(SIGNER, DOMAIN, message)
    assert signature == bytes(expected)
    assert recover_signer(DOMAIN, message, signature) == SIGNER.address


def test_payload_is_standard_eth_sign_typed_data_v4() -> None:
    payload = json.loads(json.dumps(typed_data(DOMAIN, REQUEST)))
    assert payload["primaryType"] == "KeyRequest"
    assert payload["domain"] == {
        "name": "DataDebit",
        "version": "1",
        "chainId": 31337,
        "verifyingContract": MARKET,
    }
    assert [f["name"] for f in payload["types"]["EIP712Domain"]] == [
        "name",
        "version",
        "chainId",
        "verifyingContract",
    ]
    assert payload["types"]["KeyRequest"] == [
        {"name": "debitId", "type": "uint256"},
        {"name": "version", "type": "uint32"},
        {"name": "expiry", "type": "uint64"},
        {"name": "nonce", "type": "bytes32"},
    ]
    assert payload["message"] == {
        "debitId": "12",
        "version": "3",
        "expiry": "1700000600",
        "nonce": "0x" + bytes(range(32)).hex(),
    }


def test_encryption_key_message() -> None:
    payload = typed_data(DOMAIN, EncryptionKey())
    assert payload["types"]["EncryptionKey"] == [{"name": "purpose", "type": "string"}]
    assert payload["message"] == {"purpose": "datadebit buyer encryption key v1"}
    assert EncryptionKey().purpose == ENCRYPTION_KEY_PURPOSE


def test_receipt_hashes_the_sealed_share_and_buyer_key_with_sha256() -> None:
    assert RECEIPT.sealed_share_hash == hashlib.sha256(b"sealed share bytes").digest()
    assert RECEIPT.buyer_key_hash == hashlib.sha256(BUYER_KEY).digest()
    assert RECEIPT.request_digest == digest(DOMAIN, REQUEST)
    assert (RECEIPT.epoch, RECEIPT.buyer) == (1, BUYER)
    assert ReleaseReceipt.from_message(RECEIPT.to_message()) == RECEIPT
    signature = sign(SIGNER, DOMAIN, RECEIPT)
    assert recover_signer(DOMAIN, RECEIPT, signature) == SIGNER.address


def test_receipt_type_and_wire_form() -> None:
    """The 9-field type in its exact order (an auditor hashes it from docs/protocol.md)."""
    payload = typed_data(DOMAIN, RECEIPT)
    assert payload["types"]["ReleaseReceipt"] == [
        {"name": "debitId", "type": "uint256"},
        {"name": "version", "type": "uint32"},
        {"name": "node", "type": "uint8"},
        {"name": "epoch", "type": "uint64"},
        {"name": "buyer", "type": "address"},
        {"name": "buyerKeyHash", "type": "bytes32"},
        {"name": "requestDigest", "type": "bytes32"},
        {"name": "sealedShareHash", "type": "bytes32"},
        {"name": "block", "type": "uint64"},
    ]
    message = RECEIPT.to_message()
    assert list(message) == [name for name, _ in ReleaseReceipt.FIELDS]
    assert message["buyer"] == BUYER and message["epoch"] == 1
    assert payload["message"]["block"] == "4242"
    lower = {**message, "buyer": BUYER.lower()}
    assert ReleaseReceipt.from_message(lower).buyer == BUYER


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("epoch", 2**64),
        ("epoch", "1"),
        ("buyer", "0x1234"),
        ("buyer", BUYER[2:]),
        ("buyer", None),
        ("buyerKeyHash", "0x" + "00" * 31),
        ("requestDigest", None),
    ],
)
def test_a_malformed_receipt_is_refused(name: str, value: object) -> None:
    with pytest.raises(InvalidTypedMessage):
        ReleaseReceipt.from_message({**RECEIPT.to_message(), name: value})


def test_request_wire_form_round_trips() -> None:
    message = REQUEST.to_message()
    assert message["debitId"] == 12
    assert KeyRequest.from_message(json.loads(json.dumps(message))) == REQUEST


@pytest.mark.parametrize(
    "changes",
    [{"debit_id": 13}, {"version": 4}, {"expiry": 1_700_000_601}, {"nonce": bytes(32)}],
)
def test_a_changed_request_does_not_recover_the_signer(changes: dict[str, Any]) -> None:
    signature = sign(SIGNER, DOMAIN, REQUEST)
    fields = {
        "debit_id": REQUEST.debit_id,
        "version": REQUEST.version,
        "expiry": REQUEST.expiry,
        "nonce": REQUEST.nonce,
    }
    other = KeyRequest(**{**fields, **changes})
    assert recover_signer(DOMAIN, other, signature) != SIGNER.address


def test_another_domain_does_not_recover_the_signer() -> None:
    signature = sign(SIGNER, DOMAIN, REQUEST)
    assert recover_signer(Eip712Domain(1, MARKET), REQUEST, signature) != SIGNER.address  # type: ignore[arg-type]
    other_market = Eip712Domain(31337, "0x" + "22" * 20)  # type: ignore[arg-type]
    assert recover_signer(other_market, REQUEST, signature) != SIGNER.address


@settings(max_examples=60)
@given(st.integers(min_value=0, max_value=65 * 8 - 1))
def test_a_flipped_signature_bit_never_recovers_the_signer(bit: int) -> None:
    signature = bytearray(sign(SIGNER, DOMAIN, REQUEST))
    signature[bit // 8] ^= 1 << (bit % 8)
    try:
        recovered: str | None = recover_signer(DOMAIN, REQUEST, bytes(signature))
    except MalformedSignature:
        recovered = None
    assert recovered != SIGNER.address


def _first_r_off_the_curve() -> int:
    """An r that is no point's x on secp256k1, so no key recovers."""
    r = 1
    while pow((r**3 + 7) % P, (P - 1) // 2, P) == 1:
        r += 1
    return r


def _with(r: int | None = None, s: int | None = None, v: int | None = None) -> bytes:
    good = sign(SIGNER, DOMAIN, REQUEST)
    r_bytes = good[:32] if r is None else r.to_bytes(32, "big")
    s_bytes = good[32:64] if s is None else s.to_bytes(32, "big")
    return r_bytes + s_bytes + (good[64:] if v is None else bytes([v]))


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param(b"", id="empty"),
        pytest.param(bytes(64), id="64 bytes"),
        pytest.param(bytes(66), id="66 bytes"),
        pytest.param(_with(v=29), id="v=29"),
        pytest.param(_with(v=2), id="v=2"),
        pytest.param(_with(r=0), id="r=0"),
        pytest.param(_with(r=N), id="r=N"),
        pytest.param(_with(s=0), id="s=0"),
        pytest.param(_with(s=N - 1), id="high s"),
        pytest.param(_with(r=_first_r_off_the_curve()), id="r off the curve"),
    ],
)
def test_a_malformed_signature_raises_the_specific_error(signature: bytes) -> None:
    with pytest.raises(MalformedSignature):
        recover_signer(DOMAIN, REQUEST, signature)


def test_v_as_0_or_1_is_accepted() -> None:
    good = sign(SIGNER, DOMAIN, REQUEST)
    assert recover_signer(DOMAIN, REQUEST, good[:64] + bytes([good[64] - 27])) == SIGNER.address


def test_signature_from_hex() -> None:
    good = sign(SIGNER, DOMAIN, REQUEST)
    assert signature_from_hex("0x" + good.hex()) == good
    for text in ["", good.hex(), "0x" + good.hex()[:-2], "0x" + "zz" * 65]:
        with pytest.raises(MalformedSignature):
            signature_from_hex(text)


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"debitId": 1, "version": 1, "expiry": 1},
        {"debitId": -1, "version": 1, "expiry": 1, "nonce": "0x" + "00" * 32},
        {"debitId": 1, "version": 2**32, "expiry": 1, "nonce": "0x" + "00" * 32},
        {"debitId": 1, "version": 1, "expiry": 2**64, "nonce": "0x" + "00" * 32},
        {"debitId": True, "version": 1, "expiry": 1, "nonce": "0x" + "00" * 32},
        {"debitId": "1", "version": 1, "expiry": 1, "nonce": "0x" + "00" * 32},
        {"debitId": 1, "version": 1, "expiry": 1, "nonce": "0x" + "00" * 31},
        {"debitId": 1, "version": 1, "expiry": 1, "nonce": "00" * 32},
    ],
)
def test_a_malformed_request_is_refused(message: dict[str, Any]) -> None:
    with pytest.raises(InvalidTypedMessage):
        KeyRequest.from_message(message)


def test_values_are_range_checked() -> None:
    with pytest.raises(InvalidTypedMessage):
        KeyRequest(1, 1, 1, bytes(31))
    with pytest.raises(InvalidTypedMessage):
        ReleaseReceipt(1, 1, 256, 1, BUYER, bytes(32), bytes(32), bytes(32), 1)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypedMessage):
        Eip712Domain(-1, MARKET)  # type: ignore[arg-type]
    with pytest.raises(InvalidTypedMessage):
        Eip712Domain(1, "0x1234")  # type: ignore[arg-type]


def test_domain_normalises_the_market_address() -> None:
    lower = Eip712Domain(31337, MARKET.lower())  # type: ignore[arg-type]
    assert lower.market == MARKET
    assert lower == DOMAIN
    assert lower.separator == DOMAIN.separator


def test_committee_result_type_and_share_keys_hash() -> None:
    """The 6-field type in its exact order (the contract hashes the same string), and
    shareKeysHash = keccak256(Y_1 || ... || Y_n) as abi.encodePacked(bytes32[]) gives it."""
    keys = (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    result = CommitteeResult(ceremony=3, epoch=2, committee_key=b"\x11" * 32, share_keys=keys,
                             qualified=0b101, transcript_hash=b"\x22" * 32)
    payload = typed_data(DOMAIN, result)
    assert payload["types"]["CommitteeResult"] == [
        {"name": "ceremony", "type": "uint64"},
        {"name": "epoch", "type": "uint64"},
        {"name": "committeeKey", "type": "bytes32"},
        {"name": "shareKeysHash", "type": "bytes32"},
        {"name": "qualified", "type": "uint256"},
        {"name": "transcriptHash", "type": "bytes32"},
    ]
    assert result.share_keys_hash == keccak(b"".join(keys))
    assert payload["message"]["shareKeysHash"] == "0x" + keccak(b"".join(keys)).hex()
    assert payload["message"]["qualified"] == "5"
    assert recover_signer(DOMAIN, result, sign(SIGNER, DOMAIN, result)) == SIGNER.address


@pytest.mark.parametrize(
    "changes",
    [{"ceremony": -1}, {"epoch": 2**64}, {"committee_key": b"\x11" * 31},
     {"share_keys": [b"\x01" * 32]}, {"share_keys": (b"\x01" * 33,)}, {"qualified": 2**256},
     {"transcript_hash": b""}],
)
def test_a_malformed_committee_result_is_refused(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {
        "ceremony": 1, "epoch": 1, "committee_key": b"\x11" * 32, "share_keys": (),
        "qualified": 1, "transcript_hash": b"\x22" * 32,
    }
    with pytest.raises(InvalidTypedMessage):
        CommitteeResult(**{**fields, **changes})
