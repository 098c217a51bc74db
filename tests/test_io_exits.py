"""Reading exit outputs: the three variants agree, streaming is exact and bounded,
confidence measures are stable and stay in their ranges S."""

from __future__ import annotations

import json
import tracemalloc
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from eexit_cli.core.confidence import COMPUTED_MEASURES, get_measure, log_softmax
from eexit_cli.core.replay import replay
from eexit_cli.errors import InputError
from eexit_cli.io.exits import read_exits

from conftest import plain_measure

MEASURES = ["max_softmax", "entropy", "margin"]
VARIANTS = ["logits", "probs", "scores"]


def test_measures_under_test_are_the_computed_ones():
    assert set(MEASURES) == set(COMPUTED_MEASURES)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("seed", range(4))
def test_variants_give_identical_replay(exits_file, exit_data, measure, seed):
    data = exit_data(seed=seed, n_exits=4, n_samples=80, n_classes=6)
    outs = {
        v: read_exits(exits_file(v, data, measure, name=f"{v}.h5"), confidence=measure)
        for v in VARIANTS
    }
    expected = data.scores(measure)
    for v, out in outs.items():
        assert out.variant == v
        assert out.confidence == measure
        assert (out.n_exits, out.n_samples) == (4, 80)
        assert_allclose(out.scores, expected, rtol=1e-12, atol=1e-12, err_msg=v)
        assert_array_equal(out.correct, data.correct, err_msg=v)
    assert_array_equal(outs["logits"].labels, data.labels)
    assert_array_equal(outs["probs"].labels, data.labels)

    rng = np.random.default_rng(seed)
    lo, hi = get_measure(measure).box(data.n_classes)
    costs = [1.0, 2.0, 4.0, 8.0]
    for _ in range(20):
        thresholds = rng.uniform(lo, hi, size=3)
        results = {v: replay(o.scores, o.correct, thresholds, costs) for v, o in outs.items()}
        ref = results["logits"]
        for v, res in results.items():
            assert_array_equal(res.exit_index, ref.exit_index, err_msg=v)
            assert res.accuracy == ref.accuracy
            assert res.mean_latency == ref.mean_latency


def test_score_range_is_the_measure_box_or_the_observed_range(exits_file, exit_data):
    data = exit_data(n_classes=7)
    for measure in MEASURES:
        out = read_exits(exits_file("logits", data, name="l.h5"), confidence=measure)
        assert out.score_range == get_measure(measure).box(7)
        assert out.n_classes == 7
    out = read_exits(exits_file("scores", data, "entropy"))
    assert out.score_range == (out.scores.min(), out.scores.max())
    assert out.confidence == "entropy"


def test_default_measure_is_max_softmax(exits_file):
    assert read_exits(exits_file("logits")).confidence == "max_softmax"
    scores_file = exits_file("scores", measure="margin")
    assert read_exits(scores_file).confidence == "margin"
    assert read_exits(scores_file, confidence="scores").confidence == "margin"


def test_scores_file_refuses_another_measure(exits_file):
    with pytest.raises(InputError, match="measure 'max_softmax'.*'entropy' cannot be computed"):
        read_exits(exits_file("scores", measure="max_softmax"), confidence="entropy")


def test_exit_names_and_subset(exits_file, exit_data):
    data = exit_data(n_exits=3, n_samples=10)
    path = exits_file("logits", data, attrs={"exit_names": ["a", "b", "c"]})
    out = read_exits(path)
    assert out.exit_names == ["a", "b", "c"]
    sub = out.subset([1, 3, 5])
    assert_array_equal(sub.scores, out.scores[:, [1, 3, 5]])
    assert_array_equal(sub.correct, out.correct[:, [1, 3, 5]])
    assert_array_equal(sub.labels, data.labels[[1, 3, 5]])
    assert read_exits(exits_file("probs", data)).exit_names == ["exit_1", "exit_2", "exit_3"]


