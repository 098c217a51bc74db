"""Reading exit outputs in a child process, so that a damaged file cannot hang the command.

The HDF5 library can loop for a long time, or crash, on a damaged file, inside C code
that does not return to Python: Ctrl-C would go unanswered. Here the file is read by
a forked child while this process waits in Python, where Ctrl-C is answered at once
(the child is killed and ``KeyboardInterrupt`` raised); a child that dies is reported
as a damaged file. The reduced outputs (one confidence and one correctness bit per
exit and sample) come back through a pipe.

Where ``fork`` is not available the file is read in this process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal

import numpy as np

from eexit_cli.errors import EexitError, InputError
from eexit_cli.io.exits import ExitOutputs, read_exits


_ARRAYS = ("scores", "correct", "labels")


def _child(conn, path, confidence, ignore_index) -> None:
    # the parent answers Ctrl-C; the child just stops when killed (until here a
    # SIGINT is only recorded, see _InterruptsHeld)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        out = read_exits(path, confidence=confidence, ignore_index=ignore_index)
        # the arrays go as raw bytes after a small header: no pickled copies of them
        arrays = {k: np.ascontiguousarray(getattr(out, k)) for k in _ARRAYS if getattr(out, k) is not None}
        header = {f.name: getattr(out, f.name) for f in dataclasses.fields(out) if f.name not in arrays}
        header["_arrays"] = {k: (a.dtype.str, a.shape) for k, a in arrays.items()}
        conn.send(("ok", header))
        for a in arrays.values():
            conn.send_bytes(memoryview(a).cast("B"))
        conn.close()
        return
    except EexitError as exc:
        result = ("input", str(exc))
    except MemoryError:
        result = ("input", f"{path}: too large to read into memory")
    except BaseException as exc:  # reported by the parent as an internal error
        result = ("internal", f"{type(exc).__name__}: {exc}")
    try:
        conn.send(result)
    finally:
        conn.close()


def _receive_outputs(conn, header: dict) -> ExitOutputs:
    arrays = {}
    for name, (dtype, shape) in header.pop("_arrays").items():
        a = np.empty(shape, dtype=np.dtype(dtype))
        if a.nbytes:
            conn.recv_bytes_into(memoryview(a).cast("B"))
        else:
            conn.recv_bytes()
        arrays[name] = a
    return ExitOutputs(**header, **arrays)


class _InterruptsHeld:
    """Holds a Ctrl-C back while the child is started, then delivers it.

    A SIGINT that arrives while the child is being forked would otherwise raise
    ``KeyboardInterrupt`` before the child is known here, leaving it behind, blocked
    on a file that never arrives and holding this process's stdout and stderr open.
    Blocking the signal is not enough: a process-directed SIGINT goes to any thread
    that does not block it (onnxruntime and torch keep native thread pools) and
    Python still raises in the main thread.  So the main thread's handler only
    records it, and the signal is raised again once the child is started.  Off the
    main thread nothing is raised by a signal, and nothing is held.
    """

    def __enter__(self):
        self.held, self.active = False, False
        try:
            # None: a handler not installed from Python, put back as it was
            self.old = signal.signal(signal.SIGINT, self._hold)
            self.active = True
        except ValueError:  # not the main thread
            pass
        return self

    def _hold(self, signum, frame):
        self.held = True

    def __exit__(self, *exc):
        if self.active:
            signal.signal(signal.SIGINT, signal.SIG_DFL if self.old is None else self.old)
            if self.held:
                signal.raise_signal(signal.SIGINT)
        return False


def read_exits_isolated(path, confidence: str | None = None, ignore_index: int | None = None) -> ExitOutputs:
    """:func:`eexit_cli.io.exits.read_exits` in a child process (see the module docstring)."""
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:
        return read_exits(path, confidence=confidence, ignore_index=ignore_index)
    path = os.fspath(path)
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(send, path, confidence, ignore_index), daemon=True)
    try:
        # a Ctrl-C during the fork waits until the child exists and is known here
        try:
            with _InterruptsHeld():
                child.start()
        finally:
            send.close()
        try:
            kind, value = receive.recv()
            if kind == "ok":
                value = _receive_outputs(receive, value)
        except EOFError:
            child.join()
            code = child.exitcode
            how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            raise InputError(
                f"{path}: reading the file crashed the HDF5 library ({how}); the file is damaged"
            ) from None
    except BaseException:
        if child.pid is not None:  # started
            if child.is_alive():
                child.kill()
            child.join()
        raise
    finally:
        receive.close()
    child.join()
    if kind == "ok":
        return value
    if kind == "input":
        raise InputError(value)
    raise RuntimeError(f"reading {path} failed: {value}")
