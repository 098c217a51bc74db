"""A sample model without `stages`, for the torch.fx cut: forward returns the exits."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample_data"))
from torch_models import digits_cnn  # noqa: E402


class ForwardOnly(torch.nn.Module):
    """Hides the model's `stages`: only `forward(x) -> (exit_1, ..., exit_N)` is left."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)


def digits_cnn_forward():
    model, example = digits_cnn()
    return ForwardOnly(model).eval(), example