# ---------------------------------------------------------------------------
# Chunked streaming
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["logits", "probs"])
@pytest.mark.parametrize("samples_per_chunk", [1, 3, 7, 39])
def test_chunked_reading_equals_one_chunk(exits_file, exit_data, variant, samples_per_chunk):
    data = exit_data(seed=5, n_exits=3, n_samples=40, n_classes=4)
    path = exits_file(variant, data)
    whole = read_exits(path, confidence="entropy")
    bytes_per_sample = data.n_exits * data.n_classes * 8
    chunked = read_exits(path, confidence="entropy", chunk_bytes=samples_per_chunk * bytes_per_sample)
    assert_array_equal(chunked.scores, whole.scores)
    assert_array_equal(chunked.correct, whole.correct)


def test_chunk_smaller_than_one_sample_still_works(exits_file):
    path = exits_file("logits")
    assert_array_equal(read_exits(path, chunk_bytes=1).scores, read_exits(path).scores)


def test_streaming_keeps_memory_well_below_file_size(tmp_path):
    import h5py

    n_exits, n_samples, n_classes = 3, 4000, 256
    rng = np.random.default_rng(0)
    path = tmp_path / "big.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "eexit.exits/v1"
        ds = f.create_dataset("logits", shape=(n_exits, n_samples, n_classes), dtype=np.float32)
        for start in range(0, n_samples, 1000):
            ds[:, start:start + 1000] = rng.standard_normal((n_exits, 1000, n_classes), dtype=np.float32)
        f.create_dataset("labels", data=rng.integers(0, n_classes, n_samples))
    file_size = path.stat().st_size
    assert file_size > 12e6

    def peak(**kw):
        tracemalloc.start()
        try:
            out = read_exits(path, **kw)
            return tracemalloc.get_traced_memory()[1], out
        finally:
            tracemalloc.stop()

    small_peak, small = peak(chunk_bytes=256 * 1024)
    big_peak, big = peak()
    # the single-chunk read holds the whole block in float64, which tracemalloc does see
    assert big_peak > file_size
    assert small_peak < file_size / 5, f"peak {small_peak} bytes for a {file_size}-byte file"
    assert_array_equal(small.scores, big.scores)


# ---------------------------------------------------------------------------
# Numerical stability and ranges
# ---------------------------------------------------------------------------


def _read_quietly(path, measure):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow or 0*log 0 must not even warn
        return read_exits(path, confidence=measure)


@pytest.mark.parametrize("measure", MEASURES)
def test_huge_logits_are_stable(h5_file, exit_data, measure):
    data = exit_data(seed=2, n_exits=3, n_samples=30, n_classes=5)
    shifted = h5_file("shifted.h5", logits=data.logits + 1e4, labels=data.labels)
    out = _read_quietly(shifted, measure)
    # softmax does not see a common shift; 1e4 + x keeps ~12 digits of x
    assert_allclose(out.scores, data.scores(measure), rtol=0, atol=1e-9)
    assert_array_equal(out.correct, data.correct)

    spread = np.zeros((2, 3, 4))
    spread[:, :, 0] = 1e4
    spread[:, 1, 1] = -1e4
    spread[:, 2, :] = [1e4, 1e4 - 1e-3, -1e4, -1e4]  # two near-equal huge logits
    out = _read_quietly(h5_file("spread.h5", logits=spread, labels=np.array([0, 1, 0])), measure)
    assert np.all(np.isfinite(out.scores))
    lo, hi = get_measure(measure).box(4)
    expected_first = {"max_softmax": 1.0, "entropy": 0.0, "margin": 1.0}[measure]
    assert_allclose(out.scores[:, :2], expected_first, atol=1e-12)
    expected_tie = {"max_softmax": 0.5, "entropy": -np.log(2), "margin": 0.0}[measure]
    assert_allclose(out.scores[:, 2], expected_tie, atol=1e-3)
    assert np.all((out.scores >= lo - 1e-12) & (out.scores <= hi + 1e-12))
    assert_array_equal(out.correct, [[True, False, True]] * 2)


