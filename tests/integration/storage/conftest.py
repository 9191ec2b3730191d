"""A real js-ipfs daemon for the storage integration tests, one per session.

If it cannot start, every test that needs it fails with the daemon's log tail: a missing
daemon is a broken test environment, not a reason to skip.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.servers.ipfs import IpfsDaemon


@pytest.fixture(scope="session")
def ipfs_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsDaemon]:
    with IpfsDaemon(tmp_path_factory.mktemp("ipfs-daemon")) as daemon:
        yield daemon


@pytest.fixture(scope="session")
def ipfs_api(ipfs_daemon: IpfsDaemon) -> str:
    return ipfs_daemon.api_url
