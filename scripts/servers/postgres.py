"""Start and stop a throwaway PostgreSQL server on a free loopback port, for tests.

The server binaries come from, in order: `$DATADEBIT_PG_BIN`; the pinned `pgserver` wheel
of the `dev` extra, which bundles a relocatable PostgreSQL (so `bash scripts/dev test`
needs nothing but Python and Node); `initdb` on PATH; Debian's /usr/lib/postgresql/*/bin.
Only the binaries are used: `initdb` a temporary directory, run `postgres` on it with its
unix socket inside that directory, and delete it all on exit.

PostgreSQL refuses to run as root, so as root the server runs as `nobody` (a candidate
binary directory that `nobody` cannot execute, e.g. a venv under /root, is skipped).

    with start_postgres() as admin_url:
        url = create_database(admin_url, "gateway_1")

This module has no pytest dependency.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scripts.servers.process import free_port, stop_process_group

BIN_ENV = "DATADEBIT_PG_BIN"
#: The unprivileged account the server runs as when we are root.
UNPRIVILEGED_USER = "nobody"
SUPERUSER = "postgres"
_TAIL_CHARS = 2000


class PostgresError(RuntimeError):
    """No usable PostgreSQL binaries, or the server did not come up."""


def _pgserver_bin() -> Path | None:
    """The `pgserver` wheel's bundled bin directory, found without importing the package
    (its import sets up lock files we do not need)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def candidate_bin_dirs() -> list[Path]:
    """Where to look for initdb + postgres, best first."""
    found: list[Path] = []
    if os.environ.get(BIN_ENV):
        found.append(Path(os.environ[BIN_ENV]))
    bundled = _pgserver_bin()
    if bundled is not None:
        found.append(bundled)
    on_path = shutil.which("initdb")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name),
            reverse=True,
        )
        found.extend(v / "bin" for v in versions)
    return [d for d in dict.fromkeys(found) if (d / "initdb").is_file()]


def _run_as() -> str | None:
    """The user to switch to: `nobody` when we are root, else nobody to switch to."""
    return UNPRIVILEGED_USER if os.geteuid() == 0 else None


def _runs(bin_dir: Path, user: str | None) -> bool:
    try:
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--version"], user=user, capture_output=True,
            timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def find_bin_dir() -> Path:
    """The first candidate whose `postgres` runs as the user the server will run as."""
    user = _run_as()
    candidates = candidate_bin_dirs()
    for bin_dir in candidates:
        if _runs(bin_dir, user):
            return bin_dir
    tried = ", ".join(str(c) for c in candidates) or "none found"
    raise PostgresError(
        f"no usable PostgreSQL binaries (tried: {tried}); `bash scripts/dev test` installs "
        f"the pinned pgserver wheel, or set ${BIN_ENV}"
    )


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-_TAIL_CHARS:].strip()
    except OSError:
        return ""


def _ready(bin_dir: Path, port: int, user: str | None) -> bool:
    done = subprocess.run(
        [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER],
        user=user, capture_output=True, check=False,
    )
    return done.returncode == 0


def _stop(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT is Postgres's fast shutdown (it ends open sessions; SIGTERM would wait for
    them); the process-group stop is the fallback."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    stop_process_group(proc, timeout)


@contextmanager
def start_postgres(*, startup_timeout: float = 30.0) -> Iterator[str]:
    """Run a fresh PostgreSQL until the block exits; yields a superuser URL (trust auth,
    loopback only). Durability is off (`fsync=off`): the server is thrown away after."""
    bin_dir = find_bin_dir()
    user = _run_as()
    workdir = Path(tempfile.mkdtemp(prefix="datadebit-pg-"))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(workdir, entry.pw_uid, entry.pw_gid)
        data, log = workdir / "data", workdir / "postgres.log"
        init = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--no-sync", "--no-instructions"],
            user=user, capture_output=True, check=False,
        )
        if init.returncode != 0:
            raise PostgresError(f"initdb failed: {init.stderr.decode(errors='replace')[-2000:]}")
        port = free_port()
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                 "-k", str(workdir), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200"],
                user=user, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + startup_timeout
            while not _ready(bin_dir, port, user):
                if proc.poll() is not None:
                    raise PostgresError(f"postgres exited with {proc.returncode}: {_tail(log)}")
                if time.monotonic() > deadline:
                    raise PostgresError(
                        f"postgres not ready within {startup_timeout}s: {_tail(log)}"
                    )
                time.sleep(0.05)
            yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres"
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def create_database(admin_url: str, name: str) -> str:
    """Create an empty database `name` (letters, digits, `_`); returns its URL."""
    import psycopg  # noqa: PLC0415 - the launcher itself needs no driver

    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name