@pytest.mark.parametrize("measure", MEASURES)
def test_float16_logits(exits_file, exit_data, measure):
    data = exit_data(seed=4, n_exits=3, n_samples=50, n_classes=10, scale=20.0)
    out = _read_quietly(exits_file("logits", data, dtype=np.float16), measure)
    as_read = data.logits.astype(np.float16).astype(np.float64)
    probs = np.exp(as_read - as_read.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    # exponentials in float32, sums in float64: about 1e-7 relative
    assert_allclose(out.scores, plain_measure(probs, measure), rtol=5e-7, atol=5e-7)
    # and close to the float64 export, within float16's precision
    full = read_exits(exits_file("logits", data, name="f64.h5"), confidence=measure)
    assert_allclose(out.scores, full.scores, atol=0.05)


def test_float16_logits_near_the_float16_limit(h5_file):
    logits = np.full((2, 2, 3), -6e4, dtype=np.float16)
    logits[:, 0, 0] = 6e4
    logits[:, 1, :] = 6.5e4  # all equal and huge: uniform
    out = _read_quietly(h5_file(logits=logits, labels=np.array([0, 2])), "max_softmax")
    assert_allclose(out.scores, [[1.0, 1 / 3], [1.0, 1 / 3]])


def test_one_hot_probabilities_have_zero_entropy(h5_file):
    probs = np.zeros((2, 3, 4))
    probs[:, np.arange(3), [0, 1, 2]] = 1.0
    out = _read_quietly(h5_file(probs=probs, labels=np.array([0, 1, 3])), "entropy")
    assert_array_equal(out.scores, 0.0)
    assert_array_equal(out.correct, [[True, True, False]] * 2)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("n_classes", [2, 3, 10, 100])
def test_measures_stay_in_their_range(h5_file, exit_data, measure, n_classes):
    lo, hi = get_measure(measure).box(n_classes)
    data = exit_data(seed=n_classes, n_exits=2, n_samples=60, n_classes=n_classes, scale=4.0)
    logits = data.logits.copy()
    logits[:, 0, :] = 0.0  # uniform: the least confident output
    logits[:, 1, :] = -1e3
    logits[:, 1, 0] = 1e3  # one-hot: the most confident
    out = _read_quietly(h5_file(logits=logits, labels=data.labels), measure)
    assert np.all(out.scores >= lo - 1e-12) and np.all(out.scores <= hi + 1e-12)
    assert_allclose(out.scores[:, 0], lo, atol=1e-12)
    assert_allclose(out.scores[:, 1], hi, atol=1e-12)


def test_log_softmax_of_extreme_logits():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [3.0, 1.0, 0.2]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        logp = log_softmax(z)
    assert np.all(np.isfinite(logp))
    assert_allclose(np.exp(logp).sum(-1), 1.0, rtol=1e-15)
    assert_allclose(logp[1], -np.log(3))
    e = np.exp(z[2])
    assert_allclose(logp[2], np.log(e / e.sum()), rtol=1e-14)


# ---------------------------------------------------------------------------
# Reference data
# ---------------------------------------------------------------------------

REFERENCE = {
    "alex": (3, 10_000, "negative_entropy"),
    "scan": (5, 10_000, "max_softmax"),
    "msd": (5, 50_000, "max_softmax"),
}


@pytest.mark.parametrize("model", sorted(REFERENCE))
@pytest.mark.parametrize("split", ["val", "test"])
def test_refdata_loads(refdata, model, split):
    n_exits, n_samples, measure = REFERENCE[model]
    out = read_exits(refdata / f"{model}_{split}.h5")
    assert out.variant == "scores"
    assert out.confidence == measure
    assert out.scores.shape == out.correct.shape == (n_exits, n_samples)
    assert out.scores.dtype == np.float64 and out.correct.dtype == bool
    assert np.all(np.isfinite(out.scores))
    lo, hi = out.score_range
    if measure == "max_softmax":
        assert 0 < lo <= hi <= 1
    else:  # negative entropy in bits over 10 classes
        assert -np.log2(10) - 1e-9 <= lo <= hi <= 0
    # the last exit is the most accurate one in each of these models
    acc = out.correct.mean(axis=1)
    assert acc[-1] == acc.max()
    costs = json.loads((refdata / f"{model}_latency.json").read_text())["per_exit"]
    assert len(costs) == n_exits
