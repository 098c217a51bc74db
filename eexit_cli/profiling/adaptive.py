"""Check a latency prediction against a real adaptive run of the model.

The tuner promises a mean latency sum_n p_n d_n, with p_n the share of samples
leaving at exit n (from replaying the thresholds on a split) and d_n the profile.
Here the staged model is run sample by sample with the same exit schedule (each
sample runs stages 1..e_m, computing and comparing the confidences of the exits it
passes, as a deployment does), and the measured mean is set against the prediction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from eexit_cli.core.latency_stats import trimmed_mean
from eexit_cli.profiling.record import loadavg, machine, now_utc
from eexit_cli.profiling.staged import StagedModel
from eexit_cli.profiling.timing import ProgressCallback, time_schedule

CHECK_FORMAT = "eexit.check/v1"


@dataclass(frozen=True)
class CheckResult:
    """Measured mean latency of an adaptive run against the predicted sum_n p_n d_n."""

    measured_mean: float  # seconds per sample, over all passes
    predicted_mean: float
    relative_error: float  # (predicted - measured) / measured
    tolerance: float
    fraction: np.ndarray  # p_n
    per_exit_latency: np.ndarray  # d_n used for the prediction
    pass_means: np.ndarray  # measured mean of each pass
    measured_median: float
    measured_trimmed_mean: float
    n_samples: int
    model: StagedModel
    environment: Mapping[str, object] = field(default_factory=dict)
    timestamp: str = ""

    @property
    def passed(self) -> bool:
        return abs(self.relative_error) <= self.tolerance

    def to_dict(self, **extra) -> dict:
        m = self.model
        counts = np.rint(self.fraction * self.n_samples).astype(int)
        return {
            "format": CHECK_FORMAT,
            "unit": "s",
            "measured_mean": self.measured_mean,
            "predicted_mean": self.predicted_mean,
            "relative_error": self.relative_error,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "per_exit": [
                {"exit": n + 1, "name": m.exit_names[n], "fraction": float(f), "count": int(c),
                 "latency": float(d)}
                for n, (f, c, d) in enumerate(zip(self.fraction, counts, self.per_exit_latency))
            ],
            "measurement": {
                "samples": self.n_samples,
                "passes": int(self.pass_means.size),
                "pass_means": [float(x) for x in self.pass_means],
                "median": self.measured_median,
                "trimmed_mean": self.measured_trimmed_mean,
                "method": m.method,
                "mode": m.mode,
                "batch": m.batch,
                "confidence": m.confidence,
                "model": dict(m.source),
                "device": m.device,
                "threads": m.threads,
                "timestamp": self.timestamp,
                **dict(m.versions),
                **dict(self.environment),
            },
            **extra,
        }


def check_adaptive(
    model: StagedModel,
    schedule: Sequence[int],
    per_exit_latency: Sequence[float],
    *,
    passes: int = 5,
    tolerance: float = 0.10,
    progress: ProgressCallback | None = None,
) -> CheckResult:
    """Run ``model`` sample by sample with ``schedule`` and compare with the prediction.

    Parameters
    ----------
    model
        The staged model, opened with the thresholds being checked.
    schedule
        0-based exit of every sample (from replaying the thresholds on a split).
    per_exit_latency
        d_1..d_N in seconds, the profile the prediction is made from.
    passes
        Timed passes over all samples (after one untimed pass).
    tolerance
        Largest accepted ``|predicted - measured| / measured``.
    """
    schedule = np.asarray(schedule, dtype=np.intp)
    d = np.asarray(per_exit_latency, dtype=np.float64)
    n_exits = model.n_exits
    if schedule.ndim != 1 or schedule.size == 0:
        raise ValueError("schedule must be a non-empty 1-D array of exit indices")
    if schedule.min() < 0 or schedule.max() >= n_exits:
        raise ValueError(f"schedule holds exits outside 0..{n_exits - 1}")
    if d.shape != (n_exits,):
        raise ValueError(f"the latency profile has {d.size} exits, the model {n_exits}")
    if not (isinstance(passes, int) and passes >= 1):
        raise ValueError(f"passes must be an integer >= 1, got {passes!r}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    fraction = np.bincount(schedule, minlength=n_exits) / schedule.size
    predicted = float(fraction @ d)
    environment = machine()
    environment["loadavg_start"] = loadavg()
    timestamp = now_utc()
    with model.context():
        ns = time_schedule(model.run_to, schedule, passes=passes, sync=model.sync, progress=progress)
    environment["loadavg_end"] = loadavg()
    seconds = ns.astype(np.float64) / 1e9
    measured = float(seconds.mean())
    return CheckResult(
        measured_mean=measured,
        predicted_mean=predicted,
        relative_error=(predicted - measured) / measured,
        tolerance=float(tolerance),
        fraction=fraction,
        per_exit_latency=d,
        pass_means=seconds.mean(axis=1),
        measured_median=float(np.median(seconds)),
        measured_trimmed_mean=trimmed_mean(np.sort(seconds.ravel())),
        n_samples=int(schedule.size),
        model=model,
        environment=environment,
        timestamp=timestamp,
    )


__all__ = ["CHECK_FORMAT", "CheckResult", "check_adaptive"]
