"""Files a node writes: whole or not at all, never through a link, readable by its owner only.

Every file gsomia writes (configuration, keys, tokens, transfer files, receipts) goes through
:func:`write_private`: the bytes go to a new temporary file beside the target (``O_EXCL`` and
``O_NOFOLLOW``, mode 0600), are flushed to disk, and the temporary file is renamed over the
target. A rename replaces a symbolic link planted at the target instead of following it, so a
link never redirects a write; a crash leaves the old file or the new one, never half of one.
Node directories are made (or tightened to) mode 0700: the database, its WAL, ``serve.log`` and
the keys inside are then out of other local users' reach whatever their own modes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from gsomia.errors import ConfigError

__all__ = ["PRIVATE_DIR_MODE", "PRIVATE_FILE_MODE", "open_private_append", "private_dir", "write_private"]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) a directory only its owner can enter; tighten it if it exists.

    A symbolic link in its place is refused: a node's files go where its directory says.
    """
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link: give the real directory")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode != PRIVATE_DIR_MODE:
            path.chmod(PRIVATE_DIR_MODE)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot make a private directory ({exc.strerror})") from exc
    return path


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, replacing (never following) a link there.

    ``exclusive`` refuses to replace anything already at ``path`` (a key made once).
    """
    if exclusive and (path.exists() or path.is_symlink()):
        raise ConfigError(f"{path} exists already: refusing to overwrite it")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
    try:
        fd = os.open(temporary, flags, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            os.link(temporary, path)  # fails if anything appeared at path meanwhile
            os.unlink(temporary)
        else:
            os.replace(temporary, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise ConfigError(f"{path}: cannot write ({exc.strerror})") from exc
    _sync_dir(path.parent)


def open_private_append(path: Path) -> int:
    """A descriptor appending to ``path`` (a log), made 0600 if new; a link at ``path`` is refused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open for appending ({exc.strerror})") from exc
    os.fchmod(fd, PRIVATE_FILE_MODE)
    return fd


def _sync_dir(directory: Path) -> None:
    """Flush the directory entry of a renamed file, where the platform allows it."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
