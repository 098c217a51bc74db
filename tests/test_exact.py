"""Exact machinery with several linear constraint rows and either objective,
checked against exhaustive search and against replay."""

import itertools

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.exact import HardProblem
from eexit_cli.core.replay import replay

from conftest import best_of_grid, random_problem


def _two_rows(costs, seed):
    """Mean latency and a tail row: share of samples past exit ``x`` (p-quantile form)."""
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, costs.size - 1))
    tail = (costs > costs[x]).astype(float)
    rows = np.vstack([costs, tail])
    bounds = np.array([costs[0] + rng.uniform(0.2, 0.8) * (costs[-1] - costs[0]),
                       rng.uniform(0.1, 0.6)])
    return rows, bounds


def _brute(hp, key, ok):
    best = None
    sizes = [hp.n_candidates(n) for n in range(hp.n_exits - 1)]
    for idx in itertools.product(*(range(s) for s in sizes)):
        st = hp.state(list(idx))
        if ok(st) and (best is None or key(st) > key(best)):
            best = st
    return best


def _means(scores, correct, rows, thresholds):
    fr = replay(scores, correct, thresholds, rows[0]).fraction
    return np.array([fr @ r for r in rows])


@pytest.mark.parametrize("seed", range(8))
def test_two_rows_accuracy_matches_exhaustive_search(seed):
    scores, correct, costs = random_problem(3, 120, seed, ties=seed % 2 == 0)
    rows, bounds = _two_rows(costs, seed)
    hp = HardProblem(scores, correct, rows, bounds)
    best = _brute(hp, lambda s: (s.hits, -s.means[0]), lambda s: bool(np.all(s.means <= bounds)))
    start = hp.repair(np.full(2, 0.9))[0]
    if not hp.feasible(start):
        assert best is None or not hp.feasible(start)
        return
    out, _ = hp.polish(start)  # one pair, exhaustive grids: a global search
    assert hp.feasible(out)
    assert out.hits == best.hits
    assert_allclose(out.mean_latency, best.mean_latency, rtol=0, atol=1e-12)
    # every constraint holds on an independent replay of the thresholds
    t = hp.thresholds_of(out.index)
    assert np.all(_means(scores, correct, rows, t) <= bounds)
    assert replay(scores, correct, t, costs).accuracy * 120 == out.hits


@pytest.mark.parametrize("seed", range(6))
def test_cost_objective_matches_exhaustive_search(seed):
    # the fastest thresholds keeping a given accuracy, under a tail row too
    scores, correct, costs = random_problem(3, 100, 50 + seed, ties=seed % 2 == 1)
    rows, bounds = _two_rows(costs, seed)
    bounds[0] = np.inf  # the objective row needs no bound
    acc = HardProblem(scores, correct, rows, bounds)
    top = _brute(acc, lambda s: (s.hits, -s.means[0]), lambda s: s.means[1] <= bounds[1])
    min_hits = int(top.hits * np.random.default_rng(seed).uniform(0.9, 1.0))
    hp = HardProblem(scores, correct, rows, bounds, objective="cost", min_hits=min_hits)
    best = _brute(hp, lambda s: (-s.means[0], s.hits),
                  lambda s: s.hits >= min_hits and s.means[1] <= bounds[1])
    # start from the most accurate state, which meets the target by construction
    start = hp.state(top.index)
    assert hp.feasible(start)
    out, _ = hp.polish(start)
    assert hp.feasible(out) and out.hits >= min_hits
    assert_allclose(out.mean_latency, best.mean_latency, rtol=0, atol=1e-12)
    assert out.hits == best.hits


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("pair", [(0, 1), (0, 2), (1, 3)])
@pytest.mark.parametrize("coarse", [0, 6])
def test_pair_sweep_with_two_rows_is_best_cell_of_its_grid(seed, pair, coarse):
    # coarse=0: windows around the current thresholds (samples read by rank);
    # coarse=6: windows plus quantiles (every sample reaching i)
    scores, correct, costs = random_problem(5, 300, 80 + seed, ties=seed % 2 == 1)
    rows, bounds = _two_rows(costs, seed)
    bounds[1] = max(bounds[1], 0.5)
    hp = HardProblem(scores, correct, rows, bounds)
    st = hp.repair(np.full(4, 0.6))[0]
    if not hp.feasible(st):
        pytest.skip("no feasible start")
    i, j = pair
    gi, gj = hp.pair_grids(st, i, j, local=3, coarse=coarse, exhaustive=0)
    best = best_of_grid(hp, st, i, j, gi, gj)
    out = hp.sweep_pair(st, i, j, local=3, coarse=coarse, exhaustive=0)
    assert hp.feasible(out)
    assert out.key() == best.key()


