"""The ONNX stage cut and the shared timing loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from eexit_cli.errors import InputError  # noqa: E402
from eexit_cli.profiling.onnx_cut import cut_stages, stage_models  # noqa: E402
from eexit_cli.profiling.onnx_profiler import open_onnx  # noqa: E402
from eexit_cli.profiling.timing import time_calls, time_schedule  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def run_cut(path, names, feed):
    """Run the stage sub-graphs one after the other, handing tensors on by name."""
    model = onnx.load(str(path))
    cuts = cut_stages(model, names, str(path))
    subs = stage_models(onnx, model, str(path), cuts)
    env, outs = dict(feed), []
    for cut, sub in zip(cuts, subs):
        session = ort.InferenceSession(sub.SerializeToString(), providers=["CPUExecutionProvider"])
        produced = [cut.exit, *cut.hands_on]
        assert sorted(i.name for i in session.get_inputs()) == sorted(cut.inputs)
        values = session.run(produced, {k: env[k] for k in cut.inputs})
        env.update(zip(produced, values))
        outs.append(values[0])
    return cuts, outs


@pytest.mark.parametrize("name, shape", [("model.onnx", (5, 1, 8, 8)), ("digits_gru.onnx", (5, 8, 8))])
def test_stages_of_the_samples_give_the_full_models_outputs(name, shape):
    path = SAMPLE / name
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    names = ["exit_1", "exit_2", "exit_3", "exit_4"]
    cuts, outs = run_cut(path, names, {"input": x})
    full = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(names, {"input": x})
    for a, b in zip(outs, full):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # every stage reads only the model's input and what earlier stages handed on
    for k in range(4):
        assert set(cuts[k].inputs) <= {"input"} | {t for c in cuts[:k] for t in c.hands_on}, cuts[k]
    assert all(c.hands_on for c in cuts[:3])


def skip_model(path: Path) -> Path:
    """x -> a -> y1; a -> b -> y2; (b + a) * c -> y3, with c a Constant read by stages 1 and 3."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    outs = [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, ["batch", 4]) for i in (1, 2, 3)]
    c = numpy_helper.from_array(np.full(4, 0.5, dtype=np.float32), "c_value")
    nodes = [
        helper.make_node("Constant", [], ["c"], value=c),
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Mul", ["a", "c"], ["y1"]),
        helper.make_node("Sigmoid", ["a"], ["b"]),
        helper.make_node("Identity", ["b"], ["y2"]),
        helper.make_node("Add", ["b", "a"], ["s"]),
        helper.make_node("Mul", ["s", "c"], ["y3"]),
    ]
    graph = helper.make_graph(nodes, "skip", [x], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_a_tensor_read_two_stages_later_is_handed_on_and_constants_are_recomputed(tmp_path):
    path = skip_model(tmp_path / "skip.onnx")
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    cuts, outs = run_cut(path, ["y1", "y2", "y3"], {"x": x})
    assert cuts[0].inputs == ("x",) and set(cuts[0].hands_on) == {"a"}
    assert cuts[1].inputs == ("a",) and cuts[1].hands_on == ("b",)
    assert set(cuts[2].inputs) == {"a", "b"} and cuts[2].hands_on == ()
    a = np.maximum(x, 0)
    b = 1 / (1 + np.exp(-a))
    np.testing.assert_allclose(outs[0], a * 0.5, rtol=1e-6)
    np.testing.assert_allclose(outs[1], b, rtol=1e-6)
    np.testing.assert_allclose(outs[2], (a + b) * 0.5, rtol=1e-6)


def test_exits_out_of_order_cannot_be_cut(tmp_path):
    path = skip_model(tmp_path / "skip.onnx")
    # 'a' is computed on the way to y2: as exit 2 it would need nothing of its own
    with pytest.raises(InputError, match=r"exit 2 \(a\) needs no computation beyond exit 1's"):
        open_onnx(path, outputs=["y2", "a", "y3"])


def test_staged_run_to_computes_the_confidence_of_the_exits_it_passes(monkeypatch):
    import eexit_cli.profiling.onnx_profiler as op

    seen = []
    real = op.numpy_decision

    def recording(confidence):
        decide = real(confidence)

        def wrapped(out, threshold):
            seen.append((out.shape, threshold))
            return decide(out, threshold)

        return wrapped

    monkeypatch.setattr(op, "numpy_decision", recording)
    model = open_onnx(SAMPLE / "model.onnx", thresholds=[0.1, 0.2, 0.3])
    for n in range(4):
        seen.clear()
        model.run_to(n)
        assert seen == [((1, 10), t) for t in [0.1, 0.2, 0.3][:n]]


def test_thresholds_must_match_the_exits():
    with pytest.raises(InputError, match="N disagrees; N-1 = 3"):
        open_onnx(SAMPLE / "model.onnx", thresholds=[0.5, 0.5])


def test_batch_size_is_recorded(tmp_path):
    model = open_onnx(SAMPLE / "model.onnx", input_shapes={"input": (32, 1, 8, 8)})
    assert model.batch == 32 and "batch 32" in model.method


# ---------------------------------------------------------------------------
# The shared timing loop
# ---------------------------------------------------------------------------


def test_time_calls_draws_the_target_at_random_for_every_call():
    order = []
    calls = [lambda i=i: order.append(i) for i in range(3)]
    raw = time_calls(calls, warmup=2, repeat=10, rounds=4, seed=0)
    assert order[:6] == [0, 0, 1, 1, 2, 2]  # warm-up, in target order
    timed = order[6:]
    assert len(timed) == 3 * 10 * 4
    for r in range(4):
        block = timed[30 * r : 30 * (r + 1)]
        assert sorted(block) == [0] * 10 + [1] * 10 + [2] * 10  # each target repeat times per round
    # the order is shuffled call by call, not in blocks of one target
    runs = sum(1 for a, b in zip(timed, timed[1:]) if a != b)
    assert runs > 40
    assert raw.rounds_done == 4 and [len(t) for t in raw.times] == [4, 4, 4]
    assert all(len(r) == 10 and all(v >= 0 for v in r) for t in raw.times for r in t)


def test_time_schedule_runs_every_sample_in_order():
    seen = []
    ns = time_schedule(seen.append, [2, 0, 1, 1], passes=3, warmup=1)
    assert seen == [2, 0, 1, 1] * 4
    assert ns.shape == (3, 4) and np.all(ns >= 0)
