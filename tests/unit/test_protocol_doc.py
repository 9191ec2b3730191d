"""docs/protocol.md stays true: what a third party implements from it equals what the code
does. Each test reads a fact from the document and compares it with the code or the
committed vectors, so changing either without the other fails here."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
from eth_hash.auto import keccak

from marketplace.eip712 import (
    DOMAIN_NAME,
    DOMAIN_VERSION,
    ENCRYPTION_KEY_PURPOSE,
    CommitteeResult,
    EncryptionKey,
    KeyRequest,
    ReleaseReceipt,
)
from marketplace.gateway import api, wire
from marketplace.gateway.releaser import MAX_EXPIRY_AHEAD
from marketplace.keyrelease import buyer_key, capsule, group, share
from storage import envelope, unixfs

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()
VECTORS: dict[str, Any] = json.loads((ROOT / "tests" / "vectors" / "keyrelease.json").read_text())
ABI: list[dict[str, Any]] = json.loads(
    (ROOT / "contracts" / "artifacts" / "DataMarket.json").read_text()
)["abi"]
MESSAGES = (EncryptionKey, KeyRequest, ReleaseReceipt, CommitteeResult)


def section(heading: str) -> str:
    """The text under the first heading that starts with `heading`, up to the next one
    of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}.*$", DOC, re.MULTILINE)
    assert match, f"no heading {heading!r} in docs/protocol.md"
    level = len(match.group(1))
    rest = DOC[match.end():]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    """The body rows of every Markdown table in `text`, cells stripped."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"\|[-| ]+\|", line):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return [r for r in rows if r[0] not in ("offset", "code", "primary type", "type")]


def type_string(name: str, fields: tuple[tuple[str, str], ...]) -> str:
    return f"{name}({','.join(f'{kind} {field}' for field, kind in fields)})"


# ---------------------------------------------------------------- EIP-712


def test_every_type_string_in_the_doc_is_built_from_the_class_fields() -> None:
    rows = {r[0].strip("`"): r[1].strip("`") for r in table_rows(section("2.2 Types"))
            if len(r) == 3}
    assert set(rows) == {m.PRIMARY_TYPE for m in MESSAGES}
    for message in MESSAGES:
        assert rows[message.PRIMARY_TYPE] == type_string(message.PRIMARY_TYPE, message.FIELDS)


def test_type_hashes_in_the_doc_are_the_code_s() -> None:
    rows = {r[0].strip("`"): r[1].strip("`") for r in table_rows(section("2.2 Types"))
            if len(r) == 2}
    from marketplace.eip712 import _DOMAIN_FIELDS  # noqa: PLC0415 (a private constant)

    expected = {m.PRIMARY_TYPE: m._TYPE_HASH for m in MESSAGES}
    expected["EIP712Domain"] = keccak(type_string("EIP712Domain", _DOMAIN_FIELDS).encode())
    assert {name: bytes.fromhex(value[2:]) for name, value in rows.items()} == expected
    assert type_string("EIP712Domain", _DOMAIN_FIELDS) in section("2.1 Domain")


def test_domain_and_purpose_strings() -> None:
    domain = section("2.1 Domain")
    assert f'name = "{DOMAIN_NAME}", version = "{DOMAIN_VERSION}"' in domain
    assert ENCRYPTION_KEY_PURPOSE in section("2.2 Types")
    assert ENCRYPTION_KEY_PURPOSE in section("8. The buyer X25519 key")


# ---------------------------------------------------------------- byte layouts


def _layout_total(heading: str) -> int:
    """Check a layout table's offsets run on without gaps; return its total size."""
    position = 0
    for row in table_rows(section(heading)):
        if row[0] == "":  # the total row
            assert row[1] == f"**{position}**"
            return position
        assert int(row[0]) == position, f"{heading}: offset {row[0]}, expected {position}"
        position += int(row[1])
    raise AssertionError(f"{heading}: no total row")


def test_capsule_layout_matches_the_code() -> None:
    assert _layout_total("5.2 Layout") == capsule.Capsule.SIZE == 168
    assert capsule.Capsule.SEALED_KEY_SIZE == 48 and capsule.Capsule.NONCE_SIZE == 24
    assert f"{capsule.Capsule.SIZE}-byte **capsule**" in section("5. Capsule v2")


