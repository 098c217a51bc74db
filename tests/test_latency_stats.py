"""Latency statistics: the median's order-statistic interval and the per-exit figures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.latency_stats import ExitTiming, exit_timing, median_ci, trimmed_mean


@pytest.mark.parametrize("n", [6, 10, 51, 200, 1000])
def test_median_ci_is_the_binomial_order_statistic_interval(n):
    from scipy.stats import binom

    x = np.arange(n, dtype=float)
    low, high, coverage = median_ci(x, 0.95)
    j = int(low) + 1  # 1-based order statistic of the lower end
    assert high == n - j  # symmetric: x_(n-j+1), 0-based n-j
    assert coverage == pytest.approx(1 - 2 * binom.cdf(j - 1, n, 0.5), rel=1e-12)
    assert coverage >= 0.95
    # one step narrower would fall below the level
    assert 1 - 2 * binom.cdf(j, n, 0.5) < 0.95


def test_median_ci_with_too_few_values_is_the_range():
    low, high, coverage = median_ci(np.array([1.0, 2.0, 3.0]), 0.95)
    assert (low, high) == (1.0, 3.0)
    assert coverage == pytest.approx(0.75)


@pytest.mark.parametrize("values, level", [(np.array([]), 0.95), (np.arange(5.0), 1.0), (np.arange(5.0), 0.0)])
def test_median_ci_checks_its_arguments(values, level):
    with pytest.raises(ValueError, match="level|at least one value"):
        median_ci(values, level)


def test_exit_timing_against_numpy_on_known_times():
    rounds = [[400, 100, 300], [200, 900, 500], [600, 800, 700]]  # nanoseconds
    t = exit_timing("exit_1", rounds)
    flat = np.sort(np.concatenate(rounds)).astype(float)
    assert t.name == "exit_1"
    assert t.count == 9
    assert t.median == pytest.approx(500e-9, abs=1e-15)
    assert_allclose([t.q1, t.q3], np.percentile(flat, [25, 75]) / 1e9, rtol=0, atol=1e-15)
    assert t.mean == pytest.approx(flat.mean() / 1e9, abs=1e-15)
    assert t.trimmed_mean == pytest.approx(flat.mean() / 1e9, abs=1e-15)  # 5% of 9 calls: none dropped
    assert t.minimum == pytest.approx(100e-9, abs=1e-15)
    low, high, _ = median_ci(flat, 0.95)
    assert (t.ci_low, t.ci_high) == pytest.approx((low / 1e9, high / 1e9), abs=1e-15)
    assert t.ci_level == 0.95
    # per-round medians 300, 500, 700 ns
    assert (t.round_median_min, t.round_median_max) == pytest.approx((300e-9, 700e-9), abs=1e-15)
    assert t.iqr == pytest.approx(t.q3 - t.q1)
    assert t.relative_iqr == pytest.approx(t.iqr / t.median)


def test_exit_timing_dict_has_the_latency_json_keys():
    d = exit_timing("e", [[1000, 2000, 3000]]).to_dict()
    assert set(d) == {"name", "trimmed_mean", "trim", "median", "mean", "q1", "q3", "iqr", "relative_iqr", "ci_low", "ci_high",
                      "ci_level", "min", "count", "round_median_min", "round_median_max"}
    assert d["median"] == 2e-6 and d["min"] == 1e-6 and d["count"] == 3


def test_relative_iqr_of_a_zero_median_is_infinite():
    t = ExitTiming(name="z", median=0.0, mean=0.0, trimmed_mean=0.0, q1=0.0, q3=1e-9, ci_low=0.0, ci_high=0.0,
                   ci_level=0.95, minimum=0.0, count=3, round_median_min=0.0, round_median_max=0.0)
    assert t.relative_iqr == np.inf


@pytest.mark.parametrize("n, trim", [(1, 0.05), (19, 0.05), (20, 0.05), (101, 0.1), (1000, 0.05), (7, 0.0)])
def test_trimmed_mean_against_a_plain_loop(n, trim):
    x = np.sort(np.random.default_rng(n).lognormal(0.0, 1.0, n))
    k = 0
    while (k + 1) <= trim * n:  # floor(trim * n), counted
        k += 1
    kept = [x[i] for i in range(n) if k <= i < n - k]
    assert trimmed_mean(x, trim) == pytest.approx(sum(kept) / len(kept), rel=1e-12)


def test_trimmed_mean_ignores_a_few_extreme_calls_that_move_the_mean():
    rounds = [[1000] * 95 + [1_000_000] * 5]  # five calls hit by a 1 ms interruption
    t = exit_timing("e", rounds, trim=0.05)
    assert t.trimmed_mean == pytest.approx(1e-6, abs=1e-15)
    assert t.estimate == t.trimmed_mean
    assert t.mean > 50e-6


@pytest.mark.parametrize("values, trim", [(np.array([]), 0.05), (np.arange(5.0), 0.5), (np.arange(5.0), -0.1)])
def test_trimmed_mean_checks_its_arguments(values, trim):
    with pytest.raises(ValueError, match="trim|at least one value"):
        trimmed_mean(values, trim)


@pytest.mark.parametrize("rounds", [[], [[100, 200], []]])
def test_exit_timing_needs_times_in_every_round(rounds):
    with pytest.raises(ValueError, match="rounds_ns"):
        exit_timing("e", rounds)


def test_core_module_needs_no_cli_io_or_onnx_packages():
    code = (
        "import sys, eexit_cli.core.latency_stats\n"
        "bad = [m for m in ('click', 'rich', 'h5py', 'onnx', 'onnxruntime') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
