"""Reading a split in a forked child (eexit_cli.io.isolated)."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from eexit_cli.io.exits import read_exits
from eexit_cli.io.isolated import read_exits_isolated

from conftest import make_exit_data, write_exits


def _children(pid):
    path = f"/proc/{pid}/task/{pid}/children"
    if not os.path.exists(path):
        pytest.skip("no list of children in /proc here")
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def test_reads_what_the_reader_reads(tmp_path):
    path = write_exits(tmp_path / "s.h5", make_exit_data(seed=3, n_samples=50))
    got, ref = read_exits_isolated(path), read_exits(path)
    np.testing.assert_array_equal(got.scores, ref.scores)
    np.testing.assert_array_equal(got.correct, ref.correct)
    assert got.n_exits == ref.n_exits


def test_ctrl_c_right_after_the_fork_leaves_no_child_behind(tmp_path, monkeypatch):
    # a Ctrl-C that lands in this process just after fork() returned, before the child
    # is recorded: the child reads a FIFO nobody writes and would block forever
    fifo = tmp_path / "never.h5"
    os.mkfifo(fifo)
    before = set(_children(os.getpid()))
    real_fork = os.fork

    def fork_then_interrupt():
        pid = real_fork()
        if pid:
            os.kill(os.getpid(), signal.SIGINT)
        return pid

    monkeypatch.setattr(os, "fork", fork_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        read_exits_isolated(fifo)
    monkeypatch.undo()
    end = time.monotonic() + 10
    while set(_children(os.getpid())) - before and time.monotonic() < end:
        time.sleep(0.05)
    left = set(_children(os.getpid())) - before
    for pid in left:  # do not leave it blocked if the test fails
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_ctrl_c_taken_by_another_thread_during_the_fork_leaves_no_child_behind(tmp_path, monkeypatch):
    # a process-directed SIGINT goes to any thread that does not block it (onnxruntime and
    # torch keep native thread pools); Python still raises KeyboardInterrupt in the main
    # thread, so blocking SIGINT there alone does not keep it out of the fork
    fifo = tmp_path / "never.h5"
    os.mkfifo(fifo)
    before = set(_children(os.getpid()))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    real_fork = os.fork

    def fork_then_interrupt():
        pid = real_fork()
        if pid:
            signal.pthread_kill(other.ident, signal.SIGINT)
            time.sleep(0.2)  # the main thread would see the interrupt before the fork returns
        return pid

    monkeypatch.setattr(os, "fork", fork_then_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            read_exits_isolated(fifo)
    finally:
        monkeypatch.undo()
        stop.set()
    end = time.monotonic() + 10
    while set(_children(os.getpid())) - before and time.monotonic() < end:
        time.sleep(0.05)
    left = set(_children(os.getpid())) - before
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left


def test_the_ctrl_c_handler_is_put_back_and_other_threads_can_read(tmp_path):
    path = write_exits(tmp_path / "s.h5", make_exit_data(seed=4, n_samples=20))
    handler = signal.getsignal(signal.SIGINT)
    read_exits_isolated(path)
    assert signal.getsignal(signal.SIGINT) is handler
    got = []
    t = threading.Thread(target=lambda: got.append(read_exits_isolated(path)))
    t.start()
    t.join(60)
    np.testing.assert_array_equal(got[0].scores, read_exits(path).scores)
    assert signal.getsignal(signal.SIGINT) is handler
