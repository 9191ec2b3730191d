"""Benchmark the envelope and CIDs against raw libsodium secretstream, and their memory use.

    .venv/bin/python -m scripts.bench_storage [--size-mib 512] [--memory-mib 64,1024]
                                              [--repeat 3] [--write-docs]

Throughput (best of --repeat runs, MB/s = 10^6 bytes/s of plaintext), each next to its
baseline measured in the same run on the same file:
- in memory: `encrypt` + CID of the envelope vs. a bare secretstream push loop;
- file to file: `encrypt_file` (envelope, CID, temp file, fsync, rename) vs. a bare
  read/push/write/fsync loop; `file_cid` + `decrypt_file` (verify, then decrypt all or
  nothing) vs. a bare read/pull/write/fsync loop.
Peak memory: one fresh subprocess per (operation, size) reports its peak RSS (VmHWM; see
`peak_rss_kib` for why not `ru_maxrss`); flat means the 1 GiB peak is the 64 MiB peak.
DESIGN §8 budget: encrypt + CID >= 50% of raw speed, memory flat. Never used by tests.
`--write-docs` replaces the `## Storage` section of docs/benchmarks.md with the results.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nacl
from nacl import bindings as sodium

from storage.envelope import DEFAULT_CHUNK_SIZE, decrypt_file, encrypt, encrypt_file
from storage.keys import DataKey
from storage.unixfs import DagBuilder, file_cid

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
MIB = 1 << 20
CHUNK = DEFAULT_CHUNK_SIZE
TAG_FINAL = sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL


# -- helpers ----------------------------------------------------------------------------------


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 16 * MIB))
            out.write(piece)
            left -= len(piece)


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


class _Discard:
    def write(self, data: bytes, /) -> int:
        return len(data)


class _CidSink:
    def __init__(self) -> None:
        self.builder = DagBuilder()

    def write(self, data: bytes, /) -> int:
        self.builder.update(data)
        return len(data)


# -- baselines: bare libsodium secretstream ---------------------------------------------------


def raw_push_memory(data: bytes, key: bytes) -> None:
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        sodium.crypto_secretstream_xchacha20poly1305_push(state, bytes(view[start : start + CHUNK]))


def raw_push_file(src: Path, dest: Path, key: bytes) -> None:
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    with src.open("rb") as source, dest.open("wb") as out:
        out.write(sodium.crypto_secretstream_xchacha20poly1305_init_push(state, key))
        while chunk := source.read(CHUNK):
            out.write(sodium.crypto_secretstream_xchacha20poly1305_push(state, chunk))
        out.flush()
        os.fsync(out.fileno())


def raw_pull_file(src: Path, dest: Path, key: bytes) -> None:
    state = sodium.crypto_secretstream_xchacha20poly1305_state()
    with src.open("rb") as source, dest.open("wb") as out:
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, source.read(24), key)
        while frame := source.read(CHUNK + 17):
            out.write(sodium.crypto_secretstream_xchacha20poly1305_pull(state, frame)[0])
        out.flush()
        os.fsync(out.fileno())


# -- throughput -------------------------------------------------------------------------------


def in_memory(data: bytes, key: DataKey, repeat: int) -> dict[str, float]:
    """Seconds for the CPU work alone: no file reads or writes on either side."""
    secret = key.to_secret_bytes()
    return {
        "push_memory": best_seconds(lambda: raw_push_memory(data, secret), repeat),
        "encrypt_cid_memory": best_seconds(
            lambda: encrypt(io.BytesIO(data), _CidSink(), key), repeat
        ),
        "encrypt_memory": best_seconds(lambda: encrypt(io.BytesIO(data), _Discard(), key), repeat),
    }


def throughput(work: Path, size: int, repeat: int) -> dict[str, float]:
    plain, env, back, raw = (work / n for n in ("plain", "env", "back", "raw"))
    make_file(plain, size)
    key = DataKey.generate()
    secret = key.to_secret_bytes()
    seconds = in_memory(plain.read_bytes(), key, repeat)
    seconds["push_file"] = best_seconds(lambda: raw_push_file(plain, raw, secret), repeat)
    seconds["encrypt_file"] = best_seconds(lambda: encrypt_file(plain, env, key), repeat)
    seconds["pull_file"] = best_seconds(lambda: raw_pull_file(raw, back, secret), repeat)
    seconds["verify"] = best_seconds(lambda: file_cid(env), repeat)
    seconds["decrypt_file"] = best_seconds(lambda: decrypt_file(env, back, key), repeat)
    seconds["verify_decrypt"] = seconds["verify"] + seconds["decrypt_file"]
    for path in (plain, env, back, raw):
        path.unlink(missing_ok=True)
    return {name: size / s / 1e6 for name, s in seconds.items()}


# -- memory: one subprocess per (operation, size) ---------------------------------------------


def peak_rss_kib() -> int:
    """This process's peak resident set size (VmHWM).

    Not `ru_maxrss`: Linux carries it over from the parent through fork and exec, so a child
    of a benchmark that held a big buffer would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def child(operation: str, src: str, dest: str, key_hex: str) -> None:
    """Runs in a fresh interpreter: report the peak RSS before and after the operation."""
    key = DataKey(bytes.fromhex(key_hex))
    before = peak_rss_kib()
    started = time.perf_counter()
    if operation == "encrypt":
        encrypt_file(Path(src), Path(dest), key)
    else:
        file_cid(Path(src))
        decrypt_file(Path(src), Path(dest), key)
    took = time.perf_counter() - started
    after = peak_rss_kib()
    print(json.dumps({"before_kib": before, "peak_kib": after, "seconds": took}))


