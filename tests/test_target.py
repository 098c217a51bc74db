"""Accuracy targets: the fastest thresholds with accuracy >= A, against exhaustive search."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.exact import HardProblem
from eexit_cli.core.replay import replay
from eexit_cli.core.tail import TailBudget, constraint_rows
from eexit_cli.core.target import hits_needed, tune_fastest
from eexit_cli.core.tuner import METHODS, tune
from eexit_cli.errors import InfeasibleBudgetError

from conftest import random_problem


def test_hits_needed_rounding():
    assert hits_needed(0.97, 100) == 97
    assert hits_needed(0.971, 100) == 98
    assert hits_needed(0.0, 10) == 0
    assert hits_needed(1.0, 10) == 10


def _exhaustive_fastest(scores, correct, costs, need, tb=None):
    rows, bounds = constraint_rows(costs, None, [] if tb is None else [tb], scores.shape[1])
    hp = HardProblem(scores, correct, rows, bounds)
    best = None
    for a in range(hp.n_candidates(0)):
        for b in range(hp.n_candidates(1)):
            s = hp.state([a, b])
            if s.hits >= need and hp.feasible(s) and (best is None or s.mean_latency < best.mean_latency):
                best = s
    return best


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_tail", [False, True])
def test_fastest_is_exhaustive_optimum(seed, with_tail):
    scores, correct, costs = random_problem(3, 150, 200 + seed, ties=seed % 2 == 0)
    m = scores.shape[1]
    tb = TailBudget(0.8, float(costs[1])) if with_tail else None
    top = tune(scores, correct, costs, None if with_tail else costs[-1], tail=tb)
    rng = np.random.default_rng(seed)
    target = top.accuracy - rng.uniform(0.0, 0.08)
    need = hits_needed(target, m)
    best = _exhaustive_fastest(scores, correct, costs, need, tb)
    res = tune_fastest(scores, correct, costs, target, tail=tb)
    rep = replay(scores, correct, res.thresholds, costs)
    assert int(round(rep.accuracy * m)) >= need
    assert_allclose(res.mean_latency, best.mean_latency, rtol=1e-12)
    assert res.budget is None and res.params["min_accuracy"] == target
    if tb is not None:
        assert tb.holds(costs[rep.exit_index])


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("n_exits", [4, 7])
def test_target_holds_exactly_for_every_method(method, n_exits):
    scores, correct, costs = random_problem(n_exits, 300, 7 * n_exits)
    top = tune(scores, correct, costs, costs[-1], method=method)
    for drop in (0.0, 0.03):
        target = top.accuracy - drop
        res = tune_fastest(scores, correct, costs, target, method=method)
        rep = replay(scores, correct, res.thresholds, costs)
        assert rep.accuracy >= target - 1e-12
        # at least as fast as every budget the search tried that reached the target
        reached = [t["mean_latency"] for t in res.stages["search"] if t["reached"]]
        assert res.mean_latency <= min(reached) + 1e-12


def test_fastest_not_slower_than_a_frontier():
    scores, correct, costs = random_problem(5, 600, 11)
    target = tune(scores, correct, costs, costs[-1]).accuracy - 0.02
    res = tune_fastest(scores, correct, costs, target)
    frontier = [tune(scores, correct, costs, b) for b in np.linspace(costs[0], costs[-1], 20)]
    cheapest = min(r.mean_latency for r in frontier if r.accuracy >= target)
    assert res.mean_latency <= cheapest * 1.005


def test_unreachable_target_names_best_accuracy():
    scores, correct, costs = random_problem(4, 300, 3)
    top = tune(scores, correct, costs, costs[-1])
    with pytest.raises(InfeasibleBudgetError, match=f"best accuracy found.*{top.accuracy:.6g}"):
        tune_fastest(scores, correct, costs, min(1.0, top.accuracy + 0.05))


@pytest.mark.parametrize("bad", [-0.1, 1.5, "x"])
def test_bad_target_raises_value_error(bad):
    scores, correct, costs = random_problem(3, 100, 0)
    with pytest.raises(ValueError, match="min_accuracy"):
        tune_fastest(scores, correct, costs, bad)


def test_trivial_target_gives_cheapest_exit():
    scores, correct, costs = random_problem(4, 200, 9)
    res = tune_fastest(scores, correct, costs, 0.0)
    assert_allclose(res.mean_latency, costs[0])