@pytest.mark.parametrize("seed", range(5))
def test_incremental_moves_agree_with_full_evaluation(seed):
    scores, correct, costs = random_problem(6, 400, 200 + seed, ties=seed % 2 == 0)
    rows, bounds = _two_rows(costs, seed)
    hp = HardProblem(scores, correct, rows, bounds)
    rng = np.random.default_rng(seed)
    sizes = np.array([hp.n_candidates(n) for n in range(5)])
    st = hp.state(rng.integers(0, sizes))
    for _ in range(30):
        idx = st.index.copy()
        for n in rng.choice(5, size=rng.integers(1, 4), replace=False):
            idx[n] = rng.integers(0, sizes[n])
        st = hp.move(st, idx)
        full = HardProblem(scores, correct, rows, bounds).state(idx)
        assert st.hits == full.hits
        np.testing.assert_array_equal(st.counts, full.counts)
        np.testing.assert_array_equal(st.means, full.means)
        ex = hp.exits(idx)
        np.testing.assert_array_equal(hp._load(st), ex)
        rep = replay(scores, correct, hp.thresholds_of(idx), costs)
        np.testing.assert_array_equal(rep.exit_index, ex)


def test_bad_rows_and_objective_raise():
    scores, correct, costs = random_problem(3, 50, 1)
    with pytest.raises(ValueError, match="costs"):
        HardProblem(scores, correct, np.ones((2, 4)), [1.0, 1.0])
    with pytest.raises(ValueError, match="budget"):
        HardProblem(scores, correct, np.vstack([costs, costs]), [1.0])
    with pytest.raises(ValueError, match="min_hits"):
        HardProblem(scores, correct, costs, 1.0, objective="cost")
    with pytest.raises(ValueError, match="objective"):
        HardProblem(scores, correct, costs, 1.0, objective="speed")


# ------------------------------------------------------------------ priced trades
def _budget_between(costs, share):
    return costs[0] + share * (costs[-1] - costs[0])


@pytest.mark.parametrize("seed", range(6))
def test_move_tables_match_every_single_move(seed):
    # every entry of the tables against a full evaluation of that move
    scores, correct, costs = random_problem(4, 60, 300 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.5))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, [hp.n_candidates(n) for n in range(3)])
    st = hp.state(idx)
    tables = hp.move_tables(st)
    base = hp._totals(st)
    for n, tb in enumerate(tables):
        if tb is None:
            assert not np.any(hp.exits(idx) >= n)
            continue
        dh, dc = tb
        assert dh.shape == dc.shape == (hp.n_candidates(n),)
        for k in range(hp.n_candidates(n)):
            other = idx.copy()
            other[n] = k
            full = HardProblem(scores, correct, costs, hp.budget).state(other)
            assert dh[k] == full.hits - st.hits
            assert dc[k] == hp._totals(full)[1] - base[1]


