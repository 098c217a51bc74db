"""The ONNX backend: an ONNX early-exit model as a :class:`StagedModel` (onnxruntime).

d_n is the latency of an inference that stops at exit n (the d_n of the paper's
latency model b(x, t) = sum_n d_n g_n(x, t), Tan et al., AAAI 2021, eq. (5)).

Staged mode (the default) runs the model as an early-exit deployment does: the graph
is cut into N stage sub-graphs at the boundary tensors (those produced before exit k
and consumed after it; ``onnx_cut``), each loaded into its own InferenceSession; a call runs stages
1..n in sequence, handing the boundary tensors on, and after each stage k < n
computes exit k's confidence from its output and compares it with a threshold.

Prefix mode cuts, for each n, the sub-graph from the inputs to exits 1..n and times it
alone: the cost of the computation without the per-stage calls and checks, for a
runtime that runs the whole early-exit logic inside one graph call. (Asking one
full session for a subset of its outputs would not do: onnxruntime still runs the
whole graph.)

Inputs are random, seeded, of the declared shapes; a symbolic batch dimension is 1
unless ``--input-shape`` says otherwise. onnx and onnxruntime are imported only when
a model is opened (the ``onnx`` extra).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from eexit_cli.errors import DeviceUnavailableError, InputError, MissingDependencyError
from eexit_cli.profiling.onnx_cut import cut_stages, stage_models
from eexit_cli.profiling.record import ProfileResult, check_open_settings, profile_staged, sha256_file
from eexit_cli.profiling.staged import (
    StagedModel,
    check_exit_output,
    check_thresholds,
    describe_shapes,
    numpy_decision,
)
from eexit_cli.profiling.timing import ProgressCallback

_INSTALL_HINT = "install with: pip install 'eexit[onnx]'"


@dataclass(frozen=True)
class InputSpec:
    """One graph input as fed to the sessions."""

    name: str
    shape: tuple[int, ...]
    dtype: str


def _import_onnx():
    try:
        import onnx
        import onnx.utils
    except ImportError:
        raise MissingDependencyError(f"profiling needs the 'onnx' package; {_INSTALL_HINT}") from None
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            f"profiling needs the 'onnxruntime' package; {_INSTALL_HINT}"
        ) from None
    return onnx, onnxruntime


def _numpy_dtypes(onnx) -> dict[int, np.dtype]:
    tp = onnx.TensorProto
    return {
        tp.FLOAT16: np.dtype(np.float16),
        tp.FLOAT: np.dtype(np.float32),
        tp.DOUBLE: np.dtype(np.float64),
        tp.INT32: np.dtype(np.int32),
        tp.INT64: np.dtype(np.int64),
        tp.BOOL: np.dtype(np.bool_),
        tp.UINT8: np.dtype(np.uint8),
        tp.INT8: np.dtype(np.int8),
    }


def _load_model(onnx, path: str):
    if not os.path.exists(path):
        raise InputError(f"{path}: file not found")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not an ONNX model file")
    try:
        model = onnx.load(path)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InputError(f"{path}: not an ONNX model ({type(exc).__name__}: {exc})") from None
    # protobuf happily parses an empty (or some non-ONNX) file as an empty model
    if model.ir_version <= 0 or len(model.graph.node) == 0 or len(model.graph.output) == 0:
        raise InputError(f"{path}: not an ONNX model (no graph with nodes and outputs in it)")
    return model


def _graph_inputs(model) -> list:
    initialisers = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initialisers]


def _resolve_inputs(onnx, model, path: str, input_shapes: Mapping[str, Sequence[int]]):
    """Shapes and dtypes of the real inputs; the batch dimension is 1 unless given."""
    dtypes = _numpy_dtypes(onnx)
    inputs = _graph_inputs(model)
    names = [v.name for v in inputs]
    unknown = [n for n in input_shapes if n not in names]
    if unknown:
        raise InputError(
            f"{path}: no input named {unknown[0]!r} for --input-shape (inputs: {', '.join(names) or 'none'})"
        )
    specs = []
    for value in inputs:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise InputError(
                f"{path}: input {value.name!r} is a {kind or 'untyped value'}, not a tensor; "
                "only tensor inputs can be profiled"
            )
        elem = value.type.tensor_type.elem_type
        if elem not in dtypes:
            supported = ", ".join(str(d) for d in dtypes.values())
            raise InputError(
                f"{path}: input {value.name!r} has element type "
                f"{onnx.TensorProto.DataType.Name(elem)}, which cannot be profiled "
                f"(supported: {supported})"
            )
        declared = value.type.tensor_type.shape.dim if value.type.tensor_type.HasField("shape") else None
        given = input_shapes.get(value.name)
        if given is not None:
            given = tuple(int(d) for d in given)
            if any(d < 1 for d in given):
                raise InputError(f"--input-shape {value.name}: dimensions must be positive, got {given}")
            if declared is not None:
                if len(given) != len(declared):
                    raise InputError(
                        f"--input-shape {value.name}: the model declares {len(declared)} dimensions, "
                        f"got {len(given)} ({'x'.join(map(str, given))})"
                    )
                for i, (d, g) in enumerate(zip(declared, given)):
                    if d.HasField("dim_value") and d.dim_value != g:
                        raise InputError(
                            f"--input-shape {value.name}: dimension {i} is fixed to {d.dim_value} "
                            f"in the model, got {g}"
                        )
            shape = given
        else:
            if declared is None:
                raise InputError(
                    f"{path}: input {value.name!r} has no declared shape; give it with "
                    f"--input-shape {value.name}=1x..."
                )
            shape = []
            for i, d in enumerate(declared):
                if d.HasField("dim_value") and d.dim_value > 0:
                    shape.append(int(d.dim_value))
                elif i == 0:
                    shape.append(1)  # batch size 1: the latency of one sample
                else:
                    label = f" ({d.dim_param!r})" if d.dim_param else ""
                    raise InputError(
                        f"{path}: input {value.name!r} dimension {i}{label} is symbolic; give the "
                        f"input's full shape with --input-shape {value.name}=1x..."
                    )
            shape = tuple(shape)
        specs.append(InputSpec(name=value.name, shape=shape, dtype=str(dtypes[elem])))
    if not specs:
        raise InputError(f"{path}: the model has no inputs to feed")
    return specs


def _random_feed(specs: Sequence[InputSpec], seed: int) -> dict[str, np.ndarray]:
    """Seeded random inputs. Integers are 0/1 so that index-like inputs stay in range."""
    rng = np.random.default_rng(seed)
    feed = {}
    for s in specs:
        dtype = np.dtype(s.dtype)
        if dtype.kind == "f":
            arr = rng.standard_normal(s.shape).astype(dtype)
        elif dtype.kind == "b":
            arr = rng.random(s.shape) < 0.5
        elif dtype == np.uint8:
            arr = rng.integers(0, 256, s.shape, dtype=np.uint8)
        elif dtype == np.int8:
            arr = rng.integers(-128, 128, s.shape, dtype=np.int8)
        else:
            arr = rng.integers(0, 2, s.shape).astype(dtype)
        feed[s.name] = np.ascontiguousarray(arr)
    return feed


def _select_outputs(onnx, model, path: str, outputs: Sequence[str] | None) -> tuple[list[str], object]:
    """The exit outputs in order, and a model in which each of them has a value_info."""
    graph_outputs = [o.name for o in model.graph.output]
    if outputs is None:
        names = graph_outputs
        if len(names) < 2:
            raise InputError(
                f"{path}: the model has {len(names)} output ({', '.join(names)}); profiling needs "
                "one output per exit, at least 2 (or name the exits' tensors with --outputs)"
            )
        return names, model
    names = [str(n) for n in outputs]
    if len(names) < 2:
        raise InputError(f"--outputs: give at least 2 exit outputs, got {len(names)} ({', '.join(names)})")
    seen = set()
    for n in names:
        if n in seen:
            raise InputError(f"--outputs: {n!r} is given twice")
        seen.add(n)
    produced = {o for node in model.graph.node for o in node.output if o}
    missing = [n for n in names if n not in produced and n not in graph_outputs]
    if missing:
        raise InputError(
            f"{path}: no output or tensor named {missing[0]!r} in the graph "
            f"(graph outputs: {', '.join(graph_outputs)})"
        )
    if any(n not in graph_outputs for n in names):
        # an inner tensor can only be cut out once its type is known
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:
            raise InputError(f"{path}: shape inference failed ({exc})") from None
        typed = {v.name for v in model.graph.value_info} | set(graph_outputs)
        untyped = [n for n in names if n not in typed]
        if untyped:
            raise InputError(
                f"{path}: the type of tensor {untyped[0]!r} cannot be inferred, so it cannot be "
                "made an output; export the model with that tensor as a graph output"
            )
    return names, model


def _prefix_models(onnx, model, path: str, input_names: list[str], output_names: list[str]) -> list:
    """Sub-graphs from the inputs to exits 1..n, for n = 1..N."""
    extractor = onnx.utils.Extractor(model)
    prefixes = []
    for n in range(1, len(output_names) + 1):
        try:
            sub = extractor.extract_model(input_names, output_names[:n])
        except Exception as exc:
            raise InputError(
                f"{path}: cannot cut the sub-graph up to {output_names[n - 1]!r} ({exc})"
            ) from None
        prefixes.append(sub)
    return prefixes


def _overhead_model(onnx, model):
    """A one-node graph with the model's inputs: what a call costs before any real work."""
    helper = onnx.helper
    inputs = _graph_inputs(model)
    first = inputs[0]
    out = onnx.ValueInfoProto()
    out.CopyFrom(first)
    out.name = first.name + "__eexit_identity"
    graph = helper.make_graph(
        [helper.make_node("Identity", [first.name], [out.name])], "call_overhead", list(inputs), [out]
    )
    sub = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    sub.ir_version = model.ir_version
    return sub


