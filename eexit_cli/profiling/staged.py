"""The one interface both profilers implement: a model that runs as early-exit inference.

A :class:`StagedModel` is built by a backend (``onnx_profiler`` for ONNX graphs with
onnxruntime, ``torch_profiler`` for PyTorch models) and offers ``run_to(n)``: one
early-exit inference that stops at exit n (0-based), as a deployment runs it. Stage
k goes from exit k-1's boundary to exit k; after stage k < n the exit's confidence is
computed and compared with its threshold before the next stage runs (passing an exit
costs its check). Everything that times such calls (``timing``), describes the
result (``record``) and checks a prediction against an adaptive run (``adaptive``) is
written once against this interface.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Mapping, Sequence

import numpy as np

from eexit_cli.core.confidence import get_measure, log_softmax
from eexit_cli.errors import InputError

MODES = ("staged", "prefix")
DEVICES = ("cpu", "cuda")


@dataclass
class StagedModel:
    """A loaded early-exit model, ready to be timed.

    Attributes
    ----------
    exit_names
        Names of the N exits, in order.
    run_to
        ``run_to(n)`` runs one inference that stops at exit ``n`` (0-based).
    batch
        Samples per call (the first dimension of the input).
    inputs
        ``{"name", "shape", "dtype"}`` of every input tensor fed.
    mode
        ``"staged"`` (stages run in sequence with the exits checked between them) or
        ``"prefix"`` (one graph per exit from the inputs to exits 1..n, no checks).
    method
        One line saying how a call runs, for the record.
    device
        ``"cpu"`` or ``"cuda"``.
    threads
        Intra-op threads.
    confidence
        The confidence measure computed at each exit.
    source
        What was loaded: ``{"path": ..., "sha256": ...}`` or a factory.
    versions
        Library versions that matter for the timings.
    providers
        onnxruntime execution providers (empty for torch).
    overhead
        A call that does (almost) nothing through the same runtime, timed alongside
        the exits to show the fixed cost of a call; None when there is none.
    sync
        Called after each timed call before the clock is read (CUDA), or None.
    context
        A context manager entered once around all calls (e.g. ``torch.inference_mode``).
    names_known
        Whether ``exit_names`` are the model's own names (ONNX outputs, names given by
        the user) rather than placeholders (``exit_1`` ...); only known names go into the
        latency file, where they are compared with the split's.
    """

    exit_names: tuple[str, ...]
    run_to: Callable[[int], None]
    batch: int
    inputs: tuple[Mapping[str, object], ...]
    mode: str
    method: str
    device: str
    threads: int
    confidence: str
    source: Mapping[str, object]
    versions: Mapping[str, str] = field(default_factory=dict)
    providers: tuple[str, ...] = ()
    overhead: Callable[[], None] | None = None
    sync: Callable[[], None] | None = None
    context: Callable[[], ContextManager] = contextlib.nullcontext
    names_known: bool = True

    @property
    def n_exits(self) -> int:
        return len(self.exit_names)


def check_thresholds(thresholds, n_exits: int) -> np.ndarray:
    """The N-1 thresholds compared at the exits; +inf (never leave) when not given.

    When profiling, a comparison's outcome does not matter (every call goes on to the
    exit being timed), only that it is computed; the check against an adaptive run
    passes the tuned thresholds.
    """
    if thresholds is None:
        return np.full(n_exits - 1, np.inf)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (n_exits - 1,):
        raise InputError(
            f"the thresholds are for {t.size + 1} exits but the model has {n_exits} "
            f"(N disagrees; N-1 = {n_exits - 1} thresholds are needed)"
        )
    if np.any(np.isnan(t)):
        raise ValueError("thresholds contains NaN")
    return t


def numpy_decision(confidence: str) -> Callable[[np.ndarray, float], bool]:
    """``decide(exit_output, threshold)``: whether every sample of the batch would leave.

    The confidence is the one ``tune`` and ``evaluate`` compute from logits (see
    ``eexit_cli.core.confidence``), over the last axis of the exit's output.
    """
    measure = get_measure(confidence)
    if measure.compute is None:
        raise ValueError(
            f"confidence {confidence!r} cannot be computed from an exit's output; "
            "choose one of max_softmax, entropy, margin"
        )
    compute = measure.compute

    def decide(output: np.ndarray, threshold: float) -> bool:
        return bool(np.all(compute(log_softmax(output)) > threshold))

    return decide


def check_exit_output(output, n: int, name: str, batch: int, where: str, shape_of=None) -> None:
    """One line naming the exit when its output cannot be an exit's class scores."""
    shape = tuple(shape_of(output) if shape_of else getattr(output, "shape", ()))
    if len(shape) < 2 or shape[0] != batch or shape[-1] < 2:
        raise InputError(
            f"{where}: exit {n + 1} ({name}) gives an output of shape {list(shape)}; an exit must give "
            f"class scores of shape (batch={batch}, ..., classes>=2)"
        )


def describe_shapes(inputs: Sequence[Mapping[str, object]]) -> str:
    return ", ".join(f"{i['name']}={'x'.join(map(str, i['shape']))}" for i in inputs)


__all__ = [
    "DEVICES", "MODES", "StagedModel", "check_exit_output", "check_thresholds", "describe_shapes", "numpy_decision",
]
