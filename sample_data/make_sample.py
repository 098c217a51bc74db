"""Build the sample early-exit model and its exit outputs from scikit-learn's digits.

Trains a small 4-exit CNN on the 8x8 digit images (``sklearn.datasets.load_digits``,
offline), exports it to ONNX with one graph output per exit, and writes the exits'
logits on the validation and test splits in the exit-outputs HDF5 format
(``eexit.exits/v1``). Everything is seeded and runs on one CPU thread, so a rerun
reproduces the files.

Needs torch (CPU build is enough) and scikit-learn; the ``eexit`` tool itself needs
neither. Usage::

    python sample_data/make_sample.py            # writes next to this script
    python sample_data/make_sample.py --out DIR

Files written: ``model.onnx``, ``digits_val.h5``, ``digits_test.h5``.
"""

from __future__ import annotations

import argparse
import os
import random
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

SEED = 0
EXIT_NAMES = ("exit_1", "exit_2", "exit_3", "exit_4")
# Earlier exits weigh less: they are meant to be cheap and weaker, and a heavy weight
# on them would pull the shared backbone towards their needs.
LOSS_WEIGHTS = (0.5, 0.5, 1.0, 1.5)
EPOCHS = 40
BATCH_SIZE = 64
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 1e-4


def load_splits():
    """Digits scaled to [0, 1], split 60/20/20 (stratified, seeded) into train/val/test."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (M, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, test_size=0.4, random_state=SEED, stratify=y
    )
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, test_size=0.5, random_state=SEED, stratify=y_rest
    )
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


def build_model():
    """Four backbone stages of growing cost, each followed by a small classifier head."""
    import torch
    from torch import nn

    def conv(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]

    class DigitsMultiExit(nn.Module):
        def __init__(self):
            super().__init__()
            # stage 1: 1 -> 4 channels at 8x8; head sees a 2x2 max-pooled map (16 features)
            self.stage1 = nn.Sequential(*conv(1, 4))
            self.head1 = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(4 * 4, 10))
            # stage 2: 4 -> 8 channels at 8x8
            self.stage2 = nn.Sequential(*conv(4, 8))
            self.head2 = nn.Sequential(nn.MaxPool2d(4), nn.Flatten(), nn.Linear(8 * 4, 10))
            # stage 3: 8 -> 32 at 8x8, pool to 4x4, 32 -> 32
            self.stage3 = nn.Sequential(*conv(8, 32), nn.MaxPool2d(2), *conv(32, 32))
            self.head3 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
            # stage 4: 32 -> 64 -> 64 at 4x4, the most expensive part
            self.stage4 = nn.Sequential(*conv(32, 64), *conv(64, 64))
            self.head4 = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 4, 10))

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

    torch.manual_seed(SEED)
    return DigitsMultiExit()


def train(model, x, y):
    import torch
    from torch import nn

    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x_t), generator=generator)
        for start in range(0, len(x_t), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            outputs = model(x_t[idx])
            loss = sum(
                w * nn.functional.cross_entropy(out, y_t[idx])
                for w, out in zip(LOSS_WEIGHTS, outputs)
            )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    model.eval()


def exit_logits(model, x) -> np.ndarray:
    """Logits of every exit, shape (N, M, C), float32."""
    import torch

    with torch.no_grad():
        outputs = model(torch.from_numpy(x))
    return np.stack([out.numpy() for out in outputs]).astype(np.float32)


def export_onnx(model, path: Path) -> None:
    import torch

    dynamic_axes = {"input": {0: "batch"}}
    dynamic_axes.update({name: {0: "batch"} for name in EXIT_NAMES})
    # The TorchScript exporter (dynamo=False) needs no extra package (the dynamo one needs
    # onnxscript); torch flags it as legacy, which is not news here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros(1, 1, 8, 8),),
            str(path),
            input_names=["input"],
            output_names=list(EXIT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )


def write_exits_h5(path: Path, logits: np.ndarray, labels: np.ndarray, split: str) -> None:
    with h5py.File(path, "w", track_order=False) as f:
        f.create_dataset("logits", data=logits.astype(np.float32), track_times=False)
        f.create_dataset("labels", data=labels.astype(np.int64), track_times=False)
        f.attrs["format"] = "eexit.exits/v1"
        f.attrs.create("exit_names", list(EXIT_NAMES), dtype=h5py.string_dtype())
        f.attrs["title"] = "digits 4-exit CNN (eexit sample)"
        f.attrs["split"] = split


def check_onnx_matches(path: Path, x: np.ndarray, logits: np.ndarray) -> None:
    """If onnxruntime is installed, check that the exported graph gives the same logits."""
    try:
        import onnxruntime as ort
    except ImportError:
        return
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    outputs = session.run(list(EXIT_NAMES), {"input": x})
    for n, out in enumerate(outputs):
        np.testing.assert_allclose(out, logits[n], rtol=1e-4, atol=1e-4)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for the output files (default: next to this script)")
    args = parser.parse_args(argv)

    import torch

    started = time.perf_counter()
    # One thread and deterministic kernels: with more threads, training on a busy machine
    # was both much slower and not reproducible.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    np.random.seed(SEED)

    splits = load_splits()
    model = build_model()
    train(model, *splits["train"])

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.onnx"
    export_onnx(model, model_path)

    for split in ("val", "test"):
        x, y = splits[split]
        logits = exit_logits(model, x)
        check_onnx_matches(model_path, x, logits)
        write_exits_h5(args.out / f"digits_{split}.h5", logits, y, split)
        accuracy = (logits.argmax(axis=2) == y[None, :]).mean(axis=1)
        print(f"{split:5s} M={len(y):4d} accuracy per exit: "
              + " ".join(f"{a:.4f}" for a in accuracy))
    print(f"wrote {model_path.name}, digits_val.h5, digits_test.h5 to {args.out} "
          f"in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
