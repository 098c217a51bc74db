"""Serving: ExitPolicy.should_exit / apply agree with `eexit evaluate` on every sample;
load_thresholds picks frontier entries; the library's tune/evaluate/replay are the
commands' own results."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_array_equal

import eexit_cli as ee
from eexit_cli import ExitPolicy, load_thresholds, read_exits, write_exits
from eexit_cli.cli.main import cli

from conftest import make_exit_data, plain_measure, thresholds_dict

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MEASURES = ["max_softmax", "entropy", "margin"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="eexit")


def serve_loop(policy, outputs, kind):
    """A serving loop: run exits one after the other on the samples still running."""
    n_exits, m = len(outputs), outputs[0].shape[0]
    exit_index = np.full(m, -1)
    prediction = np.full(m, -1)
    running = np.arange(m)
    for n in range(n_exits):
        out = outputs[n][running]
        leave = policy.should_exit(n, out)
        exit_index[running[leave]] = n
        prediction[running[leave]] = policy.predict(out)[leave]
        running = running[~leave]
    assert running.size == 0
    return exit_index, prediction


def per_sample_reference(scores, thresholds):
    """The exit rule written out one sample at a time."""
    n, m = scores.shape
    out = []
    for j in range(m):
        e = n - 1
        for i in range(n - 1):
            if scores[i, j] > thresholds[i]:
                e = i
                break
        out.append(e)
    return np.array(out)


def _class_outputs(data, kind):
    return data.logits if kind == "logits" else data.probs


def _tied_data(seed, n_exits=4, n_samples=300, n_classes=5):
    """Random logits with many ties: repeated samples, rounded logits, uniform rows."""
    data = make_exit_data(seed=seed, n_exits=n_exits, n_samples=n_samples, n_classes=n_classes)
    logits = np.round(data.logits, 0)  # equal confidences across samples and classes
    logits[:, ::7] = logits[:, 1::7][:, : logits[:, ::7].shape[1]]  # duplicated samples
    logits[:, 5] = 0.0  # a uniform row: ties between all classes
    return type(data)(logits=logits, labels=data.labels)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("seed", range(3))
def test_policy_agrees_with_evaluate_on_every_sample_with_ties(tmp_path, measure, kind, seed):
    data = _tied_data(seed)
    outputs = _class_outputs(data, kind)
    split = write_exits(tmp_path / "split.h5", **{kind: outputs}, labels=data.labels)
    reader = read_exits(split, confidence=measure)
    rng = np.random.default_rng(seed)
    # thresholds equal to observed confidences (ties with the rule's strict >), and random ones
    cases = [reader.scores[np.arange(3), rng.integers(0, data.n_samples, 3)] for _ in range(4)]
    lo, hi = reader.score_range
    cases += [rng.uniform(lo, hi, 3) for _ in range(2)]
    cases.append(np.array([hi + 1, lo - 1, reader.scores[2, 0]]))  # never, always, tie
    for i, thr in enumerate(cases):
        tfile = tmp_path / f"t{i}.json"
        tfile.write_text(json.dumps(thresholds_dict(thr, [1, 2, 3, 4], confidence=measure, budget=2.5)))
        evaluation = ee.evaluate(split, tfile)
        expected = evaluation.replays[0].exit_index
        policy = load_thresholds(tfile, outputs=kind)
        idx, pred = policy.apply(outputs)
        assert_array_equal(idx, expected)
        assert_array_equal(idx, per_sample_reference(reader.scores, np.asarray(thr)))
        loop_idx, loop_pred = serve_loop(policy, list(outputs), kind)
        assert_array_equal(loop_idx, expected)
        assert_array_equal(loop_pred, pred)
        # the predictions are the ones evaluate scores
        hits = pred == data.labels
        assert_array_equal(hits, reader.correct[idx, np.arange(data.n_samples)])
        report = evaluation.report["entries"][0]
        counts = np.bincount(idx, minlength=4)
        assert [r["count"] for r in report["per_exit"]] == counts.tolist()
        assert report["accuracy"] == hits.sum() / data.n_samples
        # and the CLI reports the same
        cli_report = json.loads(invoke("evaluate", split, tfile, "--json").stdout)
        assert cli_report == {**evaluation.report}


def test_policy_scores_output_and_plain_confidences(tmp_path):
    data = make_exit_data(seed=4, n_exits=3, n_samples=200, n_classes=6)
    for measure in MEASURES:
        scores = data.scores(measure)
        split = write_exits(tmp_path / f"{measure}.h5", scores=scores, correct=data.correct, confidence=measure)
        thr = np.quantile(scores[:2], 0.6, axis=1)
        tfile = tmp_path / f"{measure}.json"
        tfile.write_text(json.dumps(thresholds_dict(thr, [1, 2, 3], confidence=measure)))
        expected = ee.evaluate(split, tfile).replays[0].exit_index
        from_scores = load_thresholds(tfile, outputs="scores")
        idx, pred = from_scores.apply(scores)
        assert pred is None
        assert_array_equal(idx, expected)
        from_logits = load_thresholds(tfile)
        assert from_logits.outputs == "logits"
        # confidences of the policy are the plain formula's, to rounding
        np.testing.assert_allclose(from_logits.scores(data.logits[1]), plain_measure(data.probs[1], measure),
                                   rtol=1e-12, atol=1e-12)


def test_should_exit_with_torch_tensors_returns_tensors():
    torch = pytest.importorskip("torch")
    data = make_exit_data(seed=5, n_exits=3, n_samples=50, n_classes=4)
    policy = ExitPolicy(thresholds=[0.6, 0.7], confidence="max_softmax", outputs="logits")
    for n in range(3):
        t = torch.from_numpy(data.logits[n].astype(np.float32))
        got = policy.should_exit(n, t)
        assert isinstance(got, torch.Tensor) and got.dtype == torch.bool
        assert_array_equal(got.numpy(), policy.should_exit(n, data.logits[n].astype(np.float32)))
        assert_array_equal(policy.predict(t).numpy(), data.logits[n].argmax(axis=1))
    idx_t, _ = policy.apply([torch.from_numpy(x) for x in data.logits])
    assert_array_equal(idx_t, policy.apply(data.logits)[0])
    # the last exit always answers
    assert policy.should_exit(2, data.logits[2]).all()
    # token-level: (batch, tokens, C)
    toks = np.random.default_rng(0).standard_normal((2, 5, 4))
    assert policy.should_exit(0, toks).shape == (2, 5)


@pytest.mark.parametrize("call, exc, words", [
    (lambda p: p.should_exit(3, np.zeros((2, 4))), ValueError, "n must be a 0-based exit index in \\[0, 3\\)"),
    (lambda p: p.should_exit(1.0, np.zeros((2, 4))), TypeError, "n must be"),
    (lambda p: p.should_exit(True, np.zeros((2, 4))), TypeError, "n must be"),
    (lambda p: p.should_exit(0, "logits"), TypeError, "exit_output"),
    (lambda p: p.should_exit(0, np.zeros(4)[:, None]), ValueError, "exit_output must have the classes"),
    (lambda p: p.should_exit(0, np.full((2, 4), np.nan)), ValueError, "exit_output contains NaN"),
    (lambda p: p.apply(np.zeros((2, 5, 4))), ValueError, "exit_outputs must have shape \\(N, B, C\\) with N = 3"),
    (lambda p: p.apply([np.zeros((5, 4))] * 2), ValueError, "exit_outputs has 2 exits"),
    (lambda p: p.apply([np.zeros((5, 4)), np.zeros((5, 4)), np.zeros((6, 4))]), ValueError, "one shape"),
])
def test_policy_bad_arguments_name_the_argument(call, exc, words):
    policy = ExitPolicy(thresholds=[0.5, 0.5], confidence="max_softmax")
    with pytest.raises(exc, match=words):
        call(policy)


def test_probs_policy_refuses_logits():
    policy = ExitPolicy(thresholds=[0.5], confidence="margin", outputs="probs")
    with pytest.raises(ValueError, match=r"exit_output has values outside \[0, 1\]; did you mean logits"):
        policy.should_exit(0, np.array([[3.0, -1.0]]))
    with pytest.raises(ValueError, match="outputs must be one of"):
        ExitPolicy(thresholds=[0.5], confidence="margin", outputs="log_probs")
    with pytest.raises(ValueError, match="cannot be computed from class outputs"):
        ExitPolicy(thresholds=[0.5], confidence="scores", outputs="logits")
    with pytest.raises(ValueError, match="thresholds contains NaN"):
        ExitPolicy(thresholds=[np.nan], confidence="margin")


# ---------------------------------------------------------------------------
# load_thresholds: files and frontier entries
# ---------------------------------------------------------------------------


def _frontier(tmp_path):
    entries = [thresholds_dict([0.5 + 0.1 * i, 0.6], [1, 2, 4], budget=b, exit_names=["a", "b", "c"])
               for i, b in enumerate([1.5, 2.0, 2.5])]
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps({"format": "eexit.frontier/v1", "entries": entries}))
    return path


def test_load_thresholds_entries(tmp_path):
    path = _frontier(tmp_path)
    assert load_thresholds(path, 0).budget == 1.5
    assert load_thresholds(path, -1).budget == 2.5
    assert load_thresholds(path, 2.2).budget == 2.0  # the largest budget not above
    assert load_thresholds(path, 2.0).budget == 2.0
    assert load_thresholds(path, "50%").budget == 2.0  # 50% of d_N = 4
    p = load_thresholds(path, 1)
    assert p.exit_names == ("a", "b", "c") and p.unit == "ms"
    assert_array_equal(p.costs, [1, 2, 4])
    assert_array_equal(p.thresholds, [0.6, 0.6])
    assert "entries[1]" in p.source
    with pytest.raises(ValueError, match="entry: .* is a frontier of 3 threshold sets"):
        load_thresholds(path)
    with pytest.raises(ValueError, match="entry index 3 is out of range"):
        load_thresholds(path, 3)
    with pytest.raises(ValueError, match="no threshold set .* has a budget <= 1"):
        load_thresholds(path, 1.0)
    with pytest.raises(TypeError, match="entry must be"):
        load_thresholds(path, True)
    with pytest.raises(TypeError, match="entry must be"):
        load_thresholds(path, [1])
    with pytest.raises(ValueError, match="entry 'fast' is not a number"):
        load_thresholds(path, "fast")
    with pytest.raises(TypeError, match="path must be"):
        load_thresholds(3)
    with pytest.raises(ValueError, match="file not found"):
        load_thresholds(tmp_path / "missing.json")


# ---------------------------------------------------------------------------
# The round trip and the sample model
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_round_trip_arrays_to_cli_tune_to_policy_reproduces_evaluate(tmp_path, kind):
    val = make_exit_data(seed=20, n_exits=4, n_samples=400, n_classes=6)
    test = make_exit_data(seed=21, n_exits=4, n_samples=300, n_classes=6)
    write_exits(tmp_path / "val.h5", **{kind: _class_outputs(val, kind)}, labels=val.labels)
    write_exits(tmp_path / "test.h5", **{kind: _class_outputs(test, kind)}, labels=test.labels)
    res = invoke("tune", tmp_path / "val.h5", "--costs", "1,2,3,4", "--unit", "ms", "--budget", "30%..70%:3",
                 "--confidence", "entropy", "-o", tmp_path / "frontier.json")
    assert res.exit_code == 0, res.stderr
    report = json.loads(invoke("evaluate", tmp_path / "test.h5", tmp_path / "frontier.json", "--json").stdout)
    for i, entry in enumerate(report["entries"]):
        policy = load_thresholds(tmp_path / "frontier.json", i, outputs=kind)
        idx, pred = policy.apply(_class_outputs(test, kind))
        assert (pred == test.labels).mean() == entry["accuracy"]
        shares = np.bincount(idx, minlength=4) / test.n_samples
        assert shares.tolist() == [r["fraction"] for r in entry["per_exit"]]
        assert float(shares @ policy.costs) == pytest.approx(entry["mean_latency"], rel=1e-15)


def test_library_tune_writes_what_the_cli_writes(tmp_path):
    val = SAMPLE / "digits_val.h5"
    res = invoke("tune", val, "--costs", "7,10,18,35", "--unit", "us", "--budget", "50%", "-o", tmp_path / "t.json")
    assert res.exit_code == 0, res.stderr
    cli_out = json.loads((tmp_path / "t.json").read_text())
    tuned = ee.tune(val, [7, 10, 18, 35], "50%", unit="us")
    ours = tuned.to_dict()
    for d in (cli_out, ours):
        d["tuning"].pop("seconds")
        for stage in d["tuning"].get("stages", {}).values():
            if isinstance(stage, dict):
                stage.pop("seconds", None)
    assert ours == cli_out
    tuned.save(tmp_path / "lib.json")
    assert_array_equal(load_thresholds(tmp_path / "lib.json").thresholds, tuned.thresholds)
    assert_array_equal(tuned.policy().thresholds, tuned.thresholds)
    frontier = ee.tune(read_exits(val), [7, 10, 18, 35], ["40%", "60%"])
    assert frontier.to_dict()["format"] == "eexit.frontier/v1"
    assert frontier.policy(entry="45%").budget == pytest.approx(0.4 * 35)
    with pytest.raises(ValueError, match="single thresholds"):
        frontier.thresholds
    with pytest.raises(TypeError, match="unexpected keyword"):
        ee.tune(val, [7, 10, 18, 35], "50%", kk=3)
    with pytest.raises(TypeError, match="latency must be"):
        ee.tune(val, object(), "50%")
    with pytest.raises(ValueError, match="budget 'fast' is not a number"):
        ee.tune(val, [7, 10, 18, 35], "fast")
    with pytest.raises(ValueError, match="latency: the latency profile has 3 exits"):
        ee.tune(val, [7, 10, 18], "50%")


def test_evaluate_and_replay_on_the_sample_data(tmp_path):
    val, test = SAMPLE / "digits_val.h5", SAMPLE / "digits_test.h5"
    tuned = ee.tune(val, [7, 10, 18, 35], "40%", unit="us")
    tuned.save(tmp_path / "t.json")
    cli_report = json.loads(invoke("evaluate", test, tmp_path / "t.json", "--json").stdout)
    lib = ee.evaluate(test, tmp_path / "t.json")
    assert lib.report == cli_report
    assert lib.passed == cli_report["passed"]
    assert lib.accuracy == cli_report["accuracy"]
    r = ee.replay(test, tmp_path / "t.json")
    assert_array_equal(r.exit_index, lib.replays[0].exit_index)
    assert r.fraction.tolist() == [e["fraction"] for e in cli_report["entries"][0]["per_exit"]]
    # the policy on the stored logits gives the same exits and accuracy
    import h5py

    with h5py.File(test) as f:
        logits, labels = f["logits"][()], f["labels"][()]
    idx, pred = load_thresholds(tmp_path / "t.json").apply(logits)
    assert_array_equal(idx, r.exit_index)
    assert (pred == labels).mean() == cli_report["accuracy"]
    gated = ee.evaluate(test, tmp_path / "t.json", budget="10%", tolerance="1%")
    assert gated.passed is False and gated.report["entries"][0]["tolerance"] == 0.01
    with pytest.raises(ValueError, match="budget 'fast' is not a number"):
        ee.evaluate(test, tmp_path / "t.json", budget="fast")
    with pytest.raises(TypeError, match="thresholds must be"):
        ee.evaluate(test, 3)
    # outputs read from a file were checked by the reader; outputs built in memory are
    # checked by replay and evaluate themselves
    out = read_exits(test)
    assert_array_equal(ee.replay(out, tmp_path / "t.json").exit_index, r.exit_index)
    bad_scores = out.scores.copy()
    bad_scores[1, 3] = np.nan
    bad = dataclasses.replace(out, scores=bad_scores)
    with pytest.raises(ValueError, match="scores contains NaN or Inf"):
        ee.replay(bad, tmp_path / "t.json")
    with pytest.raises(ValueError, match="scores contains NaN or Inf"):
        ee.evaluate(bad, tmp_path / "t.json")
