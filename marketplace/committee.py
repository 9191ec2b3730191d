"""Committee files: one passphrase-encrypted key file per node and the public committee file.

`node-<i>.json` holds node i's index, Ethereum address and share key Y_i in the clear,
its share s_i under argon2id + secretbox, and its Ethereum key as a standard eth-account
keystore (so operators can use it with other tools). `committee.json` is what the deploy
step and buyers read: `{"threshold", "committeeKey", "nodes": [{"index", "address",
"shareKey", "url"}]}`. The dealer's secret s appears in neither.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.public
import nacl.pwhash
import nacl.secret
import nacl.utils
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from eth_utils.address import is_address, to_checksum_address

from marketplace.errors import MarketplaceError
from marketplace.kdf import KdfStrength
from marketplace.keyrelease import (
    CommitteeKeys,
    KeyReleaseError,
    NodeIndex,
    NodeShare,
    Point,
    SecretScalar,
    ShareKey,
    deal,
)

COMMITTEE_FILE = "committee.json"
ROSTER_FILE = "roster.json"
NODE_ACCOUNT_FORMAT = "datadebit-node-key/v2"
NODE_X25519_TAG = b"datadebit/node-x25519/v1"
NODE_KEY_FORMAT = "datadebit-node-key/v1"
_argon2id = nacl.pwhash.argon2id


def node_encryption_secret(account: LocalAccount) -> nacl.public.PrivateKey:
    """The node's X25519 key for ceremony messages (shares sealed to it), derived from its
    Ethereum key so that a node key file keeps one secret: a keyed BLAKE2b is a PRF, so the
    two keys are independent for anyone without the Ethereum key."""
    secret = hashlib.blake2b(bytes(account.key), key=NODE_X25519_TAG, digest_size=32).digest()
    return nacl.public.PrivateKey(secret)


def node_encryption_key(account: LocalAccount) -> bytes:
    """The public half of `node_encryption_secret`: what a roster lists for the node."""
    return bytes(node_encryption_secret(account).public_key)


def node_key_file_name(index: int) -> str:
    return f"node-{index}.json"


class CommitteeFileError(MarketplaceError):
    """Base of failures reading or writing committee files."""


class MalformedCommitteeFile(CommitteeFileError, ValueError):
    """A committee or node key file does not parse or is inconsistent."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class CommitteeFileUnreadable(CommitteeFileError, OSError):
    """A committee or node key file that cannot be read (missing, no permission)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: cannot be read ({reason})")


class WrongPassphrase(CommitteeFileError):
    """The passphrase does not decrypt the node key file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(f"{self.path}: wrong passphrase (the key file does not decrypt)")


