"""Benchmark the key-release crypto and EIP-712 recovery (per operation, best of 5 runs).

    .venv/bin/python scripts/bench_keyrelease.py [--number N]

Prints microseconds per operation. Never used by tests: budgets are checked by reading
these figures, not by timed assertions.
"""

from __future__ import annotations

import argparse
import os
import timeit
from collections.abc import Callable

from eth_account import Account
from eth_account.messages import encode_typed_data

from marketplace.eip712 import (
    Eip712Domain,
    KeyRequest,
    recover_signer,
    sign,
    signature_from_hex,
    typed_data,
)
from marketplace.keyrelease import (
    BuyerSecretKey,
    CapsuleContext,
    combine,
    deal,
    make_capsule,
    make_key_share,
    make_sealed_share,
    open_sealed_share,
    recover_data_key,
)
from storage.keys import DataKey

MARKET = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
Row = tuple[str, Callable[[], object]]


def per_op_us(fn: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def committee_rows(n: int, t: int, buyer: BuyerSecretKey) -> list[Row]:
    """Node and buyer costs for one t-of-n committee and one published version."""
    ctx = CapsuleContext(31337, MARKET, 1, 1, b"\x01\x55\x12\x20" + os.urandom(32))
    dealt = deal(n, t)
    dek = DataKey.generate()
    capsule = make_capsule(dek, ctx, dealt.keys.committee_key)
    bound = capsule.bind(ctx)
    node = dealt.shares[0]
    share = make_key_share(node, bound, 1, 1)
    sealed = [make_sealed_share(s, bound, buyer.public_key(), 1, 1) for s in dealt.shares[:t]]
    verified = [
        make_key_share(s, bound, 1, 1).verify(s.share_key, capsule) for s in dealt.shares[:t]
    ]
    return [
        ("capsule (owner, per version)", lambda: make_capsule(dek, ctx, dealt.keys.committee_key)),
        ("capsule proof check (node, once per version)", lambda: capsule.bind(ctx)),
        ("share + DLEQ proof (node)", lambda: make_key_share(node, bound, 1, 1)),
        (
            "share + proof + SealedBox (node)",
            lambda: make_sealed_share(node, bound, buyer.public_key(), 1, 1),
        ),
        ("open one sealed share (buyer)", lambda: open_sealed_share(sealed[0], buyer, 1, 1)),
        ("verify one share (buyer)", lambda: share.verify(node.share_key, capsule)),
        (
            f"combine {t}-of-{n} verified shares -> DEK",
            lambda: combine(dealt.keys, capsule, ctx, verified),
        ),
        (
            f"buyer total {t}-of-{n}: open + verify + combine",
            lambda: recover_data_key(dealt.keys, capsule, ctx, sealed, buyer, 1, 1),
        ),
    ]


def eip712_rows(domain: Eip712Domain) -> list[Row]:
    """What the gateway does per request: parse the body, recover the signer."""
    wallet = Account.create()
    request = KeyRequest(12, 3, 1_700_000_600, os.urandom(32))
    wire = request.to_message()
    signature_hex = "0x" + sign(wallet, domain, request).hex()
    signature = signature_from_hex(signature_hex)
    payload = typed_data(domain, request)
    return [
        ("EIP-712 recover KeyRequest signer", lambda: recover_signer(domain, request, signature)),
        (
            "  + parse JSON request and hex signature",
            lambda: recover_signer(
                domain, KeyRequest.from_message(wire), signature_from_hex(signature_hex)
            ),
        ),
        (
            "  (eth-account encode_typed_data + recover_message)",
            lambda: Account.recover_message(
                encode_typed_data(full_message=payload), signature=signature
            ),
        ),
        ("EIP-712 sign (receipt or request)", lambda: sign(wallet, domain, request)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="operations per run")
    number = parser.parse_args().number
    domain = Eip712Domain(31337, MARKET)  # type: ignore[arg-type]
    buyer = BuyerSecretKey.from_account(Account.create(), domain)
    rows = committee_rows(3, 2, buyer)
    rows += committee_rows(5, 3, buyer)[-2:]
    rows += eip712_rows(domain)
    width = max(len(name) for name, _ in rows)
    results = {name: per_op_us(fn, number) for name, fn in rows}
    for name, us in results.items():
        print(f"{name:<{width}}  {us:9.1f} us")
    gateway_us = results["  + parse JSON request and hex signature"]
    print(f"\nsignature checks per second per core (parse + recover): {1e6 / gateway_us:,.0f}")


if __name__ == "__main__":
    main()
