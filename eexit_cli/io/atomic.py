"""Atomic file output: write to a temporary file in the target folder, then rename.

A crash, an interrupt or a failed validation never leaves half a file behind and
never destroys an earlier file of the same name.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (same-folder temporary file + rename)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
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