class CommitteeFilesExist(CommitteeFileError, FileExistsError):
    """Refusing to overwrite existing committee files (that would orphan deployed keys)."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = tuple(paths)
        names = ", ".join(str(p) for p in self.paths)
        super().__init__(f"refusing to overwrite existing files: {names}")


class EmptyPassphrase(CommitteeFileError, ValueError):
    def __init__(self) -> None:
        super().__init__("the passphrase must not be empty")


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass(frozen=True, slots=True)
class CommitteeNode:
    """One entry of `committee.json`; `url` is null until the operator knows it."""

    index: NodeIndex
    address: ChecksumAddress
    share_key: Point
    url: str | None


@dataclass(frozen=True, slots=True)
class PublicCommittee:
    """The public committee file: what the deploy step puts on-chain, plus node URLs."""

    threshold: int
    committee_key: Point
    nodes: tuple[CommitteeNode, ...]

    def keys(self) -> CommitteeKeys:
        return CommitteeKeys(
            self.threshold,
            self.committee_key,
            tuple(ShareKey(node.index, node.share_key) for node in self.nodes),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "committeeKey": _hex(self.committee_key.to_bytes()),
            "nodes": [
                {
                    "index": node.index,
                    "address": node.address,
                    "shareKey": _hex(node.share_key.to_bytes()),
                    "url": node.url,
                }
                for node in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, data: Any, path: Path | str = COMMITTEE_FILE) -> PublicCommittee:
        """Parse and check: points valid, indices 1..n in order, addresses distinct, and
        the share keys consistent with the committee key."""
        reader = _Reader(path)
        obj = reader.obj(data, "committee")
        raw_nodes = obj.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise MalformedCommitteeFile(path, "`nodes` must be a non-empty list")
        nodes = tuple(reader.node(raw, position) for position, raw in enumerate(raw_nodes, 1))
        if len({node.address for node in nodes}) != len(nodes):
            raise MalformedCommitteeFile(path, "two nodes share an Ethereum address")
        committee = cls(
            threshold=reader.integer(obj, "threshold"),
            committee_key=reader.point(obj, "committeeKey"),
            nodes=nodes,
        )
        try:
            committee.keys().check_consistent()
        except ValueError as e:  # InvalidThreshold, InconsistentCommittee
            raise MalformedCommitteeFile(path, str(e)) from e
        return committee


@dataclass(frozen=True, slots=True)
class SealedShareSecret:
    """s_i under a key derived from the passphrase: argon2id (limits stored) + secretbox."""

    opslimit: int
    memlimit: int
    salt: bytes
    ciphertext: bytes

    @classmethod
    def seal(
        cls, secret: SecretScalar, passphrase: str, strength: KdfStrength
    ) -> SealedShareSecret:
        opslimit, memlimit = strength.argon2id_limits
        salt = nacl.utils.random(_argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_derive(passphrase, salt, opslimit, memlimit))
        return cls(opslimit, memlimit, salt, bytes(box.encrypt(secret.to_secret_bytes())))

    def open(self, passphrase: str, path: Path | str) -> SecretScalar:
        box = nacl.secret.SecretBox(_derive(passphrase, self.salt, self.opslimit, self.memlimit))
        try:
            plain = box.decrypt(self.ciphertext)
        except nacl.exceptions.CryptoError as e:
            raise WrongPassphrase(path) from e
        try:
            return SecretScalar.from_secret_bytes(plain)
        except KeyReleaseError as e:
            raise MalformedCommitteeFile(path, "the decrypted share is not a scalar") from e

    def to_json(self) -> dict[str, Any]:
        return {
            "kdf": "argon2id",
            "opslimit": self.opslimit,
            "memlimit": self.memlimit,
            "salt": _hex(self.salt),
            "cipher": "xsalsa20poly1305",
            "ciphertext": _hex(self.ciphertext),
        }


def _derive(passphrase: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    if not passphrase:
        raise EmptyPassphrase()
    return _argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE,
        passphrase.encode("utf-8"),
        salt,
        opslimit=opslimit,
        memlimit=memlimit,
    )


class NodeKey:
    """An unlocked node key: the node's Ethereum account and, for a committee dealt by a
    trusted dealer (development only), its epoch-1 share. A DKG node has no share here:
    its shares come from ceremonies and live in its state. Never printed."""

    __slots__ = ("account", "share")

    def __init__(self, share: NodeShare | None, account: LocalAccount) -> None:
        self.share = share
        self.account = account

    @property
    def index(self) -> NodeIndex | None:
        """The dealt share's index (None for a DKG node: its index is per epoch)."""
        return None if self.share is None else self.share.index

    @property
    def address(self) -> ChecksumAddress:
        return self.account.address

    @property
    def encryption_key(self) -> bytes:
        return node_encryption_key(self.account)

    def __repr__(self) -> str:
        return f"NodeKey(index={self.index}, address={self.address}, <secret>)"


