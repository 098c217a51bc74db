"""Every combination of candidates: HardProblem.exhaustive against a brute force over
HardProblem.state, and tune / tune_fastest against a plain brute force over every
threshold on tiny problems with 4-5 exits, where a move of three thresholds at once
can be needed that the local searches do not try."""

import itertools
import math

import numpy as np
import pytest

from eexit_cli.core import tuner as tuner_mod
from eexit_cli.core.exact import HardProblem
from eexit_cli.core.exact.exhaustive import EXHAUSTIVE_WORK
from eexit_cli.core.tail import TailBudget, constraint_rows
from eexit_cli.core.target import hits_needed, tune_fastest
from eexit_cli.core.tuner import tune
from eexit_cli.errors import InfeasibleBudgetError

from conftest import random_problem


def _tiny(seed):
    """4 exits and 5-8 samples, or 5 exits and 5-6; scores rounded (ties) for every
    third seed; integer costs (ties of mean latency) for every fourth."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([4, 5]))
    m = int(rng.integers(5, 9 if n == 4 else 7))
    scores, correct, costs = random_problem(n, m, seed, ties=seed % 3 == 0)
    if seed % 4 == 0:
        costs = np.arange(1.0, n + 1.0)
    return rng, scores, correct, costs


def _candidates(s):
    """Every hard behaviour of one threshold: below every score, the midpoints, the top."""
    u = sorted(set(float(x) for x in s))
    return [u[0] - 1.0] + [0.5 * (a + b) for a, b in zip(u, u[1:])] + [u[-1]]


def _brute(scores, correct, costs, budget=None, tails=(), need=0, objective="accuracy"):
    """(key, hits, mean latency) of the best thresholds over every combination, by plain
    loops: a sample leaves at the first exit whose score is above the threshold; None
    when no combination meets the budget, the tail budgets and ``need`` hits."""
    n, m = scores.shape
    best = None
    for t in itertools.product(*(_candidates(scores[k]) for k in range(n - 1))):
        exits = [next((k for k in range(n - 1) if scores[k, j] > t[k]), n - 1) for j in range(m)]
        hits = sum(1 for j, e in enumerate(exits) if correct[e, j])
        lat = [float(costs[e]) for e in exits]
        mean = math.fsum(lat) / m
        if budget is not None and mean > budget:
            continue
        if any(sum(1 for x in lat if x > tb.latency) > tb.allowed(m) for tb in tails):
            continue
        if hits < need:
            continue
        key = (hits, -mean) if objective == "accuracy" else (-mean, hits)
        if best is None or key > best[0]:
            best = (key, hits, mean)
    return best


def _same(res, best, m, objective="accuracy"):
    """Hits equal and mean latency equal (to rounding) to the brute force's best."""
    hits = int(round(res.accuracy * m))
    return hits == best[1] and abs(res.mean_latency - best[2]) <= 1e-12 * max(1.0, best[2])


# ------------------------------------------------------------- the search itself
def _all_states(hp):
    best = None
    for idx in itertools.product(*(range(hp.n_candidates(n)) for n in range(hp.n_exits - 1))):
        s = hp.state(list(idx))
        if hp.feasible(s) and (best is None or s.key() > best.key()):
            best = s  # ties: the first in lexicographic order
    return best


@pytest.mark.parametrize("seed", range(60))
def test_exhaustive_is_best_state(seed):
    # 2-5 exits, one to three rows, either objective, a floor on hits, bounds that
    # sit exactly on a state's mean or on a cost, and bounds nothing meets
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(2, 6))
    m = int(rng.integers(1, {2: 30, 3: 14, 4: 8, 5: 6}[n]))
    scores, correct, costs = random_problem(n, m, 1000 + seed, ties=seed % 3 == 0)
    if seed % 4 == 0:
        costs = np.arange(1.0, n + 1.0) * rng.choice([1.0, 0.1, 3e-3])
    tails = [TailBudget(float(rng.choice([0.5, 0.7, 0.9])), float(costs[int(rng.integers(0, n))]))
             for _ in range(int(rng.integers(0, 3)))]
    budget = float(costs[0] + rng.uniform(-0.2, 0.9) * (costs[-1] - costs[0]))
    if seed % 5 == 1:
        budget = float(costs[int(rng.integers(0, n))])
    elif seed % 5 == 2:
        probe = HardProblem(scores, correct, costs, np.inf)
        budget = float(probe.state([int(rng.integers(0, probe.n_candidates(k)))
                                    for k in range(n - 1)]).means[0])
    rows, bounds = constraint_rows(costs, budget, tails, m)
    objective = "cost" if seed % 3 == 2 else "accuracy"
    min_hits = int(rng.integers(0, m + 1)) if objective == "cost" or seed % 4 == 1 else None
    hp = HardProblem(scores, correct, rows, bounds, objective=objective, min_hits=min_hits)
    want = _all_states(hp)
    got = hp.exhaustive()
    if want is None:
        assert got is None
    else:
        assert hp.feasible(got)
        assert got.key() == want.key()
        assert np.array_equal(got.index, want.index)
        assert hp.state(got.index).key() == got.key()


