"""Two connections to one gateway state (two replicas of a node, or a restarted process
racing the old one) never duplicate, skip or lose an entry, on SQLite and Postgres alike.

Each thread uses its own `GatewayState`, so the races are between database connections,
not between threads sharing one connection's lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from marketplace.gateway.state import Cursor, GatewayState, IndexedDebit, Release
from tests.gateway.state_backends import TEST_KEY_HASH, StateBackend, a_release

REPLICAS = 4
ROUNDS = 25


def _release(debit_id: int, version: int) -> Callable[[int], Release]:
    def build(seq: int) -> Release:
        return a_release(seq, debit_id, version)
    return build


def _race(backend: StateBackend, work: Callable[[GatewayState, int], object]) -> list[object]:
    """Run `work(state, i)` for every i on REPLICAS connections at once, started together."""
    states = [backend.open("shared") for _ in range(REPLICAS)]
    start = threading.Barrier(REPLICAS)

    def replica(r: int) -> list[object]:
        start.wait()
        return [work(states[r], i) for i in range(ROUNDS)]

    with ThreadPoolExecutor(REPLICAS) as pool:
        results = list(pool.map(replica, range(REPLICAS)))
    return [x for per_replica in results for x in per_replica]


def test_racing_appends_give_one_gap_free_log(state_backend: StateBackend) -> None:
    # every replica asks for the same (debit, version) pairs in the same order
    answers = _race(
        state_backend, lambda s, i: s.append_release(i, 1, TEST_KEY_HASH, _release(i, 1))
    )
    releases = state_backend.open("shared").releases_after(0)
    assert [r.seq for r in releases] == list(range(1, ROUNDS + 1))
    assert [r.debit_id for r in releases] == list(range(ROUNDS))
    # every racer got the one release of its pair
    by_pair = {(r.debit_id, r.version): r for r in releases}
    assert all(by_pair[(a.debit_id, a.version)] == a for a in answers)  # type: ignore[attr-defined]


def test_racing_distinct_appends_are_all_kept(state_backend: StateBackend) -> None:
    _race(state_backend, lambda s, i: s.append_release(i, id(s), TEST_KEY_HASH, _release(i, id(s))))
    releases = state_backend.open("shared").releases_after(0, limit=10_000)
    assert [r.seq for r in releases] == list(range(1, REPLICAS * ROUNDS + 1))
    assert len({(r.debit_id, r.version) for r in releases}) == REPLICAS * ROUNDS


def test_a_raced_nonce_is_accepted_once(state_backend: StateBackend) -> None:
    """Each replica carries the nonce in a request of its own (its own digest): one wins."""
    accepted = _race(
        state_backend, lambda s, i: s.use_nonce(
            "0xAbC", i.to_bytes(32, "big"), 2_000, 1_000, id(s).to_bytes(32, "big")
        )
    )
    assert accepted.count(True) == ROUNDS
    assert accepted.count(False) == (REPLICAS - 1) * ROUNDS


def test_racing_watchers_process_each_log_once(state_backend: StateBackend) -> None:
    def apply(state: GatewayState, i: int) -> object:
        key = (f"0x{i:064x}", f"0x{i + 1:064x}", 0, i)
        row = IndexedDebit(i, 1, "0xbuyer", b"\x04" * 32)
        return state.apply_logs(31337, [(key, [row])], Cursor(i, f"0x{i:064x}"))

    fresh = _race(state_backend, apply)
    assert sum(len(f) for f in fresh) == ROUNDS  # type: ignore[arg-type]
    state = state_backend.open("shared")
    assert [state.debit(i) is not None for i in range(ROUNDS)] == [True] * ROUNDS
