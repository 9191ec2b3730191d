"""Committee ceremonies among real `datadebit gateway serve` processes on anvil: silent
nodes, a cheating dealer, a false accuser, and a ceremony past its deadline.

Honest nodes are separate processes started from their key files, exactly as operators
run them. A misbehaving node is a `GatewayService` in this process whose ceremony runner
is patched (the same patches as tests/gateway/test_ceremonies.py): the product has no
switch for cheating, and should not.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from marketplace.chain.market import MarketClient
from marketplace.chain.provider import DevChain, connect
from marketplace.chain.types import CeremonyStatus, Roster
from marketplace.committee import (
    KdfStrength,
    create_dkg_nodes,
    load_node_key,
    node_key_file_name,
    write_dkg_nodes,
)
from marketplace.gateway.database import SqliteDatabase
from marketplace.gateway.service import GatewayService, Timing
from marketplace.gateway.state import GatewayState
from marketplace.keyrelease import CommitteeKeys
from scripts.devstack import ROOT, _child_env, _cli
from scripts.servers.process import free_port, stop_process_group
from tests.gateway.ceremony_helpers import accuse, tamper_dealings

pytestmark = pytest.mark.integration

PASSPHRASE = "ceremony test passphrase"
PHASE = 6  # an honest dealer must answer within one phase, even on a loaded CI machine
ETHER = 10**18
WAIT = 90.0


class Committee:
    """A roster of n node key files, a market deployed for it, and the nodes: processes
    (`start`) or patched in-process services (`start_in_process`)."""

    def __init__(self, anvil_url: str, folder: Path, n: int, t: int, *, deadline: int = 600):
        self.url = anvil_url
        self.folder = folder
        self.ports = [free_port() for _ in range(n)]
        roster, files = create_dkg_nodes(
            n, t, PASSPHRASE, strength=KdfStrength.INTERACTIVE,
            urls=[f"http://127.0.0.1:{p}" for p in self.ports],
        )
        write_dkg_nodes(folder, roster, files)
        (folder / "pass").write_text(PASSPHRASE)
        w3 = connect(anvil_url)
        self.dev = DevChain(w3)
        # The chain's clock runs a day ahead of the gateways' (as on a dev chain other
        # tests travelled in time): phases must still close by the chain's time, although
        # this automining chain makes no block unless someone transacts (this failed in CI
        # before the runner learnt the chain's clock skew).
        self.dev.advance(86_400)
        self.deployer: LocalAccount = Account.create()
        for address in (self.deployer.address, *(node.address for node in roster.nodes)):
            self.dev.fund(address, 10 * ETHER)
        self.roster = Roster(
            tuple(node.address for node in roster.nodes),
            tuple(node.encryption_key for node in roster.nodes), t,
        )
        self.market = MarketClient.deploy(
            w3, self.deployer, self.roster, phase_seconds=PHASE,
            deadline=self.dev.now() + deadline,
        ).value
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.services: dict[int, GatewayService] = {}

    def start(self, index: int) -> None:
        log = (self.folder / f"gateway-{index}.log").open("ab")
        self.procs[index] = subprocess.Popen(
            _cli("gateway", "serve", "--node-key", str(self.folder / node_key_file_name(index)),
                 "--rpc", self.url, "--market", self.market.address,
                 "--state", f"sqlite:///{self.folder / f'gateway-{index}.db'}",
                 "--port", str(self.ports[index - 1]), "--roster",
                 str(self.folder / "roster.json"), "--passphrase-file",
                 str(self.folder / "pass"), "--poll-interval", "0.2",
                 "--anchor-interval", "3600"),
            cwd=ROOT, env=_child_env(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )

    def start_in_process(self, index: int, patch: Callable[[GatewayService], None]) -> None:
        service = GatewayService(
            market=MarketClient(connect(self.url), self.market.address),
            state=GatewayState(SqliteDatabase(":memory:")),
            node=load_node_key(self.folder / node_key_file_name(index), PASSPHRASE),
            timing=Timing(poll_interval=0.2, anchor_interval=3600),
        )
        patch(service)
        service.start()
        self.services[index] = service

    def epoch_of(self, index: int) -> object:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.ports[index - 1]}/v1/health", timeout=2)
            return answer.json().get("epoch")
        except (httpx.TransportError, ValueError):
            return None

    def wait(self, what: str, done: Callable[[], bool], timeout: float = WAIT) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                    for p in sorted(self.folder.glob("gateway-*.log"))
                )
                pytest.fail(f"{what} did not happen in {timeout:.0f} s\n{logs}")
            time.sleep(0.2)

    def final(self) -> bool:
        return self.market.current_epoch() >= 1

    def keys(self) -> CommitteeKeys:
        epoch = self.market.committee_at(1)
        return CommitteeKeys.from_bytes(epoch.threshold, epoch.committee_key, epoch.share_keys)

    def stop(self) -> None:
        for service in self.services.values():
            service.stop()
        for proc in self.procs.values():
            stop_process_group(proc)


@pytest.fixture
def make_committee(anvil_url: str, tmp_path: Path) -> Iterator[Callable[..., Committee]]:
    made: list[Committee] = []

    def make(n: int, t: int, **kwargs: int) -> Committee:
        committee = Committee(anvil_url, tmp_path / f"c{len(made)}", n, t, **kwargs)
        made.append(committee)
        return committee

    yield make
    for committee in made:
        committee.stop()


def test_two_silent_nodes_of_five_do_not_stop_a_three_of_five_dkg(
    make_committee: Callable[..., Committee],
) -> None:
    """n - t = 2 nodes never start: the phases close by time, epoch 1 is final with three
    qualified dealers, and the two, started afterwards, recover their shares from the
    chain (their health reports epoch 1)."""
    committee = make_committee(5, 3)
    for index in (1, 2, 3):
        committee.start(index)
    committee.wait("epoch 1 final", committee.final)
    assert committee.market.committee_at(1).qualified == 0b00111
    committee.keys().check_consistent()
    for index in (4, 5):
        committee.start(index)
    committee.wait("nodes 4 and 5 hold their shares",
                   lambda: all(committee.epoch_of(i) == 1 for i in (1, 2, 3, 4, 5)))


def test_a_dealer_sealing_one_peer_a_wrong_share_is_excluded_and_the_rest_completes(
    make_committee: Callable[..., Committee],
) -> None:
    committee = make_committee(3, 2)
    committee.start_in_process(
        3, lambda service: tamper_dealings(service.ceremonies, victim=1, mode="silent")
    )
    committee.start(1)
    committee.start(2)
    committee.wait("epoch 1 final", committee.final)
    final = committee.market.committee_at(1)
    assert final.qualified == 0b011  # dealer 3 disqualified by node 1's complaint
    committee.keys().check_consistent()
    committee.wait("nodes 1 and 2 hold their shares",
                   lambda: all(committee.epoch_of(i) == 1 for i in (1, 2)))


def test_a_false_complaint_cannot_exclude_an_honest_dealer(
    make_committee: Callable[..., Committee],
) -> None:
    committee = make_committee(3, 2)
    committee.start_in_process(3, lambda service: accuse(service.ceremonies, [1]))
    committee.start(1)
    committee.start(2)
    committee.wait("epoch 1 final", committee.final)
    final = committee.market.committee_at(1)
    assert final.qualified == 0b111  # dealer 1 answered the accusation publicly
    messages = committee.market.ceremony_messages(final.ceremony_id, 0)
    assert any(m.kind == 3 and m.sender == committee.roster.nodes[0] for m in messages)


def test_a_ceremony_past_its_deadline_fails_and_a_new_proposal_completes(
    make_committee: Callable[..., Committee],
) -> None:
    committee = make_committee(3, 2, deadline=8)
    committee.start(1)  # one dealer of the two needed: cannot complete
    ceremony = committee.market.latest_ceremony()
    deadline = committee.market.ceremony(ceremony).deadline

    def past_deadline() -> bool:
        committee.dev.mine()  # automine makes blocks only for transactions
        return committee.dev.now() >= deadline

    committee.wait("the deadline to pass", past_deadline, timeout=30)
    assert committee.market.ceremony(ceremony).status is CeremonyStatus.FAILED
    assert committee.market.current_epoch() == 0
    again = committee.market.propose_committee(
        committee.deployer, committee.roster, phase_seconds=PHASE,
        deadline=committee.dev.now() + 600,
    ).value
    assert again == ceremony + 1
    committee.start(2)
    committee.start(3)
    committee.wait("epoch 1 final", committee.final)
    assert committee.market.committee_at(1).ceremony_id == again
