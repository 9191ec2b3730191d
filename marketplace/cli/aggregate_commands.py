"""Aggregate debits on the command line (DESIGN §10): `datadebit cohort ...`,
`datadebit deploy-aggregator`, `owner agent` / `owner claim-contribution` and
`buyer query` / `buyer result` / `buyer refund-aggregate`. Parsing and rendering only:
every flow is `marketplace.app.aggregate`'s.

The owner and buyer commands join the existing `owner` and `buyer` groups
(`add_owner_commands`, `add_buyer_commands`, called by those modules' `register`). Nothing
heavy is imported at module level: `datadebit owner --help` stays fast.
"""

from __future__ import annotations

import itertools
import logging
import math
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from marketplace.app.units import format_duration, format_eth, parse_duration, parse_wei
from marketplace.cli.config import (
    CommitteeOption,
    ConfigError,
    FromBlockOption,
    RpcOption,
    StoreOption,
    open_chain,
    open_store,
    parse_address,
    read_committee,
    require,
)
from marketplace.cli.errors import cli_errors, fail
from marketplace.cli.owner_commands import DebitArgument, JsonOption, parse_option
from marketplace.cli.render import note, print_json, when
from marketplace.cli.wallet_commands import KeystoreOption, PassphraseFileOption, load_wallet

if TYPE_CHECKING:
    import httpx
    from eth_account.signers.local import LocalAccount

    from marketplace.aggregate import Query
    from marketplace.app.aggregate import AggregateResult, CohortView, Decision
    from marketplace.chain.aggregate import AggregateClient
    from marketplace.chain.market import MarketClient

AGGREGATOR_ENV = "DATADEBIT_AGGREGATOR"
#: marketplace.app.aggregate.DEFAULT_TIMEOUT (not imported: it pulls in web3)
DEFAULT_TIMEOUT = 10.0
STATS = ("count", "sum", "mean", "histogram")
MAX_EPSILON_DECIMALS = 6

AggregatorOption = Annotated[
    str | None,
    typer.Option("--aggregator", envvar=AGGREGATOR_ENV,
                 help="Address of the AggregateMarket (`datadebit deploy-aggregator`)."),
]
CohortArgument = Annotated[int, typer.Argument(min=1, help="Cohort id.")]