def test_share_and_sealed_share_sizes_match_the_code() -> None:
    assert _layout_total("6.2 Share plaintext") == share.KEY_SHARE_SIZE
    assert f"6.2 Share plaintext: {share.KEY_SHARE_SIZE} bytes" in DOC
    assert f"6.3 Sealed share: {share.SEALED_SHARE_SIZE} bytes" in DOC
    assert f"**{share.SEALED_SHARE_SIZE}** bytes in all" in DOC
    assert f"base64 of the {share.SEALED_SHARE_SIZE}-byte" in section("11.2")


def test_envelope_header_matches_the_code() -> None:
    text = section("9. Envelope")
    assert _layout_total("9. Envelope") == envelope.HEADER_SIZE
    assert f"Header, {envelope.HEADER_SIZE} bytes" in text
    assert f"chunk size + {envelope.FRAME_OVERHEAD} bytes" in text
    assert f"1..{envelope.MAX_CHUNK_SIZE}" in text
    assert f"default {envelope.DEFAULT_CHUNK_SIZE}" in text
    assert envelope.MAGIC.decode() in text and envelope.COMMIT_TAG.decode() in text


def test_cid_constants_match_the_code() -> None:
    text = section("10. CIDs")
    assert f"{unixfs.CHUNK_SIZE}-byte chunks" in text
    assert f"at most\n{unixfs.MAX_LINKS} links" in text or f"at most {unixfs.MAX_LINKS}" in text


def test_group_order_and_tags() -> None:
    assert f"L = 2^252 + {group.L - 2**252}" in DOC
    for name in ("kem", "ctx", "capsule-proof", "dleq", "x25519"):
        assert f"`{group.tag(name).decode()}`" in section("1. Conventions")
    assert f"`{envelope.COMMIT_TAG.decode()}`" in section("1. Conventions")


def test_small_order_u_values_are_the_code_s() -> None:
    block = section("8. The buyer X25519 key").split("```")[1]
    listed = {int(line.split()[0]) for line in block.strip().splitlines()}
    assert listed == set(buyer_key._SMALL_ORDER_U)


# ---------------------------------------------------------------- HTTP API


def test_every_error_code_is_documented_with_its_status() -> None:
    rows = {r[0].strip("`"): int(r[1]) for r in table_rows(section("12. Error codes"))}
    assert rows == api.ERROR_STATUS


def test_every_route_has_a_section() -> None:
    source = inspect.getsource(api)
    routes = re.findall(r'@app\.(get|post)\(\s*"(/[^"]+)"', source)
    routes += [("get", path) for path in re.findall(r'add_route\(\s*"(/[^"]+)"', source)]
    assert len(routes) >= 4, "routes not found in marketplace/gateway/api.py"
    for method, path in routes:
        assert re.search(rf"^### 11\.\d+ `{method.upper()} {re.escape(path)}", DOC, re.MULTILINE)


def test_health_fields_are_documented() -> None:
    source = inspect.getsource(api.create_app)
    health = source[source.index("def health"):source.index("def committee")]
    fields = set(re.findall(r'"(\w+)":', health))
    assert {"node", "cursor", "status", "confirmedHead", "lag", "chain"} <= fields
    text = section("11.4")
    for name in fields:
        assert f'"{name}"' in text


def test_request_limits_match_the_code() -> None:
    text = section("11.2")
    assert f"At most {wire.MAX_BODY_SIZE} bytes" in text
    assert f"now + {MAX_EXPIRY_AHEAD} s" in text
    assert f"+ {MAX_EXPIRY_AHEAD} s" in section("12. Error codes")


# ---------------------------------------------------------------- examples are vectors


def _vector(path: str) -> Any:
    node: Any = VECTORS
    for part in path.split("."):
        node = node[part]
    return node


def _examples() -> list[tuple[str, Any]]:
    found = re.findall(r"<!-- vector: ([\w.-]+) -->\n```json\n(.*?)\n```", DOC, re.DOTALL)
    return [(name, json.loads(body)) for name, body in found]


def test_the_doc_has_its_examples() -> None:
    names = [name for name, _ in _examples()]
    assert names == [
        "eip712.keyRequest.typedData", "eip712.releaseReceipt.typedData",
        "wire.keysRequest", "wire.keysResponse", "releases-page",
    ]