@pytest.mark.parametrize("n_exits", [4, 7])
@pytest.mark.parametrize("seed", range(6))
def test_trade_predictions_are_the_best_sum_of_two_single_moves(seed, n_exits):
    # a pair's prediction: the best sum of two single moves whose predicted row-0
    # total fits the bound (then the lowest cost), found here by trying every pair
    scores, correct, costs = random_problem(n_exits, 50, 400 + seed, ties=seed % 2 == 1)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.4))
    st = hp.repair(np.full(n_exits - 1, 0.7))[0]
    tables = hp.move_tables(st)
    slack = hp._ibound[0] * (1 + 1e-12) - hp._totals(st)[1]
    predicted = {tuple(n for n, _ in mv): (g, c) for g, c, mv in hp._trades(st)}
    hist = hp._move_hist(st)
    steps = hp._steps_of(hist)
    assert hp._trades(st, hp._tables_of(hist, steps), steps) == hp._trades(st)
    for i, j in itertools.combinations(range(n_exits - 1), 2):
        if tables[i] is None or tables[j] is None:
            continue
        (hi, ci), (hj, cj) = tables[i], tables[j]
        gain = hi[:, None] + hj[None, :]
        cost = ci[:, None] + cj[None, :]
        ok = cost <= slack
        best = None
        for a, b in zip(*np.nonzero(ok)):
            key = (gain[a, b], -cost[a, b])
            if best is None or key > best:
                best = key
        improving = best is not None and (best[0] > 0 or (best[0] == 0 and best[1] > 0))
        if improving:
            assert predicted[(i, j)] == best
        else:
            assert (i, j) not in predicted


@pytest.mark.parametrize("seed", range(6))
def test_frontier_from_step_points_is_the_full_frontier(seed):
    # reading only the candidates where a table of hits changes gives the very frontier
    # (and so the very predictions) a pass over every candidate gives
    scores, correct, costs = random_problem(4, 80, 450 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.3 + 0.1 * seed))
    st = hp.repair(np.full(3, 0.6))[0]
    assert hp._row0_grows  # the costs grow with the exit index: the tables' costs grow with k
    hist = hp._move_hist(st)
    tables, steps = hp._tables_of(hist), hp._steps_of(hist)
    sparse = hp._tables_of(hist, steps)
    for n, tb in enumerate(tables):
        if tb is None:
            assert sparse[n] is None
            continue
        dh, dc = tb
        assert steps[n][0] == 0
        assert np.array_equal(steps[n][1:], np.flatnonzero(np.diff(dh)) + 1)
        assert np.array_equal(sparse[n][0], dh[steps[n]])
        assert np.array_equal(sparse[n][1], dc[steps[n]])
        rng = np.random.default_rng(seed * 10 + n)
        for floor, ceiling in [(-np.inf, np.inf), (0.0, 0.0)] + [
                (float(rng.integers(-5, 3)), float(rng.choice(dc))) for _ in range(8)]:
            full = hp._frontier(dh, dc, floor, ceiling, True)
            fast = hp._frontier(sparse[n][0], sparse[n][1], floor, ceiling, True, steps[n])
            for a, b in zip(full, fast):
                assert a.dtype == b.dtype and np.array_equal(a, b)
    assert hp._trades(st, sparse, steps) == hp._trades(st, tables)


@pytest.mark.parametrize("seed", range(8))
def test_trade_ends_where_no_single_or_predicted_pair_move_improves(seed):
    scores, correct, costs = random_problem(4, 150, 500 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.2 + 0.1 * (seed % 6)))
    start = hp.repair(np.full(3, 0.8))[0]
    out, rounds = hp.trade(start)
    assert rounds >= 1 and hp.feasible(out) and out.key() >= start.key()
    # exact, independently: every move of one threshold
    for n in range(3):
        for k in range(hp.n_candidates(n)):
            idx = out.index.copy()
            idx[n] = k
            cand = HardProblem(scores, correct, costs, hp.budget).state(idx)
            assert not (hp.feasible(cand) and cand.key() > out.key())
    # and every pair move the last round predicted
    for _, _, mv in hp._trades(out):
        idx = out.index.copy()
        for n, k in mv:
            idx[n] = k
        cand = HardProblem(scores, correct, costs, hp.budget).state(idx)
        assert not (hp.feasible(cand) and cand.key() > out.key())
    t = hp.thresholds_of(out.index)
    rep = replay(scores, correct, t, costs)
    assert rep.accuracy * 150 == out.hits and rep.mean_latency <= hp.budget


