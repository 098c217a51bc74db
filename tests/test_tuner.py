"""tune(): budget always met on the tuning split, exhaustive optimum on small
problems, unit invariance, input validation, JSON output."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from eexit_cli.core.exact import HardProblem
from eexit_cli.core.ippp import ippp, warm_start
from eexit_cli.core.replay import replay
from eexit_cli.core.smooth import SmoothProblem
from eexit_cli.core.tuner import (METHODS, SMOOTH_SAMPLES_MAX, SMOOTH_SAMPLES_MIN, SMOOTH_TAIL_SAMPLES,
                                  TuneResult, smooth_sample_count, tune)
from eexit_cli.errors import InfeasibleBudgetError

from conftest import best_of_grid, random_problem

REFDATA = Path(__file__).resolve().parents[1].parent / "shared" / "refdata"


def _exhaustive_best(scores, correct, costs, budget):
    hp = HardProblem(scores, correct, costs, budget)
    best = None
    for a in range(hp.n_candidates(0)):
        for b in range(hp.n_candidates(1)):
            s = hp.state([a, b])
            if hp.feasible(s) and (best is None or s.key() > best.key()):
                best = s
    return best


# ------------------------------------------------------------------ warm start
@pytest.mark.parametrize("n_exits", [3, 5, 17])
def test_warm_start_root_meets_constraint(n_exits):
    scores, correct, costs = random_problem(n_exits, 500, n_exits)
    budget = costs[0] + 0.4 * (costs[-1] - costs[0])
    sp = SmoothProblem(scores, correct, costs, budget, k=100.0)
    ws = warm_start(sp, 0.0, 1.0)
    assert ws.status == "root"
    assert_allclose(ws.thresholds, np.full(n_exits - 1, ws.step))
    assert_allclose(sp.constraint(ws.thresholds), 0.0, atol=1e-9 * costs[-1])


def test_warm_start_evaluates_each_step_once():
    scores, correct, costs = random_problem(6, 400, 3)
    sp = SmoothProblem(scores, correct, costs, costs[0] + 0.5 * (costs[-1] - costs[0]), k=100.0)
    seen = []
    constraint = sp.constraint
    sp.constraint = lambda t: seen.append(tuple(t)) or constraint(t)
    ws = warm_start(sp, 0.0, 1.0, xtol=1e-6)
    assert ws.status == "root"
    # no point evaluated twice (Brent's method asks for both ends again, and for the root)
    assert len(seen) == len(set(seen)) == ws.evaluations
    assert seen[0] == (0.0,) * 5 and seen[1] == (1.0,) * 5
    assert_allclose(ws.constraint, sp.constraint(ws.thresholds), rtol=0, atol=0)


def test_warm_start_without_sign_change():
    scores, correct, costs = random_problem(4, 300, 1)
    low = SmoothProblem(scores, correct, costs, costs[0] * 0.5, k=100.0)
    ws = warm_start(low, 0.0, 1.0)
    assert ws.status == "budget_below_range" and ws.step == 0.0
    high = SmoothProblem(scores, correct, costs, costs[-1] * 2, k=100.0)
    ws = warm_start(high, 0.0, 1.0)
    assert ws.status == "budget_above_range"
    assert_allclose(ws.thresholds, 1.0)


def test_ippp_runs_T_iterations_without_tol_and_stays_in_box():
    scores, correct, costs = random_problem(5, 400, 2)
    sp = SmoothProblem(scores, correct, costs, costs.mean(), k=100.0)
    res = ippp(sp, np.full(4, 0.5), 0.0, 1.0, T=7, J=3, tol=0.0)
    assert res.iterations == 7 and not res.converged
    assert res.gradient_evaluations == 21
    assert np.all((res.thresholds >= 0) & (res.thresholds <= 1))


# ------------------------------------------------------------- exact machinery
@pytest.mark.parametrize("seed", range(6))
def test_polished_result_is_exhaustive_optimum(seed):
    scores, correct, costs = random_problem(3, 200, seed, ties=seed % 2 == 0)
    budget = costs[0] + np.random.default_rng(seed).uniform(0.1, 0.9) * (costs[-1] - costs[0])
    best = _exhaustive_best(scores, correct, costs, budget)
    res = tune(scores, correct, costs, budget)
    assert res.mean_latency <= budget
    assert_allclose(res.accuracy * 200, best.hits, atol=0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 3)])
def test_pair_sweep_is_best_cell_of_its_grid(seed, pair):
    # grids smaller than the exits (exhaustive=0), so the sweep works on a
    # subset of candidates; it must return the best feasible cell of that subset
    scores, correct, costs = random_problem(5, 400, 20 + seed, ties=seed % 2 == 1)
    budget = costs[0] + 0.35 * (costs[-1] - costs[0])
    hp = HardProblem(scores, correct, costs, budget)
    st = hp.repair(np.full(4, 0.7))[0]
    i, j = pair
    gi, gj = hp.pair_grids(st, i, j, local=3, coarse=6, exhaustive=0)
    assert gi.size < hp.n_candidates(i) and gj.size < hp.n_candidates(j)
    best = best_of_grid(hp, st, i, j, gi, gj)
    out = hp.sweep_pair(st, i, j, local=3, coarse=6, exhaustive=0)
    assert hp.feasible(out)
    assert out.key() == best.key()


def test_polish_of_a_stuck_state_resumes_at_the_next_level():
    scores, correct, costs = random_problem(4, 500, 3)
    budget = costs[0] + 0.4 * (costs[-1] - costs[0])
    hp = HardProblem(scores, correct, costs, budget)
    st = hp.repair(np.full(3, 0.8))[0]
    levels = ((2, 4), (8, 16))
    cheap, _ = hp.polish(st, levels=levels[:1], exhaustive=0)
    again, rounds = hp.polish(cheap, levels=levels[:1], exhaustive=0)
    assert again is cheap and rounds == 0
    full, _ = hp.polish(cheap, levels=levels, exhaustive=0)
    assert full.key() >= cheap.key() and hp.feasible(full)
    # a different set of pairs is a different search: no shortcut
    _, rounds = hp.polish(cheap, levels=levels[:1], exhaustive=0, pairs=[(0, 1)])
    assert rounds >= 1


def test_repair_is_smallest_common_shift():
    scores, correct, costs = random_problem(4, 300, 7)
    budget = costs[0] + 0.3 * (costs[-1] - costs[0])
    hp = HardProblem(scores, correct, costs, budget)
    t = np.full(3, 0.95)
    st, shift = hp.repair(t)
    assert shift > 0 and hp.feasible(st)
    assert replay(scores, correct, hp.thresholds_of(st.index), costs).mean_latency <= budget
    # brute force: the first gap between score crossings where the budget holds
    crossings = np.unique(np.concatenate([t[n] - scores[n][scores[n] < t[n]] for n in range(3)]))
    mids = np.concatenate([[0.0], 0.5 * (crossings[:-1] + crossings[1:]), [crossings[-1] + 1]])
    first = next(m for m in mids if hp.feasible(hp.state(hp.index_of(t - m))))
    assert_allclose(st.index, hp.index_of(t - first))


# ---------------------------------------------------------- budget property
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_exits=st.integers(2, 6),
    frac=st.floats(0.0, 1.2),
    method=st.sampled_from(METHODS),
)
def test_hard_budget_always_holds(seed, n_exits, frac, method):
    scores, correct, costs = random_problem(n_exits, 150, seed, ties=seed % 3 == 0)
    budget = costs[0] + frac * (costs[-1] - costs[0])
    res = tune(scores, correct, costs, budget, method=method, T=15, J=5)
    rep = replay(scores, correct, res.thresholds, costs)
    assert rep.mean_latency <= budget
    assert_allclose(rep.accuracy, res.accuracy, rtol=0, atol=0)


# ---------------------------------------------------------- units and API
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor", [1e9, 1e-3])
def test_cost_unit_does_not_matter(method, factor):
    scores, correct, costs = random_problem(5, 1000, 11)
    budget = costs[0] + 0.35 * (costs[-1] - costs[0])
    a = tune(scores, correct, costs, budget, method=method)
    b = tune(scores, correct, costs * factor, budget * factor, method=method)
    assert_allclose(b.thresholds, a.thresholds, rtol=0, atol=0)
    assert_allclose(b.accuracy, a.accuracy, rtol=0, atol=0)
    assert_allclose(b.mean_latency, a.mean_latency * factor, rtol=1e-12)


def test_infeasible_budget_names_smallest_latency():
    scores, correct, costs = random_problem(3, 100, 0)
    with pytest.raises(InfeasibleBudgetError, match=f"{costs[0]:.6g}"):
        tune(scores, correct, costs, costs[0] * 0.9)


@pytest.mark.parametrize("name", ["k", "T", "J", "gamma", "mu", "eta", "beta"])
@pytest.mark.parametrize("value", [0, -1.0, float("nan")])
def test_bad_parameters_raise_value_error(name, value):
    scores, correct, costs = random_problem(3, 50, 0)
    with pytest.raises(ValueError, match=name):
        tune(scores, correct, costs, costs.mean(), **{name: value})


@pytest.mark.parametrize("kwargs, match", [
    ({"budget": float("inf")}, "budget"),
    ({"budget": -1.0}, "budget"),
    ({"method": "nope"}, "method"),
    ({"score_range": (1.0, 0.0)}, "score_range"),
    ({"init": [0.5]}, "init"),
    ({"tol": -1.0}, "tol"),
])
def test_bad_arguments_raise_value_error(kwargs, match):
    scores, correct, costs = random_problem(3, 50, 0)
    args = {"budget": costs.mean(), **kwargs}
    budget = args.pop("budget")
    with pytest.raises(ValueError, match=match):
        tune(scores, correct, costs, budget, **args)


def test_bad_shapes_raise_value_error():
    scores, correct, costs = random_problem(3, 50, 0)
    with pytest.raises(ValueError, match="costs"):
        tune(scores, correct, costs[:2], 1.0)
    with pytest.raises(ValueError, match="correct"):
        tune(scores, correct[:, :10], costs, 1.0)


def test_budget_above_every_cost_and_warnings():
    scores, correct, costs = random_problem(4, 200, 3)
    res = tune(scores, correct, costs, costs[-1] * 3)
    assert "cannot bind" in res.message
    best_single_exit = correct.mean(axis=1).max()
    assert res.accuracy >= best_single_exit - 1e-12
    odd = tune(scores, correct, costs[::-1].copy(), costs.mean())
    assert any("not increasing" in w for w in odd.warnings)
    assert odd.mean_latency <= costs.mean()


def test_result_fields_and_json():
    scores, correct, costs = random_problem(5, 400, 4)
    calls = []
    res = tune(scores, correct, costs, costs.mean(), progress=lambda d, t: calls.append((d, t)))
    assert isinstance(res, TuneResult)
    assert calls and calls[-1][0] == calls[-1][1]
    assert res.gradient_evaluations == res.iterations * res.params["J"]
    assert {"warm_start", "ippp", "polished"} <= set(res.stages)
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    assert back["thresholds"] == res.thresholds.tolist()
    assert back["method"] == "ippp" and isinstance(back["params"]["k"], float)
    with pytest.raises(Exception):
        res.method = "x"  # frozen


def test_init_is_used_and_recorded():
    scores, correct, costs = random_problem(4, 300, 5)
    budget = costs.mean()
    first = tune(scores, correct, costs, budget)
    again = tune(scores, correct, costs, budget * 1.01, init=first.thresholds)
    assert again.params["init"] == first.thresholds.tolist()
    assert again.mean_latency <= budget * 1.01
    assert again.accuracy >= first.accuracy - 1e-12


def test_score_range_outside_data_widened_with_warning():
    scores, correct, costs = random_problem(3, 100, 6)
    res = tune(scores, correct, costs, costs.mean(), score_range=(0.2, 0.8))
    assert any("outside score_range" in w for w in res.warnings)


# ------------------------------------------------------------------ real data
def _load(name):
    h5py = pytest.importorskip("h5py")
    if not REFDATA.is_dir():
        pytest.skip(f"reference data not found at {REFDATA}")
    with h5py.File(REFDATA / f"{name}_val.h5", "r") as f:
        scores, correct = f["scores"][()], f["correct"][()].astype(bool)
    costs = np.array(json.loads((REFDATA / f"{name}_latency.json").read_text())["per_exit"])
    with open(REFDATA / f"{name}_reference_curve.csv") as fh:
        curve = list(csv.DictReader(fh))
    return scores, correct, costs, curve


@pytest.mark.parametrize("name", ["alex", "scan"])
def test_reference_models_meet_budget_and_match_paper(name):
    scores, correct, costs, curve = _load(name)
    for row in (curve[5], curve[60]):
        budget = float(row["budget"])
        res = tune(scores, correct, costs, budget)
        assert res.mean_latency <= budget
        # the paper's own iPPP, rounded to 4 digits in its file
        assert res.accuracy >= float(row["ippp_val_acc"]) - 5e-5


# ------------------------------------------------------------------ frontier
def test_frontier_on_two_processes_matches_its_runs_done_in_order():
    from eexit_cli.core.frontier import tune_frontier

    scores, correct, costs = random_problem(4, 300, 11)
    budgets = list(costs[0] + np.linspace(0.2, 0.8, 5) * (costs[-1] - costs[0]))
    two = tune_frontier(scores, correct, costs, budgets, jobs=2, T=20)
    assert [r.budget for r in two] == budgets
    # runs of neighbours: [b0, b1, b2] and [b3, b4], each warm-started in order
    prev = None
    for k, b in enumerate(budgets):
        if k == 3:
            prev = None
        ref = tune(scores, correct, costs, b, init=prev, T=20)
        prev = ref.thresholds
        assert_allclose(two[k].thresholds, ref.thresholds, rtol=0, atol=0)
        assert replay(scores, correct, two[k].thresholds, costs).mean_latency <= b
    one = tune_frontier(scores, correct, costs, budgets, jobs=1, T=20)
    assert [r.params["init"] is None for r in one] == [True, False, False, False, False]
    with pytest.raises(ValueError, match="sorted"):
        tune_frontier(scores, correct, costs, budgets[::-1])
    with pytest.raises(ValueError, match="jobs"):
        tune_frontier(scores, correct, costs, budgets, jobs=0)


# ----------------------------------------------------- subset of the smoothed problem
def test_smooth_sample_count_rule():
    assert SMOOTH_SAMPLES_MIN == 4096 and SMOOTH_TAIL_SAMPLES == 200 and SMOOTH_SAMPLES_MAX == 65_536
    assert smooth_sample_count(1000) == 1000
    assert smooth_sample_count(4097) == 4096
    assert smooth_sample_count(10**6) == 4096
    # a tail budget asks for SMOOTH_TAIL_SAMPLES expected samples above its limit
    assert smooth_sample_count(10**6, [0.05]) == 4096  # 200 / 0.05 = 4000
    assert smooth_sample_count(10**6, [0.04]) == 5000
    assert smooth_sample_count(10**6, [0.01]) == 20_000
    assert smooth_sample_count(10**6, [0.05, 0.01, 0.2]) == 20_000  # the smallest share decides
    assert smooth_sample_count(15_000, [0.01]) == 15_000  # never more than the split
    assert smooth_sample_count(10**6, [0.001]) == SMOOTH_SAMPLES_MAX
    assert smooth_sample_count(10**6, [0.0]) == 4096  # nothing allowed above: any subset resolves it
    for m in (5000, 50_000, 10**6):
        for q in (0.003, 0.01, 0.02, 0.1):
            n = smooth_sample_count(m, [q])
            assert n == m or n == SMOOTH_SAMPLES_MAX or n * q >= SMOOTH_TAIL_SAMPLES - 1e-9
            assert n <= m and n >= min(m, SMOOTH_SAMPLES_MIN)


def _subset_smooth_values(scores, correct, costs, budget, res, tails=()):
    """Smoothed accuracy and latency of ``res.thresholds`` on the subset of the size
    ``res.params`` reports, drawn as tune() draws it (seed 0, sorted)."""
    m = scores.shape[1]
    n = res.params["smooth_samples"]
    pick = np.sort(np.random.default_rng(0).choice(m, n, replace=False)) if n < m else np.arange(m)
    lo, hi = res.params["score_range"]
    d = costs / costs.max()
    rows = np.array([tb.row(costs) for tb in tails], dtype=np.float64).reshape(len(tails), costs.size)
    sp = SmoothProblem((scores[:, pick] - lo) / (hi - lo), correct[:, pick], d,
                       None if budget is None else budget / costs.max(), res.params["k"],
                       dtype=np.float32, extra_rows=rows,
                       extra_limits=[tb.allowed(m) / m for tb in tails])
    return sp.values(np.clip((res.thresholds - lo) / (hi - lo), 0, 1))


def test_tune_solves_the_smoothed_problem_on_the_rule_s_subset():
    from eexit_cli.core.tail import TailBudget

    scores, correct, costs = random_problem(4, 30_000, 8)
    budget = costs[0] + 0.4 * (costs[-1] - costs[0])
    plain = tune(scores, correct, costs, budget)
    assert plain.params["smooth_samples"] == SMOOTH_SAMPLES_MIN
    acc, lat = _subset_smooth_values(scores, correct, costs, budget, plain)
    assert_allclose([plain.smooth_accuracy, plain.smooth_latency], [acc, lat * costs.max()], rtol=1e-12)
    # a p99 tail budget lets 300 of 30,000 samples above its limit: the subset holds
    # 200 / 0.01 = 20,000 samples, about 200 of them above the limit
    tb = TailBudget(0.99, float(costs[2]))
    tailed = tune(scores, correct, costs, budget, tail=tb)
    assert tailed.params["smooth_samples"] == 20_000
    acc, lat = _subset_smooth_values(scores, correct, costs, budget, tailed, [tb])
    assert_allclose([tailed.smooth_accuracy, tailed.smooth_latency], [acc, lat * costs.max()], rtol=1e-12)
    assert tailed.tail[0]["over"] <= tailed.tail[0]["allowed"] == 300
    # the subset is fixed: the same call gives the same thresholds
    again = tune(scores, correct, costs, budget, tail=tb)
    assert np.array_equal(again.thresholds, tailed.thresholds)
    # a size given explicitly overrides the rule
    fixed = tune(scores, correct, costs, budget, smooth_samples=1000)
    assert fixed.params["smooth_samples"] == 1000
    acc, lat = _subset_smooth_values(scores, correct, costs, budget, fixed)
    assert_allclose([fixed.smooth_accuracy, fixed.smooth_latency], [acc, lat * costs.max()], rtol=1e-12)


@pytest.mark.parametrize("bad", [0, -5, 2.5, "many"])
def test_smooth_samples_must_be_a_positive_integer(bad):
    scores, correct, costs = random_problem(3, 200, 1)
    with pytest.raises(ValueError, match="smooth_samples"):
        tune(scores, correct, costs, costs.mean(), smooth_samples=bad)


@pytest.mark.parametrize("seed", range(5))
def test_early_stop_exits_match_exit_indices(seed):
    from eexit_cli.core.replay import exit_indices
    from eexit_cli.core.tuner import _exits_of

    rng = np.random.default_rng(seed)
    n_exits = int(rng.integers(2, 20))
    scores = np.round(rng.random((n_exits, 3000)), 2)  # ties with the thresholds too
    exits = _exits_of(scores)
    for t in (rng.random(n_exits - 1), np.round(rng.random(n_exits - 1), 2), np.zeros(n_exits - 1),
              np.ones(n_exits - 1), scores[:-1, 7].copy()):
        got = exits(t)
        assert np.array_equal(got, exit_indices(scores, t))
        # a plain loop over samples: the first exit strictly above its threshold, else the last
        m = int(rng.integers(3000))
        first = next((n for n in range(n_exits - 1) if scores[n, m] > t[n]), n_exits - 1)
        assert got[m] == first
