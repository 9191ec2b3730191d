"""The gateway's bare JSON-RPC reads answer exactly what web3 answers, on a real anvil."""

from __future__ import annotations

import pytest

from marketplace.chain.errors import ChainUnavailable, UnknownDebit, UnknownVersion
from marketplace.chain.hot_reads import HotReads
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import connect
from scripts.servers.anvil import start_anvil
from tests.gateway.conftest import build_stack

pytestmark = pytest.mark.integration


def test_reads_match_web3(anvil_url: str) -> None:
    stack = build_stack(connect(anvil_url))
    market = stack.market
    reads = HotReads.for_market(market)
    assert reads is not None
    auto, consent_only = stack.listing(auto_approve=True), stack.listing(auto_approve=False)
    stack.publish(auto)
    stack.publish(consent_only)
    entitled, waiting = stack.debit(auto), stack.debit(consent_only)
    head = market.w3.eth.block_number

    assert reads.block_number() == head
    watcher = stack.services[1].watcher
    for number in (0, head // 2, head):
        assert reads.block_hash(number) == watcher.block_hash(number)
    assert reads.block_hash(head + 1000) is None

    head_hash, before = reads.block_hash(head), reads.block_hash(head - 1)
    assert head_hash is not None and before is not None
    answers = {debit: reads.is_entitled(debit, 1, head_hash) for debit in (entitled, waiting)}
    assert answers == {entitled: True, waiting: False}  # the second awaits consent
    for debit, answer in answers.items():
        assert market.is_entitled(debit, 1, block=head) is answer
    # at a block before the debit existed, the contract reverts, and both say so by name
    with pytest.raises(UnknownDebit):
        market.is_entitled(waiting, 1, block=head - 1)
    with pytest.raises(UnknownDebit):
        reads.is_entitled(waiting, 1, before)
    with pytest.raises(UnknownVersion):
        reads.is_entitled(entitled, 2, head_hash)

    # getDebit's listing and buyer, and debitCount, as web3 reads them
    for debit in (entitled, waiting):
        on_chain = market.debit(debit, block=head)
        listing_id, buyer, log_hash = reads.debit_owner_and_block(debit, head_hash, head)
        assert (listing_id, buyer.lower()) == (on_chain.listing_id, on_chain.buyer.lower())
        assert log_hash == head_hash
        assert reads.debit_owner_and_block(debit, head_hash, None)[2] is None
    with pytest.raises(UnknownDebit):
        reads.debit_owner_and_block(waiting, before, head)
    assert reads.debit_count() == market.debit_count() == waiting


def test_embedded_chain_has_no_bare_reads() -> None:
    assert HotReads.for_market(build_stack(connect()).market) is None


def test_a_chain_that_goes_away_is_unavailable() -> None:
    with start_anvil() as url:
        market = build_stack(connect(url)).market
        reads = HotReads.for_market(MarketClient(connect(url), market.address))
        assert reads is not None
        assert reads.block_number() >= 1  # the connection is open and kept
    with pytest.raises(ChainUnavailable):
        reads.block_number()
    with pytest.raises(ChainUnavailable):
        reads.is_entitled(1, 1, "0x" + "00" * 32)
