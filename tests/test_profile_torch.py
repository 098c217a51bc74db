"""Profiling PyTorch models: factories, the stages protocol, the torch.fx cut, the samples."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from eexit_cli.cli.main import cli  # noqa: E402
from eexit_cli.errors import InputError, MissingDependencyError  # noqa: E402
from eexit_cli.profiling.models import open_model  # noqa: E402
from eexit_cli.profiling.torch_fx_cut import fx_stages  # noqa: E402
from eexit_cli.profiling.torch_profiler import is_factory_spec, open_torch  # noqa: E402

from conftest import one_error_line

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
MODELS_PY = SAMPLE / "torch_models.py"
FAST_ARGS = ["--warmup", "5", "--repeat", "20", "--rounds", "10"]

# Factories for the tests, written to a file and loaded as FILE.py:NAME.
FACTORIES = textwrap.dedent(
    '''
    import torch
    from torch import nn


    class Chain(nn.Module):
        """Three exits; exit 3 reads a tensor from stage 1 (a skip across stage 2) and a
        buffer used by several stages."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.a = nn.Linear(6, 16)
            self.b = nn.Linear(16, 16)
            self.c = nn.Linear(16, 16)
            self.heads = nn.ModuleList(nn.Linear(16, 4) for _ in range(3))
            self.register_buffer("scale", torch.tensor(0.5))

        def forward(self, x):
            h1 = torch.relu(self.a(x))
            out1 = self.heads[0](h1 * self.scale)
            h2 = torch.relu(self.b(h1))
            out2 = self.heads[1](h2 * self.scale)
            h3 = torch.relu(self.c(h2)) + h1
            out3 = self.heads[2](h3)
            return out1, out2, out3


    def chain():
        return Chain().eval(), torch.randn(2, 6, generator=torch.Generator().manual_seed(1))


    class Staged(nn.Module):
        def __init__(self, arity=2, shape_ok=True):
            super().__init__()
            self.lin = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
            self.arity, self.shape_ok = arity, shape_ok

        @property
        def stages(self):
            def make(k):
                def stage(x):
                    x = torch.tanh(self.lin[k](x))
                    out = x if self.shape_ok else x[0]
                    return (x, out) if self.arity == 2 else (x, out, out)
                return stage
            return [make(k) for k in range(3)]


    def staged():
        return Staged().eval(), torch.randn(1, 4)


    def wrong_arity():
        return Staged(arity=3), torch.randn(1, 4)


    def wrong_shape():
        return Staged(shape_ok=False), torch.randn(1, 4)


    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return x, x * 2
            return x * 2, x


    def untraceable():
        return Branchy(), torch.ones(1, 4)


    class One(nn.Module):
        def forward(self, x):
            return x * 2


    def single_output():
        return One(), torch.ones(1, 4)


    def raises():
        raise RuntimeError("weights file missing")


    def not_a_pair():
        return Chain()


    def bad_example():
        return Chain(), [1, 2, 3]


    not_callable = 42
    '''
)


@pytest.fixture
def factories(tmp_path) -> Path:
    path = tmp_path / "factories.py"
    path.write_text(FACTORIES)
    return path


@pytest.fixture
def runner():
    return CliRunner()


def run(runner, args):
    return runner.invoke(cli, [str(a) for a in args], prog_name="eexit", catch_exceptions=False)


def run_stages(stages, example):
    state, outs = example, []
    for stage in stages:
        state, out = stage(state)
        outs.append(out)
    return outs


# ---------------------------------------------------------------------------
# The sample models
# ---------------------------------------------------------------------------


def _sample(name):
    sys.path.insert(0, str(SAMPLE))
    try:
        import torch_models
    finally:
        sys.path.remove(str(SAMPLE))
    return getattr(torch_models, name)


@pytest.mark.parametrize("factory", ["digits_cnn", "digits_gru"])
def test_sample_stages_reproduce_forward(factory):
    model, x = _sample(factory)(batch=8)
    with torch.inference_mode():
        full = model(x)
        staged = run_stages(model.stages, x)
    assert len(full) == len(staged) == 4
    for a, b in zip(full, staged):
        assert a.shape == (8, 10)
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("factory, onnx_file", [("digits_cnn", "model.onnx"), ("digits_gru", "digits_gru.onnx")])
def test_sample_factories_give_the_onnx_models_outputs(factory, onnx_file):
    ort = pytest.importorskip("onnxruntime")
    model, x = _sample(factory)(batch=16)
    with torch.inference_mode():
        outs = run_stages(model.stages, x)
    session = ort.InferenceSession(str(SAMPLE / onnx_file), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"input": x.numpy()})
    for a, b in zip(outs, ref):
        np.testing.assert_allclose(a.numpy(), b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind, h5", [("cnn", "digits_val.h5"), ("gru", "digits_gru_val.h5")])
def test_sample_factories_give_the_shipped_exit_outputs(kind, h5):
    pytest.importorskip("sklearn")
    import h5py

    sys.path.insert(0, str(SAMPLE))
    try:
        import make_sample
    finally:
        sys.path.remove(str(SAMPLE))
    x, y = make_sample.load_splits()["val"]
    model, _ = _sample(f"digits_{kind}")()
    with torch.inference_mode():
        outs = run_stages(model.stages, torch.from_numpy(make_sample.model_input(kind, x)))
    with h5py.File(SAMPLE / h5, "r") as f:
        logits, labels = f["logits"][()], f["labels"][()]
    np.testing.assert_array_equal(labels, y)
    for n, out in enumerate(outs):
        np.testing.assert_allclose(out.numpy(), logits[n], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------
# The torch.fx cut
# ---------------------------------------------------------------------------


def test_fx_cut_reproduces_forward_with_a_skip_across_stages(factories):
    model = open_torch(f"{factories}:chain")  # loads the file; the stages are internal
    assert model.n_exits == 3
    spec = f"{factories}:chain"
    from eexit_cli.profiling.torch_profiler import call_factory, load_factory

    chain, x = call_factory(load_factory(spec)[0], spec, torch)
    with torch.inference_mode():
        stages, names = fx_stages(chain, x, spec, None, torch)
        full = chain(x)
        cut = run_stages(stages, x)
    assert names == ["exit_1", "exit_2", "exit_3"]
    for a, b in zip(full, cut):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # exit 3 reads h1 from stage 1: stage 1 hands it on, stage 2 does not recompute it
    assert stages[0].stage.hands_on == ("relu",)
    assert "relu" in stages[2].reads
    # the buffer (a get_attr node, no inputs) is recomputed where needed, never handed on
    assert all("scale" not in s.hands_on for s in [stages[0].stage, *stages[1:]])


def test_fx_cut_of_the_sample_cnn_matches_its_stages():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from fx_models import digits_cnn_forward
    finally:
        sys.path.pop(0)
    model, x = digits_cnn_forward()
    assert not hasattr(model, "stages")
    with torch.inference_mode():
        stages, _ = fx_stages(model, x, "fx_models.py:digits_cnn_forward", 4, torch)
        cut = run_stages(stages, x)
        ref = run_stages(model.model.stages, x)
    for a, b in zip(cut, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------
# Profiling through the command line
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [f"{MODELS_PY}:digits_cnn", f"{MODELS_PY}:digits_gru", "FACTORIES:staged",
                                  "FACTORIES:chain"])
def test_profile_gives_increasing_latencies(runner, factories, tmp_path, spec):
    spec = spec.replace("FACTORIES", str(factories))
    out = tmp_path / "latency.json"
    r = run(runner, ["profile", spec, "-o", out, *FAST_ARGS])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    m = doc["measurement"]
    # medians: a mean of this few calls is moved by a busy machine (the benchmark checks
    # the means with the default number of calls)
    medians = np.array([e["median"] for e in m["exits"]])
    assert np.all(np.diff(medians) > 0), medians
    assert m["mode"] == "staged" and m["statistic"] == "trimmed_mean"
    assert m["model"]["factory"] == spec and len(m["model"]["sha256"]) == 64
    assert m["torch_version"] == torch.__version__
    assert m["batch"] == (2 if spec.endswith("chain") else 1)
    assert m["inputs"][0]["shape"][0] == m["batch"]
    assert [e["trimmed_mean"] for e in m["exits"]] == doc["per_exit"]
    # placeholder names (exit_1, ...) are not written as the model's exit names
    assert "exit_names" not in doc and [e["name"] for e in m["exits"]] == ["exit_1", "exit_2", "exit_3", "exit_4"][
        : len(doc["per_exit"])]


def test_a_module_of_the_current_folder_can_be_named(runner, factories, monkeypatch):
    monkeypatch.chdir(factories.parent)
    r = run(runner, ["profile", "factories:staged", *FAST_ARGS])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["measurement"]["model"]["factory"] == "factories:staged"


def test_threads_option_sets_torch_threads(factories):
    before = torch.get_num_threads()
    try:
        open_torch(f"{factories}:staged", threads=2)
        assert torch.get_num_threads() == 2
        open_torch(f"{factories}:staged", threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_run_to_computes_the_confidence_at_every_exit_passed(factories, monkeypatch):
    """A call that stops at exit n checks exits 1..n-1 (and not exit n or later)."""
    import eexit_cli.profiling.torch_profiler as tp

    seen = []
    real = tp.torch_decision

    def recording(confidence, torch_module):
        decide = real(confidence, torch_module)

        def wrapped(out, threshold):
            seen.append(threshold)
            return decide(out, threshold)

        return wrapped

    monkeypatch.setattr(tp, "torch_decision", recording)
    model = open_torch(f"{factories}:staged", thresholds=[0.3, 0.6])
    seen.clear()
    with model.context():
        for n, expected in [(0, []), (1, [0.3]), (2, [0.3, 0.6])]:
            seen.clear()
            model.run_to(n)
            assert seen == expected


def test_factory_spec_recognition(tmp_path):
    assert is_factory_spec("model.py:make")
    assert is_factory_spec("package.module:make")
    assert not is_factory_spec("model.onnx")
    assert not is_factory_spec("C:/models/model.onnx")
    assert not is_factory_spec("model.py:1abc")


# ---------------------------------------------------------------------------
# Bad input: one line, exit code 2
# ---------------------------------------------------------------------------


BAD = [
    ("absent.py:make", "file not found"),
    ("FACTORIES:nothing_here", "has no attribute 'nothing_here'"),
    ("no_such_package_xyz.models:make", "no module named 'no_such_package_xyz'"),
    ("FACTORIES:not_callable", "not a callable factory"),
    ("FACTORIES:raises", "the factory raised RuntimeError: weights file missing"),
    ("FACTORIES:not_a_pair", "must return (model, example_input)"),
    ("FACTORIES:bad_example", "must be a tensor or a tuple of tensors"),
    ("FACTORIES:wrong_arity", "stage 1 returned a tuple of 3"),
    ("FACTORIES:wrong_shape", "exit 1 (exit_1) gives an output of shape [4]"),
    ("FACTORIES:untraceable", "stages"),
    ("FACTORIES:single_output", "not one output per exit"),
    ("model.pt", "checkpoint"),
    ("FACTORIES", "name the factory"),
]


@pytest.mark.parametrize("spec, expected", BAD, ids=[b[0].split(":")[-1] for b in BAD])
def test_bad_factories_are_one_line_and_exit_code_2(runner, factories, tmp_path, spec, expected):
    spec = spec.replace("FACTORIES", str(factories))
    if spec == "model.pt":
        spec = str(tmp_path / "model.pt")
        Path(spec).write_bytes(b"PK")
    out = tmp_path / "out" / "latency.json"
    out.parent.mkdir()
    r = run(runner, ["profile", spec, "-o", out, *FAST_ARGS])
    assert r.exit_code == 2, r.output
    line = one_error_line(r)
    assert line.startswith("eexit profile: error: ")
    assert expected in line, line
    assert list(out.parent.iterdir()) == []


def test_untraceable_model_points_to_the_stages_protocol(factories):
    with pytest.raises(InputError, match=r"torch.fx cannot trace.*`stages` attribute"):
        open_torch(f"{factories}:untraceable")


def test_forward_with_fewer_outputs_than_declared(runner, factories):
    r = run(runner, ["profile", f"{factories}:chain", "--outputs", "a,b,c,d", *FAST_ARGS])
    assert r.exit_code == 2
    assert "returned 3 outputs, but 4 exits are declared" in one_error_line(r)
    r = run(runner, ["profile", f"{factories}:staged", "--outputs", "a,b", *FAST_ARGS])
    assert r.exit_code == 2
    assert "has 3 stages, but 2 exits are declared" in one_error_line(r)


def test_declared_names_name_the_exits(runner, factories):
    r = run(runner, ["profile", f"{factories}:chain", "--outputs", "a,b,c", *FAST_ARGS])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["exit_names"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    "extra, expected",
    [(["--mode", "prefix"], "--mode prefix is for ONNX"), (["--input-shape", "x=1x4"], "--input-shape is for ONNX")],
)
def test_onnx_only_options_are_refused(runner, factories, extra, expected):
    r = run(runner, ["profile", f"{factories}:staged", *extra, *FAST_ARGS])
    assert r.exit_code == 2
    assert expected in one_error_line(r)


def test_cuda_without_a_gpu_is_one_line(runner, factories):
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is available here")
    r = run(runner, ["profile", f"{factories}:staged", "--device", "cuda", *FAST_ARGS])
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "--device cuda" in line and "torch.cuda.is_available() is False" in line


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_profile_synchronises_and_increases(factories):  # pragma: no cover (no GPU in CI)
    model = open_model(f"{MODELS_PY}:digits_cnn", device="cuda")
    assert model.sync is torch.cuda.synchronize
    from eexit_cli.profiling.record import profile_staged

    result = profile_staged(model, warmup=5, repeat=20, rounds=5)
    assert np.all(np.diff(result.per_exit) > 0)


def test_missing_torch_is_one_line(runner, factories, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    r = run(runner, ["profile", f"{factories}:staged", *FAST_ARGS])
    assert r.exit_code == 2
    line = one_error_line(r)
    assert "needs torch" in line and "pip install 'eexit[torch]'" in line
    with pytest.raises(MissingDependencyError):
        open_model(f"{factories}:staged")