def run_child(operation: str, src: Path, dest: Path, key: DataKey) -> dict[str, float]:
    command = [sys.executable, "-m", "scripts.bench_storage", "--child", operation]
    command += [str(src), str(dest), key.to_secret_bytes().hex()]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout)
    return result


def memory(work: Path, sizes: list[int]) -> dict[int, dict[str, dict[str, float]]]:
    key = DataKey.generate()
    results: dict[int, dict[str, dict[str, float]]] = {}
    for size in sizes:
        plain, env, back = work / "mplain", work / "menv", work / "mback"
        make_file(plain, size)
        results[size] = {
            "encrypt": run_child("encrypt", plain, env, key),
            "verify+decrypt": run_child("decrypt", env, back, key),
        }
        for path in (plain, env, back):
            path.unlink(missing_ok=True)
    return results


# -- report -----------------------------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}, {model}; Python {platform.python_version()}, "
        f"PyNaCl {nacl.__version__}; load average at start {load}"
    )


def report(
    args: argparse.Namespace,
    mbps: dict[str, float],
    mem: dict[int, dict[str, dict[str, float]]],
    host: str,
) -> str:
    command = ".venv/bin/python -m scripts.bench_storage " + " ".join(sys.argv[1:])
    ratio_mem = mbps["encrypt_cid_memory"] / mbps["push_memory"]
    ratio_file = mbps["encrypt_file"] / mbps["push_file"]
    ratio_dec = mbps["verify_decrypt"] / mbps["pull_file"]
    lines = [
        "## Storage",
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {host}  ",
        f"File: {args.size_mib} MiB of random bytes, envelope chunk {CHUNK // MIB} MiB, "
        f"best of {args.repeat} runs, MB/s = 10^6 plaintext bytes/s, temp files under "
        f"`{args.dir or tempfile.gettempdir()}`.",
        "",
        "| operation | MB/s | baseline (same run) | MB/s | ratio |",
        "|---|---:|---|---:|---:|",
        f"| envelope encrypt + CID, in memory | {mbps['encrypt_cid_memory']:.0f} "
        f"| secretstream push, in memory | {mbps['push_memory']:.0f} | **{ratio_mem:.2f}** |",
        f"| `encrypt_file` (envelope + CID, temp file, fsync, rename) "
        f"| {mbps['encrypt_file']:.0f} | read/push/write/fsync loop | {mbps['push_file']:.0f} "
        f"| **{ratio_file:.2f}** |",
        f"| `file_cid` + `decrypt_file` (verify, then decrypt all or nothing) "
        f"| {mbps['verify_decrypt']:.0f} | read/pull/write/fsync loop | {mbps['pull_file']:.0f} "
        f"| {ratio_dec:.2f} |",
        "",
        f"Parts: envelope encrypt alone in memory {mbps['encrypt_memory']:.0f} MB/s, "
        f"CID of the envelope file {mbps['verify']:.0f} MB/s, "
        f"`decrypt_file` alone {mbps['decrypt_file']:.0f} MB/s.",
        "",
        "Peak RSS, one fresh process per row (VmHWM from /proc/self/status; `before` = peak "
        "after imports, before the operation):",
        "",
        "| file size | operation | before (MiB) | peak (MiB) | growth (MiB) | seconds |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for size, ops in mem.items():
        for op, r in ops.items():
            before, peak = r["before_kib"] / 1024, r["peak_kib"] / 1024
            lines.append(
                f"| {size // MIB} MiB | {op} | {before:.1f} | {peak:.1f} | {peak - before:.1f} "
                f"| {r['seconds']:.2f} |"
            )
    lines += ["", *notes(ratio_mem, ratio_file, mem), ""]
    return "\n".join(lines)


def notes(
    ratio_mem: float, ratio_file: float, mem: dict[int, dict[str, dict[str, float]]]
) -> list[str]:
    """The budget verdicts, and what the figures do and do not say."""
    growth = {
        size: max(r["peak_kib"] - r["before_kib"] for r in ops.values()) / 1024
        for size, ops in mem.items()
    }
    sizes = sorted(growth)
    flat = growth[sizes[-1]] <= growth[sizes[0]] + 2.0
    verdict = "met" if min(ratio_mem, ratio_file) >= 0.5 else "NOT met"
    return [
        f"Budget (DESIGN §8), encrypt + CID >= 0.5 x raw secretstream: in memory "
        f"{ratio_mem:.2f}, file to file {ratio_file:.2f}, {verdict}. Memory: peak growth "
        + ", ".join(f"{growth[s]:.1f} MiB at {s // MIB} MiB" for s in sizes)
        + f", {'flat' if flat else 'NOT flat'} (bounded by the 1 MiB chunk plus buffers).",
        "",
        "Reading these: the CID is sha2-256 of every envelope byte, computed in the same "
        "thread as the encryption, so the in-memory ratio is bounded by "
        "1 / (1 + push speed / sha256 speed), about 0.5-0.6 on this CPU (SHA-NI). Hashing on "
        "a second thread was tried and was slower on this shared 2-vCPU machine. File-to-file "
        "figures include fsync and the page cache; they varied by up to 2x between runs here, "
        "as other test suites ran on the machine at the same time (see the load average). "
        "Verify + decrypt is two passes over the envelope (CID, then decryption) against a "
        "single-pass baseline.",
    ]


def write_section(section: str) -> None:
    """Replace (or append) the `## Storage` section of docs/benchmarks.md, nothing else."""
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n\n"
    start = text.find("\n## Storage\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        rest = text[end + 1 :] if end >= 0 else ""
        text = text[: start + 1] + section + ("\n" + rest if rest else "")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(text.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--memory-mib", default="64,1024")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", help="where the temporary files go")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    host = machine()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        mbps = throughput(work, args.size_mib * MIB, args.repeat)
        mem = memory(work, [int(s) * MIB for s in args.memory_mib.split(",")])
    section = report(args, mbps, mem, host)
    print(section)
    if args.write_docs:
        write_section(section)
        print(f"wrote the Storage section of {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
