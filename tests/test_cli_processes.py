"""The command as a real process: pipes closed by their reader, closed stdout, FIFOs,
/dev/stdout, Ctrl-C, and stderr that is not a terminal."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import latency_dict, make_exit_data, thresholds_dict, write_exits

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes, FIFOs and signals")

EEXIT = [sys.executable, "-m", "eexit_cli"]
COSTS = [1.0, 2.0, 4.0]


def bash(script: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=timeout)


def cmd(*args) -> str:
    return " ".join(shlex.quote(str(a)) for a in [*EEXIT, *args])


@pytest.fixture
def files(tmp_path):
    data = make_exit_data(seed=3, n_exits=3, n_samples=300, n_classes=4)
    split = write_exits(tmp_path / "test.h5", data)
    over = tmp_path / "over.json"  # budget far below the mean latency: the gate fails
    over.write_text(json.dumps(thresholds_dict([0.6, 0.5], COSTS, budget=1.01)))
    lat = tmp_path / "lat.json"
    lat.write_text(json.dumps(latency_dict(COSTS, "ms")))
    return tmp_path, split, over, lat


@pytest.mark.parametrize("reader", ["true", "head -c 10", "head -n 1"])
def test_a_closed_pipe_never_turns_a_failed_gate_into_success(files, reader):
    tmp, split, over, _ = files
    r = bash(f"{cmd('evaluate', split, over)} | {reader} >/dev/null; echo rc=${{PIPESTATUS[0]}}")
    assert "rc=1" in r.stdout, (r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("FAIL: 1 of 1 set(s)"), r.stderr


def test_a_closed_pipe_after_tune_is_quiet_and_keeps_success(files):
    tmp, split, _, lat = files
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-q')} | head -n 2 >/dev/null; "
             "echo rc=${PIPESTATUS[0]}")
    assert "rc=0" in r.stdout and r.stderr == "", (r.stdout, r.stderr)


def test_closed_stdout_is_refused_before_any_work(files):
    tmp, split, over, lat = files
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%')} >&-; echo rc=$? >&2")
    assert r.stderr.splitlines() == [
        "eexit tune: error: stdout is closed; give -o FILE or run with stdout open", "rc=2"]
    r = bash(f"{cmd('evaluate', split, over)} >&-; echo rc=$? >&2")
    assert r.stderr.splitlines()[0].startswith("eexit evaluate: error: stdout is closed")
    # with -o the result does not need stdout
    out = tmp / "t.json"
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-q', '-o', out)} >&-; echo rc=$? >&2")
    assert r.stderr.strip() == "rc=0" and json.loads(out.read_text())["format"] == "eexit.thresholds/v1"


def test_output_to_dev_stdout_goes_to_stdout(files):
    tmp, split, _, lat = files
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-q', '-o', '/dev/stdout')} | cat")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["format"] == "eexit.thresholds/v1"


def test_output_to_a_fifo_is_written_in_place(files):
    tmp, split, _, lat = files
    fifo = tmp / "pipe.json"
    os.mkfifo(fifo)
    r = bash(f"cat {fifo} > {tmp / 'got.json'} & "
             f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-q', '-o', fifo)}; rc=$?; wait; echo rc=$rc")
    assert "rc=0" in r.stdout, r.stderr
    assert fifo.is_fifo()
    assert json.loads((tmp / "got.json").read_text())["format"] == "eexit.thresholds/v1"


def _wait_for_reader(proc, timeout=60.0):
    """Until ``proc`` has forked the child that reads the split (a loaded machine can
    take seconds to get there), then a moment for the child to block."""
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    end = time.monotonic() + timeout
    while children.exists() and time.monotonic() < end and proc.poll() is None:
        if children.read_text().split():
            break
        time.sleep(0.05)
    else:
        time.sleep(3)  # no list of children in /proc: a fixed wait
    time.sleep(0.5)


def test_ctrl_c_while_reading_a_split_that_never_arrives(files):
    # opening a FIFO for reading blocks inside the HDF5 library until a writer comes
    tmp, _, _, lat = files
    fifo = tmp / "never.h5"
    os.mkfifo(fifo)
    out = tmp / "t.json"
    proc = subprocess.Popen([*EEXIT, "tune", str(fifo), "--latency", str(lat), "--budget", "60%", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_reader(proc)
    assert proc.poll() is None  # still waiting for the data
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert stderr.splitlines() == ["eexit tune: error: interrupted; nothing was written"]
    assert not out.exists()


# What the `eexit` console script runs, telling the test when Python itself has started
# and the entry point (a few lines, no imports) is loaded: a Ctrl-C before that point falls
# in Python's own start-up, which no program can answer. Everything after it, the imports
# of numpy, h5py, click and rich included, must end with the one line and exit code 130.
ENTRY = ("import sys; from eexit_cli.__main__ import main; sys.argv[0] = 'eexit'; "
         "sys.stderr.write('started\\n'); sys.stderr.flush(); sys.exit(main())")


def _interrupted(*args, delay, timeout):
    """Runs ``eexit ARGS`` (through ENTRY), sends Ctrl-C ``delay`` s after Python has
    started, and returns the finished process and its stderr."""
    proc = subprocess.Popen([sys.executable, "-c", ENTRY, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "started\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=timeout)
    return proc, stderr


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3])
def test_ctrl_c_while_starting_up_prints_no_traceback(files, delay):
    tmp, split, _, lat = files
    out = tmp / "t.json"
    proc, stderr = _interrupted("tune", split, "--latency", lat, "--budget", "30%..90%:30", "-o", out,
                                delay=delay, timeout=60)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode in (130, 0), (proc.returncode, stderr)  # 0: it had finished
    if proc.returncode == 130:
        assert stderr.splitlines() == ["eexit: error: interrupted; nothing was written"] or \
            stderr.splitlines() == ["eexit tune: error: interrupted; nothing was written"], stderr
        assert not out.exists()


@pytest.mark.parametrize("delay", [0.1, 0.3, 0.5, 0.7, 0.9, 1.2])
def test_ctrl_c_around_the_reader_fork_leaves_no_child_behind(files, delay):
    # the split is a FIFO nobody writes: a reader child forked but never killed would
    # block forever and keep the pipes open (communicate would time out)
    tmp, _, _, lat = files
    fifo = tmp / f"never-{delay}.h5"
    os.mkfifo(fifo)
    out = tmp / "t.json"
    proc, stderr = _interrupted("tune", fifo, "--latency", lat, "--budget", "60%", "-o", out,
                                delay=delay, timeout=30)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    assert not out.exists()


def test_stderr_off_a_terminal_is_not_wrapped(files):
    tmp, split, _, lat = files
    long = tmp / ("a-rather-long-folder-name-" * 3)
    long.mkdir()
    missing = long / "missing-latency-profile-with-a-long-name.json"
    r = bash(f"{cmd('tune', split, '--latency', missing, '--budget', '60%')} 2>&1 >/dev/null | cat")
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and len(lines[0]) > 100 and str(missing) in lines[0], r.stdout


def test_error_names_the_users_file_not_a_temporary_one(files):
    tmp, split, over, _ = files
    os.chmod(tmp, 0o555)  # the folder cannot take the temporary file
    try:
        if os.access(tmp, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        r = bash(f"{cmd('evaluate', split, over, '-o', tmp / 'r.json')}; echo rc=$? >&2")
    finally:
        os.chmod(tmp, 0o755)
    assert ".tmp" not in r.stderr and "r.json" in r.stderr, r.stderr


def test_output_to_stderr_through_a_symlink(files):
    # a link of the test's own, like /dev/stderr, so that a regression replaces it
    # and never the system's /dev/stderr (the suite may run as root)
    tmp, split, _, lat = files
    link = tmp / "stderr"
    link.symlink_to("/proc/self/fd/2")
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-q', '-o', link)} 2>&1 >/dev/null | cat")
    assert link.is_symlink()
    assert json.loads(r.stdout)["format"] == "eexit.thresholds/v1"


def test_long_warnings_off_a_terminal_stay_on_one_line(files):
    tmp, split, _, lat = files
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '3%..60%:20', '-o', tmp / 'f.json')} 2>&1 >/dev/null | cat")
    lines = r.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: skipped") and len(lines[0]) > 120, r.stdout
    # notes are for a terminal (README): none here
    r = bash(f"{cmd('tune', split, '--latency', lat, '--budget', '60%', '-o', tmp / 't.json')} 2>&1 | cat")
    assert r.stdout == ""