def test_exhaustive_gives_way_to_the_next_state_when_the_exact_means_say_no(monkeypatch):
    # batch means pulled below the exact ones by 3/4 of what the rounding allows: states
    # just over the budget look possibly feasible, the exact check must turn them down
    scores, correct, costs = random_problem(4, 7, 5)
    probe = HardProblem(scores, correct, costs, np.inf)
    seen = 0
    for idx in [(1, 2, 3), (4, 0, 5), (2, 6, 1), (7, 7, 0)]:
        budget = np.nextafter(probe.state(list(idx)).means[0], -np.inf)
        hp = HardProblem(scores, correct, costs, budget)
        want = _all_states(hp)
        orig = type(hp)._batch_means

        def low(self, *a, _orig=orig):
            return _orig(self, *a) - 1.5 * self._mean_rounding[:, None, None]

        said = []
        feasible = type(hp).feasible

        def noted(self, st, _f=feasible):
            said.append(_f(self, st))
            return said[-1]

        with monkeypatch.context() as mp:
            mp.setattr(type(hp), "_batch_means", low)
            mp.setattr(type(hp), "feasible", noted)
            got = hp.exhaustive()
        seen += said.count(False)
        assert hp.feasible(got) and got.key() == want.key()
        assert np.array_equal(got.index, want.index)
    assert seen > 0  # some state was turned down by the exact check


def test_exhaustive_stops_at_the_limit():
    scores, correct, costs = random_problem(4, 8, 3)
    hp = HardProblem(scores, correct, costs, costs[1])
    k = [hp.n_candidates(n) for n in range(3)]
    work = k[0] * k[1] * 6 * (8 + 16) + 8 * k[0] * k[1] * k[2]
    assert hp.exhaustive_work() == work
    assert hp.exhaustive(limit=work - 1) is None
    assert hp.exhaustive(limit=work) is not None
    # a large split: the check costs a few products and says no
    scores, correct, costs = random_problem(3, 10_000, 1)
    hp = HardProblem(scores, correct, costs, costs[1])
    assert hp.exhaustive_work(EXHAUSTIVE_WORK) > EXHAUSTIVE_WORK
    assert hp.exhaustive() is None and hp.evaluations == 0


# ------------------------------------------------------------------ tune, tune_fastest
# the seeds hold problems where the polish alone misses the optimum (e.g. 4 exits and
# 7 samples: 4 correct against 5), besides the many where it finds it
@pytest.mark.parametrize("seed", range(0, 160))
def test_tune_is_exhaustive_optimum_on_tiny_problems(seed):
    rng, scores, correct, costs = _tiny(seed)
    m = scores.shape[1]
    budget = float(costs[0] + rng.uniform(0.05, 0.9) * (costs[-1] - costs[0]))
    init = np.sort(rng.random(scores.shape[0] - 1)) if seed % 2 else None
    best = _brute(scores, correct, costs, budget)
    res = tune(scores, correct, costs, budget, init=init)
    assert res.mean_latency <= budget
    assert _same(res, best, m), (res.accuracy * m, res.mean_latency, best)


@pytest.mark.parametrize("seed", range(0, 100))
def test_tune_with_tail_budgets_is_exhaustive_optimum_on_tiny_problems(seed):
    rng, scores, correct, costs = _tiny(seed)
    n, m = scores.shape
    tails = [TailBudget(float(rng.choice([0.5, 0.7, 0.85])), float(costs[int(rng.integers(0, n - 1))]))
             for _ in range(int(rng.integers(1, 3)))]
    budget = None if seed % 3 == 1 else float(costs[0] + rng.uniform(0.1, 0.9) * (costs[-1] - costs[0]))
    best = _brute(scores, correct, costs, budget, tails)
    res = tune(scores, correct, costs, budget, tail=tails)
    lat = costs[np.array([next((k for k in range(n - 1) if scores[k, j] > res.thresholds[k]), n - 1)
                          for j in range(m)])]
    assert all(tb.holds(lat) for tb in tails)
    assert _same(res, best, m), (res.accuracy * m, res.mean_latency, best)


