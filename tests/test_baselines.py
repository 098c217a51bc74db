"""Baselines: Huang et al.'s geometric rule and the single shared threshold."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.baselines import geometric_exit_fractions, heuristic, single
from eexit_cli.core.replay import replay


def _problem(n_exits, n_samples, seed):
    rng = np.random.default_rng(seed)
    scores = rng.random((n_exits, n_samples))
    correct = rng.random((n_exits, n_samples)) < 0.4 + 0.5 * scores
    costs = np.cumsum(rng.uniform(0.3, 1.0, n_exits))
    return scores, correct, costs


@pytest.mark.parametrize("n_exits", [2, 5, 17])
@pytest.mark.parametrize("frac", [0.0, 0.2, 0.6, 1.0])
def test_geometric_fractions_meet_expected_cost(n_exits, frac):
    costs = np.cumsum(np.linspace(1.0, 2.0, n_exits))
    budget = costs[0] + frac * (costs[-1] - costs[0])
    p, q = geometric_exit_fractions(costs, budget)
    assert_allclose(p.sum(), 1.0, rtol=1e-12)
    assert_allclose(p @ costs, budget, rtol=1e-9)
    if 0 < frac < 1:
        assert_allclose(p[1:] / p[:-1], q, rtol=1e-9)


def test_heuristic_takes_top_fraction_at_each_exit():
    scores, correct, costs = _problem(4, 2000, 1)
    budget = costs[0] + 0.5 * (costs[-1] - costs[0])
    res = heuristic(scores, correct, costs, budget)
    fractions = np.array(res.info["fractions"])
    rep = replay(scores, correct, res.raw_thresholds, costs)
    # continuous scores: exactly ceil(P_n * M) leave at every early exit
    assert_allclose(rep.fraction[:-1] * 2000, np.ceil(fractions[:-1] * 2000 - 1e-9), atol=0)


@pytest.mark.parametrize("rule", [heuristic, single])
@pytest.mark.parametrize("seed", range(5))
def test_baselines_meet_budget(rule, seed):
    scores, correct, costs = _problem(3 + seed, 300, seed)
    scores = np.round(scores, 1)  # heavy ties
    budget = costs[0] + (0.05 + 0.2 * seed) * (costs[-1] - costs[0])
    res = rule(scores, correct, costs, budget)
    rep = replay(scores, correct, res.thresholds, costs)
    assert rep.mean_latency <= budget
    assert_allclose(rep.accuracy, res.accuracy, atol=0)
    raw = replay(scores, correct, res.raw_thresholds, costs)
    assert res.repaired == (raw.mean_latency > budget)


def test_single_is_largest_feasible_shared_threshold():
    scores, correct, costs = _problem(4, 500, 2)
    budget = costs[0] + 0.4 * (costs[-1] - costs[0])
    res = single(scores, correct, costs, budget)
    t = res.thresholds
    assert np.all(t == t[0])
    assert replay(scores, correct, t, costs).mean_latency <= budget
    above = np.unique(scores[:-1])
    nxt = above[above > t[0]].min()
    assert replay(scores, correct, np.full(3, nxt), costs).mean_latency > budget


def test_budget_above_range_lets_nobody_leave_early():
    scores, correct, costs = _problem(3, 200, 3)
    res = heuristic(scores, correct, costs, costs[-1] * 2)
    rep = replay(scores, correct, res.thresholds, costs)
    assert_allclose(rep.fraction[-1], 1.0)