@dataclass(frozen=True, slots=True)
class NodeKeyFile:
    """A node key file as stored: public fields in the clear, both secrets encrypted."""

    index: NodeIndex
    address: ChecksumAddress
    share_key: Point
    sealed_share: SealedShareSecret
    keystore: dict[str, Any]

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def create(
        cls,
        share: NodeShare,
        account: LocalAccount,
        passphrase: str,
        strength: KdfStrength,
    ) -> NodeKeyFile:
        return cls(
            index=share.index,
            address=account.address,
            share_key=share.share_key.point,
            sealed_share=SealedShareSecret.seal(share.secret, passphrase, strength),
            keystore=account.encrypt(passphrase, kdf="scrypt", iterations=strength.scrypt_n),
        )

    def unlock(self, passphrase: str, path: Path | str = "node key file") -> NodeKey:
        """Decrypt both secrets; check they match the public fields next to them."""
        secret = self.sealed_share.open(passphrase, path)
        try:
            share = NodeShare(ShareKey(self.index, self.share_key), secret)
        except ValueError as e:
            raise MalformedCommitteeFile(path, "the share does not match shareKey") from e
        try:
            private_key = Account.decrypt(self.keystore, passphrase)
        except (ValueError, KeyError, TypeError) as e:
            # The passphrase just opened the share, so this keystore is not the file's own.
            raise MalformedCommitteeFile(
                path, "ethereumKey does not decrypt with the share's passphrase"
            ) from e
        account: LocalAccount = Account.from_key(private_key)
        if account.address != self.address:
            raise MalformedCommitteeFile(path, "the Ethereum key does not match `address`")
        return NodeKey(share, account)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": NODE_KEY_FORMAT,
            "index": self.index,
            "address": self.address,
            "shareKey": _hex(self.share_key.to_bytes()),
            "share": self.sealed_share.to_json(),
            "ethereumKey": self.keystore,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> NodeKeyFile:
        reader = _Reader(path)
        obj = reader.obj(data, "node key file")
        if obj.get("format") != NODE_KEY_FORMAT:
            raise MalformedCommitteeFile(path, f"`format` is not {NODE_KEY_FORMAT!r}")
        share = reader.obj(obj.get("share"), "share")
        if share.get("kdf") != "argon2id" or share.get("cipher") != "xsalsa20poly1305":
            raise MalformedCommitteeFile(path, "share: unsupported kdf or cipher")
        return cls(
            index=reader.index(obj),
            address=reader.address(obj),
            share_key=reader.point(obj, "shareKey"),
            sealed_share=SealedShareSecret(
                opslimit=reader.bounded(share, "opslimit", 1, _argon2id.OPSLIMIT_SENSITIVE),
                memlimit=reader.bounded(
                    share, "memlimit", _argon2id.MEMLIMIT_MIN, _argon2id.MEMLIMIT_SENSITIVE
                ),
                salt=reader.hex_bytes(share, "salt", _argon2id.SALTBYTES),
                ciphertext=reader.hex_bytes(share, "ciphertext", None),
            ),
            keystore=reader.keystore(obj),
        )


class _Reader:
    """Typed field access for JSON from a file, raising MalformedCommitteeFile with the path."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def fail(self, reason: str) -> MalformedCommitteeFile:
        return MalformedCommitteeFile(self.path, reason)

    def obj(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be a JSON object")
        return value

    def integer(self, obj: dict[str, Any], key: str) -> int:
        value = obj.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"`{key}` must be an integer")
        return value

    def bounded(self, obj: dict[str, Any], key: str, low: int, high: int) -> int:
        """An integer within limits: a tampered file must not make us allocate 100 GiB."""
        value = self.integer(obj, key)
        if not low <= value <= high:
            raise self.fail(f"`{key}` must be in {low}..{high}")
        return value

    def index(self, obj: dict[str, Any]) -> NodeIndex:
        value = self.integer(obj, "index")
        if not 1 <= value <= 255:
            raise self.fail("`index` must be in 1..255")
        return NodeIndex(value)

    def hex_bytes(self, obj: dict[str, Any], key: str, size: int | None) -> bytes:
        value = obj.get(key)
        if not isinstance(value, str) or not value.startswith("0x"):
            raise self.fail(f"`{key}` must be 0x-hex")
        try:
            data = bytes.fromhex(value[2:])
        except ValueError as e:
            raise self.fail(f"`{key}` must be 0x-hex") from e
        if size is not None and len(data) != size:
            raise self.fail(f"`{key}` must be {size} bytes")
        return data

    def point(self, obj: dict[str, Any], key: str) -> Point:
        try:
            return Point.from_bytes(self.hex_bytes(obj, key, Point.SIZE), key)
        except KeyReleaseError as e:
            raise self.fail(f"`{key}` is not a valid point") from e

    def address(self, obj: dict[str, Any]) -> ChecksumAddress:
        value = obj.get("address")
        if not isinstance(value, str) or not is_address(value):
            raise self.fail("`address` must be an Ethereum address")
        return to_checksum_address(value)

    def keystore(self, obj: dict[str, Any]) -> dict[str, Any]:
        """An scrypt keystore whose work factors stay within geth's standard ones."""
        keystore = self.obj(obj.get("ethereumKey"), "ethereumKey")
        crypto = self.obj(keystore.get("crypto"), "ethereumKey.crypto")
        if crypto.get("kdf") != "scrypt":
            raise self.fail("ethereumKey must be an scrypt keystore")
        params = self.obj(crypto.get("kdfparams"), "ethereumKey kdfparams")
        self.bounded(params, "n", 2, 2**18)
        self.bounded(params, "r", 1, 8)
        self.bounded(params, "p", 1, 8)
        return keystore

    def node(self, raw: Any, position: int) -> CommitteeNode:
        obj = self.obj(raw, f"node {position}")
        index = self.index(obj)
        if index != position:
            raise self.fail(f"nodes must be listed by index 1..n (found {index} at {position})")
        url = obj.get("url")
        is_http = isinstance(url, str) and url.startswith(("http://", "https://"))
        if url is not None and not is_http:
            raise self.fail(f"node {index}: `url` must be null or an http(s) URL")
        return CommitteeNode(index, self.address(obj), self.point(obj, "shareKey"), url)


