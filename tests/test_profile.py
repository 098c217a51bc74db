"""`eexit profile` and the ONNX profiler, on the sample model and on tiny graphs made here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from eexit_cli.cli.main import cli  # noqa: E402
from eexit_cli.errors import InputError, MissingDependencyError  # noqa: E402
from eexit_cli.io.jsonfiles import read_latency  # noqa: E402
from eexit_cli.profiling.onnx_profiler import parse_shape, profile_onnx  # noqa: E402

from conftest import one_error_line

SAMPLE_MODEL = Path(__file__).resolve().parents[1] / "sample_data" / "model.onnx"
EXIT_NAMES = ["exit_1", "exit_2", "exit_3", "exit_4"]
# Small enough to take a fraction of a second on the sample model. The sample's exits
# differ by a factor of 1.4 or more; under two busy loops on a 2-core machine the
# medians of this many calls still kept that order in every one of 100 trials.
FAST = dict(warmup=10, repeat=50, rounds=10)
FAST_ARGS = ["--warmup", "10", "--repeat", "50", "--rounds", "10"]


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, args):
    return runner.invoke(cli, [str(a) for a in args], prog_name="eexit", catch_exceptions=False)


def save_model(path: Path, nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def chain_model(path: Path, n_outputs=2, elem=TensorProto.FLOAT, shape=("batch", 4)):
    """x -> Relu -> y1 -> Relu -> y2 ...: one output per 'exit'."""
    x = helper.make_tensor_value_info("x", elem, list(shape))
    nodes, outs, prev = [], [], "x"
    for i in range(1, n_outputs + 1):
        nodes.append(helper.make_node("Identity" if elem != TensorProto.FLOAT else "Relu", [prev], [f"y{i}"]))
        outs.append(helper.make_tensor_value_info(f"y{i}", elem, list(shape)))
        prev = f"y{i}"
    return save_model(path, nodes, [x], outs)


# ---------------------------------------------------------------------------
# Measurements on the sample model
# ---------------------------------------------------------------------------


def test_latency_increases_with_the_exit_on_the_sample_model():
    result = profile_onnx(SAMPLE_MODEL, **FAST)
    # medians: a mean of this few calls is moved by a busy machine
    d = np.array([e.median for e in result.exits])
    assert result.exit_names == tuple(EXIT_NAMES)
    assert np.all(np.diff(d) > 0), d
    assert d[-1] > 2 * d[0], d
    for e in result.exits:
        assert e.count == FAST["repeat"] * FAST["rounds"]
        assert e.minimum <= e.q1 <= e.median <= e.q3
        assert e.ci_low <= e.median <= e.ci_high
        assert e.round_median_min <= e.round_median_max
    assert result.rounds_done == FAST["rounds"]
    # the cost of a call doing next to nothing, timed alongside: below the cheapest exit
    assert result.call_overhead is not None
    assert result.call_overhead.count == FAST["repeat"] * FAST["rounds"]
    assert 0 < result.call_overhead.median < d[0]
    assert result.model.providers[0] == "CPUExecutionProvider"
    assert result.model.inputs[0] == {"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}
    assert result.batch == 1 and result.model.mode == "staged"


def test_cli_writes_a_latency_json_that_the_reader_accepts(runner, tmp_path):
    out = tmp_path / "latency.json"
    r = run(runner, ["profile", SAMPLE_MODEL, "-o", out, *FAST_ARGS])
    assert r.exit_code == 0, r.output
    assert r.stdout == ""  # the data went to the file
    doc = json.loads(out.read_text())
    assert doc["format"] == "eexit.latency/v1"
    assert doc["unit"] == "s"
    assert doc["exit_names"] == EXIT_NAMES
    assert len(doc["per_exit"]) == 4
    m = doc["measurement"]
    assert [e["trimmed_mean"] for e in m["exits"]] == doc["per_exit"]
    assert m["statistic"] == "trimmed_mean" and m["batch"] == 1 and m["mode"] == "staged"
    for key in ("device", "cpu_model", "cpu_count", "threads", "onnxruntime_version", "providers",
                "loadavg_start", "loadavg_end", "timestamp", "warmup", "repeat", "rounds", "inputs",
                "warnings", "seed", "call_overhead"):
        assert key in m, key
    assert m["model"]["sha256"] and len(m["model"]["sha256"]) == 64
    assert (m["warmup"], m["repeat"], m["rounds"], m["threads"]) == (10, 50, 10, 1)
    assert m["inputs"] == [{"name": "input", "shape": [1, 1, 8, 8], "dtype": "float32"}]
    for e in m["exits"]:
        assert set(e) >= {"trimmed_mean", "median", "mean", "q1", "q3", "iqr", "ci_low", "ci_high", "min", "count"}
        assert e["min"] <= e["median"] and e["min"] <= e["mean"]

    profile = read_latency(out)
    np.testing.assert_array_equal(profile.per_exit, doc["per_exit"])
    assert profile.unit == "s"


def test_cli_prints_json_on_stdout_when_it_is_not_a_terminal(runner):
    r = run(runner, ["profile", SAMPLE_MODEL, *FAST_ARGS])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["format"] == "eexit.latency/v1" and len(doc["per_exit"]) == 4


def test_outputs_option_selects_and_orders_exits(runner, tmp_path):
    out = tmp_path / "two.json"
    r = run(runner, ["profile", SAMPLE_MODEL, "--outputs", "exit_1,exit_4", "-o", out, *FAST_ARGS])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["exit_names"] == ["exit_1", "exit_4"]
    assert doc["per_exit"][1] > doc["per_exit"][0]


def _timing(name, median, iqr):
    from eexit_cli.core.latency_stats import ExitTiming

    return ExitTiming(name=name, median=median, mean=median, trimmed_mean=median, q1=median - iqr / 2, q3=median + iqr / 2,
                      ci_low=median, ci_high=median, ci_level=0.95, minimum=median - iqr,
                      count=100, round_median_min=median, round_median_max=median)


def test_warnings_for_decreasing_and_noisy_latencies():
    from eexit_cli.profiling.record import profile_warnings as _warnings

    steady = [_timing("a", 1.0, 0.01), _timing("b", 2.0, 0.02)]
    assert _warnings(steady, threads=1, cpus=2, load_start=[0.0, 0.0, 0.0], rounds=5, rounds_done=5) == []
    swapped = [_timing("a", 2.0, 0.01), _timing("b", 1.0, 0.5)]
    found = _warnings(swapped, threads=4, cpus=2, load_start=[2.0, 2.0, 2.0], rounds=5, rounds_done=2)
    assert any("does not increase" in w and "b" in w for w in found)
    assert any("large spread" in w and "b (50%)" in w for w in found)
    assert any("4 threads on 2" in w for w in found)
    assert any("load average 2.00" in w for w in found)
    assert any("2 of 5 rounds" in w for w in found)


def test_graph_outputs_are_the_default_exits(tmp_path):
    model = chain_model(tmp_path / "m.onnx", n_outputs=3)
    result = profile_onnx(model, warmup=0, repeat=2, rounds=1)
    assert result.exit_names == ("y1", "y2", "y3")


def test_time_budget_stops_after_a_round():
    result = profile_onnx(SAMPLE_MODEL, warmup=1, repeat=5, rounds=50, time_budget=1e-9)
    assert result.rounds_done == 1
    assert all(e.count == 5 for e in result.exits)
    assert any("time budget" in w for w in result.warnings)


def test_progress_reports_reach_the_total():
    calls = []
    profile_onnx(SAMPLE_MODEL, warmup=1, repeat=2, rounds=3, progress=lambda d, t: calls.append((d, t)))
    # one report after the warm-up of each of the 4 exits and of the call-overhead target,
    # then one per round
    assert calls[-1] == (5 + 3, 5 + 3)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


@pytest.mark.parametrize(
    "elem, dtype",
    [
        (TensorProto.FLOAT16, "float16"),
        (TensorProto.DOUBLE, "float64"),
        (TensorProto.INT32, "int32"),
        (TensorProto.INT64, "int64"),
        (TensorProto.BOOL, "bool"),
        (TensorProto.UINT8, "uint8"),
        (TensorProto.INT8, "int8"),
    ],
)
def test_supported_input_dtypes(tmp_path, elem, dtype):
    model = chain_model(tmp_path / "m.onnx", n_outputs=2, elem=elem)
    result = profile_onnx(model, warmup=0, repeat=2, rounds=2)
    assert result.model.inputs[0]["dtype"] == dtype
    assert result.model.inputs[0]["shape"] == [1, 4]


def test_symbolic_inner_dimension_needs_a_shape(runner, tmp_path):
    model = chain_model(tmp_path / "m.onnx", n_outputs=2, shape=("batch", "length"))
    with pytest.raises(InputError, match=r"'x' dimension 1 \('length'\) is symbolic"):
        profile_onnx(model, warmup=0, repeat=1, rounds=1)
    result = profile_onnx(model, input_shapes={"x": (1, 7)}, warmup=0, repeat=1, rounds=1)
    assert result.model.inputs[0]["shape"] == [1, 7]
    r = run(runner, ["profile", model, "--input-shape", "x=1x7", "--repeat", "1", "--rounds", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["measurement"]["inputs"][0]["shape"] == [1, 7]


def test_inner_tensors_can_be_exits(tmp_path):
    model = chain_model(tmp_path / "m.onnx", n_outputs=3)
    m = onnx.load(str(model))
    del m.graph.output[:2]  # only y3 remains a graph output
    onnx.save(m, str(model))
    result = profile_onnx(model, outputs=["y1", "y3"], warmup=0, repeat=2, rounds=1)
    assert result.exit_names == ("y1", "y3")


# ---------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------


def test_parse_shape():
    assert parse_shape("input=1x3x32x32") == ("input", (1, 3, 32, 32))
    assert parse_shape("ids=1,128") == ("ids", (1, 128))
    assert parse_shape("s=") == ("s", ())
    for bad in ("input", "=1x2", "x=1xa", "x=0x3"):
        with pytest.raises(ValueError):
            parse_shape(bad)


# ---------------------------------------------------------------------------
# Bad input: one line on stderr, exit code 2, nothing written
# ---------------------------------------------------------------------------


def _not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("these are notes, not a model\n")
    return [path], "not an ONNX model"


def _empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return [path], "not an ONNX model"


def _missing_file(tmp_path):
    return [tmp_path / "absent.onnx"], "file not found"


def _one_output(tmp_path):
    return [chain_model(tmp_path / "one.onnx", n_outputs=1)], "at least 2"


def _unknown_output(tmp_path):
    return [SAMPLE_MODEL, "--outputs", "exit_1,exit_9"], "'exit_9'"


def _unsupported_dtype(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.UINT16, ["batch", 4])
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.UINT16, ["batch", 4]) for i in (1, 2)]
    nodes = [helper.make_node("Identity", ["x"], ["y1"]), helper.make_node("Identity", ["y1"], ["y2"])]
    return [save_model(tmp_path / "u16.onnx", nodes, [x], outs)], "UINT16"


def _repeat_zero(tmp_path):
    return [SAMPLE_MODEL, "--repeat", "0"], "--repeat"


def _cuda(tmp_path):
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("CUDA is available here")
    return [SAMPLE_MODEL, "--device", "cuda"], "CUDAExecutionProvider"


def _bad_input_shape(tmp_path):
    return [SAMPLE_MODEL, "--input-shape", "input=1x3x8x8"], "dimension 1 is fixed to 1"


def _unknown_input_name(tmp_path):
    return [SAMPLE_MODEL, "--input-shape", "image=1x1x8x8"], "'image'"


@pytest.mark.parametrize(
    "case",
    [_not_onnx, _empty_file, _missing_file, _one_output, _unknown_output, _unsupported_dtype,
     _repeat_zero, _cuda, _bad_input_shape, _unknown_input_name],
    ids=lambda f: f.__name__.lstrip("_"),
)
def test_bad_input_is_one_line_and_exit_code_2(runner, tmp_path, case):
    args, expected = case(tmp_path)
    out = tmp_path / "out" / "latency.json"
    out.parent.mkdir()
    r = run(runner, ["profile", *FAST_ARGS, *args, "-o", out])
    assert r.exit_code == 2, r.output
    line = one_error_line(r)
    assert line.startswith("eexit profile: error: ")
    assert expected in line
    assert r.stdout == ""
    assert list(out.parent.iterdir()) == []


def test_output_folder_must_exist_before_measuring(runner, tmp_path):
    r = run(runner, ["profile", SAMPLE_MODEL, "-o", tmp_path / "no" / "such" / "latency.json"])
    assert r.exit_code == 2
    assert "does not exist" in one_error_line(r)


def test_a_failed_profile_leaves_an_earlier_output_alone(runner, tmp_path):
    out = tmp_path / "latency.json"
    out.write_text("earlier\n")
    r = run(runner, ["profile", SAMPLE_MODEL, "--outputs", "nope,exit_2", "-o", out])
    assert r.exit_code == 2
    assert out.read_text() == "earlier\n"


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'eexit\[onnx\]'"):
        profile_onnx(SAMPLE_MODEL)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"repeat": 0}, "repeat"), ({"rounds": 0}, "rounds"), ({"threads": 0}, "threads"),
     ({"warmup": -1}, "warmup"), ({"device": "tpu"}, "device"), ({"time_budget": 0}, "time budget")],
)
def test_api_checks_its_arguments(kwargs, name):
    with pytest.raises(InputError, match=name):
        profile_onnx(SAMPLE_MODEL, **kwargs)
