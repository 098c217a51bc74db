"""``eexit evaluate`` in-process: the JSON report, the exit-code gate, and one clear
line with exit code 2 for every unusable input."""

from __future__ import annotations

import re
from fractions import Fraction

import json

import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_allclose

from eexit_cli.cli.main import cli
from eexit_cli.core.replay import replay

from conftest import make_exit_data, plain_measure, thresholds_dict, write_exits, write_h5

COSTS = [1.0, 2.0, 4.0]
THRESHOLDS = [0.7, 0.6]


def invoke(*args):
    # click >= 8.2 keeps stderr apart from stdout
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="eexit")


def report_of(result) -> dict:
    assert "Traceback" not in result.stdout + result.stderr
    rep = json.loads(result.stdout)
    assert rep["format"] == "eexit.evaluation/v2"
    assert rep["n_entries"] == len(rep["entries"]) >= 1
    return rep


def entry_of(result) -> dict:
    """The one entry of a report on one threshold set; its summary is the entry itself."""
    rep = report_of(result)
    assert rep["n_entries"] == 1
    entry = rep["entries"][0]
    for key in ("passed", "accuracy", "mean_latency", "violation", "within_budget", "accuracy_ok"):
        assert rep[key] == entry[key], key
    return entry


def expected_replay(data, thresholds=THRESHOLDS, costs=COSTS, measure="max_softmax"):
    return replay(plain_measure(data.probs, measure), data.correct, thresholds, costs)


@pytest.fixture
def data():
    return make_exit_data(seed=7, n_exits=3, n_samples=60, n_classes=5)


@pytest.fixture
def split(exits_file, data):
    return exits_file("logits", data, name="test.h5")


@pytest.fixture
def mean_latency(data):
    return expected_replay(data).mean_latency


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["logits", "probs", "scores"])
@pytest.mark.parametrize("measure", ["max_softmax", "entropy", "margin"])
def test_report_equals_replay(exits_file, thresholds_json, data, variant, measure):
    split = exits_file(variant, data, measure)
    box = {"max_softmax": [0.7, 0.6], "entropy": [-0.8, -1.0], "margin": [0.5, 0.3]}[measure]
    exp = expected_replay(data, box, measure=measure)
    thr = thresholds_json(box, COSTS, confidence=measure, budget=exp.mean_latency * 1.5, unit="ms")
    result = invoke("evaluate", split, thr)
    assert result.exit_code == 0, result.stderr
    top = report_of(result)
    rep = entry_of(result)
    for key in ("accuracy", "mean_latency", "budget", "violation", "unit", "per_exit"):
        assert key in rep
    assert rep["confidence"] == top["confidence"] == measure
    assert top["samples"] == 60
    assert rep["unit"] == "ms"
    assert rep["passed"] is True and rep["within_budget"] is True
    assert rep["accuracy"] == pytest.approx(exp.accuracy, abs=1e-15)
    assert rep["mean_latency"] == pytest.approx(exp.mean_latency, rel=1e-12)
    assert rep["budget"] == pytest.approx(exp.mean_latency * 1.5)
    assert rep["violation"] == pytest.approx(-1 / 3)
    assert rep["thresholds"] == box
    assert len(rep["per_exit"]) == 3
    for n, row in enumerate(rep["per_exit"]):
        assert row["exit"] == n + 1
        assert row["latency"] == COSTS[n]
        assert row["fraction"] == pytest.approx(exp.fraction[n])
        if np.isnan(exp.exit_accuracy[n]):
            assert row["accuracy"] is None
        else:
            assert row["accuracy"] == pytest.approx(exp.exit_accuracy[n])


