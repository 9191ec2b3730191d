"""Error paths against a real chain: one `error: ...` line, exit 1, nothing spent or written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Deployment, deploy_market, invoke

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chain_only(anvil_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """A market without gateways: none of these errors gets as far as key release."""
    yield deploy_market(anvil_url, tmp_path_factory.mktemp("errors"), serve=False)


def _one_error_line(result: object) -> str:
    assert result.exit_code == 1, result.stdout  # type: ignore[attr-defined]
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    return stderr


def _listing(d: Deployment) -> int:
    result = d.as_owner("owner", "create-listing", "--price", 10, "--period", 60, "--auto-approve")
    assert result.exit_code == 0, result.stderr
    return int(result.stdout)


def test_unknown_listing(chain_only: Deployment, tmp_path: Path) -> None:
    d = chain_only
    data = tmp_path / "f"
    data.write_bytes(b"x" * 100)
    stderr = _one_error_line(d.as_owner("owner", "publish", "--listing", 999, data))
    assert "UnknownListing(listingId=999)" in stderr and "no listing has this id" in stderr
    assert not d.store.exists() or not any(d.store.rglob("*"))  # nothing stored
    stderr = _one_error_line(d.as_buyer("buyer", "request", "--listing", 999, "--periods", 1))
    assert "UnknownListing(listingId=999)" in stderr


def test_unknown_debit(chain_only: Deployment, tmp_path: Path) -> None:
    d = chain_only
    for args in (("owner", "consent", 999), ("owner", "revoke", 999), ("owner", "claim", 999)):
        assert "UnknownDebit(debitId=999)" in _one_error_line(d.as_owner(*args))
    out = tmp_path / "out"
    stderr = _one_error_line(d.as_buyer("buyer", "fetch", "--debit", 999, "--out", out))
    assert "UnknownDebit(debitId=999)" in stderr
    assert not out.exists()
    assert "UnknownDebit" in _one_error_line(d.as_buyer("buyer", "status", 999))


def test_publish_by_someone_else_is_refused_before_anything_is_stored(
    chain_only: Deployment, tmp_path: Path
) -> None:
    d = chain_only
    listing = _listing(d)
    data = tmp_path / "f"
    data.write_bytes(b"x" * 100)
    stderr = _one_error_line(d.as_buyer("owner", "publish", "--listing", listing, data))
    assert stderr == (
        f"error: listing {listing} belongs to {d.owner.address}, not to {d.buyer.address}\n"
    )
    assert not d.store.exists() or not any(d.store.rglob("*"))
    assert d.market.listing(listing).version_count == 0


def test_owner_commands_by_someone_else_revert_with_a_reason(chain_only: Deployment) -> None:
    d = chain_only
    listing = _listing(d)
    debit = d.as_buyer("buyer", "request", "--listing", listing, "--periods", 1)
    assert debit.exit_code == 0, debit.stderr
    stderr = _one_error_line(d.as_buyer("owner", "revoke", int(debit.stdout)))
    assert stderr.startswith("error: only the listing's owner may do this: ")
    assert "NotListingOwner" in stderr


def test_missing_file_to_publish(chain_only: Deployment, tmp_path: Path) -> None:
    d = chain_only
    listing = _listing(d)
    stderr = _one_error_line(d.as_owner("owner", "publish", "--listing", listing, tmp_path / "no"))
    assert stderr == f"error: No such file or directory: {tmp_path / 'no'}\n"
    assert d.market.listing(listing).version_count == 0


def test_wrong_market_address(chain_only: Deployment) -> None:
    d = chain_only
    env = {**d.env, "DATADEBIT_MARKET": d.owner.address}  # an account, not a contract
    result = invoke("owner", "list", "--owner", d.owner.address, env=env)
    stderr = _one_error_line(result)
    assert stderr.startswith(f"error: no contract at {d.owner.address} on chain ")
    assert "wrong --market?" in stderr


def test_fetch_before_any_version(chain_only: Deployment, tmp_path: Path) -> None:
    d = chain_only
    listing = _listing(d)
    debit = int(d.as_buyer("buyer", "request", "--listing", listing, "--periods", 1).stdout)
    out = tmp_path / "o"
    stderr = _one_error_line(d.as_buyer("buyer", "fetch", "--debit", debit, "--out", out))
    assert stderr == f"error: listing {listing} has no published version yet\n"


def test_fetch_of_someone_elses_debit(chain_only: Deployment, tmp_path: Path) -> None:
    d = chain_only
    listing = _listing(d)
    debit = int(d.as_buyer("buyer", "request", "--listing", listing, "--periods", 1).stdout)
    out = tmp_path / "o"
    stderr = _one_error_line(d.as_owner("buyer", "fetch", "--debit", debit, "--out", out))
    assert stderr == (
        f"error: debit {debit} belongs to {d.buyer.address}, not to {d.owner.address}\n"
    )


def test_zero_periods_is_a_usage_error(chain_only: Deployment) -> None:
    result = chain_only.as_buyer("buyer", "request", "--listing", 1, "--periods", 0)
    assert result.exit_code == 2  # a usage error: --periods must be >= 1
    assert "--periods" in result.stderr


def test_listing_with_nothing_for_an_owner(chain_only: Deployment) -> None:
    stranger = "0x" + "22" * 20
    result = invoke("owner", "list", "--owner", stranger, "--json", env=chain_only.env)
    assert result.exit_code == 0 and result.stdout.strip() == "[]"
