"""`eexit check`: the measured adaptive run against the predicted mean latency."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from eexit_cli.cli.main import cli  # noqa: E402
from eexit_cli.profiling.adaptive import check_adaptive  # noqa: E402
from eexit_cli.profiling.staged import StagedModel  # noqa: E402

from conftest import one_error_line

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
FAST = ["--warmup", "5", "--repeat", "20", "--rounds", "5"]


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, args):
    return runner.invoke(cli, [str(a) for a in args], prog_name="eexit", catch_exceptions=False)


def pipeline(runner, tmp_path, model, val, budget="50%", measure=False):
    """Thresholds tuned on a latency profile: measured by `profile` (``measure``), or
    written here (fixed figures, so that tuning does not depend on a busy machine)."""
    latency, thresholds = tmp_path / "latency.json", tmp_path / "thresholds.json"
    if measure:
        r = run(runner, ["profile", model, "-o", latency, *FAST])
        assert r.exit_code == 0, r.output
    else:
        from eexit_cli.profiling.record import sha256_file

        path = str(model).split(":")[0]
        latency.write_text(json.dumps({
            "format": "eexit.latency/v1", "unit": "s", "per_exit": [1e-5, 2e-5, 4e-5, 8e-5],
            "measurement": {"model": {"path": path, "sha256": sha256_file(path)}, "mode": "staged",
                            "batch": 1, "threads": 1, "device": "cpu"},
        }))
    r = run(runner, ["tune", val, "--latency", latency, "--budget", budget, "-o", thresholds])
    assert r.exit_code == 0, r.output
    return latency, thresholds


@pytest.mark.parametrize("model, data", [
    (SAMPLE / "model.onnx", "digits"),
    (f"{SAMPLE / 'torch_models.py'}:digits_gru", "digits_gru"),
])
def test_check_reports_the_prediction_of_evaluate_and_a_measured_mean(runner, tmp_path, model, data):
    if "torch_models" in str(model):
        pytest.importorskip("torch")
    test = SAMPLE / f"{data}_test.h5"
    # a real profile; a budget of 80% stays feasible even when a busy machine moves the
    # means of this few calls
    latency, thresholds = pipeline(runner, tmp_path, model, SAMPLE / f"{data}_val.h5", "80%", measure=True)
    r = run(runner, ["evaluate", test, thresholds, "--json"])
    assert r.exit_code in (0, 1), r.output
    evaluation = json.loads(r.stdout)
    out = tmp_path / "check.json"
    r = run(runner, ["check", model, thresholds, test, "--passes", "2", "--tolerance", "100000%", "-o", out])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "eexit.check/v1" and doc["unit"] == "s"
    # the prediction is evaluate's mean latency: the same replay, the same profile
    assert doc["predicted_mean"] == pytest.approx(evaluation["mean_latency"], rel=1e-12)
    assert [e["count"] for e in doc["per_exit"]] == [e["count"] for e in evaluation["entries"][0]["per_exit"]]
    assert doc["measured_mean"] > 0
    assert doc["relative_error"] == pytest.approx(
        (doc["predicted_mean"] - doc["measured_mean"]) / doc["measured_mean"], rel=1e-12)
    m = doc["measurement"]
    assert m["samples"] == evaluation["samples"] and m["passes"] == 2 and len(m["pass_means"]) == 2
    assert doc["measured_mean"] == pytest.approx(np.mean(m["pass_means"]), rel=1e-9)
    assert doc["passed"] is True and doc["notes"] == []
    assert doc["measurement"]["model"]["sha256"] == json.loads(latency.read_text())["measurement"]["model"]["sha256"]

    # a tolerance of zero fails unless prediction and measurement agree to the last digit;
    # the one-line verdict is printed even with --quiet, as evaluate's is
    r = run(runner, ["check", model, thresholds, test, "--passes", "1", "--tolerance", "0", "-q"])
    doc = json.loads(r.stdout)
    assert r.exit_code == (0 if doc["relative_error"] == 0 else 1)
    assert doc["passed"] is (r.exit_code == 0)
    verdict = [ln for ln in r.stderr.splitlines() if ln.startswith(("PASS: ", "FAIL: "))]
    assert verdict and verdict[0].startswith("PASS: " if doc["passed"] else "FAIL: "), r.stderr


def test_check_adaptive_runs_every_sample_to_its_exit():
    seen = []
    model = StagedModel(exit_names=("a", "b", "c"), run_to=seen.append, batch=1, inputs=(), mode="staged",
                        method="test", device="cpu", threads=1, confidence="max_softmax", source={})
    schedule = np.array([0, 2, 2, 1, 0, 2])
    result = check_adaptive(model, schedule, [1.0, 2.0, 4.0], passes=2, tolerance=0.5)
    assert seen == schedule.tolist() * 3  # one untimed pass, two timed
    np.testing.assert_allclose(result.fraction, [2 / 6, 1 / 6, 3 / 6])
    assert result.predicted_mean == pytest.approx((2 * 1 + 1 * 2 + 3 * 4) / 6)
    assert result.pass_means.shape == (2,)
    with pytest.raises(ValueError, match="outside"):
        check_adaptive(model, [0, 3], [1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="latency profile has 2 exits"):
        check_adaptive(model, [0, 1], [1.0, 2.0])


def test_check_warns_when_the_profile_is_of_another_model(runner, tmp_path):
    latency, thresholds = pipeline(runner, tmp_path, SAMPLE / "model.onnx", SAMPLE / "digits_val.h5")
    doc = json.loads(thresholds.read_text())
    doc["latency"]["measurement"]["model"]["sha256"] = "0" * 64
    doc["latency"]["measurement"]["mode"] = "prefix"
    thresholds.write_text(json.dumps(doc))
    r = run(runner, ["check", SAMPLE / "model.onnx", thresholds, SAMPLE / "digits_test.h5", "--passes", "1",
                     "--tolerance", "100000%"])
    assert r.exit_code == 0, r.output
    notes = json.loads(r.stdout)["notes"]
    assert any("another model file" in n for n in notes)
    assert any("mode prefix" in n for n in notes)


def _frontier(tmp_path, thresholds):
    doc = json.loads(thresholds.read_text())
    path = tmp_path / "frontier.json"
    path.write_text(json.dumps({"format": "eexit.frontier/v1", "entries": [doc, doc]}))
    return [SAMPLE / "model.onnx", path, SAMPLE / "digits_test.h5"], "frontier"


def _wrong_n(tmp_path, thresholds):
    return [SAMPLE / "model.onnx", thresholds, SAMPLE / "digits_test.h5", "--outputs", "exit_1,exit_2,exit_3"], \
        "N disagrees"


def _relative_units(tmp_path, thresholds):
    doc = json.loads(thresholds.read_text())
    doc["latency"]["unit"] = "GFLOPs"
    thresholds.write_text(json.dumps(doc))
    return [SAMPLE / "model.onnx", thresholds, SAMPLE / "digits_test.h5"], "not a unit of time"


def _missing_split(tmp_path, thresholds):
    return [SAMPLE / "model.onnx", thresholds, tmp_path / "absent.h5"], "file not found"


def _missing_model(tmp_path, thresholds):
    return [tmp_path / "absent.onnx", thresholds, SAMPLE / "digits_test.h5"], "file not found"


def _bad_tolerance(tmp_path, thresholds):
    return [SAMPLE / "model.onnx", thresholds, SAMPLE / "digits_test.h5", "--tolerance", "lots"], "--tolerance"


def _renamed_exits(tmp_path, thresholds):
    import shutil

    import h5py

    split = tmp_path / "renamed.h5"
    shutil.copy(SAMPLE / "digits_test.h5", split)
    with h5py.File(split, "r+") as f:
        f.attrs.create("exit_names", ["a", "b", "c", "d"], dtype=h5py.string_dtype())
    return [SAMPLE / "model.onnx", thresholds, split], "different exit names"


@pytest.mark.parametrize("case", [_frontier, _wrong_n, _relative_units, _missing_split, _missing_model,
                                  _bad_tolerance, _renamed_exits], ids=lambda f: f.__name__.lstrip("_"))
def test_bad_input_is_one_line_and_exit_code_2(runner, tmp_path, case):
    _latency, thresholds = pipeline(runner, tmp_path, SAMPLE / "model.onnx", SAMPLE / "digits_val.h5")
    args, expected = case(tmp_path, thresholds)
    out = tmp_path / "out" / "check.json"
    out.parent.mkdir()
    r = run(runner, ["check", *args, "--passes", "1", "-o", out])
    assert r.exit_code == 2, r.output
    line = one_error_line(r)
    assert line.startswith("eexit check: error: ") and expected in line, line
    assert list(out.parent.iterdir()) == []


def test_thresholds_on_precomputed_scores_are_checked_with_a_stand_in_measure(runner, tmp_path, exit_data,
                                                                               exits_file, latency_json):
    split = exits_file("scores", data=exit_data(n_exits=4, n_samples=60), measure="margin",
                       attrs={"confidence": "learned_head"})
    latency = latency_json([1e-5, 2e-5, 4e-5, 8e-5], unit="s")
    thresholds = tmp_path / "thresholds.json"
    r = run(runner, ["tune", split, "--latency", latency, "--budget", "60%", "-o", thresholds])
    assert r.exit_code == 0, r.output
    assert json.loads(thresholds.read_text())["confidence"] == "learned_head"
    r = run(runner, ["check", SAMPLE / "model.onnx", thresholds, split, "--passes", "1", "--tolerance", "100000%"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["measurement"]["confidence"] == "max_softmax"
    assert any("'learned_head'" in n and "max_softmax instead" in n for n in doc["notes"])
    assert sum(e["count"] for e in doc["per_exit"]) == 60