def test_gate_on_budget_and_tolerance(split, thresholds_json, data, mean_latency):
    under = thresholds_json(THRESHOLDS, COSTS, budget=mean_latency * 1.001, name="under.json")
    over = thresholds_json(THRESHOLDS, COSTS, budget=mean_latency / 1.01, name="over.json")

    ok = invoke("evaluate", split, under)
    assert ok.exit_code == 0, ok.stderr
    assert entry_of(ok)["violation"] < 0

    bad = invoke("evaluate", split, over)
    assert bad.exit_code == 1
    rep = entry_of(bad)
    assert rep["violation"] == pytest.approx(0.01)
    assert rep["within_budget"] is False and rep["passed"] is False
    assert "FAIL" in bad.stderr

    assert invoke("evaluate", split, over, "--tolerance", "2%").exit_code == 0
    assert invoke("evaluate", split, over, "--tolerance", "0.02").exit_code == 0
    assert invoke("evaluate", split, over, "--tolerance", "0.5%").exit_code == 1
    assert entry_of(invoke("evaluate", split, over, "--tolerance", "2%"))["tolerance"] == 0.02


def test_budget_exactly_met_passes(split, thresholds_json, mean_latency):
    exact = thresholds_json(THRESHOLDS, COSTS, budget=mean_latency)
    result = invoke("evaluate", split, exact)
    assert result.exit_code == 0
    assert entry_of(result)["violation"] == 0.0


def test_gate_on_min_accuracy(split, thresholds_json, data):
    acc = expected_replay(data).accuracy
    thr = thresholds_json(THRESHOLDS, COSTS, budget=100.0)
    assert invoke("evaluate", split, thr, "--min-accuracy", acc).exit_code == 0
    assert invoke("evaluate", split, thr, "--min-accuracy", f"{100 * acc - 1}%").exit_code == 0
    low = invoke("evaluate", split, thr, "--min-accuracy", acc + 0.01)
    assert low.exit_code == 1
    rep = entry_of(low)
    assert rep["accuracy_ok"] is False and rep["within_budget"] is True
    assert rep["min_accuracy"] == pytest.approx(acc + 0.01)


def test_no_budget_means_no_violation(split, thresholds_json):
    result = invoke("evaluate", split, thresholds_json(THRESHOLDS, COSTS, budget=None))
    assert result.exit_code == 0
    rep = entry_of(result)
    assert rep["budget"] is None and rep["violation"] is None


def test_budget_override_in_percent_and_absolute(split, thresholds_json, mean_latency):
    thr = thresholds_json(THRESHOLDS, COSTS, budget=100.0)
    rep = entry_of(invoke("evaluate", split, thr, "--budget", "60%"))
    assert rep["budget"] == pytest.approx(0.6 * COSTS[-1])
    assert rep["violation"] == pytest.approx((mean_latency - 2.4) / 2.4)
    rep = entry_of(invoke("evaluate", split, thr, "--budget", "1.5"))
    assert rep["budget"] == 1.5
    below = invoke("evaluate", split, thr, "--budget", mean_latency * 0.9)
    assert below.exit_code == 1


def test_latency_override(split, thresholds_json, latency_json, data):
    thr = thresholds_json(THRESHOLDS, COSTS, budget=None)
    measured = [0.5, 0.75, 3.0]
    lat = latency_json(measured, unit="s", name="measured.json")
    rep = entry_of(invoke("evaluate", split, thr, "--latency", lat, "--budget", "50%"))
    exp = expected_replay(data, costs=measured)
    assert rep["mean_latency"] == pytest.approx(exp.mean_latency)
    assert rep["unit"] == "s"
    assert rep["budget"] == pytest.approx(1.5)
    assert [row["latency"] for row in rep["per_exit"]] == measured


def test_output_file(split, thresholds_json, tmp_path):
    thr = thresholds_json(THRESHOLDS, COSTS, budget=10.0)
    out = tmp_path / "report.json"
    result = invoke("evaluate", split, thr, "-o", out)
    assert result.exit_code == 0
    assert result.stdout == ""  # the report went to the file
    written = json.loads(out.read_text())
    assert written["format"] == "eexit.evaluation/v2"
    both = invoke("evaluate", split, thr, "-o", out, "--json")
    assert json.loads(both.stdout) == json.loads(out.read_text()) == written
    dash = invoke("evaluate", split, thr, "-o", "-")
    assert json.loads(dash.stdout) == written
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_output_file_is_written_when_the_gate_fails(split, thresholds_json, tmp_path, mean_latency):
    out = tmp_path / "report.json"
    result = invoke("evaluate", split, thresholds_json(THRESHOLDS, COSTS, budget=mean_latency / 2), "-o", out)
    assert result.exit_code == 1
    assert json.loads(out.read_text())["passed"] is False


