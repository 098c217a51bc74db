"""Upper confidence bounds: coverage on known means, monotonicity, known forms, input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.bounds import (
    BOUNDS,
    DEFAULT_BOUND,
    betting,
    get_bound,
    hoeffding,
    hoeffding_bentkus,
)

COSTS = np.array([0.32, 0.53, 0.76, 1.0, 1.07])
LO, HI = float(COSTS.min()), float(COSTS.max())
# per-sample latencies of tuned thresholds: a few discrete costs, mass on one or two exits
MIXES = {
    "one_exit": np.array([0.03, 0.90, 0.04, 0.02, 0.01]),
    "first_last": np.array([0.5, 0.0, 0.0, 0.0, 0.5]),
}


def draws(mix: str, n: int, reps: int, seed: int) -> tuple[np.ndarray, float]:
    p = MIXES[mix]
    rng = np.random.default_rng(seed)
    return COSTS[rng.choice(COSTS.size, size=(reps, n), p=p)], float(p @ COSTS)


@pytest.mark.parametrize("mix", sorted(MIXES))
@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bound_covers_known_mean(name, mix):
    delta, reps = 0.1, 2000
    fn = BOUNDS[name]
    x, mu = draws(mix, 40, reps, seed=hash((name, mix)) % 2**32)
    misses = sum(fn(row, LO, HI, delta) < mu for row in x)
    slack = 3.0 * math.sqrt(delta * (1 - delta) / reps)  # Monte-Carlo error of the miss rate
    assert misses / reps <= delta + slack


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bound_decreases_with_delta(name):
    fn = BOUNDS[name]
    x, _ = draws("first_last", 200, 3, seed=1)
    for row in x:
        values = [fn(row, LO, HI, d) for d in (0.01, 0.05, 0.1, 0.2, 0.5)]
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:])), values


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bound_decreases_with_n(name):
    fn = BOUNDS[name]
    x, _ = draws("one_exit", 50, 1, seed=2)
    # the same empirical distribution seen 1, 2, 4, 8 and 16 times
    values = [fn(np.tile(x[0], k), LO, HI, 0.05) for k in (1, 2, 4, 8, 16)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] - x[0].mean() < 0.05 * (HI - LO)


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bound_within_range_and_above_mean(name):
    fn = BOUNDS[name]
    x, _ = draws("first_last", 30, 1, seed=3)
    u = fn(x[0], LO, HI, 0.05)
    assert x[0].mean() <= u <= HI
    assert fn(np.full(5, HI), LO, HI, 0.05) == HI
    assert LO < fn(np.full(1000, LO), LO, HI, 0.05) < LO + 0.05 * (HI - LO)
    assert fn([2.0, 2.0], 2.0, 2.0, 0.05) == 2.0  # degenerate range


def test_hoeffding_formula():
    x = np.tile([1.0, 2.0, 2.0, 3.0], 50)
    assert_allclose(hoeffding(x, 0.0, 4.0, 0.05), 2.0 + 4.0 * math.sqrt(math.log(20) / 400), rtol=1e-12)


def test_hoeffding_bentkus_is_at_most_hoeffding():
    # the relative-entropy form of Hoeffding's inequality beats the sqrt form (Pinsker)
    x, _ = draws("one_exit", 300, 20, seed=4)
    for row in x:
        assert hoeffding_bentkus(row, LO, HI, 0.05) <= hoeffding(row, LO, HI, 0.05) + 1e-12


def test_hoeffding_bentkus_bernoulli_known_value():
    # 0 successes in n trials: the Hoeffding part gives exactly 1 - delta**(1/n),
    # the Bentkus part e * (1 - r)**n = delta, i.e. r = 1 - (delta / e)**(1/n) (larger)
    n, delta = 100, 0.05
    assert_allclose(hoeffding_bentkus(np.zeros(n), 0.0, 1.0, delta), 1 - delta ** (1 / n), rtol=1e-9)


def test_betting_is_deterministic_and_accepts_any_order():
    x, _ = draws("first_last", 200, 1, seed=5)
    row = x[0]
    assert betting(row, LO, HI, 0.05) == betting(row.copy(), LO, HI, 0.05)
    # sorted input is visited in a fixed shuffled order, so it is not anti-conservative
    sorted_row = np.sort(row)[::-1]
    assert abs(betting(sorted_row, LO, HI, 0.05) - betting(row, LO, HI, 0.05)) < 0.05 * (HI - LO)


def test_default_bound_is_tightest_on_latency_like_data():
    # evidence for DEFAULT_BOUND: mean width over draws at a typical calibration size
    widths = {}
    for mix in MIXES:
        x, mu = draws(mix, 300, 30, seed=6)
        for name, fn in BOUNDS.items():
            widths.setdefault(name, []).append(np.mean([fn(r, LO, HI, 0.05) - mu for r in x]))
    mean_width = {name: float(np.mean(w)) for name, w in widths.items()}
    assert min(mean_width, key=mean_width.get) == DEFAULT_BOUND, mean_width


@pytest.mark.parametrize(
    "args, match",
    [
        (([], 0.0, 1.0, 0.05), "x has no samples"),
        (([[0.5]], 0.0, 1.0, 0.05), "x must be a 1-D"),
        (([0.5, np.nan], 0.0, 1.0, 0.05), "x contains NaN"),
        (([0.5, 1.5], 0.0, 1.0, 0.05), r"x must lie in \[lo, hi\]"),
        (([0.5], 1.0, 0.0, 0.05), "hi must be at least lo"),
        (([0.5], 0.0, np.inf, 0.05), "lo and hi must be finite"),
        (([0.5], 0.0, 1.0, 0.0), "delta must lie strictly between 0 and 1"),
        (([0.5], 0.0, 1.0, 1.0), "delta must lie strictly between 0 and 1"),
        (([0.5], 0.0, 1.0, "x"), "lo, hi and delta must be numbers"),
    ],
)
@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_bad_inputs_name_the_parameter(name, args, match):
    with pytest.raises(ValueError, match=match):
        BOUNDS[name](*args)


def test_get_bound():
    assert get_bound("betting") is betting
    with pytest.raises(ValueError, match="bound must be one of .*hoeffding_bentkus"):
        get_bound("chernoff")
