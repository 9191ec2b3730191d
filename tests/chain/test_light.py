"""`LightMarket`, the CLI's web3-free chain reads, answers exactly what `MarketClient`
answers, with the same errors; `private_key_address` is eth_account's address.

On a real anvil (LightMarket speaks HTTP JSON-RPC only), in a snapshot per test.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from marketplace.app.reads import debits_of
from marketplace.chain.errors import ChainError, ChainUnavailable, UnknownDebit
from marketplace.chain.light import LightMarket, private_key_address
from marketplace.chain.provider import connect
from marketplace.chain.types import DebitState
from marketplace.cli.config import ConfigError, open_light_market, open_market
from marketplace.wallet import WalletError, from_private_key
from scripts.servers.anvil import free_port
from tests.chain.conftest import ChainEnv, _env, new_debit, new_listing
from tests.chain.test_hot_reads_transport import _read_request, fake_node

#: secp256k1's group order: private keys are 1 .. N - 1
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture(scope="module")
def anvil_session(anvil_url: str) -> ChainEnv:
    return _env("anvil", connect(anvil_url))


@pytest.fixture
def env(anvil_session: ChainEnv) -> Iterator[ChainEnv]:
    snapshot = anvil_session.dev.snapshot()
    try:
        yield anvil_session
    finally:
        anvil_session.dev.revert(snapshot)


def light(env: ChainEnv, **kwargs: int) -> LightMarket:
    return LightMarket(env.w3.provider.endpoint_uri, env.market.address,  # type: ignore[attr-defined]
                       **kwargs)


def test_debits_in_every_state_read_as_market_client_reads_them(env: ChainEnv) -> None:
    market, owner, buyer = env.market, env.actors.owner, env.actors.buyer
    auto, manual = new_listing(env), new_listing(env, auto=False)
    requested = new_debit(env, manual).value
    active = new_debit(env, auto).value
    rejected = new_debit(env, manual).value
    market.reject(owner, rejected)
    cancelled = new_debit(env, manual).value
    market.cancel(buyer, cancelled)
    revoked = new_debit(env, manual, periods=2).value
    market.consent(owner, revoked)
    env.dev.advance(100)
    market.revoke(owner, revoked)
    others = new_debit(env, auto, buyer=env.actors.other_buyer).value

    reads = light(env)
    ids = [requested, active, rejected, cancelled, revoked, others]
    states = {reads.debit(i).state for i in ids}
    assert states == set(DebitState) - {DebitState.NONE}
    for debit_id in ids:
        assert reads.debit(debit_id) == market.debit(debit_id)
    for who in (buyer, env.actors.other_buyer, env.actors.stranger):
        assert reads.debit_ids_requested_by(who.address) == \
            market.debit_ids_requested_by(who.address)
        assert debits_of(reads, who.address) == debits_of(market, who.address)
    assert reads.debit_ids_requested_by(buyer.address) == ids[:-1]
    assert reads.debit_ids_requested_by(buyer.address.lower()) == ids[:-1]
    assert reads.chain_id() == market.chain_id
    assert reads.has_code()


def test_unknown_debit_is_the_same_error(env: ChainEnv) -> None:
    reads = light(env)
    with pytest.raises(UnknownDebit) as web3_error:
        env.market.debit(999)
    with pytest.raises(UnknownDebit) as light_error:
        reads.debit(999)
    assert light_error.value.fields == web3_error.value.fields == {"debitId": 999}
    assert str(light_error.value) == str(web3_error.value)


def test_many_debits_across_log_chunks(env: ChainEnv) -> None:
    """Each debit is mined in its own block (anvil automines): with 2 blocks per
    eth_getLogs, the 9 of this buyer span several chunks, among another buyer's."""
    listing = new_listing(env)
    mine, start = [], env.w3.eth.block_number + 1
    for i in range(9):
        mine.append(new_debit(env, listing, periods=1).value)
        if i % 3 == 0:
            new_debit(env, listing, buyer=env.actors.other_buyer, periods=1)
    end = env.w3.eth.block_number
    buyer = env.actors.buyer.address
    chunked = light(env, max_block_range=2)
    assert chunked.debit_ids_requested_by(buyer, start) == mine
    assert chunked.debit_ids_requested_by(buyer, start) == env.market.debit_ids_requested_by(
        buyer, start)
    assert light(env, max_block_range=1).debit_ids_requested_by(buyer, start, end) == mine
    # a window: only the debits mined in it
    window = env.market.events().read(start, start + 5)
    in_window = [e.debit_id for e in window if getattr(e, "buyer", None) == buyer]
    assert chunked.debit_ids_requested_by(buyer, start, start + 5) == in_window
    assert chunked.debit_ids_requested_by(buyer, end + 1, end) == []  # an empty range


