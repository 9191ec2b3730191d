"""The chain suite runs every test against the embedded chain and against a real anvil.

One market is deployed per backend per session; each test runs inside a snapshot that
is reverted afterwards, so tests see a fresh market and cannot leak state.

Shared helpers live here too (import them as `from tests.chain.conftest import ...`):
typed events of a transaction, block times, gas costs, listing/debit set-up, a sender for
test-only contracts, and the escrow invariant.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import solcx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from marketplace.chain.events import MarketEvent
from marketplace.chain.market import MarketClient, translated_errors
from marketplace.chain.provider import DevChain, connect, endpoint_name
from marketplace.chain.reverts import RevertDecoder
from marketplace.chain.types import Committee, DebitId, ListingId, Sent
from scripts.compile_contracts import CONTRACTS, WRAPPER
from scripts.servers.anvil import start_anvil

ETHER = 10**18
ZERO_ADDRESS = "0x" + "00" * 20

#: A buyer's X25519 public key and a purpose hash (any non-zero 32 bytes will do).
BUYER_KEY = keccak(b"buyer x25519 public key")
PURPOSE = keccak(b"purpose: research")
TERMS = keccak(b"terms of use v1")
#: A binary CIDv1 (raw codec, sha2-256 multihash) as `ipfs add --cid-version=1` gives it.
CID = bytes([0x01, 0x55, 0x12, 0x20]) + keccak(b"ciphertext")
CAPSULE = bytes(range(168))

TEST_CONTRACTS = Path(__file__).parent / "contracts"

E = TypeVar("E", bound=MarketEvent)


@dataclass
class Actors:
    deployer: LocalAccount
    owner: LocalAccount
    buyer: LocalAccount
    other_buyer: LocalAccount
    stranger: LocalAccount
    nodes: list[LocalAccount]


@dataclass
class ChainEnv:
    backend: str
    w3: Web3
    dev: DevChain
    market: MarketClient
    actors: Actors
    committee: Committee


def make_committee(nodes: Sequence[LocalAccount], threshold: int = 2) -> Committee:
    return Committee(
        committee_key=b"\x11" * 32,
        threshold=threshold,
        nodes=tuple(n.address for n in nodes),
        share_keys=tuple(bytes([0x20 + i]) * 32 for i in range(len(nodes))),
    )


def _env(backend: str, w3: Web3) -> ChainEnv:
    dev = DevChain(w3)
    actors = Actors(
        deployer=Account.create(), owner=Account.create(), buyer=Account.create(),
        other_buyer=Account.create(), stranger=Account.create(),
        nodes=[Account.create() for _ in range(3)],
    )
    for acct in (actors.deployer, actors.owner, actors.buyer, actors.other_buyer,
                 actors.stranger, *actors.nodes):
        dev.fund(acct.address, 100 * ETHER)
    committee = make_committee(actors.nodes)
    market = MarketClient.deploy_dealt(w3, actors.deployer, committee, actors.nodes).value
    return ChainEnv(backend, w3, dev, market, actors, committee)


@pytest.fixture(scope="session")
def anvil_url() -> Iterator[str]:
    with start_anvil() as url:
        yield url


@pytest.fixture(scope="session", params=["embedded", "anvil"])
def chain_session(request: pytest.FixtureRequest) -> ChainEnv:
    if request.param == "embedded":
        return _env("embedded", connect())
    return _env("anvil", connect(request.getfixturevalue("anvil_url")))


@pytest.fixture
def env(chain_session: ChainEnv) -> Iterator[ChainEnv]:
    snapshot = chain_session.dev.snapshot()
    try:
        yield chain_session
    finally:
        chain_session.dev.revert(snapshot)


# ---------------------------------------------------------------- receipts and events


def receipt_of(env: ChainEnv, sent: Sent[Any]) -> TxReceipt:
    return env.w3.eth.get_transaction_receipt(sent.tx_hash)  # type: ignore[arg-type]


def events_of(env: ChainEnv, sent: Sent[Any]) -> list[MarketEvent]:
    """Every log of the transaction, decoded; a foreign log fails the test."""
    events = [env.market.decoder.decode(log) for log in receipt_of(env, sent)["logs"]]
    for event in events:
        assert event.ref.tx_hash == sent.tx_hash
        assert event.ref.block_number == sent.block_number
    return events


def only_event(env: ChainEnv, sent: Sent[Any], kind: type[E]) -> E:
    """The transaction's one and only event, which must be a `kind`."""
    events = events_of(env, sent)
    assert [type(e) for e in events] == [kind]
    event = events[0]
    assert isinstance(event, kind)
    return event


def block_time(env: ChainEnv, sent: Sent[Any]) -> int:
    return int(env.w3.eth.get_block(sent.block_number)["timestamp"])


