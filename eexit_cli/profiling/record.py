"""Profiling a :class:`StagedModel` and the record it produces (the latency JSON).

Backend-independent: the machine description, the statistics per exit (from
``eexit_cli.core.latency_stats``), the warnings, and the ``eexit.latency/v1`` object.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from eexit_cli.core.latency_stats import ExitTiming, exit_timing
from eexit_cli.errors import InputError
from eexit_cli.profiling.staged import DEVICES, MODES, StagedModel
from eexit_cli.profiling.timing import ProgressCallback, time_calls

LATENCY_FORMAT = "eexit.latency/v1"
STATISTIC = "trimmed_mean"
# IQR / median above this makes a warning: the machine was too busy or too noisy for
# the figures to mean much.
SPREAD_WARNING = 0.10


@dataclass(frozen=True)
class ProfileResult:
    """Per-exit latencies of one model on one machine, with how they were measured."""

    exits: tuple[ExitTiming, ...]
    model: StagedModel
    warmup: int
    repeat: int
    rounds: int
    rounds_done: int
    time_budget: float | None
    seed: int
    timestamp: str
    wall_time: float
    call_overhead: ExitTiming | None = None
    environment: Mapping[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    raw_ns: Sequence[Sequence[Sequence[int]]] = ()  # per exit, per round, per call

    @property
    def exit_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.exits)

    @property
    def per_exit(self) -> tuple[float, ...]:
        """d_1..d_N in seconds: each exit's trimmed mean latency."""
        return tuple(e.estimate for e in self.exits)

    @property
    def batch(self) -> int:
        return self.model.batch

    def to_latency_dict(self) -> dict:
        """The ``eexit.latency/v1`` object (see docs/profiling.md)."""
        m = self.model
        measurement = {
            "method": m.method,
            "mode": m.mode,
            "statistic": STATISTIC,
            "batch": m.batch,
            "confidence": m.confidence,
            "exits": [e.to_dict() for e in self.exits],
            "model": dict(m.source),
            "inputs": [dict(i) for i in m.inputs],
            "device": m.device,
            "providers": list(m.providers),
            "threads": m.threads,
            "warmup": self.warmup,
            "repeat": self.repeat,
            "rounds": self.rounds,
            "rounds_done": self.rounds_done,
            "time_budget": self.time_budget,
            "seed": self.seed,
            "timestamp": self.timestamp,
            "wall_time": self.wall_time,
            "call_overhead": None if self.call_overhead is None else self.call_overhead.to_dict(),
            **dict(m.versions),
            **dict(self.environment),
            "warnings": list(self.warnings),
        }
        out = {"format": LATENCY_FORMAT, "unit": "s", "per_exit": list(self.per_exit)}
        if m.names_known:
            out["exit_names"] = list(self.exit_names)
        out["measurement"] = measurement
        return out


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine() -> dict:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus_available(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------
# Profiling
# ---------------------------------------------------------------------------


def check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_open_settings(mode: str, device: str, threads, seed) -> tuple[int, int]:
    """``threads`` and ``seed`` as integers, once ``mode`` and ``device`` are known ones.

    The checks both backends (``open_onnx``, ``open_torch``) make before loading a model.
    """
    threads = check_int("threads", threads, 1)
    seed = check_int("seed", seed, 0)
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return threads, seed


def check_settings(warmup, repeat, rounds, seed, time_budget) -> tuple[int, int, int, int, float | None]:
    warmup = check_int("warmup", warmup, 0)
    repeat = check_int("repeat", repeat, 1)
    rounds = check_int("rounds", rounds, 1)
    seed = check_int("seed", seed, 0)
    if time_budget is not None:
        if isinstance(time_budget, bool) or not isinstance(time_budget, (int, float)) or not time_budget > 0:
            raise InputError(f"time budget must be a positive number of seconds, got {time_budget!r}")
        time_budget = float(time_budget)
    return warmup, repeat, rounds, seed, time_budget


def profile_staged(
    model: StagedModel,
    *,
    warmup: int = 20,
    repeat: int = 50,
    rounds: int = 20,
    seed: int = 0,
    time_budget: float | None = None,
    progress: ProgressCallback | None = None,
) -> ProfileResult:
    """Time ``model.run_to(n)`` for every exit n; d_n is the trimmed mean per exit."""
    warmup, repeat, rounds, seed, time_budget = check_settings(warmup, repeat, rounds, seed, time_budget)
    n_exits = model.n_exits
    calls = [(lambda n=n: model.run_to(n)) for n in range(n_exits)]
    if model.overhead is not None:
        calls.append(model.overhead)
    environment = machine()
    timestamp = now_utc()
    load_start = loadavg()
    with model.context():
        raw = time_calls(
            calls, warmup=warmup, repeat=repeat, rounds=rounds, seed=seed + 1,
            time_budget=time_budget, budget_targets=n_exits, sync=model.sync, progress=progress,
        )
    environment["loadavg_start"] = load_start
    environment["loadavg_end"] = loadavg()
    exits = tuple(exit_timing(model.exit_names[n], raw.times[n]) for n in range(n_exits))
    overhead = exit_timing("call overhead", raw.times[n_exits]) if model.overhead is not None else None
    warnings = profile_warnings(exits, model.threads, environment["cpus_available"], load_start,
                                rounds, raw.rounds_done)
    return ProfileResult(
        exits=exits,
        model=model,
        warmup=warmup,
        repeat=repeat,
        rounds=rounds,
        rounds_done=raw.rounds_done,
        time_budget=time_budget,
        seed=seed,
        timestamp=timestamp,
        wall_time=raw.wall_time,
        call_overhead=overhead,
        environment=environment,
        warnings=tuple(warnings),
        raw_ns=raw.times[:n_exits],
    )


def profile_warnings(exits, threads, cpus, load_start, rounds, rounds_done) -> list[str]:
    out = []
    values = [e.estimate for e in exits]
    flat = [exits[i + 1].name for i in range(len(exits) - 1) if not values[i + 1] > values[i]]
    if flat:
        out.append(
            "d_n does not increase with n at " + ", ".join(flat) + ": check that the exits are "
            "given in order, or the differences are within the noise"
        )
    noisy = [f"{e.name} ({100 * e.relative_iqr:.0f}%)" for e in exits if e.relative_iqr > SPREAD_WARNING]
    if noisy:
        out.append(
            "large spread (IQR above 10% of the median) at " + ", ".join(noisy)
            + ": the machine may be busy; use --threads 1, stop other work, or add --rounds"
        )
    if threads > cpus:
        out.append(f"{threads} threads on {cpus} available CPUs: timings include waiting for a CPU")
    if load_start is not None and load_start[0] + threads > cpus + 0.5:
        out.append(
            f"load average {load_start[0]:.2f} on {cpus} CPUs when measuring began: other work "
            "competes for the CPUs and inflates the timings"
        )
    if rounds_done < rounds:
        out.append(f"time budget reached: {rounds_done} of {rounds} rounds were run")
    return out


__all__ = ["LATENCY_FORMAT", "ProfileResult", "profile_staged", "profile_warnings", "sha256_file"]
