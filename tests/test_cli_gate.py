"""The CI gate cannot be fooled: files that must agree are checked, options mean one
thing, and no output destroys an input. Every case goes through the command line and
checks the exit code, the one stderr line and that no file changed."""

from __future__ import annotations

import hashlib
import json
import re
import stat
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from eexit_cli.cli.main import cli
from eexit_cli.core.latency import MAX_BUDGETS

from conftest import latency_dict, make_exit_data, thresholds_dict, write_exits, write_h5

COSTS = [1.0, 2.0, 4.0]
NAMES = ["conv1", "conv2", "head"]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="eexit")


def snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def refused(result, *needles, code=2) -> str:
    """The one error line of a refused command, checked."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert re.match(r"^eexit( \w+)?: error: ", lines[0]), lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])
    return lines[0]


class Files:
    """A named split (val and test), a latency profile and a thresholds file in one folder."""

    def __init__(self, tmp: Path, names=NAMES):
        self.tmp = tmp
        self.data = make_exit_data(seed=5, n_exits=3, n_samples=300, n_classes=4)
        attrs = {"exit_names": names} if names else None
        self.val = write_exits(tmp / "val.h5", self.data, attrs=attrs)
        self.test = write_exits(tmp / "test.h5", make_exit_data(seed=6, n_exits=3, n_samples=300, n_classes=4),
                                attrs=attrs)
        extra = {"exit_names": names} if names else {}
        self.latency = self.json("lat.json", latency_dict(COSTS, "ms", **extra))

    def json(self, name, obj) -> Path:
        path = self.tmp / name
        path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def thresholds(self, name="t.json", thresholds=(0.6, 0.5), budget=3.0, unit="ms", costs=COSTS, **extra):
        return self.json(name, thresholds_dict(list(thresholds), costs, budget=budget, unit=unit, **extra))


@pytest.fixture
def f(tmp_path) -> Files:
    return Files(tmp_path)


# ---------------------------------------------------------------------------
# Exit names: same names, same order, or exit 2 naming both lists
# ---------------------------------------------------------------------------


def test_tune_refuses_a_profile_with_exits_in_another_order(f):
    lat = f.json("swapped.json", latency_dict([2.0, 1.0, 4.0], "ms", exit_names=["conv2", "conv1", "head"]))
    before = snapshot(f.tmp)
    line = refused(invoke("tune", f.val, "--latency", lat, "--budget", "60%", "-o", f.tmp / "out.json"),
                   "val.h5", "swapped.json", "[conv1, conv2, head]", "[conv2, conv1, head]",
                   "another order", "--allow-renamed-exits")
    assert "same order" in line
    assert snapshot(f.tmp) == before
    ok = invoke("tune", f.val, "--latency", lat, "--budget", "60%", "--allow-renamed-exits")
    assert ok.exit_code == 0, ok.stderr


def test_tune_records_the_names_and_evaluate_compares_them(f, tmp_path):
    out = tmp_path / "t.json"
    assert invoke("tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", out).exit_code == 0
    doc = json.loads(out.read_text())
    assert doc["exit_names"] == NAMES and doc["latency"]["exit_names"] == NAMES
    assert invoke("evaluate", f.test, out).exit_code in (0, 1)
    other = write_exits(tmp_path / "other.h5", f.data, attrs={"exit_names": ["a", "b", "c"]})
    before = snapshot(tmp_path)
    refused(invoke("evaluate", other, out), "other.h5", "t.json", "[a, b, c]", "[conv1, conv2, head]",
            "different exit names")
    assert snapshot(tmp_path) == before
    r = invoke("evaluate", other, out, "--allow-renamed-exits")
    assert r.exit_code in (0, 1) and json.loads(r.stdout)["entries"][0]["per_exit"][0]["name"] == "a"


def test_evaluate_compares_the_override_profile(f):
    thr = f.thresholds(exit_names=NAMES)
    lat = f.json("other_lat.json", latency_dict(COSTS, "ms", exit_names=["head", "conv2", "conv1"]))
    refused(invoke("evaluate", f.test, thr, "--latency", lat), "other_lat.json", "[head, conv2, conv1]")


def test_files_without_names_are_not_compared(tmp_path):
    f = Files(tmp_path, names=None)
    r = invoke("tune", f.val, "--latency", f.latency, "--budget", "60%")
    assert r.exit_code == 0, r.stderr
    assert "exit_names" not in json.loads(r.stdout)  # no names invented for the file


# ---------------------------------------------------------------------------
# Units: converted between time units, refused otherwise
# ---------------------------------------------------------------------------


def test_budget_in_ms_against_a_profile_in_seconds_is_converted(f):
    # tuned with a budget of 1.8 (ms); the same costs measured in seconds
    thr = f.thresholds(budget=1.8, unit="ms")
    lat_s = f.json("lat_s.json", latency_dict([c / 1000 for c in COSTS], "s"))
    in_ms = json.loads(invoke("evaluate", f.test, thr).stdout)
    r = invoke("evaluate", f.test, thr, "--latency", lat_s)
    rep = json.loads(r.stdout)
    e = rep["entries"][0]
    assert rep["unit"] == e["unit"] == "s"
    assert e["budget"] == 0.0018
    assert e["mean_latency"] == pytest.approx(in_ms["entries"][0]["mean_latency"] / 1000, rel=1e-15)
    assert e["violation"] == pytest.approx(in_ms["entries"][0]["violation"], abs=1e-12)
    assert e["passed"] is in_ms["entries"][0]["passed"]
    assert r.exit_code == (0 if e["passed"] else 1)
    assert e["violation"] > -0.9  # not the -99.9% of reading 1.8 ms as 1.8 s


@pytest.mark.parametrize("unit, factor", [("s", Fraction(1, 1000)), ("us", 1000), ("ns", 10**6),
                                          ("milliseconds", 1)])
def test_every_time_unit_converts_exactly(f, unit, factor):
    thr = f.thresholds(budget=2.5, unit="ms")
    lat = f.json("lat_u.json", latency_dict([float(Fraction(c) * factor) for c in COSTS], unit))
    e = json.loads(invoke("evaluate", f.test, thr, "--latency", lat).stdout)["entries"][0]
    assert e["budget"] == float(Fraction(2.5) * factor)
    assert e["unit"] == unit


def test_units_that_do_not_convert_are_refused(f):
    thr = f.thresholds(budget=1.8, unit="ms")
    lat = f.json("gflops.json", latency_dict(COSTS, "GFLOPs"))
    refused(invoke("evaluate", f.test, thr, "--latency", lat), "'ms'", "'GFLOPs'", "gflops.json", "t.json")
    thr2 = f.thresholds("t2.json", budget=1.8, unit="cost")
    refused(invoke("evaluate", f.test, thr2, "--latency", f.latency), "'cost'", "'ms'")


def test_budget_with_a_time_unit(f, tmp_path):
    lat_s = f.json("lat_s.json", latency_dict([c / 1000 for c in COSTS], "s"))
    r = invoke("tune", f.val, "--latency", lat_s, "--budget", "2.5ms")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["budget"] == 0.0025
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "2.5ms"), "--budget", "'2.5ms'", "not a time")
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "2parsecs"), "--budget", "unknown unit")
    thr = f.thresholds()
    e = json.loads(invoke("evaluate", f.test, thr, "--budget", "2500us").stdout)["entries"][0]
    assert e["budget"] == 2.5


# ---------------------------------------------------------------------------
# One rule for fractions: 5% == 0.05; a bare number above 1 is refused
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--tolerance", "--min-accuracy"])
@pytest.mark.parametrize("value", ["5", "97", "1.5"])
def test_bare_numbers_above_one_are_refused(f, option, value):
    refused(invoke("evaluate", f.test, f.thresholds(), option, value), option, f"'{value}'", f"{value}%")


def test_bare_numbers_above_one_are_refused_for_tune_options(f):
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "3", "--guarantee", "95"),
            "--guarantee", "95%")
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "3", "--guarantee", "95%",
                   "--calibration-fraction", "30"), "--calibration-fraction", "30%")


def test_percent_and_fraction_mean_the_same(f):
    thr = f.thresholds(budget=1.0)  # far over budget
    for a, b in (("5%", "0.05"), ("100%", "1"), ("0%", "0"), ("0.5%", "0.005")):
        ra = json.loads(invoke("evaluate", f.test, thr, "--tolerance", a).stdout)
        rb = json.loads(invoke("evaluate", f.test, thr, "--tolerance", b).stdout)
        assert ra["entries"][0]["tolerance"] == rb["entries"][0]["tolerance"]
    assert json.loads(invoke("evaluate", f.test, thr, "--tolerance", "5%").stdout)["entries"][0]["tolerance"] == 0.05
    acc = json.loads(invoke("evaluate", f.test, thr).stdout)["accuracy"]
    assert invoke("evaluate", f.test, f.thresholds("n.json", budget=None), "--min-accuracy",
                  f"{acc * 100 + 0.5}%").exit_code == 1
    assert invoke("evaluate", f.test, f.thresholds("n.json", budget=None), "--min-accuracy",
                  f"{acc - 0.005}").exit_code == 0


def test_percentages_are_exact():
    from eexit_cli.core.latency import parse_budget, parse_budgets

    assert parse_budget("35%", [1, 2, 3]) == 1.05
    assert parse_budget("10%", [1, 2, 3]) == 0.3
    assert parse_budgets(["10%..30%:3"], [1, 2, 3]) == [0.3, 0.6, 0.9]


# ---------------------------------------------------------------------------
# Sweeps: a limit on the count; infeasible budgets skipped, not fatal
# ---------------------------------------------------------------------------


def test_sweep_count_has_a_limit(f):
    before = snapshot(f.tmp)
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "40%..80%:100000", "-o", f.tmp / "o.json"),
            "--budget", "100000", str(MAX_BUDGETS))
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "40%..80%:150", "--budget", "30%..35%:60"),
            "--budget", "210")
    assert snapshot(f.tmp) == before


def test_sweep_writes_the_feasible_budgets_and_lists_the_others(f, tmp_path):
    out = tmp_path / "front.json"
    r = invoke("tune", f.val, "--costs", "1,2,4", "--budget", "3%..60%:20", "-o", out)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(out.read_text())
    assert all(e["budget"] >= 1.0 for e in doc["entries"])
    assert doc["budgets"] == [e["budget"] for e in doc["entries"]]
    assert [s["budget"] for s in doc["skipped"]] == [b for b in
                                                     [float(Fraction(3 * 4, 100) + (Fraction(60 * 4, 100) - Fraction(3 * 4, 100)) * i / 19) for i in range(20)]
                                                     if b < 1.0]
    assert len(doc["entries"]) + len(doc["skipped"]) == 20
    lines = r.stderr.splitlines()
    assert any("skipped" in ln and "smallest feasible budget is 1 cost" in ln and "25% of the last exit" in ln
               for ln in lines), r.stderr
    # none feasible: exit 3, nothing written
    out2 = tmp_path / "none.json"
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "3%..20%:5", "-o", out2),
            "none of the 5 budgets", "25%", code=3)
    assert not out2.exists()


def test_single_infeasible_budget_says_the_smallest_feasible(f):
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "10%"), "smallest feasible budget is 1",
            "25% of the last exit", code=3)


# ---------------------------------------------------------------------------
# -o: never onto an input; special files written in place; symlinks followed
# ---------------------------------------------------------------------------


def test_output_onto_an_input_is_refused_before_any_work(f):
    thr = f.thresholds()
    before = snapshot(f.tmp)
    cases = [
        (["evaluate", f.test, thr, "-o", thr], "t.json"),
        (["evaluate", f.test, thr, "-o", f.test], "test.h5"),
        (["evaluate", f.test, thr, "--latency", f.latency, "-o", f.latency], "lat.json"),
        (["evaluate", f.test, thr, "--plot", thr], "--plot"),
        (["evaluate", f.test, thr, "-o", f.tmp / "r.json", "--plot", f.tmp / "r.json"], "--plot"),
        (["tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", f.val], "val.h5"),
        (["tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", f.latency], "lat.json"),
        (["tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", f.tmp / "." / "val.h5"], "val.h5"),
    ]
    for args, needle in cases:
        refused(invoke(*args), needle, "input")
        assert snapshot(f.tmp) == before, args


def test_output_onto_an_input_through_a_symlink_is_refused(f):
    link = f.tmp / "link.json"
    link.symlink_to(f.latency)
    before = snapshot(f.tmp)
    refused(invoke("tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", link), "link.json", "input")
    assert snapshot(f.tmp) == before


def test_profile_output_onto_the_model_is_refused(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really a model")
    refused(invoke("profile", model, "-o", model), "m.onnx", "input")
    assert model.read_bytes() == b"not really a model"


def test_output_through_a_symlink_writes_its_target(f):
    target = f.tmp / "real.json"
    target.write_text("old")
    link = f.tmp / "link.json"
    link.symlink_to(target)
    r = invoke("evaluate", f.test, f.thresholds(), "-o", link)
    assert r.exit_code in (0, 1)
    assert link.is_symlink() and json.loads(target.read_text())["format"] == "eexit.evaluation/v2"


def test_output_with_a_trailing_slash_or_onto_a_folder_is_refused(f):
    thr = f.thresholds()
    before = snapshot(f.tmp)
    refused(invoke("evaluate", f.test, thr, "-o", f"{f.tmp}/out.json/"), "out.json/", "folder")
    refused(invoke("tune", f.val, "--latency", f.latency, "--budget", "60%", "-o", f.tmp), "folder")
    assert snapshot(f.tmp) == before and not (f.tmp / "out.json").exists()


def test_long_file_names(f):
    ok = f.tmp / ("r" * 250 + ".json")  # 255 bytes: the longest name allowed
    r = invoke("evaluate", f.test, f.thresholds(), "-o", ok)
    assert r.exit_code in (0, 1), r.stderr
    assert json.loads(ok.read_text())["n_entries"] == 1
    refused(invoke("evaluate", f.test, f.thresholds(), "-o", f.tmp / ("r" * 300 + ".json")), "305 bytes")


def test_output_to_a_character_device_is_written_in_place(f):
    # A private node of the null device, so that a regression replaces a file of the
    # test's own and never the system's /dev/null (the suite may run as root).
    import os

    node = f.tmp / "null"
    try:
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (PermissionError, AttributeError):
        pytest.skip("creating a character device needs root")
    r = invoke("evaluate", f.test, f.thresholds(), "-o", node)
    assert r.exit_code in (0, 1), r.stderr
    assert node.is_char_device()


# ---------------------------------------------------------------------------
# Hostile content: exit 2 naming the file, never exit 70
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, needle", [
    ('{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, ' + "9" * 400 + "]}", "too large"),
    ('{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, ' + "9" * 5000 + "]}", "lat_bad.json"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1e-320, 2e-320, 4e-320]}', "too small"),
    ('{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, 1e300]}', "too large"),
    ('{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, 4], "exit_names": ["a", "b"]}', "exit_names"),
])
def test_hostile_json_is_an_input_error(f, text, needle):
    lat = f.json("lat_bad.json", text)
    refused(invoke("tune", f.val, "--latency", lat, "--budget", "60%"), "lat_bad.json", needle)


@pytest.mark.parametrize("costs, needle", [("1,,2", "empty item"), ("1e-320,1,2", "too small"),
                                           ("1,2,x", "not a comma-separated")])
def test_bad_costs(f, costs, needle):
    refused(invoke("tune", f.val, "--costs", costs, "--budget", "60%"), "--costs", needle)


def test_input_shape_too_large_is_refused(tmp_path):
    pytest.importorskip("onnx")
    model = Path(__file__).resolve().parents[1] / "sample_data" / "model.onnx"
    refused(invoke("profile", model, "--input-shape", "input=100000000000x1x8x8", "-o", tmp_path / "l.json"),
            "--input-shape", "elements")
    assert not (tmp_path / "l.json").exists()


# ---------------------------------------------------------------------------
# Options named in their own errors; options that only apply with another
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, needle", [
    (["--k", "inf"], "--k"), (["--k", "nan"], "--k"), (["--T", "1e23"], "--T"),
    (["--T", "100000000000000000000000"], "--T"), (["--gamma", "-1"], "--gamma"),
    (["--guarantee", "90%", "--seed", "-1"], "--seed"),
    (["--calibration-fraction", "20%"], "--calibration-fraction"), (["--bound", "hoeffding"], "--bound"),
    (["--seed", "3"], "--seed"),
    (["--unit", "ms", "--latency", "LAT"], "--unit"),
])
def test_options_are_named_in_their_errors(f, args, needle):
    args = [f.latency if a == "LAT" else a for a in args]
    base = ["tune", f.val, "--budget", "60%"] + ([] if "--latency" in args else ["--costs", "1,2,4"])
    refused(invoke(*base, *args), needle)


def test_calibration_part_needs_as_many_samples_as_tuning(tmp_path):
    data = make_exit_data(seed=2, n_exits=3, n_samples=100, n_classes=4)
    split = write_exits(tmp_path / "small.h5", data)
    refused(invoke("tune", split, "--costs", "1,2,4", "--budget", "60%", "--guarantee", "90%",
                   "--calibration-fraction", "10%"), "--calibration-fraction", "10 for the calibration part",
            "at least 30")


# ---------------------------------------------------------------------------
# Modes keep the codes: --debug, -q; equal scores; byte-identical output
# ---------------------------------------------------------------------------


def test_debug_keeps_the_documented_codes(f):
    r = invoke("--debug", "tune", f.val, "--latency", f.tmp / "absent.json", "--budget", "60%")
    assert r.exit_code == 2 and "Traceback" in r.stderr
    r = invoke("--debug", "tune", f.val, "--costs", "1,2,4", "--budget", "10%")
    assert r.exit_code == 3
    r = invoke("--debug", "evaluate", f.test, f.thresholds(budget=0.5))
    assert r.exit_code == 1


def test_all_equal_scores_are_tuned_and_evaluated(tmp_path):
    n, m = 3, 200
    rng = np.random.default_rng(0)
    split = write_h5(tmp_path / "flat.h5", {"format": "eexit.exits/v1", "confidence": "scores"},
                     scores=np.full((n, m), 0.5), correct=(rng.random((n, m)) < 0.8).astype(np.uint8))
    r = invoke("tune", split, "--costs", "1,2,4", "--budget", "2")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    # the only choices: everyone leaves at exit 1, or everyone goes on
    assert doc["tuning"]["mean_latency"] <= 2
    thr = tmp_path / "flat.json"
    thr.write_text(r.stdout)
    e = json.loads(invoke("evaluate", split, thr).stdout)["entries"][0]
    assert e["mean_latency"] == doc["tuning"]["mean_latency"]
    assert e["mean_latency"] in (1.0, 2.0, 4.0)


def test_no_timings_gives_byte_identical_output(f, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (a, b):
        assert invoke("tune", f.val, "--latency", f.latency, "--budget", "40%..60%:3", "--no-timings",
                      "-o", out).exit_code == 0
    assert a.read_bytes() == b.read_bytes()
    assert '"seconds"' not in a.read_text()
    with_times = invoke("tune", f.val, "--latency", f.latency, "--budget", "60%")
    assert '"seconds"' in with_times.stdout


def test_guarantee_takes_the_score_box_from_the_tuning_part_only(tmp_path):
    # /scores whose extreme values sit in one sample of the calibration part: the box the
    # candidates are tuned in must not see them
    n, m, seed = 3, 600, 1
    rng = np.random.default_rng(4)
    scores = rng.random((n, m))
    correct = (rng.random((n, m)) < 0.7).astype(np.uint8)
    held_out = np.random.default_rng(seed).permutation(m)[0]  # first of the calibration part
    scores[:, held_out] = [-50.0, -50.0, 50.0]
    split = write_h5(tmp_path / "s.h5", {"format": "eexit.exits/v1"}, scores=scores, correct=correct)
    r = invoke("tune", split, "--costs", "1,2,4", "--budget", "70%", "--guarantee", "80%", "--seed", seed)
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    g = doc["tuning"]["guarantee"]
    perm = np.random.default_rng(seed).permutation(m)
    tune_idx = np.sort(perm[g["calibration_size"]:])
    assert held_out not in tune_idx
    lo, hi = scores[:, tune_idx].min(), scores[:, tune_idx].max()
    assert doc["tuning"]["params"]["score_range"] == [lo, hi]
    assert 0 <= lo and hi <= 1


def test_write_errors_name_the_users_file_not_the_temporary_one(tmp_path):
    from eexit_cli.io.atomic import atomic_write_bytes

    folder = tmp_path / "taken"
    (folder / "inside").mkdir(parents=True)  # renaming a file over a non-empty folder fails
    with pytest.raises(OSError) as info:
        atomic_write_bytes(folder, b"{}")
    assert info.value.filename == str(folder) and ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no temporary file left


def test_output_to_a_full_device_is_one_line_naming_it(f):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    refused(invoke("evaluate", f.test, f.thresholds(), "-o", "/dev/full"), "/dev/full", "No space left")


def test_symlink_loop_as_output_is_refused(f):
    loop = f.tmp / "loop.json"
    loop.symlink_to(loop)
    refused(invoke("evaluate", f.test, f.thresholds(), "-o", loop), "loop.json", "symlink")
    assert loop.is_symlink()


def test_a_multi_line_library_message_is_one_line(tmp_path):
    pytest.importorskip("onnx")
    not_a_model = tmp_path / "t.json"
    not_a_model.write_text('{"format": "eexit.thresholds/v1"}')
    refused(invoke("profile", not_a_model, "-o", tmp_path / "l.json"), "t.json", "ONNX")


def test_damaged_hdf5_files_are_input_errors(f, tmp_path):
    whole = f.val.read_bytes()
    zeroed = tmp_path / "zeroed.h5"
    zeroed.write_bytes(whole[:1024] + b"\0" * 2048 + whole[3072:])  # object headers wiped
    refused(invoke("tune", zeroed, "--costs", "1,2,4", "--budget", "60%"), "zeroed.h5")
    import h5py

    badname = tmp_path / "badname.h5"
    with h5py.File(badname, "w") as h:
        h.create_dataset(b"logits\xff", data=np.zeros((3, 40, 4)))
        h.create_dataset("labels", data=np.zeros(40, int))
    refused(invoke("tune", badname, "--costs", "1,2,4", "--budget", "60%"), "badname.h5", "/logits\\xff")
    huge = tmp_path / "huge.h5"
    with h5py.File(huge, "w") as h:  # declares 40 GB, holds nothing
        h.create_dataset("logits", shape=(4, 10**9, 10), dtype="f4", chunks=(4, 1024, 10))
        h.create_dataset("labels", data=np.zeros(10, int))
    refused(invoke("evaluate", huge, f.thresholds()), "huge.h5", "/logits", "damaged")


def test_tune_stores_the_exact_percentage_and_evaluate_agrees(f):
    r = invoke("tune", f.val, "--costs", "1,2,3", "--budget", "35%")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["budget"] == 1.05


def test_files_in_different_time_units_share_the_reports_unit(f):
    in_ms = f.thresholds("ms.json", budget=2.5, unit="ms")
    in_s = f.thresholds("s.json", budget=0.0025, unit="s", costs=[c / 1000 for c in COSTS])
    rep = json.loads(invoke("evaluate", f.test, in_ms, in_s).stdout)
    assert rep["unit"] == "ms" and [e["unit"] for e in rep["entries"]] == ["ms", "ms"]
    a, b = rep["entries"]
    assert a["budget"] == b["budget"] == 2.5
    assert a["mean_latency"] == pytest.approx(b["mean_latency"], rel=1e-15)
    assert [r["latency"] for r in b["per_exit"]] == COSTS
    assert a["passed"] is b["passed"]


@pytest.mark.parametrize("args, words", [
    (["--T", "1e23"], ["--T", "1e23"]), (["--k", "inf"], ["--k", "positive"]),
    (["--guarantee", "90%", "--seed", "-1"], ["--seed", "-1"]),
    (["--calibration-fraction", "20%"], ["--calibration-fraction", "--guarantee"]),
])
def test_option_errors_say_what_would_be_right(f, args, words):
    refused(invoke("tune", f.val, "--costs", "1,2,4", "--budget", "60%", *args), *words)


def test_duplicate_keys_are_refused(f):
    lat = f.json("dup.json", '{"format": "eexit.latency/v1", "unit": "ms", "per_exit": [1, 2, 4], '
                             '"per_exit": [4, 2, 1]}')
    refused(invoke("tune", f.val, "--latency", lat, "--budget", "60%"), "dup.json", "'per_exit'", "twice")