def _providers(ort, device: str) -> list[str]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailableError(
            "--device cuda: onnxruntime has no CUDAExecutionProvider here (needs the "
            f"onnxruntime-gpu package and a CUDA GPU; available: {', '.join(available)})"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


def _session(ort, sub_model, path: str, what: str, providers, threads: int):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # cut graphs may leave unused initialisers: not worth a warning
    # Idle sessions must not keep worker threads spinning on the cores the timed one needs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(sub_model.SerializeToString(), options, providers=providers)
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: onnxruntime cannot load {what} ({message})") from None
    if providers[0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceUnavailableError(
            "--device cuda: onnxruntime could not start the CUDA provider (CUDA or cuDNN "
            "libraries missing or no GPU visible)"
        )
    return session


# ---------------------------------------------------------------------------
# Opening a model
# ---------------------------------------------------------------------------


def open_onnx(
    model_path: str | os.PathLike,
    *,
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    mode: str = "staged",
    device: str = "cpu",
    threads: int = 1,
    confidence: str = "max_softmax",
    thresholds=None,
    seed: int = 0,
) -> StagedModel:
    """Load an ONNX early-exit model as a :class:`StagedModel`.

    Parameters
    ----------
    model_path
        ONNX model with one output per exit (or inner tensors named by ``outputs``).
    outputs
        Names of the exits' tensors in exit order; default: the graph's outputs in order.
    input_shapes
        Shapes for inputs with symbolic dimensions, ``{name: (1, 3, 32, 32)}``. Without
        one, a symbolic first (batch) dimension is 1 and any other symbolic dimension is
        an error.
    mode
        ``"staged"`` (default) or ``"prefix"`` (see the module's documentation).
    device
        ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
    threads
        onnxruntime intra-op threads per session.
    confidence
        Confidence measure computed at each exit passed (staged mode).
    thresholds
        N-1 thresholds compared at the exits; default +inf (the comparison is made,
        its outcome does not matter for ``run_to``).
    seed
        Seed of the random inputs.
    """
    path = os.fspath(model_path)
    threads, seed = check_open_settings(mode, device, threads, seed)
    decide = numpy_decision(confidence)
    onnx, ort = _import_onnx()
    providers = _providers(ort, device)
    model = _load_model(onnx, path)
    specs = _resolve_inputs(onnx, model, path, dict(input_shapes or {}))
    names, model = _select_outputs(onnx, model, path, outputs)
    n_exits = len(names)
    t = check_thresholds(thresholds, n_exits)
    feed = _random_feed(specs, seed)
    input_names = [s.name for s in specs]
    batch = int(specs[0].shape[0]) if specs[0].shape else 1
    inputs = tuple({"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in specs)

    if mode == "prefix":
        subs = _prefix_models(onnx, model, path, input_names, names)
        sessions = [_session(ort, sub, path, f"the graph up to {names[n]!r}", providers, threads)
                    for n, sub in enumerate(subs)]
        feeds = [{i.name: feed[i.name] for i in s.get_inputs()} for s in sessions]
        fetches = [names[: n + 1] for n in range(n_exits)]
        runs = [(s.run, fetches[n], feeds[n]) for n, s in enumerate(sessions)]

        def run_to(n: int) -> None:
            run, fetch, f = runs[n]
            run(fetch, f)

        method = f"onnxruntime, prefix sub-graphs (no checks between exits), batch {batch}"
    else:
        cuts = cut_stages(model, names, path)
        subs = stage_models(onnx, model, path, cuts)
        sessions = [_session(ort, sub, path, f"stage {k + 1} (up to {names[k]!r})", providers, threads)
                    for k, sub in enumerate(subs)]
        plan = [(s.run, [c.exit, *c.hands_on], c.inputs, [c.exit, *c.hands_on]) for s, c in zip(sessions, cuts)]
        thresholds_list = [float(x) for x in t]
        last = n_exits - 1

        def run_to(n: int) -> None:
            env = dict(feed)
            for k, (run, fetch, reads, produced) in enumerate(plan):
                values = run(fetch, {name: env[name] for name in reads})
                env.update(zip(produced, values))
                if k == n:
                    return
                if k < last:
                    decide(values[0], thresholds_list[k])

        method = (f"onnxruntime, {n_exits} stage sub-graphs run in sequence with each exit's "
                  f"{confidence} checked, batch {batch}")

    # a first inference to each exit: does the model run with these inputs, and do
    # the exits give class scores?
    for n in range(n_exits):
        try:
            if mode == "prefix":
                outs = sessions[n].run(names[: n + 1], feeds[n])
                out = outs[-1]
            else:
                out = _first_run(sessions, cuts, feed, n)
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(
                f"{path}: running the graph up to {names[n]!r} failed with inputs {describe_shapes(inputs)} "
                f"({message})"
            ) from None
        check_exit_output(out, n, names[n], batch, path)
    if mode == "staged":
        run_to(n_exits - 1)  # the confidences compute on these outputs

    overhead = None
    try:
        # the same call with (almost) no work in it, timed alongside the exits
        baseline = _session(ort, _overhead_model(onnx, model), path, "call overhead", providers, threads)
        baseline.run(None, feed)
        overhead = lambda: baseline.run(None, feed)  # noqa: E731
    except Exception:  # only a reference figure: a model it cannot mimic goes without
        overhead = None

    return StagedModel(
        exit_names=tuple(names),
        run_to=run_to,
        batch=batch,
        inputs=inputs,
        mode=mode,
        method=method,
        device=device,
        threads=threads,
        confidence=confidence,
        source={"path": path, "sha256": sha256_file(path)},
        versions={"onnx_version": onnx.__version__, "onnxruntime_version": ort.__version__},
        providers=tuple(sessions[-1].get_providers()),
        overhead=overhead,
    )


def _first_run(sessions, cuts, feed, n):
    env = dict(feed)
    out = None
    for k in range(n + 1):
        cut = cuts[k]
        produced = [cut.exit, *cut.hands_on]
        values = sessions[k].run(produced, {name: env[name] for name in cut.inputs})
        env.update(zip(produced, values))
        out = values[0]
    return out


def profile_onnx(
    model_path: str | os.PathLike,
    *,
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    mode: str = "staged",
    device: str = "cpu",
    threads: int = 1,
    confidence: str = "max_softmax",
    warmup: int = 20,
    repeat: int = 50,
    rounds: int = 20,
    seed: int = 0,
    time_budget: float | None = None,
    progress: ProgressCallback | None = None,
) -> ProfileResult:
    """Measure d_1..d_N of an ONNX model: :func:`open_onnx`, then ``profile_staged``.

    See ``eexit_cli.profiling.record.profile_staged`` for ``warmup``, ``repeat``,
    ``rounds``, ``seed``, ``time_budget`` and ``progress``.
    """
    model = open_onnx(model_path, outputs=outputs, input_shapes=input_shapes, mode=mode, device=device,
                      threads=threads, confidence=confidence, seed=seed)
    return profile_staged(model, warmup=warmup, repeat=repeat, rounds=rounds, seed=seed,
                          time_budget=time_budget, progress=progress)


def parse_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """Parse ``NAME=1x3x32x32`` (``,`` also separates dimensions; ``NAME=`` is a scalar)."""
    name, sep, dims = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValueError(f"expected NAME=DIMS such as input=1x3x32x32, got {text!r}")
    dims = dims.strip()
    if not dims:
        return name, ()
    parts = dims.replace(",", "x").replace("X", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"dimensions of {name!r} must be positive integers such as 1x3x32x32, got {dims!r}") from None
    if any(d < 1 for d in shape):
        raise ValueError(f"dimensions of {name!r} must be positive, got {dims!r}")
    return name, shape


__all__ = [
    "InputSpec",
    "open_onnx",
    "parse_shape",
    "profile_onnx",
]
