"""Measure the gas of every DataMarket transaction and write docs/gas-report.md.

Deploys the committed artifact on a fresh embedded chain (eth-tester, py-evm), runs each
kind of transaction once in a realistic order, and tabulates the gas used against the
budgets of DESIGN §8. `--anvil` measures on a real anvil node as well (a second column).
`--check` writes nothing and exits non-zero when a budgeted transaction is over budget.
Gas is deterministic for given inputs: this is a measurement, not a benchmark.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import solcx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from marketplace.chain.aggregate import AggregateClient
from marketplace.chain.artifacts import load_artifact
from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.tokens import sign_permit
from marketplace.chain.types import Committee, Roster, Sent
from marketplace.committee import node_encryption_key
from marketplace.eip712 import CommitteeResult, sign

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "docs" / "gas-report.md"

#: DESIGN §8 gas budgets, by transaction label.
BUDGETS: dict[str, int] = {
    "createListing": 85_000,
    "publishVersion (first)": 65_000,
    "publishVersion (later)": 65_000,
    "requestDebit (auto-approve)": 110_000,
    "consent": 40_000,
    "requestDebit (ERC-20, approved, auto-approve)": 125_000,
    "requestDebit (ERC-20, permit, auto-approve)": 165_000,
    "finalizeCommittee (first epoch, n=16, t=11, 11 signatures)": 400_000,
    "finalizeCommittee (reshare, n=16 -> 16, t=11, 11 + 11 signatures)": 400_000,
    "contribute (first)": 70_000,
    "contribute (later)": 70_000,
}

#: (n, t) of the committees whose finalization is measured.
COMMITTEE_SIZES = ((3, 2), (5, 3), (10, 7), (16, 11))

#: Ocean Protocol's figures for the same user actions, for scale.
PEERS = (
    ("publish a dataset", "Ocean: publish (data NFT + datatoken + metadata)", 1_060_000,
     ("createListing", "publishVersion (first)")),
    ("buy access", "Ocean: buy datatoken and start order", 369_000,
     ("requestDebit (auto-approve)",)),
)

#: Realistic calldata: a CIDv1 raw sha2-256 CID (36 bytes), a 168-byte capsule, a
#: metadata URI of an ipfs:// CIDv1 text, non-zero hashes and keys.
CID = bytes([0x01, 0x55, 0x12, 0x20]) + keccak(b"version ciphertext")
CAPSULE = (
    keccak(b"R") + keccak(b"nonce")[:24] + keccak(b"sealed")[:32] + keccak(b"tag")[:16]
    + keccak(b"proof challenge") + keccak(b"proof response")
)
METADATA_URI = "ipfs://bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
TERMS = keccak(b"terms of use v1")
BUYER_KEY = keccak(b"buyer x25519 public key")
PURPOSE = keccak(b"purpose: research")
PRICE = 10**15
PERIOD = 30 * 86_400


@dataclass(frozen=True, slots=True)
class GasRow:
    transaction: str
    gas_used: int
    budget: int | None

    @property
    def within_budget(self) -> bool | None:
        return None if self.budget is None else self.gas_used <= self.budget


def measure_gas(w3: Web3) -> list[GasRow]:
    """Deploy a market on `w3` (a development chain) and measure each transaction."""
    dev = DevChain(w3)
    # fixed keys: the zero bytes of addresses in calldata change the gas
    deployer, owner, buyer, node, node2, node3 = (
        Account.from_key(keccak(b"gas report account %d" % i)) for i in range(6))
    nodes = [node, node2, node3]
    for account in (deployer, owner, buyer, node):
        dev.fund(account.address, 10**20)
    gas: dict[str, int] = {}

    committee = Committee(
        committee_key=keccak(b"committee key Y"), threshold=2,
        nodes=tuple(n.address for n in nodes),
        share_keys=tuple(keccak(b"share key %d" % i) for i in range(1, 4)),
    )
    deployed = MarketClient.deploy(w3, deployer, _roster(nodes, 2))
    gas["deploy (3-node roster, ceremony 1 pending)"] = deployed.gas_used
    market = deployed.value
    gas["finalizeCommittee (first epoch, n=3, t=2, 3 signatures)"] = _finalize(
        market, deployer, 1, 1, committee.committee_key, committee.share_keys, nodes, 2 ** 3 - 1,
    )

    def listing(auto: bool) -> int:
        sent = market.create_listing(owner, price_per_period=PRICE, period_seconds=PERIOD,
                                     auto_approve=auto, terms_hash=TERMS,
                                     metadata_uri=METADATA_URI)
        gas.setdefault("createListing", sent.gas_used)
        return sent.value

    def request(listing_id: int, label: str | None = None) -> int:
        sent = market.request_debit(buyer, listing_id, periods=3, buyer_key=BUYER_KEY,
                                    purpose_hash=PURPOSE, value=3 * PRICE)
        if label:
            gas[label] = sent.gas_used
        return sent.value

    auto, manual = listing(True), listing(False)
    gas["updateListing"] = market.update_listing(
        owner, manual, price_per_period=PRICE, auto_approve=False, open=True).gas_used
    gas["publishVersion (first)"] = market.publish_version(owner, auto, CID, CAPSULE).gas_used
    gas["publishVersion (later)"] = market.publish_version(owner, auto, CID, CAPSULE).gas_used
    first = request(auto, "requestDebit (auto-approve)")
    requested = request(manual, "requestDebit (manual)")
    gas["consent"] = market.consent(owner, requested).gas_used
    gas["reject"] = market.reject(owner, request(manual)).gas_used
    gas["cancel"] = market.cancel(buyer, request(manual)).gas_used
    more = [request(auto) for _ in range(3)]
    revoked = request(auto)
    dev.advance(PERIOD)
    gas["revoke"] = market.revoke(owner, revoked).gas_used
    gas["claim (1 debit)"] = market.claim(owner, [first]).gas_used
    dev.advance(PERIOD)
    gas["claim (5 debits)"] = market.claim(owner, [first, requested, *more]).gas_used
    gas["withdraw"] = market.withdraw(owner).gas_used
    root = keccak(b"merkle root")
    gas["anchorReleases (first)"] = market.anchor_releases(node, root, 128).gas_used
    gas["anchorReleases (later)"] = market.anchor_releases(node, root, 128).gas_used
    gas.update(measure_token_gas(w3, dev, market, deployer, owner, buyer))
    gas.update(measure_committee_gas(w3, dev, deployer))
    gas.update(measure_aggregate_gas(w3, dev, market, deployer, buyer, node))
    return [GasRow(name, used, BUDGETS.get(name)) for name, used in gas.items()]


def measure_token_gas(
    w3: Web3, dev: DevChain, market: MarketClient, deployer: LocalAccount,
    owner: LocalAccount, buyer: LocalAccount,
) -> dict[str, int]:
    """A listing priced in an OpenZeppelin ERC20Permit stablecoin (6 decimals, the test
    token of tests/chain/contracts): a purchase after `approve` (the market's first of
    this token, so its token balance goes from zero: the worst case), one with a permit,
    and the token withdrawal."""
    gas: dict[str, int] = {}
    token = _deploy_test_token(w3, deployer, "PermitToken")
    price = 5 * 10**6
    _send_plain(w3, deployer, token.functions.mint(buyer.address, 1_000 * price))
    listing = market.create_listing(owner, price_per_period=price, period_seconds=PERIOD,
                                    auto_approve=True, terms_hash=TERMS,
                                    metadata_uri=METADATA_URI, asset=token.address).value
    gas["createListing (ERC-20)"] = market.create_listing(
        owner, price_per_period=price, period_seconds=PERIOD, auto_approve=True,
        terms_hash=TERMS, metadata_uri=METADATA_URI, asset=token.address).gas_used
    gas["approve (ERC-20, buyer to market)"] = market.approve_payment(
        buyer, token.address, 3 * price).gas_used
    first = market.request_debit(buyer, listing, periods=3, buyer_key=BUYER_KEY,
                                 purpose_hash=PURPOSE)
    gas["requestDebit (ERC-20, approved, auto-approve)"] = first.gas_used
    # a constant deadline: the permit's signature (and so its calldata's zero bytes, and
    # the gas) must not depend on when the report runs
    deadline = 2**40
    permit = sign_permit(w3, token.address, buyer, market.address, 3 * price, deadline)
    gas["requestDebit (ERC-20, permit, auto-approve)"] = market.request_debit_with_permit(
        buyer, listing, permit, periods=3, buyer_key=BUYER_KEY, purpose_hash=PURPOSE).gas_used
    dev.advance(PERIOD)
    market.claim(owner, [first.value])
    gas["withdraw (ERC-20)"] = market.withdraw(owner, token.address).gas_used
    return gas


def _deploy_test_token(w3: Web3, deployer: LocalAccount, name: str) -> Contract:
    """Compile and deploy a test token of tests/chain/contracts (deterministic bytecode:
    same settings as the chain tests)."""
    folder = ROOT / "tests" / "chain" / "contracts"
    sources = {p.name: {"content": p.read_text()} for p in sorted(folder.glob("*.sol"))}
    sources["IDataMarket.sol"] = {"content": (ROOT / "contracts" / "IDataMarket.sol").read_text()}
    output = solcx.compile_standard(
        {"language": "Solidity", "sources": sources, "settings": {
            "evmVersion": "cancun", "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}}}},
        solc_binary=ROOT / "scripts" / "solcjs-standard-json.js", allow_empty=False,
    )
    compiled = output["contracts"]["TestTokens.sol"][name]
    bytecode = "0x" + compiled["evm"]["bytecode"]["object"]
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=bytecode)
    receipt = _send_plain(w3, deployer, factory.constructor())
    address = receipt["contractAddress"]
    assert address is not None
    return w3.eth.contract(address=address, abi=compiled["abi"])


def _send_plain(w3: Web3, sender: LocalAccount, fn: Any) -> TxReceipt:
    tx = fn.build_transaction({"from": sender.address,
                               "nonce": w3.eth.get_transaction_count(sender.address)})
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction))
    if receipt["status"] != 1:
        raise RuntimeError(f"gas report set-up transaction failed: {receipt}")
    return receipt


def _accounts(label: bytes, count: int) -> list[LocalAccount]:
    return [Account.from_key(keccak(label + b" %d" % i)) for i in range(count)]


def _roster(nodes: Sequence[LocalAccount], threshold: int) -> Roster:
    return Roster(tuple(n.address for n in nodes),
                  tuple(node_encryption_key(n) for n in nodes), threshold)


def _finalize(
    market: MarketClient,
    sender: LocalAccount,
    ceremony: int,
    epoch: int,
    key: bytes,
    share_keys: Sequence[bytes],
    signers: Sequence[LocalAccount],
    qualified: int,
    old_signers: Sequence[LocalAccount] = (),
) -> int:
    result = CommitteeResult(ceremony, epoch, key, tuple(share_keys), qualified,
                             keccak(b"transcript %d" % ceremony))
    return market.finalize_committee(
        sender, ceremony, result,
        [sign(s, market.domain, result) for s in signers],
        [sign(s, market.domain, result) for s in old_signers],
    ).gas_used


def measure_committee_gas(w3: Web3, dev: DevChain, deployer: LocalAccount) -> dict[str, int]:
    """Committee epochs: finalization of a first epoch for each (n, t) of COMMITTEE_SIZES
    with t and with n signatures, then a 16-node reshare (propose, approvals, a
    DKG-sized dealing, finalization)."""
    gas: dict[str, int] = {}
    key = keccak(b"committee key Y")
    markets: dict[int, MarketClient] = {}
    big: list[LocalAccount] = []
    for n, t in COMMITTEE_SIZES:
        nodes = _accounts(b"gas report node n=%d" % n, n)
        share_keys = [keccak(b"share key %d/%d" % (i, n)) for i in range(1, n + 1)]
        for signers in (t, n):
            market = MarketClient.deploy(w3, deployer, _roster(nodes, t)).value
            label = f"finalizeCommittee (first epoch, n={n}, t={t}, {signers} signatures)"
            if signers == t or label not in gas:
                gas[label] = _finalize(market, deployer, 1, 1, key, share_keys,
                                       nodes[:signers], 2**n - 1)
            markets[n] = market
        big = nodes
    market = markets[16]
    for node in big:
        dev.fund(node.address, 10**20)
    newcomers = _accounts(b"gas report newcomer", 16)
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 86_400
    proposed = market.propose_committee(deployer, _roster(newcomers, 11), phase_seconds=30,
                                        deadline=deadline)
    gas["proposeCommittee (reshare, n=16)"] = proposed.gas_used
    ceremony = proposed.value
    for i, node in enumerate(big[:11]):
        used = market.approve_committee(node, ceremony).gas_used
        if i == 0:
            gas["approveCommittee (first)"] = used
        elif i == 10:
            gas["approveCommittee (t-th: opens the ceremony)"] = used
    dealer = big[0]
    gas["postCeremonyMessage (DEALING, n=16, t=11: 1,859 bytes)"] = market.post_ceremony_message(
        dealer, ceremony, 1, dealing_payload(16, 11)).gas_used
    share_keys = [keccak(b"reshared key %d" % i) for i in range(1, 17)]
    gas["finalizeCommittee (reshare, n=16 -> 16, t=11, 11 + 11 signatures)"] = _finalize(
        market, deployer, ceremony, 2, key, share_keys, newcomers[:11], 2**11 - 1, big[:11])
    gas["anchorReleases (previous epoch's node)"] = market.anchor_releases(
        big[15], keccak(b"merkle root"), 128).gas_used
    return gas


def measure_aggregate_gas(
    w3: Web3, dev: DevChain, market: MarketClient, deployer: LocalAccount,
    buyer: LocalAccount, node: LocalAccount,
) -> dict[str, int]:
    """An AggregateMarket on the market (its epoch-1 committee): a cohort with k = 2, one
    debit with three contributions (the first of a bitmap word, then later ones) paid
    out, one with a single contribution refunded. Runs last: its deadline is a constant
    (so the calldata, and the gas, do not depend on when the report runs) far ahead, and
    the chain's clock jumps there."""
    gas: dict[str, int] = {}
    owners = _accounts(b"gas report cohort member", 3)
    for owner in owners:
        dev.fund(owner.address, 10**20)
    deployed = AggregateClient.deploy(w3, deployer, market.address)
    gas["deploy AggregateMarket"] = deployed.gas_used
    aggregate = deployed.value
    created = aggregate.create_cohort(deployer, schema_hash=keccak(b"schema"),
                                      schema_uri=METADATA_URI, epsilon_cap=10_000_000,
                                      min_contributors=2)
    gas["createCohort"] = created.gas_used
    cohort = created.value
    for i, owner in enumerate(owners):
        used = aggregate.join_cohort(owner, cohort).gas_used
        if i == 0:
            gas["joinCohort"] = used
    deadline = 2**33

    def request() -> Sent[int]:
        return aggregate.request_aggregate(buyer, cohort, query_hash=keccak(b"query"),
                                           query_uri=METADATA_URI, epsilon=500_000,
                                           deadline=deadline, price=3 * PRICE + 1)

    paid, refunded = request(), request()
    gas["requestAggregate"] = paid.gas_used
    bundle = bytes([0x01, 0x55, 0x12, 0x20]) + keccak(b"contribution bundle")
    for i, owner in enumerate(owners):
        used = aggregate.contribute(owner, paid.value, bundle).gas_used
        gas.setdefault("contribute (first)" if i == 0 else "contribute (later)", used)
    aggregate.contribute(owners[0], refunded.value, bundle)
    dev.advance(deadline - dev.now())
    gas["postAggregateRound"] = aggregate.post_round(node, paid.value, 1, bundle).gas_used
    gas["claimContribution (first: fixes the payout)"] = aggregate.claim_contribution(
        owners[0], paid.value).gas_used
    gas["claimContribution (later)"] = aggregate.claim_contribution(
        owners[1], paid.value).gas_used
    gas["refundAggregate"] = aggregate.refund(buyer, refunded.value).gas_used
    gas["withdraw (AggregateMarket)"] = aggregate.withdraw(owners[0]).gas_used
    return gas


