"""Measure the per-exit latency d_n of an ONNX early-exit model with onnxruntime.

d_n is the latency of an inference that stops at exit n: the backbone up to exit n
and the heads of exits 1..n (each must be evaluated to decide whether to stop). It
is the d_n of the paper's latency model b(x, t) = sum_n d_n g_n(x, t) (Tan et al.,
AAAI 2021, eq. (5)).

How: for each n the sub-graph from the model's inputs to the outputs of exits 1..n
is cut out (``onnx.utils.Extractor``) and loaded into its own InferenceSession.
Asking one full session for a subset of its outputs would not do: onnxruntime still
runs the whole graph, so every exit would cost the whole model. Every session gets
the same random input at batch size 1; after a warm-up, rounds of ``repeat`` timed
calls are run for each exit, the order of the exits shuffled in every round, so that
slow drifts of the machine (frequency, other work) spread over all exits alike.
d_n is the median of the per-call times; the statistics are computed in
``eexit_cli.core.latency_stats``.

onnx and onnxruntime are imported only when a model is profiled (the ``onnx``
extra); everything else in eexit works without them.
"""

from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

from eexit_cli.core.latency_stats import ExitTiming, exit_timing
from eexit_cli.errors import DeviceUnavailableError, InputError, MissingDependencyError

LATENCY_FORMAT = "eexit.latency/v1"
DEVICES = ("cpu", "cuda")
# IQR / median above this makes a warning: the machine was too busy or too noisy for
# the median to mean much.
SPREAD_WARNING = 0.10

_INSTALL_HINT = "install with: pip install 'eexit[onnx]'"

