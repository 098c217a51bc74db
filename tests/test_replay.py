"""Hard-threshold replay against a plain per-sample loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from eexit_cli.core.replay import check_problem, exit_indices, replay, replay_checked
from eexit_cli.io.exits import read_exits


def loop_replay(scores, correct, thresholds, costs):
    """The exit rule written out one sample at a time.

    Returns (exit index per sample, accuracy, mean latency, per-exit fractions,
    per-exit accuracies with NaN where no sample leaves).
    """
    n_exits, n_samples = len(scores), len(scores[0])
    exits = []
    for m in range(n_samples):
        chosen = n_exits - 1
        for n in range(n_exits - 1):
            if scores[n][m] > thresholds[n]:  # strictly above: a tie goes on
                chosen = n
                break
        exits.append(chosen)
    hits = [bool(correct[exits[m]][m]) for m in range(n_samples)]
    counts = [0] * n_exits
    right = [0] * n_exits
    for e, h in zip(exits, hits):
        counts[e] += 1
        right[e] += h
    fractions = [c / n_samples for c in counts]
    exit_acc = [r / c if c else float("nan") for r, c in zip(right, counts)]
    latency = sum(costs[e] for e in exits) / n_samples
    return exits, sum(hits) / n_samples, latency, fractions, exit_acc


def random_problem(rng, n_exits, n_samples, ties):
    if ties:
        # a coarse grid, and thresholds taken from the scores, so many scores equal them
        scores = rng.integers(0, 5, size=(n_exits, n_samples)) / 4.0
        thresholds = np.array([rng.choice(scores[n]) for n in range(n_exits - 1)])
    else:
        scores = rng.random((n_exits, n_samples))
        thresholds = rng.random(n_exits - 1)
    correct = rng.random((n_exits, n_samples)) < np.linspace(0.4, 0.9, n_exits)[:, None]
    costs = np.cumsum(rng.uniform(0.1, 2.0, n_exits))
    return scores, correct, thresholds, costs


def assert_matches_loop(scores, correct, thresholds, costs, *, rtol=1e-12):
    res = replay(scores, correct, thresholds, costs)
    exits, acc, lat, fractions, exit_acc = loop_replay(scores, correct, thresholds, costs)
    # the path for arrays checked once where they entered gives the same result
    s, c, d = check_problem(scores, correct, costs)
    checked = replay_checked(s, c, thresholds, d)
    assert checked.accuracy == res.accuracy and checked.mean_latency == res.mean_latency
    assert_array_equal(checked.fraction, res.fraction)
    assert_array_equal(checked.exit_accuracy, res.exit_accuracy)
    assert_array_equal(checked.exit_index, exits)
    assert_array_equal(res.exit_index, exits)
    assert res.accuracy == pytest.approx(acc, rel=rtol, abs=0)
    assert_allclose(res.mean_latency, lat, rtol=rtol)
    assert_allclose(res.fraction, fractions, rtol=rtol)
    assert_allclose(res.exit_accuracy, exit_acc, rtol=rtol, equal_nan=True)
    return res


@pytest.mark.parametrize("n_exits", range(2, 18))
@pytest.mark.parametrize("ties", [False, True], ids=["continuous", "ties"])
def test_replay_equals_plain_loop(n_exits, ties):
    n_ties = 0
    for seed in range(12):
        rng = np.random.default_rng(1000 * n_exits + seed)
        n_samples = int(rng.integers(1, 60))
        scores, correct, thresholds, costs = random_problem(rng, n_exits, n_samples, ties)
        n_ties += int(np.sum(scores[:-1] == np.asarray(thresholds)[:, None]))
        assert_matches_loop(scores, correct, thresholds, costs)
    assert (n_ties > 0) == ties


@st.composite
def problems(draw):
    n_exits = draw(st.integers(2, 6))
    n_samples = draw(st.integers(1, 12))
    grid = st.sampled_from([-1.0, 0.0, 0.25, 0.5, 1.0])  # few values: ties are common
    value = st.one_of(grid, st.floats(-2, 2, allow_nan=False))
    scores = np.array(draw(st.lists(value, min_size=n_exits * n_samples, max_size=n_exits * n_samples)))
    correct = np.array(draw(st.lists(st.booleans(), min_size=scores.size, max_size=scores.size)))
    thresholds = draw(st.lists(value, min_size=n_exits - 1, max_size=n_exits - 1))
    costs = np.cumsum(draw(st.lists(st.floats(0.01, 10), min_size=n_exits, max_size=n_exits)))
    return (scores.reshape(n_exits, n_samples), correct.reshape(n_exits, n_samples), thresholds, costs)


@settings(max_examples=200, deadline=None)
@given(problems())
def test_replay_equals_plain_loop_property(problem):
    assert_matches_loop(*problem, rtol=1e-9)


def test_score_equal_to_threshold_does_not_exit():
    scores = np.array([[0.5, 0.5000001, 0.4999999], [0.7, 0.7, 0.7], [0.0, 0.0, 0.0]])
    correct = np.ones_like(scores, dtype=bool)
    res = replay(scores, correct, [0.5, 0.7], [1.0, 2.0, 3.0])
    # sample 0 ties at exit 1 and at exit 2, so it reaches the last exit
    assert_array_equal(res.exit_index, [2, 0, 2])


def test_infinite_thresholds_send_everyone_to_one_exit():
    rng = np.random.default_rng(3)
    scores, correct, _, costs = random_problem(rng, 4, 30, ties=False)
    none = replay(scores, correct, [np.inf] * 3, costs)
    assert_array_equal(none.exit_index, 3)
    assert none.mean_latency == pytest.approx(costs[-1])
    assert none.accuracy == pytest.approx(correct[-1].mean())
    first = replay(scores, correct, [-np.inf, 0.5, 0.5], costs)
    assert_array_equal(first.exit_index, 0)
    assert first.mean_latency == pytest.approx(costs[0])


def test_result_fields_are_consistent():
    rng = np.random.default_rng(11)
    scores, correct, thresholds, costs = random_problem(rng, 5, 200, ties=False)
    res = replay(scores, correct, thresholds, costs)
    assert res.n_samples == 200
    assert res.fraction.sum() == pytest.approx(1.0)
    assert res.mean_latency == pytest.approx(float(res.fraction @ costs))
    taken = np.nan_to_num(res.exit_accuracy) * res.fraction
    assert res.accuracy == pytest.approx(taken.sum())
    rows = res.per_exit()
    assert [r["exit"] for r in rows] == [1, 2, 3, 4, 5]
    assert sum(r["count"] for r in rows) == 200
    for row, f, a in zip(rows, res.fraction, res.exit_accuracy):
        assert row["fraction"] == pytest.approx(f)
        assert row["accuracy"] is None if np.isnan(a) else row["accuracy"] == pytest.approx(a)
    json.dumps(rows, allow_nan=False)


def test_unused_exit_has_no_accuracy():
    scores = np.array([[0.9, 0.8], [0.1, 0.1], [0.0, 0.0]])
    correct = np.array([[1, 0], [1, 1], [1, 1]], dtype=bool)
    res = replay(scores, correct, [0.5, 0.5], [1, 2, 3])
    assert_array_equal(res.fraction, [1.0, 0.0, 0.0])
    assert res.exit_accuracy[0] == 0.5
    assert np.isnan(res.exit_accuracy[1]) and np.isnan(res.exit_accuracy[2])
    assert res.per_exit()[1]["accuracy"] is None


def test_exit_indices_alone():
    scores = np.array([[0.2, 0.9, 0.4], [0.8, 0.1, 0.3]])
    assert_array_equal(exit_indices(scores, [0.3]), [1, 0, 0])


# ---------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------

GOOD_SCORES = np.array([[0.1, 0.9], [0.5, 0.5]])
GOOD_CORRECT = np.array([[1, 0], [1, 1]])
GOOD_COSTS = [1.0, 2.0]


@pytest.mark.parametrize(
    "scores, correct, costs, match",
    [
        (np.array([0.1, 0.2]), np.array([1, 0]), None, "scores must be a 2-D"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), None, "scores must be a 2-D"),
        (np.zeros((1, 3)), np.zeros((1, 3)), None, "at least 2 exits"),
        (np.zeros((2, 0)), np.zeros((2, 0)), None, "no samples"),
        (GOOD_SCORES, np.ones((2, 3)), None, "correct has shape"),
        (np.array([[0.1, np.nan], [0.5, 0.5]]), GOOD_CORRECT, None, "NaN or Inf"),
        (np.array([[0.1, np.inf], [0.5, 0.5]]), GOOD_CORRECT, None, "NaN or Inf"),
        (GOOD_SCORES, GOOD_CORRECT, [1.0, 2.0, 3.0], "costs must have one entry per exit"),
        (GOOD_SCORES, GOOD_CORRECT, [1.0], "costs must have one entry per exit"),
        (GOOD_SCORES, GOOD_CORRECT, [0.0, 2.0], "costs must be positive"),
        (GOOD_SCORES, GOOD_CORRECT, [-1.0, 2.0], "costs must be positive"),
        (GOOD_SCORES, GOOD_CORRECT, [1.0, np.inf], "costs must be positive and finite"),
        (GOOD_SCORES, GOOD_CORRECT, [1.0, np.nan], "costs must be positive and finite"),
    ],
)
def test_check_problem_rejects(scores, correct, costs, match):
    with pytest.raises(ValueError, match=match):
        check_problem(scores, correct, costs)
    if costs is not None and "Inf" not in match:
        with pytest.raises(ValueError, match=match if "NaN" not in match else "NaN at exit 1"):
            replay(scores, correct, [0.5], costs)


def test_check_problem_normalises():
    s, c, d = check_problem([[1, 2], [3, 4]], [[1, 0], [0, 1]], [1, 2])
    assert s.dtype == np.float64 and c.dtype == bool and d.dtype == np.float64
    assert check_problem(GOOD_SCORES, GOOD_CORRECT)[2] is None


@pytest.mark.parametrize("thresholds", [[], [0.5, 0.5], [[0.5]]])
def test_replay_rejects_wrong_number_of_thresholds(thresholds):
    with pytest.raises(ValueError, match="thresholds must have N-1 = 1"):
        replay(GOOD_SCORES, GOOD_CORRECT, thresholds, GOOD_COSTS)


def test_replay_rejects_nan_thresholds():
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        replay(GOOD_SCORES, GOOD_CORRECT, [np.nan], GOOD_COSTS)
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        replay_checked(GOOD_SCORES, GOOD_CORRECT, [np.nan], np.asarray(GOOD_COSTS, float))


@pytest.mark.parametrize("row", [0, 1, 2])
def test_public_replay_rejects_nan_at_an_early_exit(row):
    # only replay_checked trusts its caller; replay itself reads the early exits' scores
    scores = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.5], [0.3, 0.7, 0.5], [0.4, 0.6, 0.5]])
    correct = np.ones_like(scores, dtype=bool)
    scores[row, 1] = np.nan
    with pytest.raises(ValueError, match=f"scores contains NaN at exit {row + 1}"):
        replay(scores, correct, [0.5, 0.5, 0.5], [1.0, 2.0, 3.0, 4.0])


def test_public_replay_reads_infinite_scores_by_the_rule_and_ignores_the_last_exit():
    scores = np.array([[np.inf, -np.inf, 0.2, np.inf], [0.9, 0.9, -np.inf, 0.1],
                       [np.nan, np.inf, -np.inf, 0.3]])
    correct = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 1]], dtype=bool)
    for t in ([0.5, 0.5], [np.inf, 0.5], [-np.inf, np.inf], [0.1, -np.inf]):
        got = replay(scores, correct, t, [1.0, 2.0, 4.0])
        ex = [next((n for n in range(2) if scores[n, m] > t[n]), 2) for m in range(4)]
        assert got.exit_index.tolist() == ex
        assert got.accuracy == np.mean([correct[e, m] for m, e in enumerate(ex)])
        assert got.mean_latency == pytest.approx(np.mean([[1.0, 2.0, 4.0][e] for e in ex]))
    # the tuner and the reader refuse them all
    with pytest.raises(ValueError, match="scores contains NaN or Inf"):
        check_problem(scores, correct, [1.0, 2.0, 4.0])


# ---------------------------------------------------------------------------
# Real data
# ---------------------------------------------------------------------------

HAND_THRESHOLDS = {
    "scan": [[0.9, 0.85, 0.8, 0.75], [0.99, 0.5, 0.7, 0.95], [0.0, 1.0, 1.0, 1.0]],
    "msd": [[0.8, 0.7, 0.6, 0.5], [0.95, 0.95, 0.9, 0.3], [1.0, 1.0, 1.0, 0.0]],
}


@pytest.mark.parametrize("model", ["scan", "msd"])
def test_replay_equals_plain_loop_on_refdata(refdata, model):
    costs = json.loads((refdata / f"{model}_latency.json").read_text())["per_exit"]
    out = read_exits(refdata / f"{model}_test.h5")
    scores, correct = out.scores.tolist(), out.correct.tolist()
    for thresholds in HAND_THRESHOLDS[model]:
        res = replay(out.scores, out.correct, thresholds, costs)
        exits, acc, lat, fractions, exit_acc = loop_replay(scores, correct, thresholds, costs)
        assert_array_equal(res.exit_index, exits)
        # counts are integers, so the accuracy and the fractions agree exactly
        assert res.accuracy == acc
        assert_array_equal(res.fraction, fractions)
        assert_allclose(res.exit_accuracy, exit_acc, rtol=1e-15, equal_nan=True)
        assert_allclose(res.mean_latency, lat, rtol=1e-12)
        assert costs[0] <= res.mean_latency <= costs[-1]


@pytest.mark.parametrize("n_samples", [50, 200_000])  # one reduction / row by row
@pytest.mark.parametrize("row", [0, 2])
def test_public_replay_finds_nan_whatever_the_size(n_samples, row):
    rng = np.random.default_rng(n_samples)
    scores = rng.random((4, n_samples))
    correct = rng.random((4, n_samples)) < 0.7
    ref = replay(scores, correct, [0.5, 0.6, 0.7], [1.0, 2.0, 3.0, 4.0])
    assert ref.accuracy == replay_checked(scores, correct, [0.5, 0.6, 0.7],
                                          np.array([1.0, 2.0, 3.0, 4.0])).accuracy
    kept = scores[row, n_samples - 1]
    scores[row, n_samples - 1] = np.nan
    with pytest.raises(ValueError, match=f"scores contains NaN at exit {row + 1}"):
        replay(scores, correct, [0.5, 0.6, 0.7], [1.0, 2.0, 3.0, 4.0])
    scores[row, n_samples - 1] = kept
    scores[3, 0] = np.nan  # the last exit's scores decide nothing
    assert replay(scores, correct, [0.5, 0.6, 0.7], [1.0, 2.0, 3.0, 4.0]).accuracy == ref.accuracy
