"""`eexit tune` through the CLI: output format, budgets, frontiers and bad input."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from eexit_cli.cli.main import cli
from eexit_cli.core.replay import replay
from eexit_cli.io.exits import read_exits

from conftest import one_error_line

COSTS = [1.0, 2.0, 3.5, 5.0]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def val(exits_file, exit_data):
    return exits_file("logits", exit_data(seed=3, n_exits=4, n_samples=400, n_classes=6), name="val.h5")


def run(runner, args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("method", ["ippp", "heuristic", "single"])
def test_tune_writes_thresholds_that_hold_the_budget(runner, val, latency_json, tmp_path, method):
    lat = latency_json(COSTS, unit="ms")
    out = tmp_path / "t.json"
    r = run(runner, ["tune", val, "--latency", lat, "--budget", "55%", "--method", method, "-o", out])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "eexit.thresholds/v1"
    assert doc["confidence"] == "max_softmax"
    assert len(doc["thresholds"]) == 3
    assert doc["budget"] == pytest.approx(0.55 * 5.0)
    assert doc["latency"]["per_exit"] == COSTS and doc["latency"]["unit"] == "ms"
    tuning = doc["tuning"]
    for key in ("method", "seconds", "accuracy", "mean_latency"):
        assert key in tuning
    assert tuning["method"] == method
    outputs = read_exits(val)
    hard = replay(outputs.scores, outputs.correct, doc["thresholds"], COSTS)
    assert hard.mean_latency <= doc["budget"] + 1e-12
    assert tuning["accuracy"] == pytest.approx(hard.accuracy, abs=0)
    assert tuning["mean_latency"] == pytest.approx(hard.mean_latency, rel=1e-12)


def test_tune_then_evaluate_on_the_same_split_agree(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS)
    out = tmp_path / "t.json"
    assert run(runner, ["tune", val, "--latency", lat, "--budget", "3.0", "-o", out]).exit_code == 0
    r = run(runner, ["evaluate", val, out, "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)["entries"][0]
    tuned = json.loads(out.read_text())["tuning"]
    assert ev["accuracy"] == tuned["accuracy"]
    assert ev["mean_latency"] == tuned["mean_latency"]  # computed the same way, to the bit
    assert ev["violation"] <= 0


def test_costs_option_stands_in_for_a_profile(runner, val):
    r = run(runner, ["tune", val, "--costs", "1,2,3.5,5", "--unit", "GFLOPs", "--budget", "2.5"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["latency"]["unit"] == "GFLOPs" and doc["latency"]["per_exit"] == COSTS


def test_stdout_json_is_clean_even_with_notes(runner, val):
    # a budget above d_N: a note goes to stderr, stdout stays parseable JSON
    r = run(runner, ["tune", val, "--costs", "1,2,3.5,5", "--budget", "9"])
    assert r.exit_code == 0, r.output
    json.loads(r.stdout)


def test_frontier_sweep_and_evaluate(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS)
    out = tmp_path / "f.json"
    r = run(runner, ["tune", val, "--latency", lat, "--budget", "40%..80%:5", "--budget", "3.1", "-o", out])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["format"] == "eexit.frontier/v1"
    budgets = [e["budget"] for e in doc["entries"]]
    assert budgets == sorted(budgets) and len(budgets) == 6
    assert budgets[0] == pytest.approx(2.0) and budgets[-1] == pytest.approx(4.0)
    for e in doc["entries"]:
        assert e["tuning"]["mean_latency"] <= e["budget"] + 1e-12
    r = run(runner, ["evaluate", val, out, "--json"])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert len(ev["entries"]) == 6
    assert [x["budget"] for x in ev["entries"]] == budgets


def test_budget_below_fastest_exit_is_infeasible(runner, val, latency_json, tmp_path):
    out = tmp_path / "t.json"
    r = run(runner, ["tune", val, "--latency", latency_json(COSTS), "--budget", "0.5", "-o", out])
    assert r.exit_code == 3
    line = one_error_line(r)
    assert "1" in line and ("smallest" in line or "below" in line)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--costs", "1,2,3"], "N disagrees"),
        (["--costs", "1,2,x,4"], "--costs"),
        (["--costs", "1,2,0,4"], "positive"),
        (["--costs", "1,2,3,4", "--k", "-1"], "--k"),
        (["--costs", "1,2,3,4", "--T", "0"], "--T"),
        (["--costs", "1,2,3,4", "--beta", "0"], "--beta"),
        (["--costs", "1,2,3,4", "--guarantee", "150%"], "--guarantee"),
        (["--costs", "1,2,3,4", "--budget", "fast"], "--budget"),
        ([], "--latency"),
    ],
)
def test_bad_options_one_line_exit_2_nothing_written(runner, val, tmp_path, args, needle):
    out = tmp_path / "t.json"
    out.write_text("previous content")
    extra = [] if "--budget" in args else ["--budget", "2.5"]
    r = run(runner, ["tune", val, *args, *extra, "-o", out])
    assert r.exit_code == 2, r.output
    assert needle in one_error_line(r)
    assert out.read_text() == "previous content"


def test_latency_and_costs_together_is_a_usage_error(runner, val, latency_json):
    r = run(runner, ["tune", val, "--latency", latency_json(COSTS), "--costs", "1,2,3,4", "--budget", "2"])
    assert r.exit_code == 2
    assert "exactly one" in one_error_line(r)


def test_split_too_small_to_tune(runner, exits_file, exit_data):
    small = exits_file("logits", exit_data(seed=1, n_exits=4, n_samples=12), name="small.h5")
    r = run(runner, ["tune", small, "--costs", "1,2,3,4", "--budget", "2"])
    assert r.exit_code == 2
    assert "too few" in one_error_line(r)


def test_non_increasing_costs_warn_but_tune(runner, val):
    r = run(runner, ["tune", val, "--costs", "1,3,2,4", "--budget", "2.5"])
    assert r.exit_code == 0, r.output
    assert "warning" in r.stderr and "increase" in r.stderr
    json.loads(r.stdout)


def test_scores_file_brings_its_own_measure(runner, exits_file, exit_data):
    path = exits_file("scores", exit_data(seed=5, n_exits=4, n_samples=300), measure="entropy")
    r = run(runner, ["tune", path, "--costs", "1,2,3,4", "--budget", "2.2"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["confidence"] == "entropy"
    r = run(runner, ["tune", path, "--costs", "1,2,3,4", "--budget", "2.2", "--confidence", "margin"])
    assert r.exit_code == 2
    assert "margin" in one_error_line(r)


def test_refdata_latency_file_feeds_tune_and_evaluate(runner, refdata, tmp_path):
    out = tmp_path / "t.json"
    r = run(runner, ["tune", refdata / "scan_val.h5", "--latency", refdata / "scan_latency.json",
                     "--budget", "0.5", "-o", out])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["tuning"]["mean_latency"] <= 0.5
    r = run(runner, ["evaluate", refdata / "scan_test.h5", out, "--json", "--tolerance", "5%"])
    assert r.exit_code in (0, 1)
    ev = json.loads(r.stdout)
    assert abs(ev["violation"]) < 0.05


def test_guarantee_records_the_certificate_and_evaluate_reports_it(runner, exits_file, exit_data, tmp_path):
    val = exits_file("logits", exit_data(seed=11, n_exits=3, n_samples=3000, n_classes=4), name="big.h5")
    out = tmp_path / "g.json"
    r = run(runner, ["tune", val, "--costs", "1,2,3", "--budget", "2.2", "--guarantee", "90%",
                     "--seed", "7", "-o", out])
    assert r.exit_code == 0, r.output
    g = json.loads(out.read_text())["tuning"]["guarantee"]
    assert g["level"] == pytest.approx(0.9)
    assert g["seed"] == 7
    assert g["tuning_size"] + g["calibration_size"] == 3000
    assert g["upper_bound"] <= 2.2
    assert g["internal_budget"] <= 2.2
    assert g["bound"]
    r = run(runner, ["evaluate", val, out, "--json"])
    ev = json.loads(r.stdout)["entries"][0]
    assert ev["certified"]["upper_bound"] == g["upper_bound"]
    assert ev["certified"]["level"] == pytest.approx(0.9)


def test_guarantee_that_cannot_be_certified_fails_clearly(runner, val, tmp_path):
    out = tmp_path / "g.json"
    # 400 samples, a budget a hair above the fastest exit: no candidate can be certified
    r = run(runner, ["tune", val, "--costs", "1,2,3.5,5", "--budget", "1.01", "--guarantee", "99%", "-o", out])
    assert r.exit_code == 3, r.output
    line = one_error_line(r)
    assert "budget" in line
    assert not out.exists()


def test_evaluate_compares_several_files_and_plots_them(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS)
    files = []
    for method in ("ippp", "heuristic"):
        out = tmp_path / f"{method}.json"
        r = run(runner, ["tune", val, "--latency", lat, "--budget", "40%..70%:3", "--method", method, "-o", out])
        assert r.exit_code == 0, r.output
        files.append(out)
    png = tmp_path / "cmp.png"
    r = run(runner, ["evaluate", val, *files, "--json", "--plot", png])
    assert r.exit_code == 0, r.output
    ev = json.loads(r.stdout)
    assert [e["method"] for e in ev["entries"]] == ["ippp"] * 3 + ["heuristic"] * 3
    assert [e["thresholds_file"] for e in ev["entries"]] == [str(files[0])] * 3 + [str(files[1])] * 3
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a budget override is refused for frontiers, whose entries each have their own budget
    r = run(runner, ["evaluate", val, *files, "--budget", "3"])
    assert r.exit_code == 2 and "--budget" in one_error_line(r)


def test_frontier_entries_match_separate_runs(runner, val, latency_json, tmp_path):
    """Entries are warm-started from their neighbour, so they may differ from separate runs
    only by that start's effect on the local optimum: a fraction of a point here."""
    lat = latency_json(COSTS)
    front = tmp_path / "f.json"
    assert run(runner, ["tune", val, "--latency", lat, "--budget", "40%..80%:4", "-o", front]).exit_code == 0
    for entry in json.loads(front.read_text())["entries"]:
        r = run(runner, ["tune", val, "--latency", lat, "--budget", repr(entry["budget"])])
        single = json.loads(r.stdout)
        assert single["budget"] == entry["budget"]
        # at most one sample of the 200 answered differently
        assert abs(single["tuning"]["accuracy"] - entry["tuning"]["accuracy"]) * 200 <= 1 + 1e-9
        assert entry["tuning"]["mean_latency"] <= entry["budget"] + 1e-12