cohort_app = typer.Typer(help="Cohorts of owners for aggregate queries: create, join, leave, "
                              "show.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """The root entries `cohort` and `deploy-aggregator`."""
    app.command("deploy-aggregator", help="Deploy an AggregateMarket served by a DataMarket's "
                "committee; prints its address.")(deploy_aggregator)
    app.add_typer(cohort_app, name="cohort")


def add_owner_commands(owner_app: typer.Typer) -> None:
    owner_app.command("agent")(agent)
    owner_app.command("claim-contribution")(claim_contribution)
    owner_app.command("withdraw-aggregate")(withdraw_aggregate)


def add_buyer_commands(buyer_app: typer.Typer) -> None:
    buyer_app.command("query")(query)
    buyer_app.command("result")(result)
    buyer_app.command("refund-aggregate")(refund_aggregate)
    buyer_app.command("withdraw-aggregate")(withdraw_aggregate)


# ---------------------------------------------------------------- opening things


def open_aggregator(rpc: str | None, aggregator: str | None) -> AggregateClient:
    """The AggregateMarket at `aggregator`, checked to have code."""
    from marketplace.chain.aggregate import AggregateClient  # noqa: PLC0415 - web3

    address = parse_address(require(aggregator, "--aggregator", AGGREGATOR_ENV), "--aggregator")
    w3 = open_chain(rpc)
    if not w3.eth.get_code(address):
        raise ConfigError(f"no contract at {address}: wrong --aggregator?")
    return AggregateClient(w3, address)


def served_market(client: AggregateClient) -> MarketClient:
    """The DataMarket whose committee serves the aggregator (read from the contract)."""
    from marketplace.chain.market import MarketClient  # noqa: PLC0415

    return MarketClient(client.w3, client.market_address())


def _wallet(keystore: Path | None, passphrase_file: Path | None) -> LocalAccount:
    return load_wallet(keystore, passphrase_file)


# ---------------------------------------------------------------- deploy


def deploy_aggregator(
    market: Annotated[str, typer.Option("--market", help="The DataMarket whose committee "
                                                         "aggregates.")],
    rpc: RpcOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Deploy an AggregateMarket; prints its address (config key `aggregator`)."""
    from marketplace.chain.aggregate import AggregateClient  # noqa: PLC0415

    with cli_errors():
        address = parse_address(market, "--market")
        w3 = open_chain(rpc)
        wallet = _wallet(keystore, passphrase_file)
        sent = AggregateClient.deploy(w3, wallet, address)
    note(f"AggregateMarket deployed for market {address} (gas {sent.gas_used:,}); set "
         f"`aggregator = \"{sent.value.address}\"` in the config")
    typer.echo(sent.value.address)


# ---------------------------------------------------------------- cohorts


@cohort_app.command("create")
def cohort_create(
    schema: Annotated[Path, typer.Option("--schema", dir_okay=False,
                                         help="The cohort's schema document (JSON, schema "
                                              "datadebit/cohort/v1: title, fields).")],
    epsilon_cap: Annotated[str, typer.Option("--epsilon-cap",
                                             help="Total ε all queries may spend (e.g. 5).")],
    min_contributors: Annotated[int, typer.Option(
        "--min-contributors", min=1, help="k: fewer contributions and the buyer is refunded.")],
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    store: StoreOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Create a cohort (you administer it); prints its id."""
    from marketplace.aggregate.query_document import parse_cohort_document  # noqa: PLC0415
    from marketplace.app.aggregate import CohortApp  # noqa: PLC0415

    with cli_errors():
        cap = parse_epsilon("--epsilon-cap", epsilon_cap)
        document = parse_cohort_document(schema.read_bytes())
        client = open_aggregator(rpc, aggregator)
        app = CohortApp(client, open_store(store), _wallet(keystore, passphrase_file))
        cohort_id, tx = app.create(document, cap, min_contributors)
    note(f"cohort {cohort_id} created: ε cap {cap}, k = {min_contributors} (tx {tx})")
    typer.echo(str(cohort_id))


@cohort_app.command("join")
def cohort_join(cohort: CohortArgument, rpc: RpcOption = None,
                aggregator: AggregatorOption = None, keystore: KeystoreOption = None,
                passphrase_file: PassphraseFileOption = None) -> None:
    """Join a cohort: your agent may then contribute to its queries."""
    from marketplace.app.aggregate import CohortApp  # noqa: PLC0415

    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        wallet = _wallet(keystore, passphrase_file)
        tx = CohortApp(client, None, wallet).join(cohort)
    note(f"{wallet.address} joined cohort {cohort} (tx {tx})")


@cohort_app.command("leave")
def cohort_leave(cohort: CohortArgument, rpc: RpcOption = None,
                 aggregator: AggregatorOption = None, keystore: KeystoreOption = None,
                 passphrase_file: PassphraseFileOption = None) -> None:
    """Leave a cohort (contributions already made still count and are paid)."""
    from marketplace.app.aggregate import CohortApp  # noqa: PLC0415

    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        wallet = _wallet(keystore, passphrase_file)
        tx = CohortApp(client, None, wallet).leave(cohort)
    note(f"{wallet.address} left cohort {cohort} (tx {tx})")


@cohort_app.command("show")
def cohort_show(cohort: CohortArgument, rpc: RpcOption = None,
                aggregator: AggregatorOption = None, store: StoreOption = None,
                from_block: FromBlockOption = 0, json_out: JsonOption = False) -> None:
    """A cohort: admin, ε cap and spent, k, members, and its schema document (verified)."""
    from marketplace.app.aggregate import show_cohort  # noqa: PLC0415

    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        content = open_store(store) if store is not None else None
        view = show_cohort(client, content, cohort, from_block)
    record = cohort_record(view)
    if json_out:
        print_json(record)
        return
    for key, value in record.items():
        if key != "fields":
            typer.echo(f"{key}: {value}")
    for spec in record.get("fields", []):
        unit = f", {spec['unit']}" if spec.get("unit") else ""
        typer.echo(f"field: {spec['name']} ({spec['type']}{unit})")


def cohort_record(view: CohortView) -> dict[str, Any]:
    c = view.cohort
    record: dict[str, Any] = {
        "cohort": int(c.cohort_id), "admin": c.admin, "epsilonCap": c.epsilon_cap / 1e6,
        "epsilonSpent": c.epsilon_spent / 1e6, "epsilonLeft": c.epsilon_left / 1e6,
        "minContributors": c.min_contributors, "members": c.members,
        "schemaHash": "0x" + c.schema_hash.hex(), "schemaURI": view.schema_uri,
    }
    if view.document is not None:
        record["title"] = view.document.title
        record["fields"] = [f.model_dump(exclude_none=True) for f in view.document.fields]
    elif view.problem is not None:
        record["schemaProblem"] = str(view.problem)
    return record


# ---------------------------------------------------------------- owner


def agent(
    cohort: Annotated[list[int], typer.Option("--cohort", min=1,
                                              help="A cohort to serve (repeat for more).")],
    data: Annotated[Path, typer.Option("--data", dir_okay=False,
                                       help="Your records (CSV with a header row; the LAST "
                                            "row is contributed).")],
    policy: Annotated[Path, typer.Option("--policy", dir_okay=False,
                                         help="Your consent policy (TOML: fields, "
                                              "max_epsilon, max_total_epsilon, "
                                              "min_price_per_contribution).")],
    once: Annotated[bool, typer.Option("--once", help="Handle what is open now, then exit.")]
    = False,
    state: Annotated[Path | None, typer.Option(
        "--state", dir_okay=False,
        help="The agent's state file (ε spent, debits served; default: "
             "<data>.agent-state.json). Keep it: it is your ε ledger.")] = None,
    poll_interval: Annotated[float, typer.Option("--poll-interval", min=0.5,
                                                 help="Seconds between checks.")] = 15.0,
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    store: StoreOption = None,
    from_block: FromBlockOption = 0,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Contribute your record to your cohorts' aggregate queries your policy allows.

    Each refusal is printed with its rule; your values and shares never are. Safe to
    rerun: it never contributes twice and remembers the ε it spent."""
    from marketplace.app.aggregate import AgentPolicy, OwnerAgent, read_records  # noqa: PLC0415

    with cli_errors():
        rules = AgentPolicy.from_toml(policy)
        records = read_records(data)
        client = open_aggregator(rpc, aggregator)
        owner = OwnerAgent(client, served_market(client), open_store(store),
                           _wallet(keystore, passphrase_file), rules, records,
                           state or data.with_name(data.name + ".agent-state.json"), cohort,
                           from_block=from_block)
        if once:
            for decision in owner.run_once():
                show_decision(decision)
            return
        note(f"agent for {owner.wallet.address} on cohort(s) "
             f"{', '.join(map(str, cohort))}; Ctrl-C to stop")
        try:
            owner.watch(poll_interval, show_decision)
        except KeyboardInterrupt:
            note("stopped")


def show_decision(decision: Decision) -> None:
    if decision.action == "contributed":
        note(f"aggregate debit {decision.debit_id}: contributed ({decision.reason})")
    elif decision.action == "failed":
        note(f"aggregate debit {decision.debit_id}: not handled, will retry ({decision.reason})")
    elif decision.action == "refused":
        note(f"aggregate debit {decision.debit_id}: refused by {decision.rule}: "
             f"{decision.reason}")
    else:
        note(f"aggregate debit {decision.debit_id}: skipped ({decision.reason})")


def claim_contribution(
    debit: DebitArgument,
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Credit your share of a paid-out aggregate debit; prints the wei credited (withdraw
    it from the AggregateMarket with the same wallet)."""
    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        wallet = _wallet(keystore, passphrase_file)
        sent = client.claim_contribution(wallet, debit)
        balance = client.balance_of(wallet.address)
    note(f"claimed {format_eth(sent.value)} for aggregate debit {debit}; balance "
         f"{format_eth(balance)} on the AggregateMarket")
    typer.echo(str(sent.value))


# ---------------------------------------------------------------- buyer


def parse_epsilon(option: str, text: str) -> Decimal:
    """A positive ε with at most six decimals (the contract counts micro-units)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        fail(f"{option} {text[:40]!r} is not a number (e.g. 0.5)")
    if not value.is_finite() or value <= 0:
        fail(f"{option} must be a positive number (got {text[:40]})")
    if value != value.quantize(Decimal(1).scaleb(-MAX_EPSILON_DECIMALS)):
        fail(f"{option} has more than {MAX_EPSILON_DECIMALS} decimals")
    return value


def parse_bins(text: str) -> tuple[int, ...]:
    parts = [p.strip() for p in text.split(",")]
    try:
        edges = tuple(int(p) for p in parts)
    except ValueError:
        fail(f"--bins {text[:60]!r} must be comma-separated integers (e.g. 0,18,30,45,65,120)")
    if len(edges) < 2:
        fail("--bins needs at least two edges (k + 1 edges make k bins)")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        fail(f"--bins {text[:60]!r} must be strictly increasing")
    return edges


def build_query(stat: str, field: str, epsilon: str, delta: float, bins: str | None,
                lo: int | None, hi: int | None, scale: int) -> Query:
    """The query from the options, every mistake a one-line error before any chain call."""
    from marketplace.aggregate import InvalidQuery, Query  # noqa: PLC0415 - numpy, opendp

    if stat not in STATS:
        fail(f"--stat {stat[:40]!r} is not one of {', '.join(STATS)}")
    value = parse_epsilon("--epsilon", epsilon)
    if not (math.isfinite(delta) and 0 < delta < 1):
        fail("--delta must be in (0, 1), e.g. 1e-6")
    if stat == "histogram" and bins is None:
        fail("--stat histogram needs --bins (e.g. 0,18,30,45,65,120)")
    if stat != "histogram" and bins is not None:
        fail(f"--bins is for --stat histogram, not {stat}")
    if stat in ("sum", "mean") and (lo is None or hi is None):
        fail(f"--stat {stat} needs --lo and --hi (the clipping bounds, in units of 1/--scale)")
    if stat not in ("sum", "mean") and (lo is not None or hi is not None):
        fail(f"--lo/--hi are for --stat sum or mean, not {stat}")
    try:
        return Query(stat=stat, field=field, epsilon=float(value), delta=delta, scale=scale,
                     lo=lo or 0, hi=hi or 0, bins=parse_bins(bins) if bins else ())
    except InvalidQuery as e:
        fail(str(e))


def query(
    cohort: Annotated[int, typer.Option("--cohort", min=1, help="The cohort to ask.")],
    stat: Annotated[str, typer.Option("--stat", help="count, sum, mean or histogram.")],
    field: Annotated[str, typer.Option("--field", help="The field of the cohort's schema.")],
    epsilon: Annotated[str, typer.Option("--epsilon", help="The query's ε (e.g. 0.5).")],
    deadline: Annotated[str, typer.Option("--deadline",
                                          help="Owners may contribute for this long (1h).")],
    price: Annotated[str, typer.Option("--price", help="What you pay in total (0.01eth, "
                                                       "gwei, or wei), split among the "
                                                       "contributors.")],
    bins: Annotated[str | None, typer.Option("--bins", help="Histogram edges, comma-separated "
                                                            "integers (0,18,30,45,65,120).")]
    = None,
    lo: Annotated[int | None, typer.Option("--lo", help="sum/mean: lower bound (quantized).")]
    = None,
    hi: Annotated[int | None, typer.Option("--hi", help="sum/mean: upper bound (quantized).")]
    = None,
    scale: Annotated[int, typer.Option("--scale", min=1, help="Values are multiplied by this "
                                                              "power of ten, then rounded.")]
    = 1,
    delta: Annotated[float, typer.Option("--delta", help="The query's δ.")] = 1e-6,
    round_seconds: Annotated[int, typer.Option("--round-seconds", min=5, max=3600,
                                               help="Length of each node round.")] = 30,
    requester: Annotated[str | None, typer.Option("--requester",
                                                  help="Who asks (default: your address).")]
    = None,
    purpose: Annotated[str, typer.Option("--purpose", help="Why you ask, for the owners.")]
    = "aggregate statistics",
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    store: StoreOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay for one aggregate query on a cohort; prints the aggregate debit id."""
    from marketplace.app.aggregate import AggregateBuyer  # noqa: PLC0415

    with cli_errors():
        asked = build_query(stat, field, epsilon, delta, bins, lo, hi, scale)
        seconds = parse_option("--deadline", deadline, parse_duration)
        wei = parse_option("--price", price, parse_wei)
        if wei <= 0:
            fail("--price must be more than zero")
        client = open_aggregator(rpc, aggregator)
        buyer = AggregateBuyer(client, served_market(client), open_store(store),
                               _wallet(keystore, passphrase_file))
        requested = buyer.query(cohort, asked, deadline_seconds=seconds, price=wei,
                                round_seconds=round_seconds, requester=requester,
                                purpose=purpose)
    debit = requested.debit
    note(f"paid {format_eth(debit.price)} for a {stat} of {field!r} on cohort {cohort} "
         f"(ε {debit.epsilon / 1e6:g}); contributions close {when(debit.deadline)} "
         f"(in {format_duration(seconds)}); query document {requested.query_uri}")
    note(f"then `datadebit buyer result {debit.debit_id}`")
    typer.echo(str(debit.debit_id))


def result(
    debit: DebitArgument,
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    store: StoreOption = None,
    committee: CommitteeOption = None,
    from_block: FromBlockOption = 0,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1,
                                           help="Seconds asking the gateways may take.")]
    = DEFAULT_TIMEOUT,
    json_out: JsonOption = False,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """The noisy answer of your aggregate debit: one line per cell with its estimate, the
    noise's standard deviation and a 95 % interval."""
    from marketplace.app.aggregate import AggregateBuyer, PartialsClient  # noqa: PLC0415
    from marketplace.keyclient import gateway_client  # noqa: PLC0415

    # each refusing gateway is in the output; no log lines besides it
    logging.getLogger("marketplace.app.aggregate").setLevel(logging.CRITICAL)
    opened: list[httpx.Client] = []
    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        market = served_market(client)
        public = read_committee(committee)
        buyer = AggregateBuyer(client, market, open_store(store),
                               _wallet(keystore, passphrase_file), from_block=from_block)

        def partials() -> PartialsClient:
            urls = {int(node.index): node.url for node in public.nodes if node.url}
            nodes = {i: gateway_client(url) for i, url in urls.items()}
            opened.extend(nodes.values())
            return PartialsClient(buyer.domain, nodes, timeout=timeout)

        buyer.partials_client_factory = partials
        try:
            answer = buyer.result(debit)
        finally:
            for node in opened:
                node.close()
    if json_out:
        print_json(result_record(answer))
    else:
        print_result(answer)


def result_record(answer: AggregateResult) -> dict[str, Any]:
    r, q = answer.result, answer.query
    return {
        "debitId": answer.debit_id, "stat": r.stat, "field": q.field,
        "values": list(r.values), "noiseSigma": r.noise_sigma,
        "intervals95": [list(i) for i in r.intervals], "contributors": r.contributors,
        "candidates": answer.candidates, "bins": list(q.bins) if q.bins else None,
        "usedNodes": list(answer.used_nodes), "dealers": list(answer.dealers),
        "faults": {str(k): v for k, v in sorted(answer.faults.items())},
        "excluded": [{"owner": o, "reason": why} for o, why in answer.excluded],
    }


def print_result(answer: AggregateResult) -> None:
    r, q = answer.result, answer.query
    labels = ([f"[{a}, {b})" for a, b in itertools.pairwise(q.bins)]
              if q.bins else [r.stat])
    width = max(len(label) for label in labels)
    typer.echo(f"{'cell':<{width}}  {'estimate':>12}  {'sigma':>9}  95% interval")
    for label, value, (low, high) in zip(labels, r.values, r.intervals, strict=True):
        typer.echo(f"{label:<{width}}  {value:>12.3f}  {r.noise_sigma:>9.3f}  "
                   f"[{low:.3f}, {high:.3f}]")
    note(f"{r.contributors} of {answer.candidates} contribution(s) counted; partials from "
         f"node(s) {', '.join(map(str, answer.used_nodes))}; noise from "
         f"{len(answer.dealers)} node(s)")
    for owner, why in answer.excluded:
        note(f"excluded {owner}: {why}")
    for node, why in sorted(answer.faults.items()):
        note(f"node {node} did not help: {why}")


def refund_aggregate(
    debit: DebitArgument,
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Refund an aggregate debit that got fewer than k contributions (after its deadline);
    the cohort's ε is returned. Prints the wei credited to the buyer."""
    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        wallet = _wallet(keystore, passphrase_file)
        sent = client.refund(wallet, debit)
    note(f"aggregate debit {debit} refunded: {format_eth(sent.value)} credited to its buyer "
         "on the AggregateMarket")
    typer.echo(str(sent.value))


def withdraw_aggregate(
    rpc: RpcOption = None,
    aggregator: AggregatorOption = None,
    keystore: KeystoreOption = None,
    passphrase_file: PassphraseFileOption = None,
) -> None:
    """Pay your AggregateMarket balance (claimed contributions, refunds) to your wallet;
    prints the wei withdrawn."""
    with cli_errors():
        client = open_aggregator(rpc, aggregator)
        wallet = _wallet(keystore, passphrase_file)
        sent = client.withdraw(wallet)
    note(f"withdrew {format_eth(sent.value)} to {wallet.address}")
    typer.echo(str(sent.value))
