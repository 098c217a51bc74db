"""Which backend opens a model: an ONNX file, or a PyTorch factory ``FILE.py:FACTORY``."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from eexit_cli.errors import InputError
from eexit_cli.profiling.staged import StagedModel

_CHECKPOINTS = (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".safetensors")


def is_torch_spec(spec: str) -> bool:
    from eexit_cli.profiling.torch_profiler import is_factory_spec

    return is_factory_spec(spec) and not os.path.isfile(spec)


def open_model(
    spec: str,
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
    """Open ``spec`` as a :class:`StagedModel`: an ONNX file or a PyTorch factory.

    ``outputs`` names the exits: tensors of the ONNX graph, or the names given to a
    PyTorch model's exits (which also declares how many there must be).
    ``input_shapes`` is for ONNX inputs with symbolic dimensions; a factory's example
    input fixes its own shapes.
    """
    spec = os.fspath(spec)
    if is_torch_spec(spec):
        from eexit_cli.profiling.torch_profiler import open_torch

        if input_shapes:
            raise InputError(
                "--input-shape is for ONNX models; a PyTorch factory's example input sets the shapes "
                "(e.g. a factory argument with a default)"
            )
        return open_torch(spec, exit_names=outputs, mode=mode, device=device, threads=threads,
                          confidence=confidence, thresholds=thresholds, seed=seed)
    lower = spec.lower()
    if lower.endswith(_CHECKPOINTS):
        raise InputError(
            f"{spec}: a PyTorch checkpoint cannot be profiled on its own; write a factory that builds the "
            "model and returns (model, example_input), and give FILE.py:FACTORY"
        )
    if lower.endswith(".py"):
        raise InputError(f"{spec}: name the factory in the file as FILE.py:FACTORY (e.g. {spec}:make_model)")
    from eexit_cli.profiling.onnx_profiler import open_onnx

    return open_onnx(spec, outputs=outputs, input_shapes=input_shapes, mode=mode, device=device,
                     threads=threads, confidence=confidence, thresholds=thresholds, seed=seed)


__all__ = ["is_torch_spec", "open_model"]