def test_quiet_keeps_only_the_verdict(split, thresholds_json, mean_latency):
    thr = thresholds_json(THRESHOLDS, COSTS, budget=mean_latency / 2)
    for args in (("--quiet", "evaluate"), ("evaluate", "--quiet"), ("-q", "evaluate")):
        result = invoke(*args, split, thr)
        assert result.exit_code == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("FAIL: 1 of 1 set(s); mean latency")
        assert "+100.00% over budget" in lines[0]
        entry_of(result)
    ok = invoke("-q", "evaluate", split, thresholds_json(THRESHOLDS, COSTS, budget=9.0, name="ok.json"))
    assert ok.exit_code == 0 and ok.stderr.splitlines() == ["PASS: 1 threshold set(s) within budget"]


def test_tuning_record_is_reported(split, thresholds_json):
    tuning = {"method": "ippp", "seconds": 0.1, "accuracy": 0.8, "mean_latency": 1.9}
    rep = entry_of(invoke("evaluate", split, thresholds_json(THRESHOLDS, COSTS, budget=3.0, tuning=tuning)))
    assert rep["method"] == "ippp"
    assert rep["tuning_accuracy"] == 0.8
    assert rep["tuning_mean_latency"] == 1.9


def test_frontier_gives_one_row_per_entry(split, frontier_json, data):
    sets = [([0.9, 0.9], 3.5), ([0.7, 0.6], 3.0), ([0.3, 0.3], 1.0)]
    entries = [thresholds_dict(t, COSTS, budget=b) for t, b in sets]
    result = invoke("evaluate", split, frontier_json(entries))
    rep = report_of(result)
    assert len(rep["entries"]) == 3
    verdicts = []
    for row, (t, b) in zip(rep["entries"], sets):
        exp = expected_replay(data, t)
        assert row["thresholds"] == t
        assert row["budget"] == b
        assert row["accuracy"] == pytest.approx(exp.accuracy)
        assert row["mean_latency"] == pytest.approx(exp.mean_latency)
        assert_allclose([e["fraction"] for e in row["per_exit"]], exp.fraction)
        verdicts.append(exp.mean_latency <= b)
    assert [row["passed"] for row in rep["entries"]] == verdicts
    assert rep["passed"] is all(verdicts)
    assert result.exit_code == (0 if all(verdicts) else 1)
    passing = [e for e, ok in zip(entries, verdicts) if ok]
    assert invoke("evaluate", split, frontier_json(passing, name="ok.json")).exit_code == 0


@pytest.mark.parametrize("model, thresholds", [("scan", [0.9, 0.85, 0.8, 0.75]), ("msd", [0.8, 0.7, 0.6, 0.5])])
def test_refdata_through_the_command_line(refdata, json_file, model, thresholds):
    from eexit_cli.io.exits import read_exits

    latency = json.loads((refdata / f"{model}_latency.json").read_text())
    split = refdata / f"{model}_test.h5"
    thr = json_file("thr.json", {"format": "eexit.thresholds/v1", "confidence": "max_softmax",
                                 "thresholds": thresholds, "budget": None, "latency": latency})
    rep = entry_of(invoke("evaluate", split, thr, "--budget", "60%"))
    out = read_exits(split)
    exp = replay(out.scores, out.correct, thresholds, latency["per_exit"])
    assert rep["accuracy"] == exp.accuracy
    # the report's mean is the exact per-sample mean rounded once
    exact = sum(Fraction(latency["per_exit"][i]) for i in exp.exit_index) / len(exp.exit_index)
    assert rep["mean_latency"] == float(exact)
    assert rep["mean_latency"] == pytest.approx(exp.mean_latency, rel=1e-14)
    assert rep["unit"] == latency["unit"]
    assert rep["budget"] == pytest.approx(0.6 * latency["per_exit"][-1])
    assert [e["count"] for e in rep["per_exit"]] == np.bincount(exp.exit_index, minlength=5).tolist()


# ---------------------------------------------------------------------------
# Unusable inputs: exit 2, one line naming the culprit, nothing written
# ---------------------------------------------------------------------------