@pytest.mark.parametrize("seed", range(0, 100))
def test_tune_fastest_is_exhaustive_optimum_on_tiny_problems(seed):
    rng, scores, correct, costs = _tiny(seed)
    n, m = scores.shape
    tails = [TailBudget(0.7, float(costs[int(rng.integers(1, n))]))] if seed % 3 == 0 else []
    top = _brute(scores, correct, costs, None, tails)[1]
    # a target up to the best reachable, or one above it (nothing reaches it)
    target = float(rng.uniform(0.3, 1.0)) * top / m if seed % 10 else min(1.0, (top + 1) / m)
    need = hits_needed(target, m)
    best = _brute(scores, correct, costs, None, tails, need=need, objective="cost")
    if best is None:
        with pytest.raises(InfeasibleBudgetError):
            tune_fastest(scores, correct, costs, target, tail=tails or None)
        return
    res = tune_fastest(scores, correct, costs, target, tail=tails or None)
    assert int(round(res.accuracy * m)) >= need
    assert _same(res, best, m, "cost"), (res.accuracy * m, res.mean_latency, best)


def test_tune_records_the_exhaustive_state(monkeypatch):
    # with searches that stop where they start, the exhaustive state wins and is named
    scores, correct, costs = random_problem(4, 7, 11)
    budget = float(costs[0] + 0.4 * (costs[-1] - costs[0]))
    best = _brute(scores, correct, costs, budget)
    monkeypatch.setattr(HardProblem, "trade", lambda self, st, **kw: (st, 1))
    monkeypatch.setattr(HardProblem, "polish", lambda self, st, **kw: (st, 1))
    res = tune(scores, correct, costs, budget)
    assert _same(res, best, 7)
    assert res.stages["polished"]["start"] == "exhaustive"
    # without polish nothing is searched
    plain = tune(scores, correct, costs, budget, polish=False)
    assert "polished" not in plain.stages
    # the problem too large for it: the polished result stays
    monkeypatch.setattr(HardProblem, "exhaustive", lambda self, limit=None: None)
    res = tune(scores, correct, costs, budget)
    assert res.stages["polished"]["start"] != "exhaustive"


def test_tune_fastest_records_the_exhaustive_state(monkeypatch):
    scores, correct, costs = random_problem(5, 6, 7)
    monkeypatch.setattr(HardProblem, "polish", lambda self, st, **kw: (st, 1))
    monkeypatch.setattr(HardProblem, "trade", lambda self, st, **kw: (st, 1))
    top = _brute(scores, correct, costs)[1]
    best = _brute(scores, correct, costs, need=top - 1, objective="cost")
    res = tune_fastest(scores, correct, costs, (top - 1) / 6)
    assert _same(res, best, 6, "cost")
    assert res.stages["fastest"]["exhaustive"] in (True, False)
    assert res.stages["fastest"]["mean_latency"] == pytest.approx(best[2], rel=1e-12)


def test_polish_starts_keeps_an_equal_polished_result():
    # the exhaustive state replaces the polished one only when strictly better: where
    # the polish is already optimal, the polished state (and its start's name) stays
    scores, correct, costs = random_problem(3, 40, 2)
    hp = HardProblem(scores, correct, costs, float(costs[0] + 0.5 * (costs[-1] - costs[0])))
    st = hp.repair(np.full(2, 0.8))[0]
    name, out, _ = tuner_mod._polish_starts(hp, {"ippp": st})
    assert name == "ippp"
    assert out.key() == hp.exhaustive().key()


def test_exhaustive_runs_only_where_the_pair_sweeps_miss_states(monkeypatch):
    calls = []
    orig = HardProblem.exhaustive
    monkeypatch.setattr(HardProblem, "exhaustive",
                        lambda self, *a, **kw: calls.append(self.n_exits) or orig(self, *a, **kw))
    for n, m in [(2, 50), (3, 40), (3, 300), (4, 12)]:
        scores, correct, costs = random_problem(n, m, n)
        tune(scores, correct, costs, float(costs[0] + 0.5 * (costs[-1] - costs[0])))
    # two thresholds of at most 256 candidates: the pair sweep covered every state
    assert calls == [3, 4]