@pytest.mark.parametrize("name", ["eip712.keyRequest.typedData", "eip712.releaseReceipt.typedData",
                                  "wire.keysRequest", "wire.keysResponse"])
def test_an_example_equals_its_vector(name: str) -> None:
    assert dict(_examples())[name] == _vector(name)


def test_the_releases_page_example_is_the_vector_entry_anchored_alone() -> None:
    page = dict(_examples())["releases-page"]
    assert set(page) == {"node", "address", "releases", "anchors"}
    assert page["releases"] == [VECTORS["wire"]["releaseEntry"]]
    assert page["address"] == VECTORS["eip712"]["releaseReceipt"]["signer"]
    (anchor,) = page["anchors"]
    assert set(anchor) == {"anchorSeq", "firstSeq", "lastSeq", "root", "txHash"}
    assert anchor["root"] == VECTORS["merkle"]["prefixRoots"][0]
    assert set(page["releases"][0]) == {
        "seq", "receipt", "receiptSignature", "request", "requestSignature"
    }


def test_receipt_json_fields_follow_the_type() -> None:
    receipt = VECTORS["wire"]["keysResponse"]["receipt"]
    assert list(receipt) == [name for name, _ in ReleaseReceipt.FIELDS]


# ---------------------------------------------------------------- contract


def _canonical(item: dict[str, Any]) -> str:
    def kind(param: dict[str, Any]) -> str:
        if param["type"].startswith("tuple"):
            inner = ",".join(kind(c) for c in param["components"])
            return f"({inner}){param['type'][5:]}"
        return str(param["type"])

    return f"{item['name']}({','.join(kind(p) for p in item['inputs'])})"


@pytest.mark.parametrize("kind", ["function", "event", "error"])
def test_every_abi_item_is_in_the_doc_with_its_selector(kind: str) -> None:
    text = section("14. Contract interface")
    items = [item for item in ABI if item["type"] == kind]
    assert items
    for item in items:
        signature = _canonical(item)
        digest = keccak(signature.encode())
        selector = digest if kind == "event" else digest[:4]
        row = next((line for line in text.splitlines() if f"| `{signature}` |" in line), None)
        assert row is not None, f"{signature} is not in the contract section"
        assert f"`0x{selector.hex()}`" in row
        if kind == "event":
            indexed = [p["name"] for p in item["inputs"] if p["indexed"]]
            assert re.findall(r"\*\*(\w+)\*\*", row) == indexed


# ---------------------------------------------------------------- auditor


def _finding_kinds() -> set[str]:
    """Every violation and warning kind the auditor's code can report."""
    kinds: set[str] = set()
    for path in sorted((ROOT / "marketplace" / "audit").glob("*.py")):
        source = path.read_text()
        kinds |= set(re.findall(r'\.(?:violation|warning)\(\s*"(\w+)"', source))
        kinds |= set(re.findall(r'findings\.append\(\(\s*"(\w+)"', source))
        kinds |= set(re.findall(r'^\s+kind = "(\w+)"', source, re.MULTILINE))
        kinds |= set(re.findall(r'"(request_\w+)"', source))
    return kinds


def test_every_audit_finding_is_documented() -> None:
    text = section("15. Auditor checks")
    kinds = _finding_kinds()
    assert {"bad_signature", "anchor_mismatch", "not_entitled", "unanchored"} <= kinds
    missing = sorted(kind for kind in kinds if f"`{kind}`" not in text)
    assert not missing, f"audit findings not in docs/protocol.md §15: {missing}"


def test_audit_defaults_match_the_code() -> None:
    from marketplace.audit import auditor, release_log, releases  # noqa: PLC0415

    text = section("15. Auditor checks")
    assert f"at most {releases.MAX_PENDING_AGE} blocks old" in text
    assert f"maxLag = {releases.MAX_LAG} s" in text
    minus = "\N{MINUS SIGN}"
    assert f"expiry {minus} {releases.REQUEST_WINDOW} {minus} maxLag" in text
    assert f"{auditor.MAX_TAIL:,} entries" in text
    assert f"at most {release_log.MAX_PAGE_BYTES // 2**20} MiB" in text
    assert f"{release_log.PAGE_DEADLINE:g} s each" in text
    assert "largest epoch whose start block is ≤ `block`" in text  # releases' wrong_epoch
