"""The PyTorch backend: a model from a factory as a :class:`StagedModel` (eager torch).

``eexit profile FILE.py:FACTORY`` (or ``package.module:FACTORY``): ``FACTORY()``
returns ``(model, example_input)``.

- If the model has a ``stages`` attribute, a sequence of N callables
  ``stage(state) -> (state, exit_output)`` (the first one receiving the example
  input), those are the stages.
- Otherwise ``model(example_input)`` must return the N exit outputs (a tuple or list);
  the model is traced with ``torch.fx`` and cut into N stages (``torch_fx_cut``).

A call runs the stages in eager mode under ``torch.inference_mode()``; after each
stage k < n it computes exit k's confidence in torch and compares it with a threshold
(which waits for the device, as a deployment's ``if`` does). With ``--device cuda``
the clock is read after ``torch.cuda.synchronize()``. torch is imported only here
(the ``torch`` extra).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import sys
from typing import Callable, Sequence

from eexit_cli.errors import DeviceUnavailableError, InputError, MissingDependencyError
from eexit_cli.profiling.record import ProfileResult, check_open_settings, profile_staged, sha256_file
from eexit_cli.profiling.staged import StagedModel, check_exit_output, check_thresholds
from eexit_cli.profiling.timing import ProgressCallback
from eexit_cli.profiling.torch_fx_cut import fx_stages, one_line

_INSTALL_HINT = "install with: pip install 'eexit[torch]'"
_SPEC = re.compile(r"^(?P<target>.+):(?P<factory>[A-Za-z_][A-Za-z0-9_]*)$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def is_factory_spec(text: str) -> bool:
    """Whether ``text`` names a factory (``FILE.py:NAME`` or ``package.module:NAME``)."""
    match = _SPEC.match(str(text))
    if not match:
        return False
    target = match.group("target")
    return target.endswith(".py") or bool(_MODULE.match(target))


def import_torch():
    try:
        import torch
    except ImportError:
        raise MissingDependencyError(f"profiling a PyTorch model needs torch; {_INSTALL_HINT}") from None
    return torch


# ---------------------------------------------------------------------------
# Loading the factory
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def _first_on_path(folder: str):
    """``folder`` first on ``sys.path`` while the block runs (imports look there first)."""
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass


def load_factory(spec: str) -> tuple[Callable, dict]:
    """The factory named by ``spec`` and a description of where it came from."""
    match = _SPEC.match(spec)
    if not match or not is_factory_spec(spec):
        raise InputError(f"{spec}: expected FILE.py:FACTORY or package.module:FACTORY")
    target, name = match.group("target"), match.group("factory")
    if target.endswith(".py"):
        if not os.path.exists(target):
            raise InputError(f"{target}: file not found")
        if os.path.isdir(target):
            raise InputError(f"{target}: is a folder, expected a Python file")
        module_name = "_eexit_factory_" + re.sub(r"\W", "_", os.path.abspath(target))
        folder = os.path.dirname(os.path.abspath(target))
        with _first_on_path(folder):  # the file may import its neighbours
            try:
                module_spec = importlib.util.spec_from_file_location(module_name, target)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[module_name] = module
                module_spec.loader.exec_module(module)
            except Exception as exc:
                sys.modules.pop(module_name, None)
                raise InputError(f"{target}: importing it failed ({one_line(exc)})") from None
        source = {"factory": spec, "path": target, "sha256": sha256_file(target)}
    else:
        with _first_on_path(os.getcwd()):  # a module of the current folder, as `python -m` would find it
            try:
                module = importlib.import_module(target)
            except ModuleNotFoundError as exc:
                raise InputError(
                    f"{spec}: no module named {exc.name!r} (is it installed or on PYTHONPATH?)"
                ) from None
            except Exception as exc:
                raise InputError(f"{spec}: importing {target} failed ({one_line(exc)})") from None
        path = getattr(module, "__file__", None)
        source = {"factory": spec, "path": path, "sha256": sha256_file(path) if path else None}
    factory = getattr(module, name, None)
    if factory is None:
        raise InputError(f"{spec}: {target} has no attribute {name!r}")
    if not callable(factory):
        raise InputError(f"{spec}: {name} is a {type(factory).__name__}, not a callable factory")
    return factory, source


def call_factory(factory: Callable, spec: str, torch):
    try:
        made = factory()
    except Exception as exc:
        raise InputError(f"{spec}: the factory raised {one_line(exc)}") from None
    if not isinstance(made, (tuple, list)) or len(made) != 2:
        what = f"a {type(made).__name__}" + (f" of {len(made)} items" if isinstance(made, (tuple, list)) else "")
        raise InputError(f"{spec}: the factory returned {what}; it must return (model, example_input)")
    model, example = made
    if not callable(model):
        raise InputError(f"{spec}: the factory's model is a {type(model).__name__}, not callable")
    tensors = _tensors(example, torch)
    if not tensors:
        raise InputError(
            f"{spec}: the factory's example input is a {type(example).__name__}; it must be a tensor "
            "or a tuple of tensors"
        )
    return model, example


def _tensors(value, torch) -> list:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v, torch)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v, torch)]
    return []


def _to(value, device, torch):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to(v, device, torch) for v in value)
    if isinstance(value, list):
        return [_to(v, device, torch) for v in value]
    if isinstance(value, dict):
        return {k: _to(v, device, torch) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------
# Opening a model
# ---------------------------------------------------------------------------


def torch_decision(confidence: str, torch) -> Callable:
    """``decide(exit_output, threshold) -> bool`` in torch, the measure of core.confidence."""
    f = torch.nn.functional

    if confidence == "max_softmax":
        def score(out):
            return f.softmax(out, dim=-1).amax(dim=-1)
    elif confidence == "entropy":
        def score(out):
            logp = f.log_softmax(out, dim=-1)
            return (logp.exp() * logp).sum(dim=-1)
    elif confidence == "margin":
        def score(out):
            top = f.softmax(out, dim=-1).topk(2, dim=-1).values
            return top[..., 0] - top[..., 1]
    else:
        raise InputError(
            f"confidence {confidence!r} cannot be computed from an exit's output; "
            "choose one of max_softmax, entropy, margin"
        )

    def decide(out, threshold: float) -> bool:
        return bool((score(out.float()) > threshold).all())

    return decide


def open_torch(
    spec: str,
    *,
    exit_names: Sequence[str] | None = None,
    mode: str = "staged",
    device: str = "cpu",
    threads: int = 1,
    confidence: str = "max_softmax",
    thresholds=None,
    seed: int = 0,
) -> StagedModel:
    """Load ``FILE.py:FACTORY`` or ``package.module:FACTORY`` as a :class:`StagedModel`.

    ``exit_names`` names (and so declares the number of) the exits. ``mode`` must be
    ``"staged"``: eager PyTorch has no prefix graphs. ``seed`` seeds torch before the
    factory runs.
    """
    threads, seed = check_open_settings(mode, device, threads, seed)
    if mode != "staged":
        raise InputError("--mode prefix is for ONNX models; a PyTorch model is profiled stage by stage")
    torch = import_torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"--device cuda: torch {torch.__version__} sees no CUDA GPU here "
            "(torch.cuda.is_available() is False); use --device cpu or a CUDA build of torch"
        )
    decide = torch_decision(confidence, torch)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # can only be set once per process, before any parallel work
        pass
    factory, source = load_factory(spec)
    torch.manual_seed(seed)
    model, example = call_factory(factory, spec, torch)
    with torch.inference_mode():
        if isinstance(model, torch.nn.Module):
            model.eval()
            model.to(device)
        example = _to(example, device, torch)
        n_declared = None if exit_names is None else len(exit_names)
        stages_attr = getattr(model, "stages", None)
        if stages_attr is not None:
            try:
                stages = tuple(stages_attr)
            except TypeError:
                raise InputError(f"{spec}: model.stages is a {type(stages_attr).__name__}, not a sequence of "
                                 "callables") from None
            bad = [k + 1 for k, s in enumerate(stages) if not callable(s)]
            if bad:
                raise InputError(f"{spec}: model.stages[{bad[0] - 1}] is not callable")
            if n_declared is not None and len(stages) != n_declared:
                raise InputError(f"{spec}: model.stages has {len(stages)} stages, but {n_declared} exits are declared")
            if len(stages) < 2:
                raise InputError(f"{spec}: model.stages has {len(stages)} stage; profiling needs at least 2 exits")
            names = [f"exit_{k + 1}" for k in range(len(stages))]
            how = "the model's stages"
        else:
            stages, names = fx_stages(model, example, spec, n_declared, torch)
            how = "stages cut from the traced model (torch.fx)"
    stages = tuple(stages)
    if exit_names is not None:
        names = [str(n) for n in exit_names]
    n_exits = len(stages)
    t = [float(x) for x in check_thresholds(thresholds, n_exits)]
    tensors = _tensors(example, torch)
    batch = int(tensors[0].shape[0]) if tensors[0].dim() else 1
    inputs = tuple({"name": f"input_{i}" if len(tensors) > 1 else "input",
                    "shape": list(x.shape), "dtype": str(x.dtype).replace("torch.", "")}
                   for i, x in enumerate(tensors))
    last = n_exits - 1

    def run_to(n: int) -> None:
        state = example
        for k, stage in enumerate(stages):
            state, out = stage(state)
            if k == n:
                return
            if k < last:
                decide(out, t[k])

    # a first inference through every stage, checked
    with torch.inference_mode():
        state = example
        for k, stage in enumerate(stages):
            try:
                result = stage(state)
            except Exception as exc:
                raise InputError(f"{spec}: stage {k + 1} raised {one_line(exc)}") from None
            if not isinstance(result, tuple) or len(result) != 2:
                what = f"a tuple of {len(result)}" if isinstance(result, tuple) else f"a {type(result).__name__}"
                raise InputError(f"{spec}: stage {k + 1} returned {what}; a stage must return (state, exit_output)")
            state, out = result
            if not isinstance(out, torch.Tensor) or not out.is_floating_point():
                raise InputError(
                    f"{spec}: stage {k + 1}'s exit output is a {type(out).__name__}"
                    + (f" of {out.dtype}" if isinstance(out, torch.Tensor) else "")
                    + "; an exit must give a floating-point tensor of class scores"
                )
            check_exit_output(out, k, names[k], batch, spec)
            if k < last:
                decide(out, t[k])

    sync = torch.cuda.synchronize if device == "cuda" else None
    overhead_input = tensors[0]
    return StagedModel(
        exit_names=tuple(names),
        run_to=run_to,
        batch=batch,
        inputs=inputs,
        mode="staged",
        method=f"torch eager under inference_mode, {how} run in sequence with each exit's {confidence} "
               f"checked, batch {batch}",
        device=device,
        threads=threads,
        confidence=confidence,
        source=source,
        versions={"torch_version": torch.__version__},
        providers=(),
        overhead=lambda: overhead_input.clone(),
        sync=sync,
        context=torch.inference_mode,
        names_known=exit_names is not None,
    )


def profile_torch(
    spec: str,
    *,
    exit_names: Sequence[str] | None = None,
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
    """Measure d_1..d_N of a PyTorch model: :func:`open_torch`, then ``profile_staged``."""
    model = open_torch(spec, exit_names=exit_names, device=device, threads=threads,
                       confidence=confidence, seed=seed)
    return profile_staged(model, warmup=warmup, repeat=repeat, rounds=rounds, seed=seed,
                          time_budget=time_budget, progress=progress)


__all__ = ["is_factory_spec", "load_factory", "open_torch", "profile_torch"]
