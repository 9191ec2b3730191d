"""Make tests/vectors/cid_vectors.json: CIDs a real IPFS daemon gave for known content.

    .venv/bin/python -m scripts.cid_vectors            # starts its own js-ipfs daemon
    .venv/bin/python -m scripts.cid_vectors --api URL  # or uses a running one

Content is either literal (`hello world\\n`) or a prefix of a deterministic pattern stream
(`pattern_pieces`), so even the multi-GiB three-level case is regenerated in the test instead
of stored. The daemon hashes it with `only-hash=true`: nothing is written to its repo. Our own
CID is printed next to the daemon's for information, but the file records the daemon's.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from scripts.servers.ipfs import IpfsDaemon
from storage.unixfs import compute_cid

OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "cid_vectors.json"
PATTERN_TAG = b"datadebit/cid-vector-pattern/v1"
PATTERN_PERIOD = 1_000_003  # prime, so no two 262144-byte chunks of the stream are equal
CHUNK = 262_144
LINKS = 174


def _pattern() -> bytes:
    blocks = (PATTERN_PERIOD + 31) // 32
    out = b"".join(
        hashlib.sha256(PATTERN_TAG + i.to_bytes(8, "big")).digest() for i in range(blocks)
    )
    return out[:PATTERN_PERIOD]


@functools.cache
def _doubled_pattern() -> bytes:
    """Two periods back to back, so any window of up to one period is a plain slice."""
    return _pattern() * 2


def pattern_pieces(size: int, piece: int = 1 << 20) -> Iterator[memoryview]:
    """The first `size` bytes of the endless repetition of the pattern, in `piece`-byte views."""
    view = memoryview(_doubled_pattern())
    piece = min(piece, PATTERN_PERIOD)
    pos = 0
    while pos < size:
        n = min(piece, size - pos)
        offset = pos % PATTERN_PERIOD
        yield view[offset : offset + n]
        pos += n


# name -> size in bytes (content = pattern prefix of that size, except "hello world")
CASES: dict[str, int] = {
    "empty": 0,
    "one-byte": 1,
    "one-chunk-minus-1": CHUNK - 1,
    "one-chunk": CHUNK,
    "one-chunk-plus-1": CHUNK + 1,
    "two-levels-full-174-chunks": LINKS * CHUNK,
    "174-chunks-plus-1": LINKS * CHUNK + 1,
    "175-chunks-plus-5": 175 * CHUNK + 5,
    "three-levels-174x174-chunks": LINKS * LINKS * CHUNK,
    "three-levels-174x174-chunks-plus-1": LINKS * LINKS * CHUNK + 1,
}

ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": f"size-{CHUNK}",
    "pin": "false",
    "only-hash": "true",
    "cid-base": "base32",
}


def _multipart(pieces: Iterator[memoryview] | list[bytes], boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="data"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for piece in pieces:
        yield bytes(piece)
    yield f"\r\n--{boundary}--\r\n".encode()


def daemon_cid(api: str, pieces: Iterator[memoryview] | list[bytes]) -> str:
    """Ask the daemon for the CID of the streamed content without storing it."""
    boundary = "datadebit-vector-boundary"
    response = httpx.post(
        f"{api}/api/v0/add",
        params=ADD_PARAMS,
        content=_multipart(pieces, boundary),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=httpx.Timeout(600.0, connect=10.0),
    )
    response.raise_for_status()
    lines = [json.loads(line) for line in response.text.splitlines() if line.strip()]
    return str(lines[-1]["Hash"])


def daemon_version(api: str) -> str:
    info = httpx.post(f"{api}/api/v0/version", timeout=10.0).json()
    return f"js-ipfs ipfs-core {info['Version']} (npm ipfs 0.66.1)"


def make(api: str) -> dict[str, object]:
    vectors: list[dict[str, object]] = []
    hello = b"hello world\n"
    cases: list[tuple[str, int, str]] = [("hello-world", len(hello), "literal")]
    cases += [(name, size, "pattern") for name, size in CASES.items()]
    for name, size, content in cases:
        started = time.monotonic()
        theirs = daemon_cid(api, [hello] if content == "literal" else pattern_pieces(size))
        took = time.monotonic() - started
        ours = compute_cid([hello] if content == "literal" else pattern_pieces(size)).text
        flag = "ok" if ours == theirs else "MISMATCH (ours: " + ours + ")"
        print(f"{name:40} {size:>14} {theirs} {took:7.1f}s {flag}", file=sys.stderr)
        entry: dict[str, object] = {"name": name, "size": size, "content": content, "cid": theirs}
        if content == "literal":
            entry["text"] = hello.decode()
        vectors.append(entry)
    return {
        "generated_by": "python -m scripts.cid_vectors",
        "daemon": daemon_version(api),
        "add_params": ADD_PARAMS,
        "pattern": {
            "definition": "sha256(tag || u64_be(i)) for i = 0.., concatenated, cut to period, "
            "repeated without end; content = first `size` bytes",
            "tag": PATTERN_TAG.decode(),
            "period": PATTERN_PERIOD,
        },
        "vectors": vectors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", help="a running daemon's API URL (default: start one)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.api:
        result = make(args.api)
    else:
        with tempfile.TemporaryDirectory() as tmp, IpfsDaemon(Path(tmp)) as daemon:
            result = make(daemon.api_url)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