def dealing_payload(n: int, t: int) -> bytes:
    """A DEALING's size (docs/protocol.md): format, t, t commitments, PoP, n, n sealed
    shares of 32 + 10 bytes plus the 48-byte SealedBox overhead; non-zero bytes."""
    size = 2 + t * 32 + 64 + 1 + n * (32 + 10 + 48)
    stream = b"".join(keccak(b"dealing %d" % i) for i in range(size // 32 + 1))
    return stream[:size]


def _yes_no(value: bool | None) -> str:
    return "—" if value is None else ("yes" if value else "**no**")


def render(rows: Sequence[GasRow], anvil: Sequence[GasRow] | None = None) -> str:
    artifact = load_artifact()
    settings = f"solc {artifact.solc_version}, viaIR, optimizer 10,000 runs, evmVersion cancun"
    chains = "eth-tester (py-evm)" + (" and anvil" if anvil else "")
    lines = [
        "# Gas report",
        "",
        "Generated by `scripts/gas_report.py`; do not edit by hand.",
        "",
        f"- Contract: the committed DataMarket artifact ({settings}).",
        f"- Chain: a fresh development chain, {chains}; each transaction runs once, in the",
        "  order of the table, with realistic calldata (a 36-byte CIDv1, a 168-byte capsule,",
        "  a 66-character ipfs:// metadata URI, non-zero hashes, 3-period debits).",
        "- Order matters where a credited balance goes from zero to non-zero (about 17k more",
        "  gas): `reject` is the buyer's first credit and `cancel` its second; `claim (1 debit)`",
        "  is the owner's first credit. `anchorReleases (first)` starts a node's counter.",
        "- Committee epochs: each first-epoch finalization runs on a fresh market, with the",
        "  threshold's worth of signatures (what a submitter needs to send) and with all n.",
        "  The reshare runs on the 16-node market: 11 approvals by current nodes, one",
        "  DEALING-sized message, then 11 new-roster and 11 current-roster signatures.",
        "- Aggregate debits: the committed AggregateMarket artifact on that market (its",
        "  epoch-1 committee), a cohort with k = 2: `contribute (first)` sets the first bit",
        "  of a bitmap word (a zero-to-non-zero write), `contribute (later)` another bit of",
        "  it. The first claim also credits the buyer the division's remainder; each claim",
        "  credits a balance from zero.",
        "- Budgets: DESIGN §8. `python scripts/gas_report.py --check` exits non-zero when a",
        "  budgeted transaction is over budget; `tests/chain/test_gas.py` asserts the same.",
        "",
    ]
    header = "| transaction | gas used |" + (" gas used (anvil) |" if anvil else "")
    lines += [header + " budget | within budget |",
              "|---|---:|" + ("---:|" if anvil else "") + "---:|---|"]
    by_name = {r.transaction: r for r in anvil or ()}
    for row in rows:
        cells = [row.transaction, f"{row.gas_used:,}"]
        if anvil:
            other = by_name.get(row.transaction)
            cells.append(f"{other.gas_used:,}" if other else "—")
        cells += [f"{row.budget:,}" if row.budget else "—", _yes_no(row.within_budget)]
        lines.append("| " + " | ".join(cells) + " |")
    used = {r.transaction: r.gas_used for r in rows}
    lines += [
        "",
        "## For scale: the closest peer",
        "",
        "| user action | datadebit | peer | peer gas |",
        "|---|---:|---|---:|",
    ]
    for action, peer, peer_gas, ours in PEERS:
        total = sum(used[name] for name in ours)
        lines.append(f"| {action} | {total:,} ({' + '.join(ours)}) | {peer} | ≈{peer_gas:,} |")
    lines.append("")
    return "\n".join(lines)


def over_budget(rows: Sequence[GasRow]) -> list[GasRow]:
    return [r for r in rows if r.within_budget is False]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a budgeted transaction is over budget")
    parser.add_argument("--anvil", action="store_true", help="measure on anvil too")
    parser.add_argument("--output", type=Path, default=REPORT, help="where to write the report")
    args = parser.parse_args(argv)
    rows = measure_gas(connect())
    anvil_rows = None
    if args.anvil:
        if str(ROOT) not in sys.path:  # run as a file, not as `python -m scripts.gas_report`
            sys.path.insert(0, str(ROOT))
        from scripts.servers.anvil import start_anvil  # noqa: PLC0415 - only with --anvil

        with start_anvil() as url:
            anvil_rows = measure_gas(connect(url))
    text = render(rows, anvil_rows)
    failed = over_budget(rows) + over_budget(anvil_rows or [])
    if args.check:
        print(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        print(f"wrote {args.output}")
    for row in failed:
        print(f"over budget: {row.transaction} used {row.gas_used:,} gas, budget {row.budget:,}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
