"""The CLI for tail budgets, accuracy targets and `eexit info`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from eexit_cli.cli.main import cli
from eexit_cli.core.info import split_info, suggested_sweep
from eexit_cli.core.replay import replay
from eexit_cli.core.tail import TailBudget
from eexit_cli.core.tuner import tune
from eexit_cli.io.exits import read_exits

from conftest import one_error_line

COSTS = [1.0, 2.0, 3.5, 5.0]


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def val(exits_file, exit_data):
    return exits_file("logits", exit_data(seed=3, n_exits=4, n_samples=400, n_classes=6), name="val.h5")


@pytest.fixture
def test_split(exits_file, exit_data):
    return exits_file("logits", exit_data(seed=4, n_exits=4, n_samples=300, n_classes=6), name="test.h5")


def run(runner, args):
    return runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


# ------------------------------------------------------------------ tune --tail
@pytest.mark.parametrize("method", ["ippp", "heuristic", "single"])
@pytest.mark.parametrize("budget", [None, "60%"])
def test_tune_tail_holds_and_is_recorded(runner, val, latency_json, tmp_path, method, budget):
    lat = latency_json(COSTS, unit="ms")
    out = tmp_path / "t.json"
    args = ["tune", val, "--latency", lat, "--tail", "90%:70%", "--method", method, "-o", out]
    r = run(runner, args + ([] if budget is None else ["--budget", budget]))
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["tail"] == [{"level": 0.9, "latency": pytest.approx(3.5)}]
    outputs = read_exits(val)
    rep = replay(outputs.scores, outputs.correct, doc["thresholds"], COSTS)
    lat_m = np.asarray(COSTS)[rep.exit_index]
    assert TailBudget(0.9, 3.5).holds(lat_m)
    if budget is not None:
        assert rep.mean_latency <= 0.6 * 5.0
    (rec,) = doc["tuning"]["tail"]
    assert rec["over"] == int(np.sum(lat_m > 3.5)) <= rec["allowed"] == 40


def test_evaluate_gates_on_the_stored_tail_and_on_tail_option(runner, val, test_split, latency_json, tmp_path):
    lat = latency_json(COSTS, unit="ms")
    out = tmp_path / "t.json"
    assert run(runner, ["tune", val, "--latency", lat, "--tail", "90%:70%", "-o", out]).exit_code == 0
    r = run(runner, ["evaluate", test_split, out, "--json"])
    doc = json.loads(r.stdout)
    entry = doc["entries"][0]
    assert set(entry["latency_quantiles"]) == {"p50", "p90", "p95", "p99"}
    (t,) = entry["tail"]
    assert t["level"] == 0.9 and t["latency"] == pytest.approx(3.5)
    assert r.exit_code == (0 if t["within"] else 1)
    assert doc["tail_ok"] is t["within"]
    # a tail budget below the p99 fails the gate, and the verdict says why
    p99 = entry["latency_quantiles"]["p99"]
    r = run(runner, ["evaluate", test_split, out, "--json", "--tail", f"99%:{p99 * 0.99}"])
    assert r.exit_code == 1
    assert "p99 latency" in r.stderr and "FAIL" in r.stderr
    r = run(runner, ["evaluate", test_split, out, "--json", "--tail", f"99%:{p99}"])
    assert json.loads(r.stdout)["entries"][0]["tail"][0]["within"] is True


@pytest.mark.parametrize("args, match", [
    (["--tail", "95%"], "not P:X"),
    (["--tail", "100%:50%"], "strictly between"),
    (["--tail", "95%:abc"], "tail latency"),
    (["--min-accuracy", "97"], "above 1"),
    (["--min-accuracy", "120%"], "at most 1"),
    (["--max-drop", "2"], "above 1"),
    (["--min-accuracy", "0.9", "--max-drop", "1%"], "not both"),
    (["--min-accuracy", "0.9", "--budget", "50%"], "take no --budget"),
    ([], "give what to tune for"),
])
def test_bad_target_options_one_line_exit_2(runner, val, latency_json, args, match):
    lat = latency_json(COSTS, unit="ms")
    r = run(runner, ["tune", val, "--latency", lat, *args])
    assert r.exit_code == 2
    assert match in one_error_line(r)


# ---------------------------------------------------------- accuracy targets
def test_min_accuracy_and_max_drop(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS, unit="ms")
    outputs = read_exits(val)
    last = float(outputs.correct[-1].mean())
    out = tmp_path / "fast.json"
    r = run(runner, ["tune", val, "--latency", lat, "--max-drop", "2%", "-o", out])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    rep = replay(outputs.scores, outputs.correct, doc["thresholds"], COSTS)
    assert doc["budget"] is None
    assert doc["min_accuracy"] == pytest.approx(last - 0.02)
    assert rep.accuracy >= last - 0.02 - 1e-12
    # the same target given as --min-accuracy gives the same thresholds
    out2 = tmp_path / "fast2.json"
    r = run(runner, ["tune", val, "--latency", lat, "--min-accuracy", repr(last - 0.02), "-o", out2])
    assert json.loads(out2.read_text())["thresholds"] == doc["thresholds"]
    # an unreachable target: exit 3 naming the best accuracy found
    r = run(runner, ["tune", val, "--latency", lat, "--min-accuracy", "100%"])
    assert r.exit_code == 3
    assert "best accuracy found" in one_error_line(r)


def test_min_accuracy_with_tail_and_guarantee(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS, unit="ms")
    out = tmp_path / "g.json"
    r = run(runner, ["tune", val, "--latency", lat, "--tail", "80%:70%", "--guarantee", "80%",
                     "-o", out])
    assert r.exit_code in (0, 3), r.output
    if r.exit_code == 0:
        g = json.loads(out.read_text())["tuning"]["guarantee"]
        (req,) = g["requirements"]
        assert req["name"] == "tail_p80" and req["upper_bound"] <= 0.2 + 1e-12


# ---------------------------------------------------------------------- info
def test_info_oracle_and_per_exit_against_plain_loops():
    rng = np.random.default_rng(0)
    scores = rng.random((4, 250))
    correct = rng.random((4, 250)) < np.array([0.5, 0.6, 0.7, 0.8])[:, None]
    costs = np.array(COSTS)
    info = split_info(scores, correct, costs, tune_fn=lambda b: tune(scores, correct, costs, b))
    hits = lat = 0.0
    for m in range(250):
        n = next((i for i in range(4) if correct[i, m]), 3)
        hits += correct[n, m]
        lat += costs[n]
    assert info["oracle"]["accuracy"] == pytest.approx(hits / 250)
    assert info["oracle"]["mean_latency"] == pytest.approx(lat / 250)
    assert [p["accuracy"] for p in info["per_exit"]] == pytest.approx(correct.mean(axis=1))
    b = info["budgets"]
    assert b["smallest"] == 1.0
    top = tune(scores, correct, costs, 5.0)
    assert b["largest"] == pytest.approx(top.mean_latency) and b["best_accuracy"] == top.accuracy
    # above the largest useful budget accuracy no longer grows
    assert tune(scores, correct, costs, b["largest"]).accuracy == top.accuracy
    assert tune(scores, correct, costs, b["largest"] * 1.1).accuracy == top.accuracy


def test_suggested_sweep_never_starts_below_the_cheapest_exit():
    costs = [0.0015825, 0.00253, 0.003047]
    for lo in (0.0015825, 0.0015826, 0.002):
        s = suggested_sweep(lo, 0.0025, costs, 10000)
        assert min(s["budgets"]) >= lo and max(s["budgets"]) >= 0.0025
        assert s["count"] == len(s["budgets"]) <= 20


def test_info_cli_suggested_sweep_gives_distinct_frontier(runner, val, latency_json, tmp_path):
    lat = latency_json(COSTS, unit="ms")
    r = run(runner, ["info", val, "--latency", lat, "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["format"] == "eexit.info/v1" and doc["unit"] == "ms"
    sweep = doc["budgets"]["suggested"]
    assert sweep["checked"] is True
    out = tmp_path / "f.json"
    r = run(runner, ["tune", val, "--latency", lat, "--budget", sweep["text"], "-o", out])
    assert r.exit_code == 0
    entries = json.loads(out.read_text())["entries"]
    keys = [(e["tuning"]["accuracy"], e["tuning"]["mean_latency"]) for e in entries]
    assert len(entries) == sweep["count"] and len(set(keys)) == len(keys)
    # without costs: exits and oracle only
    r = run(runner, ["info", val, "--json"])
    doc = json.loads(r.stdout)
    assert "budgets" not in doc and doc["unit"] is None


def test_info_on_reference_models_suggests_a_distinct_sweep(runner, refdata, tmp_path):
    # B-AlexNet only, for time; benchmarks/bench_targets.py checks every reference model
    for name in ("alex",):
        split, lat = refdata / f"{name}_val.h5", refdata / f"{name}_latency.json"
        doc = json.loads(run(runner, ["info", split, "--latency", lat, "--json"]).stdout)
        b = doc["budgets"]
        assert 0 < b["smallest_share"] < b["largest_share"] <= 1
        assert b["suggested"]["checked"] is True
        out = tmp_path / f"{name}.json"
        run(runner, ["tune", split, "--latency", lat, "--budget", b["suggested"]["text"], "-o", out])
        entries = json.loads(out.read_text())["entries"]
        keys = {(e["tuning"]["accuracy"], e["tuning"]["mean_latency"]) for e in entries}
        assert len(keys) == len(entries) == b["suggested"]["count"]


# ------------------------------------------------------------------- library
def test_library_tune_and_evaluate_take_tails_and_targets(val, test_split, tmp_path):
    import eexit_cli

    with pytest.raises(ValueError, match="take no budget"):
        eexit_cli.tune(val, COSTS, "50%", min_accuracy=0.5)
    with pytest.raises(ValueError, match="not both"):
        eexit_cli.tune(val, COSTS, min_accuracy=0.5, max_drop="1%")
    with pytest.raises(ValueError, match="give a budget, a tail budget or an accuracy target"):
        eexit_cli.tune(val, COSTS)
    tuned = eexit_cli.tune(val, COSTS, ["40%", "60%"], tail=["90%:70%"], jobs=1)
    outputs = read_exits(val)
    for entry in tuned.entries:
        rep = replay(outputs.scores, outputs.correct, entry["thresholds"], COSTS)
        assert TailBudget(0.9, 3.5).holds(np.asarray(COSTS)[rep.exit_index])
        assert rep.mean_latency <= entry["budget"]
    tuned.save(tmp_path / "f.json")
    ev = eexit_cli.evaluate(test_split, tmp_path / "f.json")
    assert all(len(e["tail"]) == 1 and e["tail"][0]["latency"] == 3.5 for e in ev.entries)
    with pytest.raises(ValueError, match="not P:X"):
        eexit_cli.evaluate(test_split, tmp_path / "f.json", tail="95%")
