"""Tail-latency budgets: quantiles, parsing, the smoothed tail row and its gradient,
the exact machinery with count rows, and tune() against exhaustive search."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.exact import HardProblem
from eexit_cli.core.replay import replay
from eexit_cli.core.smooth import SmoothProblem, exit_probabilities
from eexit_cli.core.tail import (
    TailBudget,
    constraint_rows,
    latency_quantile,
    latency_quantiles,
    parse_tail,
)
from eexit_cli.core.tuner import METHODS, tune
from eexit_cli.errors import InfeasibleBudgetError

from conftest import random_problem


# ------------------------------------------------------------------ quantiles
def _plain_quantile(values, p):
    # smallest v in the sample with share(values <= v) >= p, by a plain loop
    for v in sorted(values):
        if sum(1 for x in values if x <= v) >= p * len(values) - 1e-9:
            return v
    raise AssertionError


@pytest.mark.parametrize("m", [1, 7, 20, 100, 1000])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.95, 0.99])
def test_quantile_and_tail_condition_agree_with_plain_definitions(m, p):
    rng = np.random.default_rng(m)
    lat = rng.choice([0.3, 0.5, 0.8, 1.0], size=m)
    q = latency_quantile(lat, p)
    assert q == _plain_quantile(list(lat), p)
    assert latency_quantiles(lat, (p,))[f"p{100 * p:g}"] == q
    for x in (0.3, 0.4, 0.5, 0.8, 0.99, 1.0):
        tb = TailBudget(p, x)
        assert tb.holds(lat) == (q <= x)
        assert tb.holds(lat) == (np.sum(lat > x) <= tb.allowed(m))


def test_allowed_count_is_robust_to_rounding():
    # 0.95 * 10000 = 9500.000000000002 in floating point: 500 samples may be slower
    assert TailBudget(0.95, 1.0).allowed(10000) == 500
    assert TailBudget(0.99, 1.0).allowed(100) == 1
    assert TailBudget(0.9, 1.0).allowed(25) == 2  # ceil(22.5) = 23 must be fast


@pytest.mark.parametrize("text,level,limit", [
    ("95%:60%", 0.95, 0.6), ("0.99:0.5", 0.99, 0.5), ("p90:1", 0.9, 1.0), (" 99.5% : 0.25 ", 0.995, 0.25),
])
def test_parse_tail(text, level, limit):
    tb = parse_tail(text, [0.2, 0.5, 1.0])
    assert_allclose([tb.level, tb.latency], [level, limit])


@pytest.mark.parametrize("text,match", [
    ("95%", "not P:X"), ("100%:0.5", "strictly between"), ("0:0.5", "strictly between"),
    ("abc:0.5", "not a number"), ("95%:-1", "tail latency"), ("95%:fast", "tail latency"),
])
def test_parse_tail_rejects_bad_input(text, match):
    with pytest.raises(ValueError, match=match):
        parse_tail(text, [0.2, 0.5, 1.0])


# ------------------------------------------------------------ smoothed tail row
def _fd(f, t, h):
    g = np.zeros_like(t)
    for i in range(t.size):
        e = np.zeros_like(t)
        e[i] = h
        g[i] = (f(t + e) - f(t - e)) / (2 * h)
    return g


@pytest.mark.parametrize("n_exits", [2, 5, 17])
@pytest.mark.parametrize("k", [10.0, 100.0])
def test_smoothed_tail_share_and_gradient(n_exits, k):
    scores, correct, costs = random_problem(n_exits, 300, n_exits)
    rng = np.random.default_rng(1)
    x = costs[n_exits // 2] if n_exits > 2 else costs[0]
    row = (costs > x).astype(float)
    share = 0.1
    sp = SmoothProblem(scores, correct, costs, costs.mean(), k, extra_rows=[row], extra_limits=[share])
    t = rng.random(n_exits - 1)

    def plain_share(tt):  # eq. (6) with the cost vector replaced by the tail row
        return float(np.mean(row @ exit_probabilities(scores, tt, k)))

    vals, grads = sp.rows_and_grads(t)
    assert_allclose(vals[2], plain_share(t), rtol=1e-12)
    assert_allclose(sp.constraint_values(t)[1], plain_share(t) - share, rtol=1e-12)
    assert_allclose(grads[2], _fd(plain_share, t, 1e-3 / k), rtol=1e-5, atol=1e-9)
    # the latency row is unchanged by the extra row
    acc, lat, ga, gd = sp.value_and_grad(t)
    plain = SmoothProblem(scores, correct, costs, costs.mean(), k).value_and_grad(t)
    assert_allclose([acc, lat], plain[:2], rtol=1e-12)
    assert_allclose(gd, plain[3], rtol=1e-12)


@pytest.mark.parametrize("budget", [None, "tight"])
def test_phi_gradient_with_two_active_penalties(budget):
    n_exits = 5
    scores, correct, costs = random_problem(n_exits, 300, 3)
    rng = np.random.default_rng(2)
    row = (costs > costs[1]).astype(float)
    b = None if budget is None else costs[0] * 1.05
    sp = SmoothProblem(scores, correct, costs, b, 50.0, extra_rows=[row], extra_limits=[0.01])
    t, t_bar = rng.random(n_exits - 1), rng.random(n_exits - 1)
    c = sp.constraint_values(t)
    assert c[1] > 0 and (budget is None or c[0] > 0)  # penalties active
    value, grad, _, _ = sp.phi_grad(t, t_bar, 10.0, 300.0)
    assert_allclose(value, sp.phi(t, t_bar, 10.0, 300.0), rtol=1e-12)
    assert_allclose(grad, _fd(lambda x: sp.phi(x, t_bar, 10.0, 300.0), t, 1e-6), rtol=1e-5, atol=1e-7)
    assert_allclose(sp.phi_gradient(t, t_bar, 10.0, 300.0), grad, rtol=1e-12)


# ------------------------------------------------------- exact machinery, rows
def _hard(scores, correct, costs, budget, tb, **kw):
    rows, bounds = constraint_rows(costs, budget, [tb], scores.shape[1])
    return HardProblem(scores, correct, rows, bounds, **kw)


def _plain_ok(scores, correct, costs, idx_thresholds, budget, tb, min_hits=0):
    rep = replay(scores, correct, idx_thresholds, costs)
    lat = costs[rep.exit_index]
    hits = int(round(rep.accuracy * scores.shape[1]))
    ok = (budget is None or rep.mean_latency <= budget) and tb.holds(lat) and hits >= min_hits
    return ok, hits, rep.mean_latency


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("objective", ["accuracy", "cost"])
def test_sweeps_with_count_rows_match_brute_force(seed, objective):
    scores, correct, costs = random_problem(4, 60, 40 + seed, ties=seed % 2 == 1)
    tb = TailBudget(0.8, costs[1])
    budget = None if objective == "cost" else costs[0] + 0.6 * (costs[-1] - costs[0])
    min_hits = None if objective == "accuracy" else int(0.6 * 60)
    hp = _hard(scores, correct, costs, budget, tb, min_hits=min_hits, objective=objective)
    # a feasible start: most accurate thresholds that meet the rows, by repair
    st = hp.repair(np.full(3, 0.9))[0]
    if not hp.feasible(st):
        st = hp.repair(np.full(3, 1.0))[0]
    if not hp.feasible(st):
        pytest.skip("no feasible start for this draw")

    def better(a, b):
        return a.key() > b.key()

    for n in range(3):
        best = st
        for kk in range(hp.n_candidates(n)):
            idx = st.index.copy()
            idx[n] = kk
            cand = hp.state(idx)
            ok = _plain_ok(scores, correct, costs, hp.thresholds_of(idx), budget, tb, min_hits or 0)[0]
            assert ok == hp.feasible(cand)
            if ok and better(cand, best):
                best = cand
        assert hp.sweep_one(st, n).key() == best.key()
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        best = st
        for a, b in itertools.product(range(hp.n_candidates(i)), range(hp.n_candidates(j))):
            idx = st.index.copy()
            idx[i], idx[j] = a, b
            cand = hp.state(idx)
            if hp.feasible(cand) and better(cand, best):
                best = cand
        out = hp.sweep_pair(st, i, j)
        assert hp.feasible(out)
        assert out.key() == best.key()


def _exhaustive(scores, correct, costs, budget, tb):
    hp = _hard(scores, correct, costs, budget, tb)
    best = None
    for a in range(hp.n_candidates(0)):
        for b in range(hp.n_candidates(1)):
            s = hp.state([a, b])
            if hp.feasible(s) and (best is None or s.key() > best.key()):
                best = s
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_budget", [False, True])
def test_tune_with_tail_is_exhaustive_optimum(seed, with_budget):
    scores, correct, costs = random_problem(3, 150, 60 + seed, ties=seed % 2 == 0)
    rng = np.random.default_rng(seed)
    tb = TailBudget(float(rng.choice([0.5, 0.8, 0.9])), float(costs[int(rng.integers(0, 2))]))
    budget = (costs[0] + rng.uniform(0.2, 0.8) * (costs[-1] - costs[0])) if with_budget else None
    best = _exhaustive(scores, correct, costs, budget, tb)
    res = tune(scores, correct, costs, budget, tail=tb)
    ok, hits, _ = _plain_ok(scores, correct, costs, res.thresholds, budget, tb)
    assert ok
    assert hits == best.hits
    assert res.tail[0]["quantile"] <= tb.latency


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_exits", [3, 6, 13])
def test_tail_and_budget_hold_exactly_for_every_method(method, seed, n_exits):
    scores, correct, costs = random_problem(n_exits, 400, 100 * n_exits + seed, ties=seed % 2 == 1)
    rng = np.random.default_rng(seed)
    tb = TailBudget(float(rng.choice([0.9, 0.95, 0.99])), float(costs[int(rng.integers(0, n_exits - 1))]))
    for budget in (None, costs[0] + rng.uniform(0.05, 0.6) * (costs[-1] - costs[0])):
        res = tune(scores, correct, costs, budget, tail=tb, method=method)
        ok, hits, lat = _plain_ok(scores, correct, costs, res.thresholds, budget, tb)
        assert ok, (budget, res.tail)
        assert_allclose(res.accuracy, hits / 400)
        assert_allclose(res.mean_latency, lat)


def test_tail_below_cheapest_exit_is_infeasible():
    scores, correct, costs = random_problem(3, 100, 1)
    with pytest.raises(InfeasibleBudgetError, match="below the smallest per-exit cost"):
        tune(scores, correct, costs, tail=(0.95, 0.5 * costs[0]))
    with pytest.raises(ValueError, match="give a mean-latency budget, a tail budget"):
        tune(scores, correct, costs)


def test_tail_record_in_result_json():
    scores, correct, costs = random_problem(4, 300, 5)
    res = tune(scores, correct, costs, tail=(0.9, costs[1]))
    d = res.to_dict()
    assert d["budget"] is None
    (rec,) = d["tail"]
    assert rec["level"] == 0.9 and rec["latency"] == costs[1]
    assert rec["over"] <= rec["allowed"] == 30
    assert d["params"]["tail"] == [{"level": 0.9, "latency": costs[1]}]


def test_reference_models_tail_holds(refdata):
    import h5py
    import json

    for name in ("alex", "scan"):
        with h5py.File(refdata / f"{name}_val.h5", "r") as f:
            scores, correct = f["scores"][()], f["correct"][()].astype(bool)
        costs = np.array(json.loads((refdata / f"{name}_latency.json").read_text())["per_exit"])
        tb = TailBudget(0.95, 0.8 * costs[-1])
        res = tune(scores, correct, costs, 0.7 * costs[-1], tail=tb)
        lat = costs[replay(scores, correct, res.thresholds, costs).exit_index]
        assert tb.holds(lat) and lat.mean() <= 0.7 * costs[-1]