@pytest.mark.parametrize("seed", range(4))
def test_trade_keeps_every_row_and_refuses_other_objectives(seed):
    scores, correct, costs = random_problem(5, 200, 600 + seed)
    rows, bounds = _two_rows(costs, seed)
    bounds[1] = max(bounds[1], 0.4)
    hp = HardProblem(scores, correct, rows, bounds)
    start = hp.repair(np.full(4, 0.7))[0]
    if not hp.feasible(start):
        pytest.skip("no feasible start")
    out, _ = hp.trade(start)
    assert hp.feasible(out) and out.key() >= start.key()
    assert np.all(_means(scores, correct, rows, hp.thresholds_of(out.index)) <= bounds)
    cost = HardProblem(scores, correct, rows, bounds, objective="cost", min_hits=0)
    with pytest.raises(ValueError, match="polish"):
        cost.trade(cost.state(start.index))


@pytest.mark.parametrize("seed", range(5))
def test_move_histograms_updated_after_moves_equal_a_fresh_pass(seed):
    scores, correct, costs = random_problem(5, 300, 700 + seed, ties=seed % 2 == 1)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.5))
    rng = np.random.default_rng(seed)
    sizes = np.array([hp.n_candidates(n) for n in range(4)])
    st = hp.state(rng.integers(0, sizes))
    hist = hp._move_hist(st)
    for _ in range(12):
        idx = st.index.copy()
        for n in rng.choice(4, size=rng.integers(1, 3), replace=False):
            idx[n] = np.clip(idx[n] + rng.integers(-15, 16), 0, sizes[n] - 1)
        st = hp.move(st, idx)
        hist = hp._hist_update(hist, st)
        fresh = hp._move_hist(st)
        np.testing.assert_array_equal(hist["ex"], fresh["ex"])
        np.testing.assert_array_equal(hist["e2"], fresh["e2"])
        np.testing.assert_array_equal(hist["reach"], fresh["reach"])
        np.testing.assert_array_equal(hist["hh"], fresh["hh"])
        np.testing.assert_array_equal(hist["hc"], fresh["hc"])


@pytest.mark.parametrize("seed", range(4))
def test_trade_from_a_state_on_an_earlier_path_ends_where_that_path_ended(seed):
    scores, correct, costs = random_problem(5, 400, 800 + seed)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.4))
    known: dict = {}
    start = hp.repair(np.full(4, 0.9))[0]
    out, rounds = hp.trade(start, known=known)
    assert tuple(int(k) for k in start.index) in known
    assert all(v is out for v in known.values())
    again, rounds_again = hp.trade(hp.state(start.index), known=known)
    assert again is out and rounds_again == 0
    # the same answer as a search without the record
    other = HardProblem(scores, correct, costs, hp.budget)
    fresh, _ = other.trade(other.state(start.index))
    assert fresh.key() == out.key() and np.array_equal(fresh.index, out.index)


@pytest.mark.parametrize("n_exits", [2, 3, 4, 10])
def test_second_exits_of_every_sample_against_a_plain_loop(n_exits):
    # the first exit past a sample's own where it would leave (the last: none before)
    scores, correct, costs = random_problem(n_exits, 200, 600 + n_exits, ties=True)
    hp = HardProblem(scores, correct, costs, costs.mean())
    rng = np.random.default_rng(n_exits)
    idx = rng.integers(0, [hp.n_candidates(n) for n in range(n_exits - 1)])
    ex = hp.exits(idx).astype(np.intp)
    want = np.full(hp.n_samples, n_exits - 1)
    for m in range(hp.n_samples):
        for j in range(ex[m] + 1, n_exits - 1):
            if hp._ranks[j, m] > idx[j]:
                want[m] = j
                break
    assert np.array_equal(hp._second_exits(None, ex, idx), want)
    sub = np.arange(0, hp.n_samples, 3)
    assert np.array_equal(hp._second_exits(sub, ex[sub], idx), want[sub])


