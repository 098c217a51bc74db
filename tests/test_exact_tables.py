"""The tables of the exact sweeps: every cell holds the exact totals of its state.

The sweeps fill hit and fixed-point row tables with histograms and running sums
in int64 and compare them with the bounds before reading any cell; these tests
check the tables cell by cell against full evaluations (hits and the
fixed-point totals ``icost @ counts``), with a tail row and both objectives."""

import numpy as np
import pytest

from eexit_cli.core import exact
from eexit_cli.core.exact import HardProblem
from eexit_cli.core.exact.tables import _pair_tables, _prefix, _prefixes

from conftest import best_of_grid, random_problem


def _rows(costs, seed):
    rng = np.random.default_rng(seed)
    x = int(rng.integers(0, costs.size - 1))
    rows = np.vstack([costs, (costs > costs[x]).astype(float)])
    bounds = np.array([costs[0] + rng.uniform(0.3, 0.8) * (costs[-1] - costs[0]), rng.uniform(0.2, 0.7)])
    return rows, bounds


def _exact_totals(hp, idx):
    st = hp.state(idx)
    return np.concatenate([[st.hits], hp._icost_int @ st.counts])


@pytest.mark.parametrize("seed", range(6))
def test_prefix_and_pair_tables_match_direct_sums(seed):
    rng = np.random.default_rng(seed)
    nq = 1 + seed % 3
    ki, kj, s = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(0, 60))
    rho_i = rng.integers(0, ki + 1, s)
    rho_j = rng.integers(0, kj + 1, s)
    # hits-like and large fixed-point-like weights, of either sign
    d2 = np.vstack([rng.integers(-1, 2, s)] + [rng.integers(-2 ** 45, 2 ** 45, s) for _ in range(nq - 1)])
    d2 = d2.astype(np.float64)
    c1 = rng.integers(-2 ** 50, 2 ** 50, (nq, ki))
    pre = _prefix(rho_i, d2, ki)
    neg, off = _pair_tables(rho_i, rho_j, d2, ki, kj, c1)
    assert pre.dtype == np.int64 and neg.dtype == np.int64 and off.dtype == np.int64
    assert neg.shape == (nq, kj, ki) and off.shape == (nq, ki)
    d2i = d2.astype(np.int64)
    for q in range(nq):
        for a in range(ki):
            assert pre[q, a] == d2i[q][rho_i <= a].sum()
            for b in range(kj):
                want = c1[q, a] + d2i[q][(rho_i <= a) & (rho_j > b)].sum()
                assert off[q, a] - neg[q, b, a] == want


@pytest.mark.parametrize("seed", range(4))
def test_labelled_prefixes_match_direct_sums(seed):
    # the window tables' running sums, one group of samples per label
    rng = np.random.default_rng(seed)
    nq, n_lab, k, s = 2 + seed % 2, int(rng.integers(1, 5)), int(rng.integers(1, 9)), int(rng.integers(0, 60))
    lab = rng.integers(0, n_lab, s)
    rho = rng.integers(0, k + 1, s)
    w = np.vstack([rng.integers(-1, 2, s)] + [rng.integers(-2 ** 45, 2 ** 45, s) for _ in range(nq - 1)])
    got = _prefixes(lab, rho, w.astype(np.float64), n_lab, k)
    assert got.dtype == np.int64 and got.shape == (n_lab, nq, k)
    for t in range(n_lab):
        for q in range(nq):
            for a in range(k):
                assert got[t, q, a] == w[q][(lab == t) & (rho <= a)].sum()


def _record(monkeypatch):
    """Capture every table _choose sees, as (neg, off, make_index)."""
    seen = []
    original = HardProblem._choose

    def spy(self, st, neg, off, make_index, order=None):
        seen.append((neg.copy(), off.copy(), make_index, st.index.copy()))
        return original(self, st, neg, off, make_index, order)

    monkeypatch.setattr(exact.HardProblem, "_choose", spy)
    return seen


def _check_cells(hp, seen):
    assert seen
    for neg, off, make_index, _ in seen:
        cols = neg.shape[-1]
        for f in range(neg[0].size):
            r, c = divmod(f, cols)
            want = _exact_totals(hp, make_index(f))
            got = off[:, c if off.shape[-1] > 1 else 0] - neg[:, r, c]
            np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("coarse", [0, 5])
