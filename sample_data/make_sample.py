"""Build the sample early-exit models and their exit outputs from scikit-learn's digits.

Trains two small 4-exit models on the 8x8 digit images (``sklearn.datasets.load_digits``,
offline), the classes of which are in ``torch_models.py``:

- ``cnn``: a CNN; exported to ONNX with one graph output per exit (``model.onnx``), its
  weights saved for the PyTorch factory (``digits_cnn.pt``), its exits' logits on the
  validation and test splits written as ``digits_val.h5`` and ``digits_test.h5``.
- ``gru``: a GRU that reads an image row by row with an exit after every 2 rows;
  ``digits_gru.pt``, ``digits_gru.onnx`` (one GRU node per chunk of rows, so that the
  graph can be cut between exits), ``digits_gru_val.h5``, ``digits_gru_test.h5``.

Exit outputs are written in the exit-outputs HDF5 format (``eexit.exits/v1``).
Everything is seeded and runs on one CPU thread.

Needs torch (CPU build is enough) and scikit-learn; the ``eexit`` tool itself needs
neither. Usage::

    python sample_data/make_sample.py                # both models, next to this script
    python sample_data/make_sample.py --models gru   # only one of them
    python sample_data/make_sample.py --out DIR
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch_models  # noqa: E402  (the model classes, next to this script)

SEED = 0
EXIT_NAMES = ("exit_1", "exit_2", "exit_3", "exit_4")
BATCH_SIZE = 64
WEIGHT_DECAY = 1e-4


# Per model: how to build and train it, what to call its files, how its input looks.
# Earlier exits of the CNN weigh less: they are meant to be cheap and weaker, and a heavy
# weight on them would pull the shared backbone towards their needs.
MODELS = {
    "cnn": dict(
        build="DigitsMultiExit", epochs=40, lr=3e-3, loss_weights=(0.5, 0.5, 1.0, 1.5),
        onnx="model.onnx", weights="digits_cnn.pt", h5="digits_{split}.h5",
        title="digits 4-exit CNN (eexit sample)", input_shape=(1, 1, 8, 8),
    ),
    "gru": dict(
        build="DigitsGRU", epochs=30, lr=1e-2, loss_weights=(1.0, 1.0, 1.0, 1.0),
        onnx="digits_gru.onnx", weights="digits_gru.pt", h5="digits_gru_{split}.h5",
        title="digits row-by-row GRU, 4 exits after 2/4/6/8 rows (eexit sample)",
        input_shape=(1, 8, 8),
    ),
}


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


def write_test_images(splits, out: Path) -> None:
    """The test split's images as pixel values 0..16 (uint8, (M, 8, 8)), for serving examples."""
    x, _ = splits["test"]
    np.save(out / "digits_test_images.npy", np.rint(x[:, 0] * 16).astype(np.uint8))


def model_input(kind: str, x: np.ndarray) -> np.ndarray:
    """The images (M, 1, 8, 8) as the model reads them: the GRU takes (M, 8 rows, 8)."""
    return np.ascontiguousarray(x[:, 0]) if kind == "gru" else x


def build(kind: str):
    import torch

    torch.manual_seed(SEED)
    return getattr(torch_models, MODELS[kind]["build"])()


def train(model, x, y, epochs: int, lr: float, loss_weights) -> None:
    import torch
    from torch import nn

    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
    x_t, y_t = torch.from_numpy(x), torch.from_numpy(y)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x_t), generator=generator)
        for start in range(0, len(x_t), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            outputs = model(x_t[idx])
            loss = sum(
                w * nn.functional.cross_entropy(out, y_t[idx])
                for w, out in zip(loss_weights, outputs)
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


def export_onnx(model, path: Path, input_shape) -> None:
    import torch

    dynamic_axes = {"input": {0: "batch"}}
    dynamic_axes.update({name: {0: "batch"} for name in EXIT_NAMES})
    # The TorchScript exporter (dynamo=False) needs no extra package (the dynamo one needs
    # onnxscript); torch flags it as legacy, which is not news here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(*input_shape),),
            str(path),
            input_names=["input"],
            output_names=list(EXIT_NAMES),
            dynamic_axes=dynamic_axes,
            opset_version=17,
            dynamo=False,
        )


def write_exits_h5(path: Path, logits: np.ndarray, labels: np.ndarray, split: str, title: str) -> None:
    with h5py.File(path, "w", track_order=False) as f:
        f.create_dataset("logits", data=logits.astype(np.float32), track_times=False)
        f.create_dataset("labels", data=labels.astype(np.int64), track_times=False)
        f.attrs["format"] = "eexit.exits/v1"
        f.attrs.create("exit_names", list(EXIT_NAMES), dtype=h5py.string_dtype())
        f.attrs["title"] = title
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


def make(kind: str, splits, out: Path) -> None:
    import torch

    spec = MODELS[kind]
    started = time.perf_counter()
    model = build(kind)
    x_train, y_train = splits["train"]
    train(model, model_input(kind, x_train), y_train, spec["epochs"], spec["lr"], spec["loss_weights"])

    model_path = out / spec["onnx"]
    export_onnx(model, model_path, spec["input_shape"])
    torch.save(model.state_dict(), out / spec["weights"])
    written = [model_path.name, spec["weights"]]
    for split in ("val", "test"):
        x, y = splits[split]
        x = model_input(kind, x)
        logits = exit_logits(model, x)
        check_onnx_matches(model_path, x, logits)
        name = spec["h5"].format(split=split)
        write_exits_h5(out / name, logits, y, split, spec["title"])
        written.append(name)
        accuracy = (logits.argmax(axis=2) == y[None, :]).mean(axis=1)
        print(f"{kind} {split:5s} M={len(y):4d} accuracy per exit: "
              + " ".join(f"{a:.4f}" for a in accuracy))
    print(f"{kind}: wrote {', '.join(written)} to {out} in {time.perf_counter() - started:.1f} s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder for the output files (default: next to this script)")
    parser.add_argument("--models", default="cnn,gru",
                        help="comma-separated models to build: cnn, gru (default: both)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in MODELS]
    if unknown or not kinds:
        parser.error(f"--models: choose from {', '.join(MODELS)}, got {args.models!r}")

    import torch

    # One thread and deterministic kernels: with more threads, training on a busy machine
    # was both much slower and not reproducible.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    random.seed(SEED)
    np.random.seed(SEED)

    splits = load_splits()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        make(kind, splits, args.out)
    write_test_images(splits, args.out)


if __name__ == "__main__":
    main()
