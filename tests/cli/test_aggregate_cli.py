"""`datadebit buyer query`, `owner agent`, `cohort ...`: argument mistakes are one clear
`error:` line and exit 1, before any chain, store or wallet is touched (no --rpc is given,
so reaching the chain would fail with another message)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.conftest import invoke

QUERY = ["buyer", "query", "--cohort", "1", "--field", "age", "--deadline", "1h",
         "--price", "0.01eth"]


def error_of(*args: object) -> str:
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--stat", "median", "--epsilon", "0.5"],
         "--stat 'median' is not one of count, sum, mean, histogram"),
        (["--stat", "histogram", "--epsilon", "0", "--bins", "0,1"],
         "--epsilon must be a positive number"),
        (["--stat", "histogram", "--epsilon", "-1", "--bins", "0,1"],
         "--epsilon must be a positive number"),
        (["--stat", "histogram", "--epsilon", "much", "--bins", "0,1"],
         "--epsilon 'much' is not a number"),
        (["--stat", "histogram", "--epsilon", "0.1234567", "--bins", "0,1"],
         "--epsilon has more than 6 decimals"),
        (["--stat", "histogram", "--epsilon", "0.5", "--bins", "0,18,x"],
         "must be comma-separated integers"),
        (["--stat", "histogram", "--epsilon", "0.5", "--bins", "0,30,18"],
         "must be strictly increasing"),
        (["--stat", "histogram", "--epsilon", "0.5", "--bins", "5"],
         "--bins needs at least two edges"),
        (["--stat", "histogram", "--epsilon", "0.5"], "--stat histogram needs --bins"),
        (["--stat", "mean", "--epsilon", "0.5", "--bins", "0,1"], "--bins is for --stat histogram"),
        (["--stat", "mean", "--epsilon", "0.5", "--lo", "0"], "needs --lo and --hi"),
        (["--stat", "sum", "--epsilon", "0.5", "--lo", "5", "--hi", "5"], "need lo < hi"),
        (["--stat", "count", "--epsilon", "0.5", "--delta", "1.5"], "--delta must be in (0, 1)"),
        (["--stat", "count", "--epsilon", "0.5", "--scale", "3"], "scale must be a power of ten"),
    ],
    ids=["stat", "eps0", "eps-neg", "eps-text", "eps-decimals", "bins-text", "bins-order",
         "bins-one", "no-bins", "bins-mean", "no-hi", "lo-eq-hi", "delta", "scale"],
)
def test_buyer_query_argument_errors(extra: list[str], message: str) -> None:
    assert message in error_of(*QUERY, *extra)


def test_buyer_query_bad_deadline_and_price() -> None:
    base = [*QUERY[:6], "--stat", "count", "--epsilon", "0.5"]
    assert "--deadline" in error_of(*base, "--deadline", "soon", "--price", "1eth")
    assert "--price" in error_of(*base, "--deadline", "1h", "--price", "a lot")
    assert "--price must be more than zero" in error_of(*base, "--deadline", "1h",
                                                        "--price", "0")


def test_a_valid_query_goes_on_to_the_chain_settings() -> None:
    """The same command with good arguments fails only for want of a chain."""
    message = error_of(*QUERY, "--stat", "histogram", "--epsilon", "0.5",
                       "--bins", "0,18,30,45,65,120")
    assert "--aggregator" in message


def test_owner_agent_input_errors(tmp_path: Path) -> None:
    records = tmp_path / "records.csv"
    records.write_text("age\n41\n", encoding="utf-8")
    policy = tmp_path / "policy.toml"
    policy.write_text('fields = ["age"]\nmax_epsilon = 1\nmax_total_epsilon = 2\n',
                      encoding="utf-8")
    agent = ["owner", "agent", "--cohort", "1", "--data", records, "--policy", policy, "--once"]
    assert "missing min_price_per_contribution" in error_of(*agent)
    policy.write_text('fields = ["age"]\nmax_epsilon = 1\nmax_total_epsilon = 2\n'
                      'min_price_per_contribution = "1gwei"\n', encoding="utf-8")
    records.write_text("age\n", encoding="utf-8")
    assert "needs a header row and at least one record row" in error_of(*agent)
    records.write_text("age\n41\n", encoding="utf-8")
    assert "--aggregator" in error_of(*agent)  # inputs fine: now it needs the chain


def test_cohort_create_errors(tmp_path: Path) -> None:
    schema = tmp_path / "cohort.json"
    schema.write_text('{"schema": "datadebit/cohort/v1", "title": "t", "fields": []}',
                      encoding="utf-8")
    create = ["cohort", "create", "--schema", schema, "--min-contributors", "3"]
    assert "--epsilon-cap must be a positive number" in error_of(*create, "--epsilon-cap", "0")
    assert "fields" in error_of(*create, "--epsilon-cap", "5")