def test_pair_sweep_tables_hold_exact_totals(seed, coarse, monkeypatch):
    # coarse=0: the window sweep (samples read by rank); coarse=5: window plus quantiles
    scores, correct, costs = random_problem(5, 250, 300 + seed, ties=seed % 2 == 1)
    rows, bounds = _rows(costs, seed)
    hp = HardProblem(scores, correct, rows, bounds)
    rng = np.random.default_rng(seed)
    sizes = np.array([hp.n_candidates(n) for n in range(4)])
    seen = _record(monkeypatch)
    for _ in range(2):
        st = hp.state(rng.integers(0, sizes))
        for i, j in [(0, 1), (0, 3), (1, 2), (2, 3)]:
            hp.sweep_pair(st, i, j, local=2, coarse=coarse, exhaustive=0)
            st = hp.state(st.index)  # a fresh current state for the next sweep
    _check_cells(hp, seen)


@pytest.mark.parametrize("seed", range(4))
def test_single_sweep_tables_hold_exact_totals(seed, monkeypatch):
    scores, correct, costs = random_problem(4, 150, 400 + seed, ties=seed % 2 == 0)
    rows, bounds = _rows(costs, seed)
    hp = HardProblem(scores, correct, rows, bounds)
    rng = np.random.default_rng(seed)
    sizes = np.array([hp.n_candidates(n) for n in range(3)])
    seen = _record(monkeypatch)
    st = hp.state(rng.integers(0, sizes))
    for n in range(3):
        hp.sweep_one(hp.state(st.index), n)
    _check_cells(hp, seen)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("coarse", [0, 5])
def test_cost_objective_pair_sweep_is_best_cell_of_its_grid(seed, coarse):
    scores, correct, costs = random_problem(5, 300, 500 + seed, ties=seed % 2 == 0)
    rows, bounds = _rows(costs, seed)
    bounds[0] = np.inf
    plain = HardProblem(scores, correct, rows, bounds)
    start = plain.repair(np.full(4, 0.8))[0]
    min_hits = int(start.hits * 0.97)
    hp = HardProblem(scores, correct, rows, bounds, objective="cost", min_hits=min_hits)
    st = hp.state(start.index)
    if not hp.feasible(st):
        pytest.skip("no feasible start")
    for i, j in [(0, 1), (1, 3)]:
        gi, gj = hp.pair_grids(st, i, j, local=2, coarse=coarse, exhaustive=0)
        best = best_of_grid(hp, hp.state(st.index), i, j, gi, gj)
        out = hp.sweep_pair(hp.state(st.index), i, j, local=2, coarse=coarse, exhaustive=0)
        assert hp.feasible(out) and out.hits >= min_hits
        assert out.key() == best.key()


@pytest.mark.parametrize("seed", range(4))
def test_pair_sweep_ties_go_to_the_first_cell(seed):
    # many ties (coarse scores, one row): the chosen cell is the first of the best in
    # (candidate at i, candidate at j) order, whatever the layout of the tables
    scores, correct, costs = random_problem(4, 200, 600 + seed, ties=True)
    scores = np.round(scores, 1)
    budget = costs[0] + 0.5 * (costs[-1] - costs[0])
    hp = HardProblem(scores, correct, costs, budget)
    st = hp.repair(np.full(3, 0.7))[0]
    for i, j in [(0, 1), (0, 2), (1, 2)]:
        st = hp.state(st.index)
        gi, gj = hp.pair_grids(st, i, j, local=2, coarse=3, exhaustive=0)
        first = best_of_grid(hp, st, i, j, gi, gj)  # the first of the best cells
        out = hp.sweep_pair(hp.state(st.index), i, j, local=2, coarse=3, exhaustive=0)
        if first.key() > st.key():
            np.testing.assert_array_equal(out.index, first.index)
        else:
            assert out.key() == st.key()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("objective", ["accuracy", "cost"])