def test_unreachable_rpc_is_chain_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # bound and released: nothing listens
    reads = LightMarket(url, "0x" + "11" * 20, timeout=2)
    for read in (reads.has_code, reads.chain_id, lambda: reads.debit(1),
                 lambda: reads.debit_ids_requested_by("0x" + "22" * 20)):
        with pytest.raises(ChainUnavailable) as e:
            read()
        assert e.value.endpoint == url
        assert isinstance(e.value, ConnectionError)


def test_open_light_market_checks_code_like_open_market(env: ChainEnv) -> None:
    url = env.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    stranger = env.actors.stranger.address
    with pytest.raises(ConfigError) as web3_error:
        open_market(url, stranger)
    with pytest.raises(ConfigError) as light_error:
        open_light_market(url, stranger)
    assert str(light_error.value) == str(web3_error.value)
    assert open_light_market(url, env.market.address).address == env.market.address
    with pytest.raises(ChainError, match="unsupported RPC URL scheme"):
        open_light_market("ws://127.0.0.1:1", env.market.address)


def test_a_log_from_another_contract_or_buyer_is_refused() -> None:
    """A node answering eth_getLogs with a look-alike contract's log (or another buyer's)
    is refused, as `EventDecoder` refuses foreign logs."""
    market, buyer = "0x" + "11" * 20, "0x" + "22" * 20
    reads = LightMarket("http://127.0.0.1:1", market)  # the URL is replaced below
    topic0 = "0x" + reads._requested_topic.hex()
    word = "0x" + "00" * 31 + "07"
    forged = [
        {"address": "0x" + "33" * 20, "topics": [topic0, word, word, "0x" + "00" * 12 + buyer[2:]]},
        {"address": market, "topics": [topic0, word, word, "0x" + "00" * 12 + "44" * 20]},
        {"address": market, "topics": ["0x" + "55" * 32, word, word, "0x" + "00" * 12 + buyer[2:]]},
    ]
    for log in forged:
        def answer(conn: socket.socket, _: int, log: object = log) -> None:
            request = json.loads(_read_request(conn))
            result = "0x10" if request["method"] == "eth_blockNumber" else [log]
            body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

        with fake_node(answer) as (url, _):
            node = LightMarket(url, market, timeout=5)
            with pytest.raises(ChainError, match="not the market's DebitRequested"):
                node.debit_ids_requested_by(buyer)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=N - 1))
def test_private_key_address_is_eth_accounts(secret: int) -> None:
    key = secret.to_bytes(32, "big").hex()
    expected = Account.from_key(bytes.fromhex(key)).address
    assert private_key_address(key, "$K") == expected
    assert private_key_address("0x" + key.upper(), "$K") == expected
    assert private_key_address(f"  0x{key}\n", "$K") == expected


@pytest.mark.parametrize("bad", ["", "12", "0x" + "00" * 32, f"{N:064x}", "zz" * 32,
                                 "ff" * 32])
def test_bad_private_key_is_refused_like_from_private_key(bad: str) -> None:
    with pytest.raises(WalletError) as light_error:
        private_key_address(bad, "$DATADEBIT_PRIVATE_KEY")
    with pytest.raises(WalletError) as account_error:
        from_private_key(bad, "$DATADEBIT_PRIVATE_KEY")
    assert str(light_error.value) == str(account_error.value)
