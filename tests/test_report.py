"""The evaluation entry and report (core/report.py) against a plain per-sample loop."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from eexit_cli.core.report import EVALUATION_FORMAT, evaluation_entry, evaluation_report, summarise


def plain_entry(scores, correct, thresholds, costs):
    """Exit, correctness and exact mean latency by walking every sample through the exits."""
    n_exits, n_samples = scores.shape
    taken, right = [], []
    for m in range(n_samples):
        n = next((i for i in range(n_exits - 1) if scores[i, m] > thresholds[i]), n_exits - 1)
        taken.append(n)
        right.append(bool(correct[n, m]))
    mean = sum(Fraction(costs[n]) for n in taken) / n_samples
    return np.array(taken), np.array(right), mean


@pytest.mark.parametrize("seed", range(6))
def test_entry_equals_a_per_sample_loop(seed):
    rng = np.random.default_rng(seed)
    n_exits, n_samples = rng.integers(2, 7), rng.integers(1, 300)
    scores = rng.random((n_exits, n_samples)).round(2)  # ties with thresholds happen
    correct = rng.random((n_exits, n_samples)) < 0.7
    thresholds = rng.random(n_exits - 1).round(2)
    costs = np.cumsum(rng.random(n_exits) + 0.1)
    taken, right, mean = plain_entry(scores, correct, thresholds, costs)
    e = evaluation_entry(scores, correct, thresholds, costs, budget=float(mean), unit="ms")
    assert e["mean_latency"] == float(mean)
    assert e["accuracy"] == right.mean()
    assert e["violation"] == 0.0 and e["passed"] is True
    for n, row in enumerate(e["per_exit"]):
        assert row["count"] == int((taken == n).sum())
        assert row["fraction"] == (taken == n).mean()
        assert row["name"] == f"exit_{n + 1}"
        assert row["latency"] == costs[n]
        assert row["accuracy"] == (right[taken == n].mean() if row["count"] else None)


def test_budget_a_float_step_below_the_mean_fails_and_tolerance_is_exact():
    scores = np.array([[0.9, 0.1, 0.1], [0.0, 0.0, 0.0]])
    correct = np.ones_like(scores, dtype=bool)
    costs = [1.0, 1.0 + 2 ** -40]
    e = evaluation_entry(scores, correct, [0.5], costs, budget=1.0)
    mean = float((Fraction(1) + 2 * Fraction(costs[1])) / 3)
    assert e["mean_latency"] == mean
    assert e["within_budget"] is False
    same = evaluation_entry(scores, correct, [0.5], costs, budget=mean)
    assert same["within_budget"] is True
    below = np.nextafter(mean, 0)
    assert evaluation_entry(scores, correct, [0.5], costs, budget=below)["within_budget"] is False
    # 35% of 3 with three samples costing 1, 1 and 1.15 (mean exactly 1.05)
    e = evaluation_entry(np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), np.ones((2, 3), bool), [0.5],
                         [1.0, 1.15], budget=1.05)
    assert e["passed"] is (float((2 + Fraction(1.15)) / 3) <= 1.05)


def test_gates_and_summary():
    scores = np.array([[0.9, 0.2, 0.8, 0.1], [0.5, 0.5, 0.5, 0.5]])
    correct = np.array([[1, 0, 0, 1], [1, 1, 0, 1]], bool)
    a = evaluation_entry(scores, correct, [0.5], [1.0, 2.0], budget=1.4, tolerance=0.1)
    assert a["mean_latency"] == 1.5 and a["violation"] == pytest.approx(1.5 / 1.4 - 1)
    assert a["within_budget"] is True  # 7.1% over with 10% allowed
    b = evaluation_entry(scores, correct, [0.5], [1.0, 2.0], budget=1.4, min_accuracy=0.8)
    assert b["accuracy"] == 0.75 and b["accuracy_ok"] is False and b["within_budget"] is False
    c = evaluation_entry(scores, correct, [0.95], [1.0, 2.0])
    assert c["budget"] is None and c["violation"] is None and c["passed"] is True
    s = summarise([a, b, c])
    assert s == {"passed": False, "accuracy": 0.75, "mean_latency": 2.0,
                 "violation": b["violation"], "within_budget": False, "accuracy_ok": False,
                 "tail_ok": True}
    rep = evaluation_report([a], split="t.h5")
    assert rep["format"] == EVALUATION_FORMAT and rep["n_entries"] == 1 and rep["n_failed"] == 0
    assert all(rep[k] == a[k] for k in ("accuracy", "mean_latency", "violation", "passed"))


@pytest.mark.parametrize("kwargs, word", [
    ({"budget": 0.0}, "budget"), ({"budget": float("inf")}, "budget"), ({"tolerance": -0.1}, "tolerance"),
    ({"min_accuracy": 1.5}, "min_accuracy"), ({"exit_names": ["a"]}, "exit_names"),
])
def test_bad_arguments_name_the_parameter(kwargs, word):
    with pytest.raises(ValueError, match=word):
        evaluation_entry(np.zeros((2, 3)), np.ones((2, 3), bool), [0.5], [1.0, 2.0], **kwargs)
    with pytest.raises(ValueError):
        summarise([])


def test_quantiles_and_tail_gate_against_a_per_sample_loop():
    rng = np.random.default_rng(4)
    scores = rng.random((4, 203))
    correct = rng.random((4, 203)) < 0.7
    costs = [1.0, 2.0, 3.5, 5.0]
    thresholds = [0.8, 0.6, 0.5]
    # plain per-sample replay and sorted latencies
    lat = []
    for m in range(203):
        n = next((i for i in range(3) if scores[i, m] > thresholds[i]), 3)
        lat.append(costs[n])
    lat = sorted(lat)
    e = evaluation_entry(scores, correct, thresholds, costs, tail=[(0.5, 2.0), (0.9, 3.5)])
    assert [r["within"] for r in e["tail"]] == [True, False]  # both outcomes checked
    for p in (0.5, 0.9, 0.95, 0.99):
        j = int(np.ceil(p * 203 - 1e-9))  # smallest j with j / M >= p
        assert e["latency_quantiles"][f"p{100 * p:g}"] == lat[j - 1]
    for rec in e["tail"]:
        q = e["latency_quantiles"][f"p{100 * rec['level']:g}"]
        assert rec["quantile"] == q
        assert rec["within"] is (q <= rec["latency"])
        assert rec["over"] == sum(v > rec["latency"] for v in lat)
    assert e["tail_ok"] is all(r["within"] for r in e["tail"])
    assert e["passed"] is e["tail_ok"]
    assert summarise([e])["tail_ok"] is e["tail_ok"]
