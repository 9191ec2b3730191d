"""IpfsStore on a real IPFS daemon: the shared store suite, CIDs equal to the daemon's, and a
daemon that is down, goes away, or does not know a CID."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.servers.ipfs import IpfsDaemon, free_port
from storage.cid import Cid
from storage.envelope import decrypt_file, encrypt_file
from storage.errors import ContentNotFound, StoreUnavailable
from storage.keys import DataKey
from storage.stores.ipfs import IpfsStore
from storage.stores.local import LocalStore
from storage.unixfs import CHUNK_SIZE, compute_cid
from tests.unit.storage.store_suite import StoreSuite, content, unknown_cid

pytestmark = pytest.mark.integration


@pytest.fixture
def ipfs(ipfs_api: str) -> Iterator[IpfsStore]:
    with IpfsStore(ipfs_api, lookup_timeout=1.0, has_timeout=0.5) as store:
        yield store


class TestIpfsStore(StoreSuite):
    @pytest.fixture
    def store(self, ipfs: IpfsStore) -> IpfsStore:
        return ipfs


def daemon_add(api: str, data: bytes, **params: str) -> str:
    """The daemon's own answer for `data`, asked directly with Kubo's CLI-equivalent options."""
    query = {"cid-version": "1", "cid-base": "base32", "pin": "false", **params}
    response = httpx.post(
        f"{api}/api/v0/add",
        params=query,
        files={"file": ("data", data, "application/octet-stream")},
        timeout=60.0,
    )
    response.raise_for_status()
    return str(json.loads(response.text.splitlines()[-1])["Hash"])


@pytest.mark.parametrize(
    "size",
    [0, 1, 12, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 174 * CHUNK_SIZE, 174 * CHUNK_SIZE + 1],
)
def test_daemon_cid_equals_ours(ipfs_api: str, ipfs: IpfsStore, size: int) -> None:
    data = content(size)
    ours = compute_cid([data])
    assert daemon_add(ipfs_api, data) == ours.text  # the daemon on its defaults for CIDv1
    assert ipfs.put(io.BytesIO(data)) == ours  # and through the store's explicit settings


def test_local_and_ipfs_stores_agree(ipfs: IpfsStore, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK_SIZE + 99)
    local = LocalStore(tmp_path / "local", fsync=False)
    assert local.put(io.BytesIO(data)) == ipfs.put(io.BytesIO(data))


def test_put_pins(ipfs_api: str, ipfs: IpfsStore) -> None:
    cid = ipfs.put(io.BytesIO(os.urandom(CHUNK_SIZE + 3)))
    answer = httpx.post(
        f"{ipfs_api}/api/v0/pin/ls",
        params={"arg": cid.text, "type": "recursive", "cid-base": "base32"},
        timeout=10.0,
    )
    assert answer.status_code == 200, answer.text
    assert cid.text in answer.text


def test_an_envelope_through_the_daemon(ipfs: IpfsStore, tmp_path: Path) -> None:
    """The owner's and the buyer's path: encrypt, put, get (verified), decrypt."""
    plain = tmp_path / "plain.csv"
    plain.write_bytes(os.urandom(3 * (1 << 20) + 7))
    key = DataKey.generate()
    sealed = encrypt_file(plain, tmp_path / "env", key)
    with sealed.path.open("rb") as source:
        assert ipfs.put(source) == sealed.cid
    assert ipfs.get(sealed.cid, tmp_path / "fetched") == sealed.size
    decrypt_file(tmp_path / "fetched", tmp_path / "back.csv", key)
    assert (tmp_path / "back.csv").read_bytes() == plain.read_bytes()


def test_unknown_cid_is_not_found_within_the_lookup_timeout(
    ipfs: IpfsStore, tmp_path: Path
) -> None:
    cid = unknown_cid()
    started = time.monotonic()
    with pytest.raises(ContentNotFound) as info:
        ipfs.get(cid, tmp_path / "out")
    assert time.monotonic() - started < 10.0  # bounded; js-ipfs would otherwise wait forever
    assert info.value.cid == cid.text and ipfs.url in str(info.value)
    assert not (tmp_path / "out").exists()
    assert not ipfs.has(cid)


def test_nothing_listening(tmp_path: Path) -> None:
    port = free_port()
    with IpfsStore(f"http://alice:s3cret@127.0.0.1:{port}", retries=1, backoff=0.01) as store:
        for call in (
            lambda: store.put(io.BytesIO(b"x")),
            lambda: store.has(unknown_cid()),
            lambda: store.get(unknown_cid(), tmp_path / "out"),
            lambda: store.pin(unknown_cid()),
        ):
            with pytest.raises(StoreUnavailable) as info:
                call()
            assert info.value.url == f"http://127.0.0.1:{port}"
            assert "s3cret" not in str(info.value) and "alice" not in str(info.value)
            assert "refused" in str(info.value).lower()
    assert list(tmp_path.iterdir()) == []


def test_a_daemon_that_goes_away(tmp_path: Path) -> None:
    """Pooled keep-alive connections to a stopped daemon end as StoreUnavailable too."""
    with IpfsDaemon(tmp_path / "daemon") as daemon:
        store = IpfsStore(daemon.api_url, retries=1, backoff=0.01)
        cid = store.put(io.BytesIO(b"soon gone"))
        assert store.has(cid)
    with pytest.raises(StoreUnavailable):
        store.has(cid)
    with pytest.raises(StoreUnavailable):
        store.get(cid, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    store.close()


def test_stream_verifies_what_cat_returns(ipfs: IpfsStore) -> None:
    data = content(2 * CHUNK_SIZE + 11)
    cid = ipfs.put(io.BytesIO(data))
    assert b"".join(ipfs.stream(cid)) == data
    assert Cid.parse(cid.text) == cid
