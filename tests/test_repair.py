"""The repair (a common downward shift of every threshold) and the sorted structures
of the hard problem, against plain computations: a scan over every score crossing,
the bisection the repair replays, ``np.unique`` and ``np.argsort``."""

import math

import numpy as np
import pytest

from eexit_cli.core.exact import HardProblem
from eexit_cli.core.exact.problem import _sorted
from eexit_cli.core.replay import replay

from conftest import random_problem


def _bisection(hp, t):
    """The repair as a plain bisection with one evaluation per halving (the fallback
    the repair keeps, and what it must reproduce bit for bit)."""
    t = np.asarray(t, dtype=np.float64)
    st = hp.state(hp.index_of(t))
    if hp.feasible(st):
        return st, 0.0
    bottom = min(float(v[0]) for v in hp._values)
    hi = max(float(np.max(t)) - bottom, 0.0)
    hi = hi + max(hi, 1.0) * 1e-6 + 1e-300
    while not (np.max(t - hi) < bottom):
        hi *= 2.0
    st_hi = hp.state(hp.index_of(t - hi))
    if not hp.feasible(st_hi):
        return None, math.nan
    return hp._bisect_shift(t, st, hi, st_hi)


def _rows(costs, seed, n_samples):
    """Mean latency alone, or with one or two tail rows (shares past a cost)."""
    rng = np.random.default_rng(seed)
    budget = costs.min() + rng.uniform(-0.1, 1.0) * (costs.max() - costs.min())
    k = seed % 3
    if k == 0:
        return costs, budget
    rows = [costs] + [(costs > rng.uniform(costs.min(), costs.max())).astype(float) for _ in range(k)]
    bounds = [budget] + [(int(rng.integers(0, n_samples)) + 0.5) / n_samples for _ in range(k)]
    return np.array(rows), np.array(bounds)


def _starts(scores, rng):
    n = scores.shape[0] - 1
    lo, hi = float(scores.min()), float(scores.max())
    return ([np.full(n, x) for x in rng.uniform(lo, hi + 0.5, 3)]
            + [rng.uniform(lo, hi, n) for _ in range(3)])


def _same(a, b):
    (sa, da), (sb, db) = a, b
    assert np.array_equal(sa.index, sb.index)
    assert sa.hits == sb.hits and np.array_equal(sa.counts, sb.counts)
    assert np.array_equal(sa.means, sb.means)
    assert da == db and math.copysign(1.0, da) == math.copysign(1.0, db)


@pytest.mark.parametrize("seed", range(40))
def test_repair_is_the_first_feasible_state_of_a_scan_over_every_crossing(seed):
    # every state the common shift passes through, in order: between two consecutive
    # crossing shifts t_n - s (scores below t_n) the state does not change
    n_exits = 2 + seed % 4
    scores, correct, costs = random_problem(n_exits, 12 + 7 * seed, seed, ties=seed % 2 == 0)
    rows, bounds = _rows(costs, seed, scores.shape[1])
    hp = HardProblem(scores, correct, rows, bounds)
    rng = np.random.default_rng(seed)
    for t in _starts(scores, rng):
        st, shift = hp.repair(t)
        cross = np.unique(np.concatenate([t[n] - scores[n][scores[n] <= t[n]]
                                          for n in range(n_exits - 1)] + [[0.0]]))
        probes = np.concatenate([[0.0], 0.5 * (cross[:-1] + cross[1:]), [cross[-1] + 1.0]])
        states = [hp.state(hp.index_of(t - s)) for s in probes]
        first = next((s for s in states if hp.feasible(s)), None)
        if first is None:
            assert math.isnan(shift)
            # every sample at the exit cheapest in the first row
            assert st.counts[int(np.argmin(hp.costs))] == hp.n_samples
            continue
        assert np.array_equal(st.index, first.index), (t, shift)
        assert st.hits == first.hits and np.array_equal(st.means, first.means)
        # the shift returned gives that state, and replay agrees with it
        assert np.array_equal(hp.index_of(t - shift), st.index)
        assert shift == 0.0 or shift > 0.0
        rep = replay(scores, correct, hp.thresholds_of(st.index), hp.costs)
        assert rep.mean_latency == st.mean_latency
        assert round(rep.accuracy * hp.n_samples) == st.hits


