"""Data keys at rest on the owner's machine: one key per file, hex, readable by its owner only.

The format is 64 lowercase hex characters and a newline, so `openssl rand -hex 32` makes a
valid file too. A file that group or others can read is refused, as ssh refuses such keys: a
data key opens every copy of its envelope, wherever it is stored.
"""

from __future__ import annotations

import binascii
import os
import stat
from pathlib import Path

from storage.errors import KeyFileError
from storage.keys import DataKey

KEY_FILE_MODE = 0o600


def read_key_file(path: Path) -> DataKey:
    """The key in `path`, after checking its permissions and format."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as e:
        raise KeyFileError(str(path), "does not exist") from e
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(str(path), f"cannot be read ({type(e).__name__})") from e
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileError(
            str(path),
            f"is accessible by group or others (mode {stat.S_IMODE(mode):04o}); "
            "run chmod 600 on it",
        )
    try:
        raw = binascii.unhexlify(text.strip())
    except (binascii.Error, ValueError) as e:
        raise KeyFileError(str(path), "does not hold a hex data key") from e
    if len(raw) != DataKey.SIZE:
        raise KeyFileError(str(path), f"holds {len(raw)} bytes, not {DataKey.SIZE}")
    return DataKey(raw)


def create_key_file(path: Path) -> DataKey:
    """Generate a fresh key into a new file created with mode 0600 (never overwrites)."""
    path = Path(path)
    key = DataKey.generate()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, KEY_FILE_MODE)
    except FileExistsError as e:
        raise KeyFileError(str(path), "already exists") from e
    except OSError as e:
        raise KeyFileError(str(path), f"cannot be created ({e.strerror})") from e
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(key.to_secret_bytes().hex() + "\n")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return key


def load_or_create_key_file(path: Path) -> tuple[DataKey, bool]:
    """The key in `path`, or a new one written there; the flag says whether it was created."""
    if Path(path).exists():
        return read_key_file(path), False
    return create_key_file(path), True