@pytest.mark.parametrize("rows", [1, 2, 5, 127, 128, 300])
def test_first_true_row_is_argmax_over_rows(rows):
    from eexit_cli.core.exact.problem import _first_true
    rng = np.random.default_rng(rows)
    lv = rng.random((rows, 257)) < 0.05
    lv[-1] = True
    got = _first_true(lv)
    assert np.array_equal(got, lv.argmax(axis=0))
    assert got.dtype == (np.int8 if rows <= 127 else np.int16)
    # a non-contiguous array (a gather of columns) gives the same
    sub = rng.integers(0, 257, 40)
    assert np.array_equal(_first_true(lv[:, sub]), lv[:, sub].argmax(axis=0))


@pytest.mark.parametrize("seed", range(4))
def test_single_threshold_moves_agree_with_full_evaluation(seed):
    # one threshold up or down, small bands and bands over a quarter of the samples
    scores, correct, costs = random_problem(5, 300, 700 + seed, ties=seed % 2 == 1)
    hp = HardProblem(scores, correct, costs, costs.mean())
    rng = np.random.default_rng(seed)
    sizes = np.array([hp.n_candidates(n) for n in range(4)])
    st = hp.state(rng.integers(0, sizes))
    for t in range(60):
        idx = st.index.copy()
        n = int(rng.integers(0, 4))
        step = int(rng.integers(1, 4)) if t % 3 else int(rng.integers(1, sizes[n]))
        idx[n] = np.clip(idx[n] + (step if rng.random() < 0.5 else -step), 0, sizes[n] - 1)
        st = hp.move(st, idx)
        full = HardProblem(scores, correct, costs, costs.mean()).state(idx)
        assert st.hits == full.hits
        np.testing.assert_array_equal(st.counts, full.counts)
        np.testing.assert_array_equal(hp._load(st), hp.exits(idx))
        rep = replay(scores, correct, hp.thresholds_of(idx), costs)
        np.testing.assert_array_equal(rep.exit_index, hp.exits(idx))


def test_exits_of_many_samples_in_blocks_against_replay():
    rng = np.random.default_rng(5)
    m = 70_000  # more than one block of samples
    scores = np.round(rng.random((4, m)), 3)
    correct = rng.random((4, m)) < 0.7
    costs = np.array([1.0, 2.0, 3.0, 4.0])
    hp = HardProblem(scores, correct, costs, 2.5)
    idx = np.array([rng.integers(0, hp.n_candidates(n)) for n in range(3)])
    rep = replay(scores, correct, hp.thresholds_of(idx), costs)
    np.testing.assert_array_equal(hp.exits(idx), rep.exit_index)


@pytest.mark.parametrize("seed", range(8))
def test_joined_frontiers_give_the_predictions_of_each_exit_alone(seed):
    # the frontiers of every exit found at once (one running maximum over all exits'
    # lifted gains) give the predictions of one frontier per exit, in the same order;
    # also from states where exits are reached by no sample
    n_exits = 3 + seed % 4
    scores, correct, costs = random_problem(n_exits, 150, 800 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.2 + 0.08 * seed))
    rng = np.random.default_rng(seed)
    sizes = [hp.n_candidates(n) for n in range(n_exits - 1)]
    for t in range(6):
        idx = rng.integers(0, sizes)
        if t % 3 == 2:
            idx[int(rng.integers(0, n_exits - 1))] = 0  # everyone leaves there
        st = hp.state(idx)
        if not hp.feasible(st):
            st = hp.repair(hp.thresholds_of(idx))[0]
        hist = hp._move_hist(st)
        steps = hp._steps_of(hist)
        sparse = hp._tables_of(hist, steps)
        joined = hp._trades(st, sparse, steps)
        assert joined == hp._trades(st, hp._tables_of(hist))
        # the per-exit path on the very tables read at the steps
        b = hp._ibound[0]
        slack = b * (1.0 + 1e-12) - hp._totals(st)[1]
        assert joined == _per_exit_trades(hp, st, sparse, steps, slack)


