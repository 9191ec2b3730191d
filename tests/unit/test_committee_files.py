"""Committee files: round trip, passphrases, tampering, and the dealer's secret kept out."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import nacl.pwhash.argon2id as argon2id
import pytest
import typer
from typer.testing import CliRunner

from marketplace.cli.committee_commands import PASSPHRASE_ENV, register
from marketplace.committee import (
    COMMITTEE_FILE,
    CommitteeFilesExist,
    EmptyPassphrase,
    KdfStrength,
    MalformedCommitteeFile,
    NodeKey,
    PublicCommittee,
    WrongPassphrase,
    create_committee,
    load_node_key,
    read_node_key_file,
    read_public_committee,
    write_committee,
)
from marketplace.keyrelease import (
    CapsuleContext,
    Point,
    Scalar,
    make_capsule,
    make_key_share,
)
from marketplace.keyrelease.combine import combine
from marketplace.keyrelease.shamir import lagrange_coefficients
from storage.keys import DataKey

PASSPHRASE = "correct horse battery staple"
URLS = ["http://127.0.0.1:8701", "http://127.0.0.1:8702", "https://node3.example"]


@pytest.fixture(scope="module")
def committee_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("committee")
    public, key_files = create_committee(
        3, 2, PASSPHRASE, strength=KdfStrength.INTERACTIVE, urls=URLS
    )
    write_committee(out, public, key_files)
    return out


@pytest.fixture(scope="module")
def node_keys(committee_dir: Path) -> list[NodeKey]:
    return [load_node_key(committee_dir / f"node-{i}.json", PASSPHRASE) for i in (1, 2, 3)]


def test_files_round_trip(committee_dir: Path, node_keys: list[NodeKey]) -> None:
    public = read_public_committee(committee_dir / COMMITTEE_FILE)
    assert public.threshold == 2
    assert [n.url for n in public.nodes] == URLS
    raw = json.loads((committee_dir / COMMITTEE_FILE).read_text())
    assert set(raw) == {"threshold", "committeeKey", "nodes"}
    assert set(raw["nodes"][0]) == {"index", "address", "shareKey", "url"}
    assert PublicCommittee.from_json(public.to_json()) == public
    for key, node in zip(node_keys, public.nodes, strict=True):
        assert key.index == node.index
        assert key.address == node.address
        assert key.share.share_key.point == node.share_key


def test_loaded_shares_release_a_key(committee_dir: Path, node_keys: list[NodeKey]) -> None:
    keys = read_public_committee(committee_dir / COMMITTEE_FILE).keys()
    ctx = CapsuleContext(1, "0x" + "ab" * 20, 1, 1, b"\x01\x55")
    dek = DataKey.generate()
    capsule = make_capsule(dek, ctx, keys.committee_key)
    shares = [
        make_key_share(k.share, capsule.bind(ctx), 1, 1).verify(keys.share_key(k.index), capsule)
        for k in node_keys[1:]
    ]
    assert combine(keys, capsule, ctx, shares) == dek


def test_the_dealer_secret_is_nowhere_in_the_files(
    committee_dir: Path, node_keys: list[NodeKey]
) -> None:
    secrets = {k.index: Scalar.from_bytes(k.share.secret.to_secret_bytes()) for k in node_keys}
    s = Scalar.from_int(0)
    for i, lam in lagrange_coefficients([1, 2]).items():
        s = s + lam * secrets[i]
    public = read_public_committee(committee_dir / COMMITTEE_FILE)
    assert Point.base_mul(s) == public.committee_key  # s really is log_G(Y)
    forbidden = [s.to_bytes(), s.to_bytes()[::-1]] + [x.to_bytes() for x in secrets.values()]
    for path in committee_dir.iterdir():
        content = path.read_bytes()
        for secret in forbidden:
            assert secret not in content
            assert secret.hex().encode() not in content.lower()
        assert str(s.to_int()).encode() not in content


def test_node_key_files_are_private(committee_dir: Path) -> None:
    for i in (1, 2, 3):
        assert stat.S_IMODE((committee_dir / f"node-{i}.json").stat().st_mode) == 0o600


def test_kdf_parameters_are_stored(committee_dir: Path) -> None:
    raw = json.loads((committee_dir / "node-1.json").read_text())
    assert raw["format"] == "datadebit-node-key/v1"
    share = raw["share"]
    assert (share["kdf"], share["cipher"]) == ("argon2id", "xsalsa20poly1305")
    assert (share["opslimit"], share["memlimit"]) == KdfStrength.INTERACTIVE.argon2id_limits
    assert len(bytes.fromhex(share["salt"][2:])) == argon2id.SALTBYTES
    assert raw["ethereumKey"]["crypto"]["kdf"] == "scrypt"
    assert KdfStrength.MODERATE.argon2id_limits == (
        argon2id.OPSLIMIT_MODERATE,
        argon2id.MEMLIMIT_MODERATE,
    )


def test_a_wrong_passphrase_fails_clearly(committee_dir: Path) -> None:
    path = committee_dir / "node-2.json"
    with pytest.raises(WrongPassphrase) as caught:
        load_node_key(path, "not the passphrase")
    assert str(path) in str(caught.value)
    assert "not the passphrase" not in str(caught.value)
    with pytest.raises(EmptyPassphrase):
        load_node_key(path, "")


def test_node_key_never_prints_its_secrets(node_keys: list[NodeKey]) -> None:
    key = node_keys[0]
    text = repr(key) + repr(key.share)
    assert key.share.secret.to_secret_bytes().hex() not in text
    assert key.account.key.hex()[2:] not in text
    assert "<secret>" in text


def test_existing_files_are_never_overwritten(committee_dir: Path) -> None:
    public, key_files = create_committee(3, 2, PASSPHRASE, strength=KdfStrength.INTERACTIVE)
    before = (committee_dir / COMMITTEE_FILE).read_bytes()
    with pytest.raises(CommitteeFilesExist):
        write_committee(committee_dir, public, key_files)
    assert (committee_dir / COMMITTEE_FILE).read_bytes() == before


def _rewrite(src: Path, dst: Path, edit: dict[str, object]) -> Path:
    data = json.loads(src.read_text())
    data.update(edit)
    dst.write_text(json.dumps(data))
    return dst


def test_swapped_secrets_are_detected(committee_dir: Path, tmp_path: Path) -> None:
    """node-1's encrypted share under node-2's public fields: same passphrase, wrong key."""
    node1 = json.loads((committee_dir / "node-1.json").read_text())
    path = _rewrite(committee_dir / "node-2.json", tmp_path / "n.json", {"share": node1["share"]})
    with pytest.raises(MalformedCommitteeFile, match="does not match"):
        load_node_key(path, PASSPHRASE)
    path = _rewrite(
        committee_dir / "node-2.json", tmp_path / "m.json", {"ethereumKey": node1["ethereumKey"]}
    )
    with pytest.raises(MalformedCommitteeFile, match="Ethereum key"):
        load_node_key(path, PASSPHRASE)


def test_a_keystore_under_another_passphrase_is_malformed(
    committee_dir: Path, tmp_path: Path
) -> None:
    other = create_committee(1, 1, "another passphrase", strength=KdfStrength.INTERACTIVE)[1][0]
    path = _rewrite(
        committee_dir / "node-1.json", tmp_path / "k.json", {"ethereumKey": other.keystore}
    )
    with pytest.raises(MalformedCommitteeFile, match="ethereumKey"):
        load_node_key(path, PASSPHRASE)


@pytest.mark.parametrize(
    "edit",
    [
        {"format": "something else"},
        {"index": 0},
        {"index": "1"},
        {"address": "0x1234"},
        {"shareKey": "0x" + "00" * 32},
        {"shareKey": "0x" + "11" * 31},
        {"share": "not an object"},
        {"ethereumKey": None},
        {"ethereumKey": {"crypto": {"kdf": "pbkdf2", "kdfparams": {"c": 10**9}}}},
        {"ethereumKey": {"crypto": {"kdf": "scrypt", "kdfparams": {"n": 2**30, "r": 8, "p": 1}}}},
        {"ethereumKey": {"crypto": {"kdf": "scrypt", "kdfparams": {"n": 2**14, "r": 64, "p": 1}}}},
    ],
)
def test_malformed_node_key_files_are_refused(
    committee_dir: Path, tmp_path: Path, edit: dict[str, object]
) -> None:
    path = _rewrite(committee_dir / "node-1.json", tmp_path / "node.json", edit)
    with pytest.raises(MalformedCommitteeFile) as caught:
        read_node_key_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "share_edit",
    [{"memlimit": 2**40}, {"opslimit": 0}, {"salt": "0x00"}, {"kdf": "scrypt"}],
)
def test_kdf_parameters_from_the_file_are_bounded(
    committee_dir: Path, tmp_path: Path, share_edit: dict[str, object]
) -> None:
    raw = json.loads((committee_dir / "node-1.json").read_text())
    raw["share"].update(share_edit)
    path = tmp_path / "node.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(MalformedCommitteeFile):
        read_node_key_file(path)


def test_a_file_that_is_not_json_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "committee.json"
    path.write_text("{not json")
    with pytest.raises(MalformedCommitteeFile):
        read_public_committee(path)


def _public_edit(committee_dir: Path) -> dict[str, object]:
    loaded: dict[str, object] = json.loads((committee_dir / COMMITTEE_FILE).read_text())
    return loaded


def test_public_file_checks(committee_dir: Path, tmp_path: Path) -> None:
    good = _public_edit(committee_dir)
    nodes = good["nodes"]
    assert isinstance(nodes, list)
    cases: list[dict[str, object]] = [
        {**good, "threshold": 4},
        {**good, "threshold": 0},
        {**good, "committeeKey": nodes[0]["shareKey"]},
        {**good, "nodes": [nodes[1], nodes[0], nodes[2]]},
        {**good, "nodes": [nodes[0], {**nodes[1], "address": nodes[0]["address"]}, nodes[2]]},
        {**good, "nodes": [nodes[0], nodes[1], {**nodes[2], "shareKey": nodes[0]["shareKey"]}]},
        {**good, "nodes": [nodes[0], nodes[1], {**nodes[2], "url": "ftp://x"}]},
        {**good, "nodes": []},
    ]
    for number, case in enumerate(cases):
        path = tmp_path / f"c{number}.json"
        path.write_text(json.dumps(case))
        with pytest.raises(MalformedCommitteeFile):
            read_public_committee(path)


def test_create_refuses_bad_inputs() -> None:
    with pytest.raises(EmptyPassphrase):
        create_committee(2, 1, "", strength=KdfStrength.INTERACTIVE)
    with pytest.raises(ValueError, match="URLs"):
        create_committee(2, 1, PASSPHRASE, strength=KdfStrength.INTERACTIVE, urls=URLS)


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """A root with a callback, so `committee` stays a sub-command."""

    return app


def test_cli_init_with_a_passphrase_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "pass"
    secret_file.write_text(PASSPHRASE + "\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _cli(),
        [
            *("committee", "init", "--n", "3", "--t", "2", "--out", str(out)),
            *("--passphrase-file", str(secret_file), "--kdf", "interactive"),
            *("--urls", ",".join(URLS), "--trusted-dealer"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "committee.json",
        "node-1.json",
        "node-2.json",
        "node-3.json",
    ]
    assert load_node_key(out / "node-3.json", PASSPHRASE).index == 3
    assert [n.url for n in read_public_committee(out / COMMITTEE_FILE).nodes] == URLS


def test_cli_init_with_the_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        _cli(),
        ["committee", "init", "--n", "1", "--t", "1", "--out", str(out), "--kdf", "interactive",
         "--trusted-dealer"],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert result.exit_code == 0, result.output
    assert PASSPHRASE not in result.output
    node = load_node_key(out / "node-1.json", PASSPHRASE)
    assert read_public_committee(out / COMMITTEE_FILE).nodes[0].url is None
    assert node.index == 1


@pytest.mark.parametrize(
    "args",
    [
        ["--n", "2", "--t", "3"],
        ["--n", "2", "--t", "1", "--urls", "http://a"],
        ["--n", "0", "--t", "1"],
    ],
)
def test_cli_refuses_bad_parameters(tmp_path: Path, args: list[str]) -> None:
    result = CliRunner().invoke(
        _cli(),
        ["committee", "init", "--out", str(tmp_path / "out"), "--kdf", "interactive", *args],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_cli_refuses_to_overwrite(committee_dir: Path) -> None:
    result = CliRunner().invoke(
        _cli(),
        [
            *("committee", "init", "--n", "3", "--t", "2"),
            *("--out", str(committee_dir), "--kdf", "interactive"),
        ],
        env={PASSPHRASE_ENV: PASSPHRASE},
    )
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
