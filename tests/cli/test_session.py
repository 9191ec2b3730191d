"""A complete owner/buyer session through the CLI on anvil with served gateways."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from eth_account import Account

from marketplace.chain.events import DebitRequested, ListingCreated
from marketplace.chain.types import DebitState
from marketplace.committee import CommitteeNode, PublicCommittee
from marketplace.eip712 import Eip712Domain
from marketplace.keyrelease.buyer_key import BuyerSecretKey
from marketplace.keyrelease.dealer import deal
from tests.cli.conftest import Deployment, invoke

pytestmark = pytest.mark.integration

PRICE = 10**15
HOUR = 3600


def _data(folder: Path, name: str, size: int = 300_000) -> Path:
    path = folder / name
    path.write_bytes(os.urandom(size))
    return path


def _listing(d: Deployment, *flags: object) -> int:
    result = d.as_owner("owner", "create-listing", "--price", PRICE, "--period", HOUR, *flags)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def _publish(d: Deployment, listing: int, file: Path) -> tuple[int, str]:
    result = d.as_owner("owner", "publish", "--listing", listing, file)
    assert result.exit_code == 0, result.stderr
    version, cid = result.stdout.split()
    return int(version), cid


def _request(d: Deployment, listing: int, periods: int) -> int:
    result = d.as_buyer("buyer", "request", "--listing", listing, "--periods", periods)
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def test_auto_approved_listing_publish_buy_fetch(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    terms = tmp_path / "terms.txt"
    terms.write_text("research use only\n")
    listing = _listing(d, "--auto-approve", "--terms", terms, "--metadata-uri", "ipfs://feed")
    plain = _data(tmp_path, "v1.csv")

    version, cid = _publish(d, listing, plain)
    assert version == 1
    assert d.market.listing(listing).version_count == 1
    assert (d.store / "pins" / cid).exists()  # the ciphertext is pinned in the store

    balance_before = d.market.w3.eth.get_balance(d.buyer.address)
    debit = _request(d, listing, periods=3)
    record = d.market.debit(debit)
    assert (record.state, record.buyer, record.amount) == (
        DebitState.ACTIVE, d.buyer.address, 3 * PRICE
    )
    assert d.market.w3.eth.get_balance(d.buyer.address) <= balance_before - 3 * PRICE
    # the registered key is the one the wallet derives
    key = BuyerSecretKey.from_account(
        d.buyer, Eip712Domain(d.market.chain_id, d.market.address)
    ).public_key().key
    [requested] = [
        e for e in d.market.events().read(0, kinds=[DebitRequested])
        if isinstance(e, DebitRequested) and e.debit_id == debit
    ]
    assert requested.buyer_key == key

    out = tmp_path / "fetched.csv"
    fetched = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out)
    assert fetched.exit_code == 0, fetched.stderr
    assert fetched.stdout.split() == ["1", cid]
    assert out.read_bytes() == plain.read_bytes()

    listed = d.as_owner("owner", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    [entry] = [e for e in json.loads(listed.stdout) if e["listing"] == listing]
    assert (entry["versions"], entry["auto_approve"], entry["open"]) == (1, True, True)
    assert [(x["debit"], x["state"], x["amount"]) for x in entry["debits"]] == [
        (debit, "active", 3 * PRICE)
    ]

    status = d.as_buyer("buyer", "status", debit, "--json")
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["state"] == "active"
    mine = d.as_buyer("buyer", "status", "--json")
    assert debit in [x["debit"] for x in json.loads(mine.stdout)]
    terms_hash = hashlib.sha256(terms.read_bytes()).digest()
    [created] = [
        e for e in d.market.events().read(0, kinds=[ListingCreated])
        if isinstance(e, ListingCreated) and e.listing_id == listing
    ]
    assert (created.terms_hash, created.metadata_uri) == (terms_hash, "ipfs://feed")


def test_consent_refusal_revoke_claim_withdraw(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    listing = _listing(d, "--needs-consent")
    plain = _data(tmp_path, "v1.csv")
    _publish(d, listing, plain)
    debit = _request(d, listing, periods=2)
    assert d.market.debit(debit).state is DebitState.REQUESTED

    out = tmp_path / "out.csv"
    refused = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out)
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: got 0 valid key shares, need 2")
    assert "not_entitled" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not out.exists()

    consented = d.as_owner("owner", "consent", debit)
    assert consented.exit_code == 0, consented.stderr
    assert d.market.debit(debit).state is DebitState.ACTIVE
    fetched = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out, "--version", 1)
    assert fetched.exit_code == 0, fetched.stderr
    assert out.read_bytes() == plain.read_bytes()

    d.dev.advance(HOUR // 2)
    revoked = d.as_owner("owner", "revoke", debit)
    assert revoked.exit_code == 0, revoked.stderr
    assert d.market.debit(debit).state is DebitState.REVOKED
    _publish(d, listing, _data(tmp_path, "v2.csv"))
    late = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", tmp_path / "v2.out")
    assert late.exit_code == 1 and "not_entitled" in late.stderr
    assert not (tmp_path / "v2.out").exists()

    # revoke credited what accrued; nothing is left to claim on this debit
    nothing = d.as_owner("owner", "claim", debit)
    assert nothing.exit_code == 1 and "NothingToClaim" in nothing.stderr
    credited = d.market.balance_of(d.owner.address)
    assert credited > 0
    withdrawn = d.as_owner("owner", "withdraw")
    assert withdrawn.exit_code == 0, withdrawn.stderr
    assert int(withdrawn.stdout) == credited
    assert d.market.balance_of(d.owner.address) == 0

    refund = d.market.balance_of(d.buyer.address)
    assert refund > 0
    back = d.as_buyer("buyer", "withdraw")
    assert back.exit_code == 0 and int(back.stdout) == refund


def test_claim_accrued_and_reject_and_cancel(deployment: Deployment, tmp_path: Path) -> None:
    d = deployment
    auto = _listing(d, "--auto-approve")
    debit = _request(d, auto, periods=1)
    d.dev.advance(2 * HOUR)
    claimed = d.as_owner("owner", "claim", debit)
    assert claimed.exit_code == 0, claimed.stderr
    assert int(claimed.stdout) == PRICE
    assert d.market.debit(debit).settled == PRICE

    manual = _listing(d, "--needs-consent")
    to_reject, to_cancel = _request(d, manual, 1), _request(d, manual, 1)
    assert d.as_owner("owner", "reject", to_reject).exit_code == 0
    assert d.market.debit(to_reject).state is DebitState.REJECTED
    assert d.as_buyer("buyer", "cancel", to_cancel).exit_code == 0
    assert d.market.debit(to_cancel).state is DebitState.CANCELLED
    again = d.as_buyer("buyer", "cancel", to_cancel)
    assert again.exit_code == 1
    assert "InvalidDebitState" in again.stderr and "cancelled" in again.stderr


def test_fetch_with_one_gateway_down_and_with_too_few(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    listing = _listing(d, "--auto-approve")
    plain = _data(tmp_path, "v1.csv")
    _publish(d, listing, plain)
    debit = _request(d, listing, 1)
    urls = [g.url for g in d.gateways.values()]
    dead = "http://127.0.0.1:9"  # discard port: nothing listens

    one_down = d.write_committee(tmp_path / "one-down.json", [urls[0], dead, urls[2]])
    out = tmp_path / "out.csv"
    ok = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out, "--committee", one_down)
    assert ok.exit_code == 0, ok.stderr
    assert "gateway 2 did not help: unreachable" in ok.stderr
    assert out.read_bytes() == plain.read_bytes()

    two_down = d.write_committee(tmp_path / "two-down.json", [dead, dead, urls[2]])
    out2 = tmp_path / "out2.csv"
    failed = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out2, "--committee", two_down)
    assert failed.exit_code == 1
    assert failed.stderr.startswith("error: got 1 valid key shares, need 2")
    assert not out2.exists()

    one_url = d.write_committee(tmp_path / "one-url.json", [urls[0], None, None])
    short = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out2, "--committee", one_url)
    assert short.exit_code == 1 and "URLs for 1 gateways, 2 are needed" in short.stderr


def test_fetch_refuses_a_committee_file_of_another_market(
    deployment: Deployment, tmp_path: Path
) -> None:
    d = deployment
    listing = _listing(d, "--auto-approve")
    _publish(d, listing, _data(tmp_path, "v1.csv"))
    debit = _request(d, listing, 1)
    dealt = deal(3, 2)
    urls = [g.url for g in d.gateways.values()]
    other = PublicCommittee(
        threshold=2,
        committee_key=dealt.keys.committee_key,
        nodes=tuple(
            CommitteeNode(i, Account.create().address, dealt.keys.share_key(i).point, urls[i - 1])
            for i in (1, 2, 3)
        ),
    )
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(other.to_json()))
    out = tmp_path / "x"
    result = d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out, "--committee", wrong)
    assert result.exit_code == 1
    assert result.stderr == f"error: committee file {wrong} is not the committee of this market\n"
    assert not out.exists()


def test_config_file_drives_a_session(deployment: Deployment, tmp_path: Path) -> None:
    """Everything from a TOML file (relative paths resolved against it), no flags or env."""
    d = deployment
    config = tmp_path / "datadebit.toml"
    store = os.path.relpath(d.store, tmp_path)
    committee = os.path.relpath(d.committee_file, tmp_path)
    owner_keystore = os.path.relpath(d.owner_keystore, tmp_path)
    (tmp_path / "pass").write_text("correct horse battery staple\n")
    config.write_text(
        f'rpc = "{d.rpc}"\nmarket = "{d.market.address}"\nstore = "{store}"\n'
        f'committee = "{committee}"\nkeystore = "{owner_keystore}"\npassphrase-file = "pass"\n'
    )
    created = invoke("--config", config, "owner", "create-listing", "--price", 1, "--period", 60,
                     "--auto-approve")
    assert created.exit_code == 0, created.stderr
    listing = int(created.stdout)
    assert d.market.listing(listing).owner == d.owner.address
    published = invoke("--config", config, "owner", "publish", "--listing", listing,
                       _data(tmp_path, "f.bin", 1000))
    assert published.exit_code == 0, published.stderr
    assert d.market.listing(listing).version_count == 1
