"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash, an interrupt or a failed validation never leaves half a file behind and
never destroys an earlier file of the same name.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    The caller writes the whole file at the yielded path (with any library, e.g.
    h5py). When the block ends without error, the file is flushed to disk, given
    the permissions of the file it replaces (or the umask's) and renamed onto
    ``path`` in one step; when it raises, the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.exists():
            # keep the permissions of the file being replaced
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-folder temporary file + rename)."""
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def dumps_json(data) -> str:
    """Serialise to pretty, strict JSON (NaN/Inf are refused, not written)."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_json(data, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON to ``path`` atomically, or to stdout when path is '-'."""
    text = dumps_json(data)  # serialise first: a bad value must not touch the file
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    atomic_write_bytes(path, text.encode("utf-8"))
