"""`POST /v1/keys` on the wire, without a validation framework on the hot path.

Every key request goes through here, so the small JSON body is checked by hand rather
than by pydantic (whose models stay in `api.py` for the OpenAPI schema): a JSON object
with exactly `request` and `signature`; `request` with exactly `debitId` (uint256),
`version` (uint32, >= 1), `expiry` (uint64), all JSON integers (never bools, floats or
strings), and `nonce` (0x + 64 hex digits); `signature` a string, whose content is for
`signature_from_hex` to judge (a bad one is `bad_signature`, not `malformed`). What the
pydantic model refused, this refuses (tests/gateway/test_wire.py pins the two together).

The answer is serialised here too, straight to bytes.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

from marketplace import jsonsafe
from marketplace.eip712 import KeyRequest
from marketplace.errors import MarketplaceError
from marketplace.gateway.releaser import SignedRelease

_NONCE = re.compile(r"0x[0-9a-fA-F]{64}")
_REQUEST_FIELDS = frozenset(("debitId", "version", "expiry", "nonce"))
_BODY_FIELDS = frozenset(("request", "signature"))
_JSON_TYPES = ("application/json",)
#: A well-formed body is under 400 bytes. Anything far larger is refused before it is read
#: whole or parsed (json.loads of a deeply nested body can exhaust the C stack).
MAX_BODY_SIZE = 4096


class MalformedBody(MarketplaceError, ValueError):
    """A `POST /v1/keys` body that is not the documented shape (wire code `malformed`)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"{where}: {reason}")


def is_json_content_type(content_type: str | None) -> bool:
    """What FastAPI parses as JSON: no content type, `application/json` or `*/*+json`."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in _JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


async def read_capped(chunks: AsyncIterator[bytes], content_length: str | None) -> bytes:
    """The request body, refused (MalformedBody) as soon as it exceeds MAX_BODY_SIZE."""
    if content_length is not None and (
        not content_length.isdigit() or int(content_length) > MAX_BODY_SIZE
    ):
        raise MalformedBody("body", f"must be at most {MAX_BODY_SIZE} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > MAX_BODY_SIZE:
            raise MalformedBody("body", f"must be at most {MAX_BODY_SIZE} bytes")
        parts.append(chunk)
    return b"".join(parts)


def parse_keys_body(raw: bytes) -> tuple[KeyRequest, str]:
    """The signed request and the signature's text, or MalformedBody naming the field."""
    if len(raw) > MAX_BODY_SIZE:
        raise MalformedBody("body", f"must be at most {MAX_BODY_SIZE} bytes")
    try:
        body = jsonsafe.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise MalformedBody("body", "not valid JSON") from e
    request = _object(body, "body", _BODY_FIELDS)
    fields = _object(request["request"], "request", _REQUEST_FIELDS)
    signature = request["signature"]
    if not isinstance(signature, str):
        raise MalformedBody("signature", "must be a string")
    nonce = fields["nonce"]
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise MalformedBody("request.nonce", "must be 0x followed by 64 hex digits")
    return (
        KeyRequest(
            debit_id=_uint(fields, "debitId", 256, 0),
            version=_uint(fields, "version", 32, 1),
            expiry=_uint(fields, "expiry", 64, 0),
            nonce=bytes.fromhex(nonce[2:]),
        ),
        signature,
    )


def _object(value: Any, where: str, names: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedBody(where, "must be a JSON object")
    keys = value.keys()
    if keys != names:
        missing = sorted(names - keys)
        if missing:
            raise MalformedBody(_join(where, missing[0]), "field required")
        raise MalformedBody(_join(where, sorted(keys - names)[0]), "extra field not permitted")
    return value


def _join(where: str, name: str) -> str:
    return name if where == "body" else f"{where}.{name}"


def _uint(fields: dict[str, Any], name: str, bits: int, low: int) -> int:
    value = fields[name]
    if type(value) is not int or not low <= value < 2**bits:  # bool is a subclass of int
        raise MalformedBody(f"request.{name}", f"must be an integer in [{low}, 2^{bits})")
    return value


def keys_answer(signed: SignedRelease) -> bytes:
    """The 200 answer of `POST /v1/keys` (DESIGN §5), as JSON bytes."""
    release = signed.release
    return json.dumps(
        {
            "node": release.node,
            "debitId": release.debit_id,
            "version": release.version,
            "sealedShare": base64.b64encode(release.sealed_share).decode(),
            "receipt": signed.receipt.to_message(),
            "receiptSignature": "0x" + release.signature.hex(),
        },
        separators=(",", ":"),
    ).encode()