ProgressCallback = Callable[[int, int], None]


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """One graph input as fed to the sessions."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class ProfileResult:
    """Per-exit latencies of one model on one machine, with how they were measured."""

    exits: tuple[ExitTiming, ...]
    model_path: str
    model_sha256: str
    inputs: tuple[InputSpec, ...]
    device: str
    providers: tuple[str, ...]
    threads: int
    warmup: int
    repeat: int
    rounds: int
    rounds_done: int
    time_budget: float | None
    seed: int
    timestamp: str
    wall_time: float
    call_overhead: ExitTiming | None = None
    environment: Mapping[str, object] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def exit_names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.exits)

    @property
    def per_exit(self) -> tuple[float, ...]:
        """d_1..d_N: the median latency of each exit, in seconds."""
        return tuple(e.median for e in self.exits)

    def to_latency_dict(self) -> dict:
        """The ``eexit.latency/v1`` object (see docs/profiling.md)."""
        measurement = {
            "method": "onnxruntime, prefix sub-graphs, batch 1, median of interleaved rounds",
            "statistic": "median",
            "exits": [e.to_dict() for e in self.exits],
            "model": {"path": self.model_path, "sha256": self.model_sha256},
            "inputs": [
                {"name": s.name, "shape": list(s.shape), "dtype": s.dtype} for s in self.inputs
            ],
            "device": self.device,
            "providers": list(self.providers),
            "threads": self.threads,
            "warmup": self.warmup,
            "repeat": self.repeat,
            "rounds": self.rounds,
            "rounds_done": self.rounds_done,
            "time_budget": self.time_budget,
            "seed": self.seed,
            "timestamp": self.timestamp,
            "wall_time": self.wall_time,
            "call_overhead": None if self.call_overhead is None else self.call_overhead.to_dict(),
            **dict(self.environment),
            "warnings": list(self.warnings),
        }
        return {
            "format": LATENCY_FORMAT,
            "unit": "s",
            "per_exit": list(self.per_exit),
            "exit_names": list(self.exit_names),
            "measurement": measurement,
        }


# ---------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Model handling
# ---------------------------------------------------------------------------


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


def _session(ort, sub_model, path: str, exit_name: str, providers, threads: int):
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
        raise InputError(f"{path}: onnxruntime cannot load the graph up to {exit_name!r} ({message})") from None
    if providers[0] == "CUDAExecutionProvider" and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceUnavailableError(
            "--device cuda: onnxruntime could not start the CUDA provider (CUDA or cuDNN "
            "libraries missing or no GPU visible)"
        )
    return session


# ---------------------------------------------------------------------------
# Profiling
# ---------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def profile_onnx(
    model_path: str | os.PathLike,
    *,
    outputs: Sequence[str] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    device: str = "cpu",
    threads: int = 1,
    warmup: int = 20,
    repeat: int = 50,
    rounds: int = 20,
    seed: int = 0,
    time_budget: float | None = None,
    progress: ProgressCallback | None = None,
) -> ProfileResult:
    """Measure d_1..d_N, the latency of an inference that stops at each exit.

    Parameters
    ----------
    model_path
        ONNX model with one output per exit.
    outputs
        Names of the exits' tensors in exit order; default: the graph's outputs in order.
    input_shapes
        Shapes for inputs with symbolic dimensions, ``{name: (1, 3, 32, 32)}``. Without
        one, a symbolic first (batch) dimension is 1 and any other symbolic dimension is
        an error.
    device
        ``"cpu"`` or ``"cuda"`` (needs onnxruntime-gpu).
    threads
        onnxruntime intra-op threads per session; 1 gives the steadiest numbers.
    warmup
        Untimed calls per exit before measuring.
    repeat
        Timed calls per exit in each round.
    rounds
        Rounds; each times every exit ``repeat`` times, exits in a shuffled order.
    seed
        Seed of the random inputs and of the order of the exits within rounds.
    time_budget
        If given, seconds of timed calls per exit after which no new round starts
        (at least one round always runs).
    progress
        Called as ``progress(done, total)`` after the warm-up of each exit and after
        each exit of each round.

    Returns
    -------
    ProfileResult
        Per-exit statistics (median = d_n) and how they were measured;
        ``to_latency_dict()`` gives the latency JSON.
    """
    path = os.fspath(model_path)
    threads = _check_int("threads", threads, 1)
    warmup = _check_int("warmup", warmup, 0)
    repeat = _check_int("repeat", repeat, 1)
    rounds = _check_int("rounds", rounds, 1)
    seed = _check_int("seed", seed, 0)
    if device not in DEVICES:
        raise InputError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if time_budget is not None and not (isinstance(time_budget, (int, float)) and time_budget > 0):
        raise InputError(f"time budget must be a positive number of seconds, got {time_budget!r}")
    input_shapes = dict(input_shapes or {})

    onnx, ort = _import_onnx()
    providers = _providers(ort, device)
    model = _load_model(onnx, path)
    specs = _resolve_inputs(onnx, model, path, input_shapes)
    names, model = _select_outputs(onnx, model, path, outputs)
    n_exits = len(names)
    prefixes = _prefix_models(onnx, model, path, [s.name for s in specs], names)
    sessions = [_session(ort, sub, path, names[n], providers, threads) for n, sub in enumerate(prefixes)]
    del prefixes
    feed = _random_feed(specs, seed)
    feeds = []
    for session in sessions:
        wanted = {i.name for i in session.get_inputs()}
        feeds.append({k: v for k, v in feed.items() if k in wanted})
    fetches = [names[: n + 1] for n in range(n_exits)]
    targets = [(sessions[n].run, fetches[n], feeds[n]) for n in range(n_exits)]
    try:
        # the same call with (almost) no work in it, timed alongside the exits
        baseline = _session(ort, _overhead_model(onnx, model), path, "call overhead", providers, threads)
        baseline.run(None, feed)
        targets.append((baseline.run, None, feed))
    except Exception:  # only a reference figure: a model it cannot mimic goes without
        baseline = None

    cpus = _cpus_available()
    environment = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": cpus,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "onnx_version": onnx.__version__,
        "onnxruntime_version": ort.__version__,
    }
    timestamp = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    load_start = _loadavg()
    started = time.perf_counter()

    total = n_exits + rounds * n_exits
    done = 0
    for n, session in enumerate(sessions):
        try:
            session.run(fetches[n], feeds[n])  # a first call surfaces shape/type errors clearly
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            shapes = ", ".join(f"{s.name}={'x'.join(map(str, s.shape))}" for s in specs)
            raise InputError(
                f"{path}: running the graph up to {names[n]!r} failed with inputs {shapes} ({message})"
            ) from None
        for _ in range(warmup):
            session.run(fetches[n], feeds[n])
        done += 1
        if progress is not None:
            progress(done, total)

    if baseline is not None:
        for _ in range(warmup):
            baseline.run(None, feed)

    order_rng = np.random.default_rng(seed + 1)
    times: list[list[list[int]]] = [[] for _ in targets]
    spent_ns = [0] * len(targets)
    budget_ns = None if time_budget is None else int(time_budget * 1e9)
    clock = time.perf_counter_ns
    rounds_done = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()  # a collection in the middle of a timed call is not the model's latency
    try:
        for _ in range(rounds):
            for n in order_rng.permutation(len(targets)):
                run, fetch, inputs = targets[n]
                block = [0] * repeat
                for i in range(repeat):
                    t0 = clock()
                    run(fetch, inputs)
                    block[i] = clock() - t0
                times[n].append(block)
                spent_ns[n] += sum(block)
                if n < n_exits:
                    done += 1
                    if progress is not None:
                        progress(done, total)
            rounds_done += 1
            if budget_ns is not None and max(spent_ns[:n_exits]) >= budget_ns:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    wall_time = time.perf_counter() - started
    load_end = _loadavg()
    if progress is not None and done != total:
        progress(total, total)

    exits = tuple(exit_timing(names[n], times[n]) for n in range(n_exits))
    environment["loadavg_start"] = load_start
    environment["loadavg_end"] = load_end
    warnings = _warnings(exits, threads, cpus, load_start, rounds, rounds_done)
    return ProfileResult(
        exits=exits,
        model_path=path,
        model_sha256=_sha256(path),
        inputs=tuple(specs),
        device=device,
        providers=tuple(sessions[-1].get_providers()),
        threads=threads,
        warmup=warmup,
        repeat=repeat,
        rounds=rounds,
        rounds_done=rounds_done,
        time_budget=None if time_budget is None else float(time_budget),
        seed=seed,
        timestamp=timestamp,
        wall_time=wall_time,
        call_overhead=None if baseline is None else exit_timing("call overhead", times[n_exits]),
        environment=environment,
        warnings=tuple(warnings),
    )


def _warnings(exits, threads, cpus, load_start, rounds, rounds_done) -> list[str]:
    out = []
    medians = [e.median for e in exits]
    flat = [exits[i + 1].name for i in range(len(exits) - 1) if not medians[i + 1] > medians[i]]
    if flat:
        out.append(
            "d_n does not increase with n at " + ", ".join(flat) + ": check that the exits are "
            "given in order (--outputs), or the differences are within the noise"
        )
    noisy = [f"{e.name} ({100 * e.relative_iqr:.0f}%)" for e in exits if e.relative_iqr > SPREAD_WARNING]
    if noisy:
        out.append(
            "large spread (IQR above 10% of the median) at " + ", ".join(noisy)
            + ": the machine may be busy; use --threads 1, stop other work, or add --rounds"
        )
    if threads > cpus:
        out.append(f"{threads} threads on {cpus} available CPUs: timings include waiting for a CPU")
    if load_start is not None and load_start[0] + threads > cpus + 0.5:
        out.append(
            f"load average {load_start[0]:.2f} on {cpus} CPUs when measuring began: other work "
            "competes for the CPUs and inflates the timings"
        )
    if rounds_done < rounds:
        out.append(f"time budget reached: {rounds_done} of {rounds} rounds were run")
    return out


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
    "ExitTiming",
    "InputSpec",
    "ProfileResult",
    "parse_shape",
    "profile_onnx",
]
