"""eexit: latency-aware early-exit inference, as a library and as the ``eexit`` command.

An early-exit model has N classifier heads ("exits"); a sample leaves at the first
exit whose confidence is strictly above that exit's threshold, and the last exit
answers the rest. eexit measures what each exit costs, tunes the thresholds that
maximise accuracy subject to mean latency <= a budget (Tan et al., AAAI 2021), and
checks them on held-out data. The command line and this package are two faces of
the same functions (docs/api.md has a worked example; docs/formats.md the files).

From training code: write every exit's outputs on a split
    write_exits(path, logits=..., labels=...)   one call, arrays (N, M, C) or N arrays (M, C)
    ExitWriter(path)                            context manager; .append(outputs, labels) per batch

Tuning and checking (``eexit tune`` / ``eexit evaluate``)
    read_exits(path) -> ExitOutputs             per-exit confidences and correctness
    tune(split, latency, budget) -> Tuned       thresholds for a budget (or a frontier)
    evaluate(split, thresholds) -> Evaluation   the report ``eexit evaluate`` writes
    replay(split, policy) -> ReplayResult       the exit of every sample

In serving code
    load_thresholds(path, entry=None) -> ExitPolicy
    policy.should_exit(n, exit_output)          bool per sample at exit n (0-based)
    policy.apply(exit_outputs)                  (exit index, prediction) per sample

Inputs may be numpy arrays or torch tensors; torch is imported only when a tensor
is passed, and ``import eexit_cli`` itself imports nothing heavy (names load on
first use). Bad arguments raise ``ValueError`` or ``TypeError`` naming the
argument; unusable files raise ``InputError`` (a ``ValueError``) naming the file
and dataset.
"""

__version__ = "0.1.0"

# name -> module that defines it; imported on first access (PEP 562)
_LAZY = {
    "write_exits": "eexit_cli.io.writer",
    "ExitWriter": "eexit_cli.io.writer",
    "read_exits": "eexit_cli.io.exits",
    "ExitOutputs": "eexit_cli.io.exits",
    "tune": "eexit_cli.api.tuning",
    "Tuned": "eexit_cli.api.tuning",
    "evaluate": "eexit_cli.api.evaluation",
    "Evaluation": "eexit_cli.api.evaluation",
    "replay": "eexit_cli.api.evaluation",
    "ReplayResult": "eexit_cli.core.replay",
    "TuneResult": "eexit_cli.core.tuner",
    "load_thresholds": "eexit_cli.api.serving",
    "ExitPolicy": "eexit_cli.core.policy",
    "LatencyProfile": "eexit_cli.io.jsonfiles",
    "read_latency": "eexit_cli.io.jsonfiles",
    "EexitError": "eexit_cli.errors",
    "InputError": "eexit_cli.errors",
    "InfeasibleBudgetError": "eexit_cli.errors",
}

__all__ = list(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'eexit_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
