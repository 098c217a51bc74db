"""Safe file output: checked before any work, written atomically, never onto an input.

A regular file is written to a temporary file in the target folder and renamed
over the target, so a crash, an interrupt or a failed validation never leaves half
a file behind and never destroys an earlier file of the same name. A symlink is
followed (its target is replaced, the link kept). A FIFO or a character device
(``/dev/null``, a terminal) is written in place, since renaming over it would
replace the special file with a regular one; a path that is this process's stdout
(``/dev/stdout``) is written as stdout.

:func:`check_output` is called by every command before it starts working, so that
an output that cannot or must not be written (one of the command's own inputs, a
folder, a name too long, a missing folder) is refused before any time is spent.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from eexit_cli.errors import InputError

STDOUT = "-"


_STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _is_stdout(path: str) -> bool:
    """Whether writing ``path`` means writing this process's stdout."""
    if os.path.abspath(path) in _STDOUT_NAMES:
        return True
    try:
        a, b = os.stat(path), os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    # the same pipe, terminal or device as stdout (not a regular file: that one is replaced)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and not stat.S_ISREG(a.st_mode)


def stdout_is_open() -> bool:
    """False when the process was started with stdout closed (``>&-``)."""
    out = sys.stdout
    if out is None:
        return False
    try:
        fd = out.fileno()
    except (OSError, ValueError, AttributeError):
        return True  # an in-memory stream (tests, embedding): writable
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _name_max(folder: str) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def resolve_output(path: str | os.PathLike | None) -> str:
    """Where ``path`` writes: ``"-"`` for stdout (None, ``-``, or a path that is this
    process's stdout such as ``/dev/stdout``), else the path with symlinks followed."""
    if path is None or str(path) == STDOUT:
        return STDOUT
    path = os.fspath(path)
    if _is_stdout(path):
        return STDOUT
    if not os.path.islink(path):
        return path
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None  # dangling (or a loop, refused by check_output)
    if mode is not None and not stat.S_ISREG(mode):
        return path  # e.g. /dev/stderr -> /proc/self/fd/2 -> a pipe: written in place
    return os.path.realpath(path)


def check_output(path, inputs=(), option: str = "-o/--output") -> None:
    """Refuse an output that cannot or must not be written, before any work.

    Raises ``InputError`` naming the option when ``path`` is one of ``inputs`` (it would
    be overwritten), names a folder (trailing slash or an existing folder), has a file
    name longer than the file system allows, or lies in a missing folder.
    """
    if path is None or str(path) == STDOUT:
        return
    raw = os.fspath(path)
    if raw == "":
        raise InputError(f"{option}: the file name is empty")
    if raw.endswith(("/", os.sep)) or os.path.isdir(raw):
        raise InputError(f"{option} {raw}: is a folder; give a file name (e.g. {raw.rstrip('/')}/out.json)")
    if os.path.islink(raw):
        try:
            os.path.realpath(raw, strict=True)
        except FileNotFoundError:
            pass  # dangling: its target is created
        except OSError as exc:
            raise InputError(f"{option} {raw}: cannot follow the symlink ({exc.strerror})") from None
    target = resolve_output(raw)
    if target == STDOUT:
        return
    for given in inputs:
        if given is None or str(given) == STDOUT:
            continue
        if _same_file(target, os.fspath(given)):
            raise InputError(
                f"{option} {raw}: is also the input {given}; writing it would destroy the input, "
                "choose another output file"
            )
    folder = os.path.dirname(os.path.abspath(target)) or "."
    if not os.path.isdir(folder):
        raise InputError(f"{option} {raw}: folder {folder} does not exist")
    name = os.path.basename(target)
    if len(os.fsencode(name)) > _name_max(folder):
        raise InputError(
            f"{option} {raw}: the file name is {len(os.fsencode(name))} bytes, longer than the "
            f"{_name_max(folder)} this file system allows"
        )
    if os.path.exists(target):
        mode = os.stat(target).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
            raise InputError(f"{option} {raw}: is not a regular file, FIFO or character device")


def _write_in_place(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path``: atomically for a regular file (same-folder temporary
    file + rename), in place for a FIFO or a character device, following symlinks.

    An ``OSError`` names ``path`` as given, never the temporary file.
    """
    try:
        _write(path, data)
    except OSError as exc:
        if isinstance(exc, BrokenPipeError) and resolve_output(path) == STDOUT:
            raise
        raise type(exc)(exc.errno, exc.strerror or str(exc), os.fspath(path)) from None


def _write(path, data: bytes) -> None:
    target = resolve_output(path)
    if target == STDOUT:
        _write_stdout(data)
        return
    if os.path.exists(target) and not stat.S_ISREG(os.stat(target).st_mode):
        _write_in_place(target, data)
        return
    with atomic_target(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path in ``path``'s folder; rename it onto ``path`` on success.

    The caller writes the whole file at the yielded path (with any library, e.g.
    h5py). When the block ends without error, the file is flushed to disk, given
    the permissions of the file it replaces (or the umask's) and renamed onto
    ``path`` (a symlink's target, when ``path`` is a symlink) in one step; when it
    raises, the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    target_path = Path(os.path.realpath(path) if os.path.islink(path) else path)
    folder = target_path.parent if str(target_path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: folder {folder} does not exist")
    # a short temporary name, so that a target name near the length limit still works
    fd, tmp = tempfile.mkstemp(prefix=f".{target_path.name[:32]}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if target_path.exists():
            # keep the permissions of the file being replaced
            os.chmod(tmp, target_path.stat().st_mode & 0o7777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target_path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_stdout(data: bytes) -> None:
    out = sys.stdout
    if not stdout_is_open():
        raise InputError("stdout is closed; give -o FILE or run with stdout open")
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8"))
        out.flush()


def dumps_json(data) -> str:
    """Serialise to pretty, strict JSON (NaN/Inf are refused, not written)."""
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_json(data, path: str | os.PathLike) -> None:
    """Write ``data`` as JSON to ``path`` (see :func:`atomic_write_bytes`), or to stdout
    when path is '-'."""
    text = dumps_json(data)  # serialise first: a bad value must not touch the file
    atomic_write_bytes(path, text.encode("utf-8"))