class Inputs:
    """Good inputs, and writers of bad ones, for one test's tmp_path."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.data = make_exit_data(seed=1, n_exits=3, n_samples=20, n_classes=5)
        self.split = write_exits(tmp_path / "good.h5", self.data)
        self.good = thresholds_dict(THRESHOLDS, COSTS, budget=10.0)
        self.thresholds = self.json(self.good, "good.json")

    def h5(self, attrs=None, **datasets):
        return write_h5(self.tmp / "bad.h5", attrs, **datasets)

    def json(self, obj, name="bad.json"):
        path = self.tmp / name
        if isinstance(obj, bytes):
            path.write_bytes(obj)
        else:
            path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def good_with(self, **changes):
        out = json.loads(json.dumps(self.good))
        for key, value in changes.items():
            if value is DROP:
                del out[key]
            else:
                out[key] = value
        return out

    def latency_with(self, **changes):
        out = self.good_with()
        lat = out["latency"]
        for key, value in changes.items():
            if value is DROP:
                del lat[key]
            else:
                lat[key] = value
        return out


DROP = object()
BAD = {}


def bad(fn):
    BAD[fn.__name__] = fn
    return fn


# Each case returns (arguments after "evaluate", words the error line must contain).

# -- the HDF5 file itself


@bad
def split_not_hdf5(k):
    path = k.tmp / "bad.h5"
    path.write_text("accuracy,latency\n0.9,1.0\n")
    return [path, k.thresholds], ["bad.h5", "HDF5"]


@bad
def split_truncated(k):
    whole = k.split.read_bytes()
    path = k.tmp / "bad.h5"
    path.write_bytes(whole[: len(whole) // 2])
    return [path, k.thresholds], ["bad.h5", "truncated"]


@bad
def split_missing(k):
    return [k.tmp / "absent.h5", k.thresholds], ["absent.h5", "not found"]


@bad
def split_is_a_folder(k):
    return [k.tmp, k.thresholds], [k.tmp.name]


@bad
def wrong_format_attribute(k):
    return [k.h5({"format": "other/v2"}, logits=k.data.logits, labels=k.data.labels), k.thresholds], [
        "bad.h5", "format", "other/v2"]


# -- datasets missing, ambiguous, misshapen


@bad
def no_output_dataset(k):
    return [k.h5(labels=k.data.labels), k.thresholds], ["bad.h5", "/logits, /probs or /scores"]


@bad
def missing_labels(k):
    return [k.h5(logits=k.data.logits), k.thresholds], ["bad.h5", "/labels"]


@bad
def missing_correct(k):
    return [k.h5(scores=k.data.scores()), k.thresholds], ["bad.h5", "/correct"]


@bad
def ambiguous_logits_and_probs(k):
    return [k.h5(logits=k.data.logits, probs=k.data.probs, labels=k.data.labels), k.thresholds], [
        "bad.h5", "/logits and /probs"]


@bad
def ambiguous_logits_and_scores(k):
    d = k.data
    return [k.h5(logits=d.logits, scores=d.scores(), correct=d.correct, labels=d.labels), k.thresholds], [
        "bad.h5", "/logits and /scores"]


@bad
def logits_rank_2(k):
    return [k.h5(logits=k.data.logits[0], labels=k.data.labels), k.thresholds], ["bad.h5", "/logits", "shape"]


@bad
def logits_rank_4(k):
    return [k.h5(logits=k.data.logits[None], labels=k.data.labels), k.thresholds], ["bad.h5", "/logits", "shape"]


@bad
def probs_rank_2(k):
    return [k.h5(probs=k.data.probs[:, :, 0], labels=k.data.labels), k.thresholds], ["bad.h5", "/probs", "shape"]


@bad
def scores_rank_1(k):
    return [k.h5(scores=k.data.scores()[0], correct=k.data.correct[0]), k.thresholds], [
        "bad.h5", "/scores", "shape"]


@bad
def scores_rank_3(k):
    return [k.h5(scores=k.data.probs, correct=k.data.probs > 0.5), k.thresholds], ["bad.h5", "/scores", "shape"]


@bad
def labels_rank_2(k):
    return [k.h5(logits=k.data.logits, labels=k.data.labels[None]), k.thresholds], ["bad.h5", "/labels", "shape"]


@bad
def labels_not_integers(k):
    return [k.h5(logits=k.data.logits, labels=k.data.labels.astype(float)), k.thresholds], [
        "bad.h5", "/labels", "integers"]


@bad
def logits_not_float(k):
    return [k.h5(logits=k.data.logits.astype(np.int32), labels=k.data.labels), k.thresholds], [
        "bad.h5", "/logits", "floating"]


@bad
def correct_not_binary(k):
    return [k.h5(scores=k.data.scores(), correct=2 * k.data.correct.astype(np.uint8)), k.thresholds], [
        "bad.h5", "/correct", "0 and 1"]


@bad
def one_exit_only(k):
    return [k.h5(logits=k.data.logits[:1], labels=k.data.labels), k.thresholds], ["bad.h5", "/logits", "exit"]


@bad
def one_class_only(k):
    return [k.h5(logits=k.data.logits[:, :, :1], labels=0 * k.data.labels), k.thresholds], [
        "bad.h5", "/logits", "class"]


# -- N and M disagreeing


@bad
def labels_m_disagrees(k):
    return [k.h5(logits=k.data.logits, labels=k.data.labels[:-1]), k.thresholds], ["bad.h5", "/labels", "M disagrees"]


@bad
def correct_m_disagrees(k):
    return [k.h5(scores=k.data.scores(), correct=k.data.correct[:, :-1]), k.thresholds], ["bad.h5", "/correct"]


@bad
def correct_n_disagrees(k):
    return [k.h5(scores=k.data.scores(), correct=k.data.correct[:2]), k.thresholds], ["bad.h5", "/correct"]


@bad
def split_n_disagrees_with_thresholds(k):
    return [k.h5(logits=k.data.logits[:2], labels=k.data.labels), k.thresholds], ["bad.h5", "N disagrees"]


@bad
def thresholds_n_disagree_with_their_latency(k):
    return [k.split, k.json(k.good_with(thresholds=[0.5]))], ["bad.json", "N disagrees"]


@bad
def latency_override_n_disagrees(k):
    lat = k.json({"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, 3, 4]}, "lat.json")
    return [k.split, k.thresholds, "--latency", lat], ["lat.json", "N disagrees"]


@bad
def exit_names_disagree(k):
    return [k.h5({"exit_names": ["a", "b"]}, logits=k.data.logits, labels=k.data.labels), k.thresholds], [
        "bad.h5", "exit_names"]


# -- values


@bad
def label_negative(k):
    labels = k.data.labels.copy()
    labels[4] = -1
    return [k.h5(logits=k.data.logits, labels=labels), k.thresholds], ["bad.h5", "/labels[4]", "[0, 5)"]


@bad
def label_equal_to_class_count(k):
    labels = k.data.labels.copy()
    labels[-1] = 5
    return [k.h5(logits=k.data.logits, labels=labels), k.thresholds], ["bad.h5", "/labels[19]", "[0, 5)"]


def _poisoned(k, name, value, index=(1, 7, 2)):
    d = k.data
    if name == "scores":
        arr = d.scores().copy()
        arr[index[:2]] = value
        return k.h5(scores=arr, correct=d.correct)
    arr = (d.logits if name == "logits" else d.probs).copy()
    arr[index] = value
    return k.h5(**{name: arr}, labels=d.labels)


for _name in ("logits", "probs", "scores"):
    for _value in (np.nan, np.inf, -np.inf):

        def _case(k, name=_name, value=_value):
            return [_poisoned(k, name, value), k.thresholds], ["bad.h5", f"/{name}", "NaN or Inf"]

        BAD[f"{_name}_with_{str(_value).replace('-', 'minus_')}"] = _case


@bad
def float16_logits_with_inf(k):
    logits = k.data.logits.astype(np.float16)
    logits[0, 0, 0] = np.inf
    return [k.h5(logits=logits, labels=k.data.labels), k.thresholds], ["bad.h5", "/logits", "NaN or Inf"]


@bad
def probs_not_summing_to_one(k):
    return [k.h5(probs=0.5 * k.data.probs, labels=k.data.labels), k.thresholds], ["bad.h5", "/probs", "sums to"]


@bad
def probs_outside_unit_interval(k):
    return [k.h5(probs=k.data.logits, labels=k.data.labels), k.thresholds], ["bad.h5", "/probs"]


@bad
def empty_split_logits(k):
    return [k.h5(logits=k.data.logits[:, :0], labels=k.data.labels[:0]), k.thresholds], ["bad.h5", "empty"]


@bad
def empty_split_scores(k):
    return [k.h5(scores=np.zeros((3, 0)), correct=np.zeros((3, 0), np.uint8)), k.thresholds], ["bad.h5", "empty"]


@bad
def measure_not_in_scores_file(k):
    d = k.data
    split = k.h5({"confidence": "max_softmax"}, scores=d.scores(), correct=d.correct)
    return [split, k.json(k.good_with(confidence="entropy"))], ["bad.h5", "'entropy'"]


@bad
def unknown_measure(k):
    return [k.split, k.json(k.good_with(confidence="certainty"))], ["good.h5", "'certainty'"]


# -- JSON files


@bad
def thresholds_missing(k):
    return [k.split, k.tmp / "absent.json"], ["absent.json", "not found"]


@bad
def thresholds_not_json(k):
    return [k.split, k.json('{"format": "eexit.thresholds/v1", ')], ["bad.json", "not valid JSON"]


@bad
def thresholds_not_text(k):
    return [k.split, k.json(b"\x89HDF\r\n\x1a\n\xff\xfe")], ["bad.json", "UTF-8"]


@bad
def thresholds_not_an_object(k):
    return [k.split, k.json([0.5, 0.5])], ["bad.json", "object"]


@bad
def thresholds_empty_file(k):
    return [k.split, k.json("")], ["bad.json", "JSON"]


@bad
def thresholds_wrong_format(k):
    return [k.split, k.json(k.good_with(format="eexit.thresholds/v0"))], ["bad.json", "eexit.thresholds/v0"]


@bad
def thresholds_given_a_latency_file(k):
    return [k.split, k.json(k.good["latency"])], ["bad.json", "eexit.latency/v1"]


@bad
def latency_given_a_thresholds_file(k):
    return [k.split, k.thresholds, "--latency", k.thresholds], ["good.json", "format"]


for _key in ("format", "confidence", "thresholds", "budget", "latency"):
    BAD[f"thresholds_missing_{_key}"] = (
        lambda k, key=_key: ([k.split, k.json(k.good_with(**{key: DROP}))], ["bad.json", f"'{key}'"])
    )

for _key in ("format", "unit", "per_exit"):
    BAD[f"latency_missing_{_key}"] = (
        lambda k, key=_key: ([k.split, k.json(k.latency_with(**{key: DROP}))], ["bad.json", f"'{key}'"])
    )


@bad
def override_latency_missing_unit(k):
    lat = k.json({"format": "eexit.latency/v1", "per_exit": [1, 2, 3]}, "lat.json")
    return [k.split, k.thresholds, "--latency", lat], ["lat.json", "'unit'"]


@bad
def override_latency_not_json(k):
    return [k.split, k.thresholds, "--latency", k.json("per_exit: [1, 2, 3]", "lat.json")], ["lat.json", "JSON"]


@bad
def threshold_not_a_number(k):
    return [k.split, k.json(k.good_with(thresholds=["high", 0.5]))], ["bad.json", "thresholds[0]"]


@bad
def threshold_nan(k):
    text = json.dumps(k.good).replace("0.7", "NaN")
    return [k.split, k.json(text)], ["bad.json", "thresholds[0]"]


@bad
def budget_negative_in_file(k):
    return [k.split, k.json(k.good_with(budget=-1.0))], ["bad.json", "budget"]


@bad
def frontier_without_entries(k):
    return [k.split, k.json({"format": "eexit.frontier/v1"})], ["bad.json", "'entries'"]


@bad
def frontier_with_no_entries(k):
    return [k.split, k.json({"format": "eexit.frontier/v1", "entries": []})], ["bad.json", "entries"]


@bad
def frontier_with_a_bad_entry(k):
    entries = [k.good, k.good_with(format="nope")]
    return [k.split, k.json({"format": "eexit.frontier/v1", "entries": entries})], ["bad.json", "entries[1]"]


@bad
def frontier_budget_override(k):
    frontier = k.json({"format": "eexit.frontier/v1", "entries": [k.good, k.good]})
    return [k.split, frontier, "--budget", "2"], ["--budget"]


# -- costs not positive / finite


for _label, _costs in (("zero", "[0, 2, 4]"), ("negative", "[1, -2, 4]"), ("infinite", "[1, 2, Infinity]"),
                       ("nan", "[NaN, 2, 4]"), ("string", '[1, "2ms", 4]'), ("too_few", "[1]")):

    def _cost_case(k, costs=_costs):
        text = json.dumps(k.good).replace('"per_exit": [1.0, 2.0, 4.0]', f'"per_exit": {costs}')
        assert text != json.dumps(k.good)
        return [k.split, k.json(text)], ["bad.json", "per_exit" if "[1]" == costs else "latency"]

    def _override_case(k, costs=_costs):
        lat = k.json(f'{{"format": "eexit.latency/v1", "unit": "ms", "per_exit": {costs}}}', "lat.json")
        return [k.split, k.thresholds, "--latency", lat], ["lat.json"]

    BAD[f"costs_{_label}_in_thresholds"] = _cost_case
    BAD[f"costs_{_label}_in_latency_override"] = _override_case


# -- options


for _budget in ("abc", "60", "-5", "0", "0%", "inf", "nan", "60 percent", "1e999"):
    if _budget == "60":
        continue  # a valid budget
    BAD[f"budget_{_budget}"] = lambda k, b=_budget: ([k.split, k.thresholds, "--budget", b], ["--budget"])

for _tol in ("abc", "-1%", "nan"):
    BAD[f"tolerance_{_tol}"] = lambda k, t=_tol: ([k.split, k.thresholds, "--tolerance", t], ["--tolerance"])

for _acc in ("high", "2", "150%", "-0.1"):
    BAD[f"min_accuracy_{_acc}"] = lambda k, a=_acc: ([k.split, k.thresholds, "--min-accuracy", a], ["--min-accuracy"])


@bad
def unknown_option(k):
    return [k.split, k.thresholds, "--fast"], ["--fast"]


@bad
def misspelt_option(k):
    return [k.split, k.thresholds, "--tolerence", "1%"], ["--tolerence"]


@bad
def missing_argument(k):
    return [k.split], ["THRESHOLDS"]


@bad
def extra_argument(k):
    return [k.split, k.thresholds, k.split], ["good.h5"]


@bad
def option_without_value(k):
    return [k.split, k.thresholds, "--budget"], ["--budget"]


def assert_one_line_error(result, needles):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(r"^eexit( \w+)?: error: ", lines[0])
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(tmp_path, case):
    k = Inputs(tmp_path)
    args, needles = BAD[case](k)
    fresh = tmp_path / "out" / "new.json"
    fresh.parent.mkdir()
    result = invoke("evaluate", "-o", fresh, *args)
    assert_one_line_error(result, needles)
    assert not fresh.exists()

    previous = tmp_path / "out" / "previous.json"
    previous.write_text('{"kept": true}\n')
    result = invoke("evaluate", "-o", previous, *args)
    assert_one_line_error(result, needles)
    assert previous.read_text() == '{"kept": true}\n'
    assert [p.name for p in previous.parent.iterdir()] == ["previous.json"]


def test_bad_input_cases_are_many():
    # guards against a loop above silently registering nothing
    assert len(BAD) > 90


def test_output_into_missing_folder(tmp_path):
    k = Inputs(tmp_path)
    result = invoke("evaluate", k.split, k.thresholds, "-o", tmp_path / "nowhere" / "r.json")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert "nowhere" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_debug_shows_the_exception(tmp_path):
    k = Inputs(tmp_path)
    result = invoke("--debug", "evaluate", k.split, k.tmp / "absent.json")
    # the traceback, then the same line and the same documented exit code as without --debug
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "InputError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("eexit evaluate: error: ")
    assert "absent.json" in result.stderr.splitlines()[-1]
