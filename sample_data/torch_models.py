"""The sample early-exit models in PyTorch, as factories ``eexit profile`` can load.

Two models, both for the 8x8 digits of ``sklearn.datasets.load_digits`` (pixel values
/ 16, so in [0, 1]):

- :func:`digits_cnn`: the 4-exit CNN whose ONNX export is ``model.onnx``, with the same
  weights (``digits_cnn.pt`` holds them, copied from ``model.onnx``'s initialisers), so
  its exit outputs are those of ``model.onnx``, ``digits_val.h5`` and ``digits_test.h5``.
- :func:`digits_gru`: a recurrent early-exit classifier that reads an image row by row
  (8 steps of 8 pixels) with a GRU and has an exit after every 2 rows; weights in
  ``digits_gru.pt``, exit outputs in ``digits_gru_val.h5`` and ``digits_gru_test.h5``,
  an ONNX export in ``digits_gru.onnx``.

Each factory returns ``(model, example_input)``, the model in eval mode on the CPU.
The models follow the ``stages`` protocol: ``model.stages`` is a sequence of N
callables, ``stage(state) -> (state, exit_output)``, the first one receiving the input.
Running the stages one after the other until an exit is confident enough is how the
models are served early-exit; ``model(x)`` runs them all and returns the N exit outputs
(logits of shape (batch, 10)).

Usage::

    eexit profile sample_data/torch_models.py:digits_gru -o gru_latency.json

    from torch_models import digits_cnn       # with sample_data/ on sys.path
    model, x = digits_cnn()
    state = x
    for stage in model.stages:
        state, logits = stage(state)

``make_sample.py`` trains the models and writes the weight files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
N_CLASSES = 10

# The GRU reads one image row (8 pixels) per step and has an exit after every CHUNK rows.
GRU_ROWS = 8
GRU_CHUNK = 2
GRU_HIDDEN = 64


def _conv(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]


class DigitsMultiExit(nn.Module):
    """Four backbone stages of growing cost, each followed by a small classifier head.

    Input (batch, 1, 8, 8); exits 1..4 give logits (batch, 10).
    """

    def __init__(self):
        super().__init__()
        # stage 1: 1 -> 4 channels at 8x8; head sees a 2x2 max-pooled map (16 features)
        self.stage1 = nn.Sequential(*_conv(1, 4))
        self.head1 = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 4, 10))
        # stage 2: 4 -> 8 channels at 8x8
        self.stage2 = nn.Sequential(*_conv(4, 8))
        self.head2 = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 4, 10))
        # stage 3: 8 -> 32 at 8x8, pool to 4x4, 32 -> 32
        self.stage3 = nn.Sequential(*_conv(8, 32), nn.MaxPool2d(2), *_conv(32, 32))
        self.head3 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
        # stage 4: 32 -> 64 -> 64 at 4x4, the most expensive part
        self.stage4 = nn.Sequential(*_conv(32, 64), *_conv(64, 64))
        self.head4 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4, 10))

    @property
    def stages(self):
        """Stage k: the backbone from exit k-1 to exit k, then head k."""
        pairs = ((self.stage1, self.head1), (self.stage2, self.head2),
                 (self.stage3, self.head3), (self.stage4, self.head4))
        return tuple(_BackboneStage(body, head) for body, head in pairs)

    def forward(self, x):
        x = self.stage1(x)
        out1 = self.head1(x)
        x = self.stage2(x)
        out2 = self.head2(x)
        x = self.stage3(x)
        out3 = self.head3(x)
        x = self.stage4(x)
        out4 = self.head4(x)
        return out1, out2, out3, out4


class _BackboneStage:
    """``state -> (state, exit_output)`` for a feed-forward stage: body, then head."""

    def __init__(self, body: nn.Module, head: nn.Module):
        self.body = body
        self.head = head

    def __call__(self, x):
        x = self.body(x)
        return x, self.head(x)


class DigitsGRU(nn.Module):
    """A GRU reading the image row by row, with an exit after every ``GRU_CHUNK`` rows.

    Input (batch, 8, 8): 8 steps of 8 pixels (an image of ``load_digits`` without its
    channel axis). Stage k reads rows ``CHUNK*k .. CHUNK*(k+1)-1``, carrying the hidden
    state, and its head maps the hidden state to logits (batch, 10). The state handed
    from stage to stage is ``(sequence, hidden)``.
    """

    def __init__(self, rows: int = GRU_ROWS, chunk: int = GRU_CHUNK, hidden: int = GRU_HIDDEN):
        super().__init__()
        if rows % chunk:
            raise ValueError(f"rows ({rows}) must be a multiple of chunk ({chunk})")
        self.rows, self.chunk = rows, chunk
        self.gru = nn.GRU(input_size=8, hidden_size=hidden, batch_first=True)
        self.heads = nn.ModuleList(nn.Linear(hidden, N_CLASSES) for _ in range(rows // chunk))

    @property
    def stages(self):
        return tuple(_GRUStage(self, k) for k in range(len(self.heads)))

    def forward(self, x):
        state, outputs = x, []
        for stage in self.stages:
            state, out = stage(state)
            outputs.append(out)
        return tuple(outputs)


class _GRUStage:
    """Stage k of :class:`DigitsGRU`: the next chunk of rows through the GRU, then head k."""

    def __init__(self, model: DigitsGRU, k: int):
        self.gru = model.gru
        self.head = model.heads[k]
        self.first = k == 0
        self.rows = slice(k * model.chunk, (k + 1) * model.chunk)

    def __call__(self, state):
        if self.first:
            x, h = state, None
        else:
            x, h = state
        _, h = self.gru(x[:, self.rows], h)
        return (x, h), self.head(h[-1])


def _load(model: nn.Module, weights: str) -> nn.Module:
    state = torch.load(HERE / weights, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def digits_cnn(batch: int = 1):
    """The sample 4-exit CNN (``model.onnx``'s weights) and a random input of ``batch`` images."""
    model = _load(DigitsMultiExit(), "digits_cnn.pt")
    example = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return model, example


def digits_gru(batch: int = 1):
    """The sample 4-exit row-by-row GRU and a random input of ``batch`` images (batch, 8, 8)."""
    model = _load(DigitsGRU(), "digits_gru.pt")
    example = torch.rand(batch, GRU_ROWS, 8, generator=torch.Generator().manual_seed(0))
    return model, example