def _cases(seed):
    """Random problems of every kind the repair meets, some on purpose off its fast path."""
    rng = np.random.default_rng(100 + seed)
    n_exits = int(rng.integers(2, 8))
    m = int(rng.integers(5, 300))
    scores, correct, costs = random_problem(n_exits, m, 100 + seed, ties=seed % 3 == 0)
    kind = seed % 6
    kw = {}
    if kind == 1:  # costs that do not increase: feasibility may come and go
        costs = rng.permutation(costs)
    if kind == 2:  # equal costs at neighbouring exits
        costs = np.maximum(np.round(costs), 1.0)
    if kind == 3:  # logits-like scores, with negative values
        scores = (scores - 0.5) * 37.0
    rows, bounds = _rows(costs, seed, m)
    if kind == 4:  # integer costs and a bound at an achievable mean (rounding at the bound)
        rows = np.arange(1.0, n_exits + 1)
        share = rng.multinomial(m, np.ones(n_exits) / n_exits) / m
        bounds = float(share @ rows)
    if kind == 5 and seed % 2:
        kw = {"min_hits": int(rng.integers(0, m // 2 + 1))}  # an accuracy floor: no fast path
    return (scores, correct, rows, bounds), kw, rng


@pytest.mark.parametrize("seed", range(120))
def test_repair_gives_the_state_and_shift_of_the_bisection(seed):
    args, kw, rng = _cases(seed)
    fast, plain = HardProblem(*args, **kw), HardProblem(*args, **kw)
    for t in _starts(args[0], rng) + [np.quantile(args[0][:-1], 0.9, axis=1)]:
        got = fast.repair(t)
        want = _bisection(plain, t)
        if want[0] is None:  # no shift works
            assert math.isnan(got[1]) and not plain.feasible(plain.state(np.zeros(t.size, dtype=np.intp)))
            continue
        _same(got, want)


def test_simultaneous_crossings_and_the_floats_running_out():
    # the same scores at two exits and equal thresholds: two crossings at every shift,
    # so the bisection can only stop where no float separates its ends
    rng = np.random.default_rng(5)
    m = 200
    base = np.round(rng.random(m), 2)
    scores = np.vstack([base, base, rng.random(m)])
    correct = rng.random((3, m)) < 0.6
    costs = np.array([1.0, 2.0, 3.0])
    seen = 0
    for budget in np.linspace(1.2, 2.8, 9):
        fast, plain = HardProblem(scores, correct, costs, budget), HardProblem(scores, correct, costs, budget)
        t = np.full(2, 0.995)
        got, want = fast.repair(t), _bisection(plain, t)
        _same(got, want)
        if got[1] > 0:
            before = fast.index_of(t - np.nextafter(got[1], 0.0))
            seen += int(np.sum(before - got[0].index)) >= 2
    assert seen >= 3


def test_repair_looks_at_a_bounded_number_of_crossings_and_evaluates_few_states():
    # a long way to shift (many crossings): the predictions probe, the state stays exact
    scores, correct, costs = random_problem(6, 20_000, 11)
    budget = costs[0] + 0.2 * (costs[-1] - costs[0])
    fast, plain = HardProblem(scores, correct, costs, budget), HardProblem(scores, correct, costs, budget)
    t = np.full(5, 1.0)
    got = fast.repair(t)
    _same(got, _bisection(plain, t))
    near = np.quantile(scores[:-1], 0.9, axis=1)
    moves, plain_moves = fast.moves, plain.moves + plain.evaluations
    _same(fast.repair(near), _bisection(plain, near))
    # exact evaluations: a handful, against one per halving
    assert fast.moves - moves <= 10
    assert 2 * (fast.moves - moves) < plain.moves + plain.evaluations - plain_moves


@pytest.mark.parametrize("case", ["distinct", "ties", "negative", "zeros", "nan", "close", "one", "inf"])
def test_sorted_matches_a_stable_argsort(case):
    rng = np.random.default_rng(3)
    x = rng.random(1000)
    if case == "ties":
        x = np.round(x, 2)
        x[:50] = 1.0
    if case == "negative":
        x = np.round(rng.normal(size=1000), 3)
    if case == "zeros":
        x = np.where(rng.random(1000) < 0.3, 0.0, x)
        x[::7] = -0.0
    if case == "nan":
        x[[3, 500]] = np.nan
        x[7] = -np.nan
    if case == "close":  # distinct floats that agree on all but their last bits: argsort decides
        x = 1.0 + rng.integers(0, 8, 1000) * np.finfo(float).eps
    if case == "one":
        x = x[:1]
    if case == "inf":
        x[[1, 2]] = [np.inf, -np.inf]
    order, srt = _sorted(x, np.arange(x.size, dtype=np.int64))
    assert sorted(order.tolist()) == list(range(x.size))
    assert np.array_equal(srt, x[order], equal_nan=True)
    assert np.array_equal(srt, np.sort(x), equal_nan=True)
    if case != "nan":
        # ties in index order where the integer sort decides, as a stable argsort
        # (but -0.0 before 0.0, which compare equal)
        want = np.argsort(x, kind="stable")
        if case in ("close", "zeros"):
            assert np.array_equal(x[order], x[want])
        else:
            assert np.array_equal(order, want)


@pytest.mark.parametrize("case", ["distinct", "top", "bottom", "middle", "equal"])
def test_ranks_starts_and_order_match_unique(case):
    rng = np.random.default_rng(8)
    m = 500
    scores = rng.random((4, m))
    if case == "top":
        scores[:, :40] = 1.0
    if case == "bottom":
        scores[:, :40] = 0.0
    if case == "middle":
        scores = np.round(scores, 2)
    if case == "equal":
        scores[1] = 0.5
    correct = rng.random((4, m)) < 0.5
    hp = HardProblem(scores, correct, np.arange(1.0, 5.0), 2.5)
    for n in range(3):
        u, inv, cnt = np.unique(scores[n], return_inverse=True, return_counts=True)
        assert np.array_equal(hp._values[n], u)
        assert np.array_equal(hp._ranks[n], inv + 1)
        assert np.array_equal(hp._pos[n], np.concatenate([[0], np.cumsum(cnt)]))
        # samples by rank: the ranks read in that order never decrease
        assert sorted(hp._order[n].tolist()) == list(range(m))
        assert np.all(np.diff(hp._ranks[n][hp._order[n]]) >= 0)
