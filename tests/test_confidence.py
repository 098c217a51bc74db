"""Confidence measures straight from float32 logits against the float64 log-softmax."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from eexit_cli.core.confidence import (
    COMPUTED_MEASURES,
    confidence_and_correct,
    confidence_from_logits,
    log_softmax,
)


@pytest.mark.parametrize("measure", COMPUTED_MEASURES)
@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])
@pytest.mark.parametrize("n_classes", [2, 10, 1000])
def test_float32_logits_match_float64_log_softmax(measure, scale, n_classes):
    rng = np.random.default_rng(n_classes)
    z = (scale * rng.normal(size=(3, 200, n_classes))).astype(np.float32)
    labels = rng.integers(0, n_classes, 200)
    ref, ref_ok = confidence_and_correct(log_softmax(z.astype(np.float64)), labels, measure)
    got, top1 = confidence_from_logits(z, measure)
    ok = top1 == labels[None, :]
    assert got.dtype == np.float64
    # float32 exponentials, float64 sums: about 1e-7 relative (plus a little absolute near 0)
    assert_allclose(got, ref, rtol=5e-7, atol=5e-7)
    assert_array_equal(ok, ref_ok)


def test_float32_tail_mass_keeps_its_relative_precision():
    # p_max within 1e-4 of 1: 1 - p_max must still be right to ~1e-7 relative
    z = np.zeros((1, 1, 4), dtype=np.float32)
    z[0, 0, 0] = 10.0
    got, _ = confidence_from_logits(z, "max_softmax")
    tail = 3 * np.exp(-10.0)
    assert_allclose(1.0 - got[0, 0], tail / (1 + tail), rtol=1e-6)


def test_float16_and_float64_inputs():
    z = np.array([[[1.0, 2.0, 0.5]]])
    ref, _ = confidence_and_correct(log_softmax(z), np.array([1]), "entropy")
    for dt in (np.float16, np.float64):
        got, top1 = confidence_from_logits(z.astype(dt), "entropy")
        assert_allclose(got, ref, rtol=1e-3 if dt == np.float16 else 1e-12)
        assert top1[0, 0] == 1


def test_logits_are_left_alone_unless_overwrite():
    z = np.array([[[1.0, 2.0, 0.5]]], dtype=np.float32)
    before = z.copy()
    confidence_from_logits(z, "max_softmax")
    assert_array_equal(z, before)
    confidence_from_logits(z, "max_softmax", overwrite=True)
    assert not np.array_equal(z, before)