def gas_cost(env: ChainEnv, sent: Sent[Any]) -> int:
    """Wei the sender paid for the transaction's gas."""
    receipt = receipt_of(env, sent)
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def eth_balance(env: ChainEnv, address: str) -> int:
    return int(env.w3.eth.get_balance(Web3.to_checksum_address(address)))


# ---------------------------------------------------------------- set-up


def new_listing(
    env: ChainEnv,
    *,
    owner: LocalAccount | None = None,
    price: int = 1_000_003,
    period: int = 977,
    auto: bool = True,
) -> ListingId:
    return env.market.create_listing(
        owner or env.actors.owner, price_per_period=price, period_seconds=period,
        auto_approve=auto, terms_hash=TERMS, metadata_uri="ipfs://listing",
    ).value


def new_debit(
    env: ChainEnv,
    listing_id: int,
    *,
    buyer: LocalAccount | None = None,
    periods: int = 3,
) -> Sent[DebitId]:
    return env.market.request_debit(
        buyer or env.actors.buyer, listing_id, periods=periods, buyer_key=BUYER_KEY,
        purpose_hash=PURPOSE,
    )


def publish(env: ChainEnv, listing_id: int, *, owner: LocalAccount | None = None) -> Sent[Any]:
    return env.market.publish_version(owner or env.actors.owner, listing_id, CID, CAPSULE)


def accrued(amount: int, start: int, end: int, at: int) -> int:
    """What the contract's linear stream has released to the owner at time `at`."""
    return amount * (min(at, end) - start) // (end - start)


def assert_escrow_invariant(
    env: ChainEnv, debit_ids: Iterable[int], accounts: Iterable[str]
) -> None:
    """Contract balance == credited balances + unaccrued escrow, for a market whose only
    debits are `debit_ids` and whose only credited accounts are among `accounts`."""
    credited = sum(env.market.balance_of(a) for a in set(accounts))
    escrow = 0
    for debit_id in debit_ids:
        debit = env.market.debit(debit_id)
        escrow += debit.amount - debit.settled
    assert env.market.contract_balance() == credited + escrow


# ---------------------------------------------------------------- test-only contracts


@dataclass(frozen=True)
class CompiledContract:
    abi: list[dict[str, Any]]
    bytecode: str


@pytest.fixture(scope="session")
def helper_contracts() -> dict[str, CompiledContract]:
    """tests/chain/contracts/*.sol, compiled once per session through the solcjs wrapper
    (never written to contracts/artifacts). They import the market's interface."""
    sources = {p.name: {"content": p.read_text()} for p in sorted(TEST_CONTRACTS.glob("*.sol"))}
    sources["IDataMarket.sol"] = {"content": (CONTRACTS / "IDataMarket.sol").read_text()}
    output = solcx.compile_standard(
        {
            "language": "Solidity",
            "sources": sources,
            "settings": {
                "evmVersion": "cancun",
                "optimizer": {"enabled": True, "runs": 200},
                "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
            },
        },
        solc_binary=WRAPPER,
        solc_version=None,
        allow_empty=False,
    )
    errors = [e["formattedMessage"] for e in output.get("errors", []) if e["severity"] == "error"]
    assert not errors, errors
    compiled = {}
    for path in TEST_CONTRACTS.glob("*.sol"):
        for name, out in output["contracts"][path.name].items():
            compiled[name] = CompiledContract(out["abi"], "0x" + out["evm"]["bytecode"]["object"])
    return compiled


def send_call(
    env: ChainEnv, sender: LocalAccount, fn: Any, *, value: int = 0,
    abi: Iterable[dict[str, Any]] = (),
) -> TxReceipt:
    """Sign and send a call to any contract; reverts come back as the custom errors of
    `abi` plus the market's (so errors bubbled up from the market keep their names)."""
    reverts = RevertDecoder([*env.market.artifact.abi, *abi])
    with translated_errors(reverts, endpoint_name(env.w3)):
        tx = fn.build_transaction({
            "from": sender.address,
            "value": value,
            "nonce": env.w3.eth.get_transaction_count(sender.address, "pending"),
        })
        tx["gas"] = int(tx["gas"] * 1.2)
        signed = sender.sign_transaction(tx)
        tx_hash = env.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = env.w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 1
    return receipt


def deploy_contract(
    env: ChainEnv, compiled: CompiledContract, *args: Any, sender: LocalAccount | None = None
) -> Contract:
    factory = env.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = send_call(env, sender or env.actors.deployer, factory.constructor(*args))
    address = receipt["contractAddress"]
    assert address is not None
    return env.w3.eth.contract(address=address, abi=compiled.abi)
