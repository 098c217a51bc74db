"""certify() for tail budgets and accuracy targets: they hold on fresh data at the stated rate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from eexit_cli.core.guarantee import certify
from eexit_cli.core.replay import exit_indices
from eexit_cli.core.tail import TailBudget
from eexit_cli.core.target import tune_fastest
from eexit_cli.core.tuner import tune
from eexit_cli.errors import InfeasibleBudgetError

COSTS = np.array([1.0, 2.0, 3.0, 5.0])


def generate(n_samples: int, seed: int):
    """Exit outputs of a toy 4-exit network: easier samples are confident earlier."""
    rng = np.random.default_rng(seed)
    ease = rng.random(n_samples)
    n_exits = COSTS.size
    depth = np.arange(1, n_exits + 1)[:, None] / n_exits
    scores = np.clip(ease * (0.4 + 0.6 * depth) + 0.1 * rng.standard_normal((n_exits, n_samples)), 0, 1)
    correct = rng.random((n_exits, n_samples)) < 0.4 + 0.55 * scores
    return scores, correct


@pytest.fixture(scope="module")
def fresh():
    return generate(200_000, seed=999)


def tail_tuner(scores, correct, costs, budget, init=None, tail=None):
    return tune(scores, correct, costs, budget, tail=tail, method="single")


def target_tuner(scores, correct, costs, budget, init=None, tail=None, min_accuracy=None):
    return tune_fastest(scores, correct, costs, min_accuracy, tail=tail, method="single", coarse=4,
                        rtol=1e-3)


def _share_over(fresh_scores, thresholds, x):
    return float(np.mean(COSTS[exit_indices(fresh_scores, thresholds)] > x))


def test_tail_holds_on_fresh_data_at_the_stated_rate(fresh):
    level, reps = 0.9, 60
    tb = TailBudget(0.8, 2.0)  # at most 20% of samples past exit 2
    miss = naive_miss = 0
    for rep in range(reps):
        scores, correct = generate(600, seed=rep)
        g = certify(scores, correct, COSTS, None, level=level, tune_fn=tail_tuner, seed=rep, tail=tb)
        (rec,) = g.requirements
        assert rec["upper_bound"] <= tb.share and rec["level"] == 0.8
        miss += _share_over(fresh[0], g.thresholds, tb.latency) > tb.share
        naive = tail_tuner(scores, correct, COSTS, None, tail=tb)
        naive_miss += _share_over(fresh[0], naive.thresholds, tb.latency) > tb.share
    slack = 3.0 * math.sqrt(level * (1 - level) / reps)
    assert miss / reps <= (1 - level) + slack
    assert naive_miss / reps > 0.3  # tuning to the limit on the split misses it often


def test_accuracy_target_holds_on_fresh_data_at_the_stated_rate(fresh):
    level, reps, target = 0.8, 25, 0.58
    miss = naive_miss = refused = 0
    fs, fc = fresh
    for rep in range(reps):
        scores, correct = generate(1500, seed=100 + rep)
        try:
            g = certify(scores, correct, COSTS, None, level=level, tune_fn=target_tuner, seed=rep,
                        min_accuracy=target)
        except InfeasibleBudgetError:
            refused += 1  # refusing is allowed (and never wrong); it must stay the exception
            continue
        (rec,) = g.requirements
        assert rec["name"] == "accuracy" and rec["lower_bound"] >= target
        ex = exit_indices(fs, g.thresholds)
        miss += fc[ex, np.arange(ex.size)].mean() < target
        naive = target_tuner(scores, correct, COSTS, None, min_accuracy=target)
        ex = exit_indices(fs, naive.thresholds)
        naive_miss += fc[ex, np.arange(ex.size)].mean() < target
    slack = 3.0 * math.sqrt(level * (1 - level) / reps)
    assert miss / reps <= (1 - level) + slack
    assert refused <= reps // 3
    assert naive_miss / reps > 0.2


def test_budget_and_tail_together_record_both():
    scores, correct = generate(1500, seed=5)
    tb = TailBudget(0.9, 3.0)
    g = certify(scores, correct, COSTS, 2.6, level=0.9, tune_fn=tail_tuner, seed=1, tail=tb)
    names = [r["name"] for r in g.requirements]
    assert names == ["mean_latency", "tail_p90"]
    assert g.upper_bound <= 2.6 and g.requirements[1]["upper_bound"] <= 0.1
    # every tested candidate bounds both; internal limits grow bolder along the sequence
    internals = [c.internal for c in g.candidates]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(internals, internals[1:]))
    assert all(c.certified for c in g.candidates[:-1])
    d = json.loads(json.dumps(g.to_dict(), allow_nan=False))
    assert d["candidates"][0]["requirements"][1]["name"] == "tail_p90"


def test_uncertifiable_tail_raises_with_what_would_help():
    scores, correct = generate(200, seed=2)
    # 99.9% of samples at the first exit cannot be certified with 60 calibration samples
    with pytest.raises(InfeasibleBudgetError, match="What would help"):
        certify(scores, correct, COSTS, None, level=0.95, tune_fn=tail_tuner, seed=0,
                tail=TailBudget(0.999, 1.0))
