"""Smoothed problem: closed-form gradients against finite differences, stability."""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from eexit_cli.core.smooth import (
    SmoothProblem,
    exit_probabilities,
    logistic,
    smooth_accuracy,
    smooth_latency,
)


def _problem(n_exits, n_samples=300, seed=0):
    rng = np.random.default_rng(seed)
    scores = rng.random((n_exits, n_samples))
    correct = rng.random((n_exits, n_samples)) < 0.7
    costs = np.cumsum(rng.uniform(0.2, 1.0, n_exits))
    return scores, correct, costs, rng


def _fd(f, t, h):
    g = np.zeros_like(t)
    for i in range(t.size):
        e = np.zeros_like(t)
        e[i] = h
        g[i] = (f(t + e) - f(t - e)) / (2 * h)
    return g


@pytest.mark.parametrize("n_exits", [2, 5, 17])
@pytest.mark.parametrize("k", [5.0, 30.0, 100.0, 500.0])
def test_gradients_match_finite_differences(n_exits, k):
    scores, correct, costs, rng = _problem(n_exits, seed=n_exits)
    sp = SmoothProblem(scores, correct, costs, budget=costs.mean(), k=k)
    t = rng.random(n_exits - 1)
    acc, lat, ga, gd = sp.value_and_grad(t)
    assert_allclose(acc, smooth_accuracy(scores, correct, t, k), rtol=1e-12)
    assert_allclose(lat, smooth_latency(scores, t, costs, k), rtol=1e-12)
    h = 1e-3 / k
    fa = _fd(lambda x: smooth_accuracy(scores, correct, x, k), t, h)
    fd = _fd(lambda x: smooth_latency(scores, x, costs, k), t, h)
    assert_allclose(ga, fa, rtol=1e-5, atol=1e-8)
    assert_allclose(gd, fd, rtol=1e-5, atol=1e-8 * costs[-1])


@pytest.mark.parametrize("n_exits", [2, 5, 17])
def test_phi_gradient_matches_finite_differences(n_exits):
    scores, correct, costs, rng = _problem(n_exits, seed=10 + n_exits)
    k = 50.0
    sp = SmoothProblem(scores, correct, costs, budget=costs[0] * 1.05, k=k)
    t = rng.random(n_exits - 1)
    t_bar = rng.random(n_exits - 1)
    gamma, beta = 10.0, 300.0
    assert sp.constraint(t) > 0  # the penalty term is active
    value, grad, _, _ = sp.phi_grad(t, t_bar, gamma, beta)
    assert_allclose(value, sp.phi(t, t_bar, gamma, beta), rtol=1e-12)
    fg = _fd(lambda x: sp.phi(x, t_bar, gamma, beta), t, 1e-6)
    assert_allclose(grad, fg, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("n_exits", [5, 17])
def test_float32_gradients_close_to_float64(n_exits):
    scores, correct, costs, rng = _problem(n_exits, n_samples=2000, seed=3)
    t = rng.random(n_exits - 1)
    r64 = SmoothProblem(scores, correct, costs, 1.0, 100.0).value_and_grad(t)
    r32 = SmoothProblem(scores, correct, costs, 1.0, 100.0, dtype=np.float32).value_and_grad(t)
    assert_allclose(r32[0], r64[0], atol=1e-6)
    assert_allclose(r32[1], r64[1], rtol=1e-6)
    scale = np.max(np.abs(r64[2])) + np.max(np.abs(r64[3]))
    assert_allclose(r32[2], r64[2], atol=1e-4 * scale)
    assert_allclose(r32[3], r64[3], atol=1e-4 * scale)


def test_exit_probabilities_sum_to_one_and_tend_to_hard_rule():
    scores, _, _, rng = _problem(5, seed=4)
    t = rng.random(4)
    g = exit_probabilities(scores, t, 1e6)
    assert_allclose(g.sum(axis=0), 1.0, rtol=1e-12)
    hard = np.full(scores.shape[1], 4)
    for n in range(3, -1, -1):
        hard[scores[n] > t[n]] = n
    assert_allclose(g.argmax(axis=0), hard)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_k_is_stable(dtype):
    scores, correct, costs, rng = _problem(17, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(all="raise"):
            sp = SmoothProblem(scores * 1e3, correct, costs, 1.0, 1e6, dtype=dtype)
            out = sp.value_and_grad(rng.random(16) * 1e3)
            assert np.all(np.isfinite(logistic(np.array([-1e300, 0.0, 1e300]), 1e6)))
    assert np.isfinite(out[0]) and np.isfinite(out[1])
    assert np.all(np.isfinite(out[2])) and np.all(np.isfinite(out[3]))


def test_bad_k_rejected():
    scores, correct, costs, _ = _problem(3)
    with pytest.raises(ValueError, match="k"):
        SmoothProblem(scores, correct, costs, 1.0, 0.0)