def create_committee(
    size: int,
    threshold: int,
    passphrase: str,
    *,
    strength: KdfStrength = KdfStrength.MODERATE,
    urls: Sequence[str] | None = None,
) -> tuple[PublicCommittee, tuple[NodeKeyFile, ...]]:
    """Deal a fresh committee and encrypt each node's secrets; writes nothing."""
    if urls is not None and len(urls) != size:
        raise ValueError(f"{len(urls)} URLs for {size} nodes")
    dealt = deal(size, threshold)
    key_files = tuple(
        NodeKeyFile.create(share, Account.create(), passphrase, strength) for share in dealt.shares
    )
    public = PublicCommittee(
        threshold=threshold,
        committee_key=dealt.keys.committee_key,
        nodes=tuple(
            CommitteeNode(f.index, f.address, f.share_key, None if urls is None else urls[i])
            for i, f in enumerate(key_files)
        ),
    )
    return public, key_files


def write_committee(
    out_dir: Path, public: PublicCommittee, key_files: Sequence[NodeKeyFile]
) -> tuple[Path, ...]:
    """Write `committee.json` and `node-<i>.json` (mode 0600); never overwrites a file."""
    targets = [out_dir / COMMITTEE_FILE] + [
        out_dir / node_key_file_name(f.index) for f in key_files
    ]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise CommitteeFilesExist(existing)
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, key_file in zip(targets[1:], key_files, strict=True):
        _write_new(target, key_file.to_json(), mode=0o600)
    _write_new(targets[0], public.to_json(), mode=0o644)  # last: marks a complete set
    return tuple(targets)


def _write_new(path: Path, content: dict[str, Any], *, mode: int) -> None:
    """Create `path` exclusively (a concurrent writer loses instead of overwriting);
    `mode` is narrowed by the umask, never widened."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)
            handle.write("\n")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedCommitteeFile(path, "not a JSON file") from e
    except OSError as e:
        raise CommitteeFileUnreadable(path, e.strerror or type(e).__name__) from e


def read_public_committee(path: Path) -> PublicCommittee:
    return PublicCommittee.from_json(_read_json(path), path)


def read_node_key_file(path: Path) -> NodeKeyFile | NodeAccountFile:
    """The public part of a node key file (dealt v1 or DKG v2), still locked."""
    data = _read_json(path)
    if isinstance(data, dict) and data.get("format") == NODE_ACCOUNT_FORMAT:
        return NodeAccountFile.from_json(data, path)
    return NodeKeyFile.from_json(data, path)


def load_node_key(path: Path, passphrase: str) -> NodeKey:
    """Read and unlock a node key file: the gateway's start-up call."""
    return read_node_key_file(path).unlock(passphrase, path)


@dataclass(frozen=True, slots=True)
class NodeAccountFile:
    """A DKG node's key file (v2): its Ethereum key as a keystore, its address and X25519
    encryption key in the clear. No share: shares come from ceremonies."""

    address: ChecksumAddress
    encryption_key: bytes
    keystore: dict[str, Any]

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def create(
        cls, account: LocalAccount, passphrase: str, strength: KdfStrength
    ) -> NodeAccountFile:
        if not passphrase:
            raise EmptyPassphrase()
        return cls(
            address=account.address,
            encryption_key=node_encryption_key(account),
            keystore=account.encrypt(passphrase, kdf="scrypt", iterations=strength.scrypt_n),
        )

    def unlock(self, passphrase: str, path: Path | str = "node key file") -> NodeKey:
        try:
            private_key = Account.decrypt(self.keystore, passphrase)
        except ValueError as e:
            raise WrongPassphrase(path) from e
        except (KeyError, TypeError) as e:
            raise MalformedCommitteeFile(path, "ethereumKey is not a keystore") from e
        account: LocalAccount = Account.from_key(private_key)
        if account.address != self.address:
            raise MalformedCommitteeFile(path, "the Ethereum key does not match `address`")
        if node_encryption_key(account) != self.encryption_key:
            raise MalformedCommitteeFile(path, "`encryptionKey` is not this key's")
        return NodeKey(None, account)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": NODE_ACCOUNT_FORMAT,
            "address": self.address,
            "encryptionKey": _hex(self.encryption_key),
            "ethereumKey": self.keystore,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path | str) -> NodeAccountFile:
        reader = _Reader(path)
        obj = reader.obj(data, "node key file")
        return cls(
            address=reader.address(obj),
            encryption_key=reader.hex_bytes(obj, "encryptionKey", 32),
            keystore=reader.keystore(obj),
        )