@pytest.mark.parametrize("local", [3, 8])
def test_window_tables_of_every_j_hold_exact_totals(seed, objective, local):
    # the window sweeps (i, j) of one state and i are tabulated at once; samples
    # ranked inside both windows make rectangles (more of them with wider windows)
    scores, correct, costs = random_problem(6, 300, 700 + seed, ties=seed % 2 == 1)
    rows, bounds = _rows(costs, seed)
    kw = {}
    if objective == "cost":
        bounds[0] = np.inf
    hp0 = HardProblem(scores, correct, rows, bounds)
    rng = np.random.default_rng(seed)
    sizes = np.array([hp0.n_candidates(n) for n in range(5)])
    st0 = hp0.state(rng.integers(0, sizes))
    if objective == "cost":
        kw = {"objective": "cost", "min_hits": int(st0.hits * 0.95)}
    hp = HardProblem(scores, correct, rows, bounds, **kw)
    for i in range(3):
        st = hp.state(st0.index)
        js = list(range(i + 1, 5))
        wt = hp._window_tables(st, i, js, local)
        cur = hp._totals(st)
        conds = hp._conditions(st)
        gi = np.arange(max(0, st.index[i] - local), min(sizes[i], st.index[i] + local + 1))
        for t, j in enumerate(js):
            assert wt["lab"][j] == t
            gj = np.arange(max(0, st.index[j] - local), min(sizes[j], st.index[j] + local + 1))
            assert wt["kj"][t] == gj.size and wt["lo_j"][t] == gj[0]
            beats = False
            for a, ca in enumerate(gi):
                for b, cb in enumerate(gj):
                    idx = st.index.copy()
                    idx[i], idx[j] = ca, cb
                    want = _exact_totals(hp, idx)
                    if "g" in wt:
                        got = HardProblem._window_table(wt, t)[:, a, b]
                        np.testing.assert_array_equal(got, want)
                    ok = all((want[q] <= bd) if up else (want[q] >= bd) for q, up, bd in conds)
                    if ok:
                        if objective == "accuracy":
                            beats |= (want[0], -want[1]) > (cur[0], -cur[1])
                        else:
                            beats |= (-want[1], want[0]) > (-cur[1], cur[0])
            assert bool(wt["better"][t]) == beats


def test_quantile_positions_match_linspace_and_unique():
    from eexit_cli.core.exact.sweeps import _quantile_positions

    def ref(size, coarse):
        levels = np.ceil(np.linspace(0.0, size, coarse))
        levels = levels[levels > 0]
        stride = -(-size // 8192)
        n_pick = -(-size // stride)
        pos = np.unique(np.ceil(levels * (n_pick / size)).astype(np.intp) - 1)
        return stride, pos[(pos >= 0) & (pos < n_pick)]

    for size in list(range(1, 300)) + [8191, 8192, 8193, 16385, 99_991, 10 ** 6]:
        for coarse in (1, 2, 3, 24, 96):
            stride, pos = _quantile_positions(size, coarse)
            want_stride, want = ref(size, coarse)
            assert stride == want_stride
            np.testing.assert_array_equal(pos, want)


@pytest.mark.parametrize("seed", range(4))
def test_second_exits_of_every_sample_match_the_per_sample_loop(seed):
    scores, correct, costs = random_problem(6, 300, 900 + seed, ties=seed % 2 == 0)
    hp = HardProblem(scores, correct, costs, costs.mean())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, [hp.n_candidates(n) for n in range(5)])
    ex = hp.exits(idx).astype(np.intp)
    every = hp._second_exits(None, ex, idx)
    np.testing.assert_array_equal(every, hp._second_exits(np.arange(hp.n_samples), ex, idx))
    # by definition: the first exit past ex where the sample would leave, else the last
    for m in range(hp.n_samples):
        later = [j for j in range(ex[m] + 1, 5) if hp._ranks[j, m] > idx[j]]
        assert every[m] == (later[0] if later else 5)


@pytest.mark.parametrize("k", [5, 16_384, 16_385, 40_000])
def test_prefix_both_layouts(k):
    # small tables are summed in a (k, Q) buffer, large ones along each quantity's row
    rng = np.random.default_rng(k)
    s = 3 * k
    rho = rng.integers(0, k + 1, s)
    w = np.vstack([rng.integers(-1, 2, s), rng.integers(-2 ** 40, 2 ** 40, s)]).astype(np.float64)
    got = _prefix(rho, w, k)
    want = np.stack([np.cumsum(np.bincount(rho, weights=w[q].astype(np.int64), minlength=k + 1)[:k])
                     for q in range(2)])
    np.testing.assert_array_equal(got, want)