def _per_exit_trades(hp, st, tabs, steps, slack):
    """The predictions of the frontiers found exit by exit (the plain path of _trades)."""
    ne = hp.n_exits - 1
    top = [0.0 if tb is None else float(tb[0].max()) for tb in tabs]
    low = [0.0 if tb is None else float(tb[1][0]) for tb in tabs]
    by_top = sorted(range(ne), key=top.__getitem__, reverse=True)
    by_low = sorted(range(ne), key=low.__getitem__)
    fr = []
    for n, tb in enumerate(tabs):
        if tb is None:
            fr.append((np.zeros(1), np.zeros(1), np.array([int(st.index[n])])))
            continue
        floor = -top[by_top[1] if by_top[0] == n else by_top[0]] if ne > 1 else 0.0
        ceiling = slack - (low[by_low[1] if by_low[0] == n else by_low[0]] if ne > 1 else 0.0)
        fr.append(hp._frontier(tb[0], tb[1], floor, ceiling, True, steps[n]))
    out = []
    for n, (dc, dh, k) in enumerate(fr):
        p = int(np.searchsorted(dc, slack, side="right")) - 1
        if p >= 0 and (dh[p] > 0 or (dh[p] == 0 and dc[p] < 0)):
            out.append((float(dh[p]), -float(dc[p]), ((n, int(k[p])),)))
    sizes = [f[0].size for f in fr]
    starts = [0]
    for z in sizes:
        starts.append(starts[-1] + z)
    return hp._pairs(out, slack, sizes, starts, *(np.concatenate([f[i] for f in fr]) for i in range(3)))


@pytest.mark.parametrize("seed", range(6))
def test_step_tables_of_all_exits_at_once_equal_those_exit_by_exit(seed):
    n_exits = 3 + seed
    scores, correct, costs = random_problem(n_exits, 200, 900 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, _budget_between(costs, 0.4))
    rng = np.random.default_rng(seed)
    for t in range(5):
        idx = rng.integers(0, [hp.n_candidates(n) for n in range(n_exits - 1)])
        if t == 4:
            idx[0] = 0  # no sample reaches the later exits
        hist = hp._move_hist(hp.state(idx))
        steps, tables = hp._step_tables(hist)
        want_steps = hp._steps_of(hist)
        want = hp._tables_of(hist, want_steps)
        for a, b in zip(steps, want_steps):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        for a, b in zip(tables, want):
            assert (a is None) == (b is None)
            if a is not None:
                assert all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("size", [1, 50, 20_000])
def test_next_exit_past_a_threshold_against_a_plain_loop(size):
    # the exit a sample takes once it passes exit n: a comparison of every later exit
    # for few samples, exit by exit for many (both against a loop over samples)
    rng = np.random.default_rng(size)
    scores = np.round(rng.random((6, 25_000)), 4)
    correct = rng.random((6, 25_000)) < 0.6
    hp = HardProblem(scores, correct, np.arange(1.0, 7.0), 3.0)
    idx = np.array([rng.integers(0, hp.n_candidates(n)) for n in range(5)])
    sub = np.sort(rng.choice(25_000, size, replace=False))
    for n in range(-1, 5):
        got = hp._next_after(n, sub, idx)
        want = np.full(size, 5)
        for t, s in enumerate(sub):
            for j in range(n + 1, 5):
                if hp._ranks[j, s] > idx[j]:
                    want[t] = j
                    break
        assert np.array_equal(got, want)