@dataclass(frozen=True, slots=True)
class RosterNode:
    """One proposed committee member: address, X25519 encryption key, gateway URL."""

    address: ChecksumAddress
    encryption_key: bytes
    url: str | None


@dataclass(frozen=True, slots=True)
class RosterFile:
    """`roster.json`: what the governor proposes (or deploys) for a ceremony, and where
    buyers find each node: `{"threshold", "nodes": [{"address", "encryptionKey", "url"}]}`."""

    threshold: int
    nodes: tuple[RosterNode, ...]

    def url_of(self, address: str) -> str | None:
        for node in self.nodes:
            if node.address.lower() == address.lower():
                return node.url
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "nodes": [
                {"address": n.address, "encryptionKey": _hex(n.encryption_key), "url": n.url}
                for n in self.nodes
            ],
        }

    @classmethod
    def from_json(cls, data: Any, path: Path | str = ROSTER_FILE) -> RosterFile:
        reader = _Reader(path)
        obj = reader.obj(data, "roster")
        raw_nodes = obj.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes or len(raw_nodes) > 255:
            raise MalformedCommitteeFile(path, "`nodes` must be a list of 1..255 nodes")
        nodes = []
        for position, raw in enumerate(raw_nodes, 1):
            entry = reader.obj(raw, f"node {position}")
            url = entry.get("url")
            if url is not None and not (
                isinstance(url, str) and url.startswith(("http://", "https://"))
            ):
                raise MalformedCommitteeFile(path, f"node {position}: `url` must be http(s)")
            nodes.append(
                RosterNode(
                    reader.address(entry), reader.hex_bytes(entry, "encryptionKey", 32), url
                )
            )
        if len({n.address for n in nodes}) != len(nodes):
            raise MalformedCommitteeFile(path, "two nodes share an Ethereum address")
        threshold = reader.integer(obj, "threshold")
        if not 1 <= threshold <= len(nodes):
            raise MalformedCommitteeFile(path, f"`threshold` must be in 1..{len(nodes)}")
        return cls(threshold, tuple(nodes))


def read_roster(path: Path) -> RosterFile:
    return RosterFile.from_json(_read_json(path), path)


def create_dkg_nodes(
    size: int,
    threshold: int,
    passphrase: str,
    *,
    strength: KdfStrength = KdfStrength.MODERATE,
    urls: Sequence[str] | None = None,
) -> tuple[RosterFile, tuple[NodeAccountFile, ...]]:
    """Fresh node accounts for a DKG committee and their roster; writes nothing. (A
    development convenience: in production each operator runs `committee keygen`.)"""
    if urls is not None and len(urls) != size:
        raise ValueError(f"{len(urls)} URLs for {size} nodes")
    if not 1 <= threshold <= size <= 255:
        raise ValueError(f"threshold {threshold} of {size} nodes")
    files = tuple(
        NodeAccountFile.create(Account.create(), passphrase, strength) for _ in range(size)
    )
    roster = RosterFile(
        threshold,
        tuple(
            RosterNode(f.address, f.encryption_key, None if urls is None else urls[i])
            for i, f in enumerate(files)
        ),
    )
    return roster, files


def write_dkg_nodes(
    out_dir: Path, roster: RosterFile, files: Sequence[NodeAccountFile]
) -> tuple[Path, ...]:
    """Write `roster.json` and `node-<i>.json` (mode 0600); never overwrites a file."""
    targets = [out_dir / ROSTER_FILE] + [
        out_dir / node_key_file_name(i) for i in range(1, len(files) + 1)
    ]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise CommitteeFilesExist(existing)
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, node_file in zip(targets[1:], files, strict=True):
        _write_new(target, node_file.to_json(), mode=0o600)
    _write_new(targets[0], roster.to_json(), mode=0o644)
    return tuple(targets)
