"""Writing exit outputs from Python: write_exits and ExitWriter accept exactly what the
reader accepts, write atomically, and round-trip through read_exits; ignore_index."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from numpy.testing import assert_array_equal

import eexit_cli
from eexit_cli import ExitWriter, InputError, read_exits, write_exits
from eexit_cli.cli.main import cli

from conftest import make_exit_data, write_h5

MEASURES = ["max_softmax", "entropy", "margin"]


def _same(a, b):
    assert_array_equal(a.scores, b.scores)
    assert_array_equal(a.correct, b.correct)
    assert a.confidence == b.confidence
    assert a.exit_names == b.exit_names
    if a.labels is not None or b.labels is not None:
        assert_array_equal(a.labels, b.labels)


# ---------------------------------------------------------------------------
# Importing
# ---------------------------------------------------------------------------


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_import_is_cheap_and_never_imports_torch_for_numpy_input(tmp_path):
    heavy = ("numpy", "h5py", "scipy", "click", "rich", "torch")
    loaded = _run(f"import sys, eexit_cli; print(','.join(m for m in {heavy!r} if m in sys.modules))")
    assert loaded == ""
    path = tmp_path / "a.h5"
    code = (
        "import sys, numpy as np, eexit_cli as ee\n"
        "d = np.random.default_rng(0)\n"
        f"ee.write_exits({str(path)!r}, logits=d.standard_normal((2, 5, 3)), labels=[0, 1, 2, 0, 1])\n"
        f"p = ee.load_thresholds({{'format': 'eexit.thresholds/v1', 'confidence': 'max_softmax', "
        "'thresholds': [0.5], 'budget': None, 'latency': {'format': 'eexit.latency/v1', 'unit': 'ms', "
        "'per_exit': [1, 2]}})\n"
        "p.apply(d.standard_normal((2, 4, 3))); p.should_exit(0, d.standard_normal((4, 3)))\n"
        f"ee.read_exits({str(path)!r})\n"
        "print('torch' in sys.modules)"
    )
    assert _run(code) == "False"


def test_public_names_are_listed_and_documented():
    assert sorted(eexit_cli.__all__) == sorted(set(eexit_cli.__all__))
    for name in eexit_cli.__all__:
        obj = getattr(eexit_cli, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    assert set(eexit_cli.__all__) <= set(dir(eexit_cli))
    with pytest.raises(AttributeError):
        eexit_cli.no_such_name  # noqa: B018
    import pydoc

    overview = pydoc.render_doc(eexit_cli, renderer=pydoc.plaintext)
    for name in ("write_exits", "ExitWriter", "load_thresholds", "should_exit", "apply", "tune", "evaluate"):
        assert name in overview


# ---------------------------------------------------------------------------
# write_exits: round trips
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_write_exits_logits_round_trip_equals_a_hand_written_file(tmp_path, dtype):
    data = make_exit_data(seed=1, n_exits=3, n_samples=50, n_classes=6)
    logits = data.logits.astype(dtype)
    ref = write_h5(tmp_path / "ref.h5", {"format": "eexit.exits/v1"}, logits=logits, labels=data.labels)
    ours = write_exits(tmp_path / "ours.h5", logits=logits, labels=data.labels)
    for measure in MEASURES:
        _same(read_exits(ours, confidence=measure), read_exits(ref, confidence=measure))
    with h5py.File(ours) as f:
        assert f["logits"].dtype == np.dtype(dtype)
        assert_array_equal(f["logits"][()], logits)


def test_write_exits_accepts_a_list_of_per_exit_arrays_and_names(tmp_path):
    data = make_exit_data(seed=2, n_exits=4, n_samples=30, n_classes=5)
    a = write_exits(tmp_path / "a.h5", logits=data.logits, labels=data.labels,
                    exit_names=["a", "b", "c", "d"], attrs={"split": "val"})
    b = write_exits(tmp_path / "b.h5", logits=[x for x in data.logits], labels=list(data.labels),
                    exit_names=["a", "b", "c", "d"])
    _same(read_exits(a), read_exits(b))
    assert read_exits(a).exit_names == ["a", "b", "c", "d"]
    with h5py.File(a) as f:
        assert f.attrs["split"] == "val"
        assert f.attrs["format"] == "eexit.exits/v1"


def test_write_exits_probs_and_scores(tmp_path):
    data = make_exit_data(seed=3, n_exits=3, n_samples=40, n_classes=4)
    p = write_exits(tmp_path / "p.h5", probs=data.probs, labels=data.labels)
    ref = write_h5(tmp_path / "ref.h5", None, probs=data.probs, labels=data.labels)
    _same(read_exits(p, confidence="entropy"), read_exits(ref, confidence="entropy"))
    s = write_exits(tmp_path / "s.h5", scores=data.scores("margin"), correct=data.correct,
                    confidence="margin")
    out = read_exits(s)
    assert out.confidence == "margin" and out.variant == "scores"
    assert_array_equal(out.correct, data.correct)
    assert_array_equal(out.scores, data.scores("margin"))


def test_write_exits_takes_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    data = make_exit_data(seed=4, n_exits=3, n_samples=20, n_classes=5)
    t = torch.from_numpy(data.logits.astype(np.float32))
    a = write_exits(tmp_path / "a.h5", logits=t, labels=torch.from_numpy(data.labels))
    b = write_exits(tmp_path / "b.h5", logits=[x for x in t], labels=torch.from_numpy(data.labels))
    c = write_exits(tmp_path / "c.h5", logits=data.logits.astype(np.float32), labels=data.labels)
    _same(read_exits(a), read_exits(c))
    _same(read_exits(b), read_exits(c))
    bf = write_exits(tmp_path / "bf.h5", logits=t.to(torch.bfloat16), labels=torch.from_numpy(data.labels))
    with h5py.File(bf) as f:
        assert f["logits"].dtype == np.float32  # numpy has no bfloat16
        assert_array_equal(f["logits"][()], t.to(torch.bfloat16).float().numpy())
    if t.requires_grad is False:
        g = t.clone().requires_grad_(True)
        write_exits(tmp_path / "g.h5", logits=g * 1.0, labels=torch.from_numpy(data.labels))


# ---------------------------------------------------------------------------
# The writers check exactly what the reader checks
# ---------------------------------------------------------------------------

_DATA = make_exit_data(seed=5, n_exits=3, n_samples=12, n_classes=4)
_BAD_LABELS = _DATA.labels.copy()
_BAD_LABELS[7] = 4
_NAN = _DATA.logits.copy()
_NAN[1, 9, 2] = np.nan
_PROBS_OFF = _DATA.probs.copy()
_PROBS_OFF[2, 5, 0] += 0.01
_PROBS_NEG = _DATA.probs.copy()
_PROBS_NEG[0, 3, 1] = -0.2
_SCORES = _DATA.scores("max_softmax")

# name -> (datasets as arrays, root attributes)
BAD = {
    "labels_out_of_range": ({"logits": _DATA.logits, "labels": _BAD_LABELS}, {}),
    "negative_label": ({"logits": _DATA.logits, "labels": np.where(np.arange(12) == 3, -100, _DATA.labels)}, {}),
    "nan": ({"logits": _NAN, "labels": _DATA.labels}, {}),
    "probs_not_summing": ({"probs": _PROBS_OFF, "labels": _DATA.labels}, {}),
    "probs_negative": ({"probs": _PROBS_NEG, "labels": _DATA.labels}, {}),
    "one_exit": ({"logits": _DATA.logits[:1], "labels": _DATA.labels}, {}),
    "one_class": ({"logits": _DATA.logits[..., :1], "labels": np.zeros(12, int)}, {}),
    "empty": ({"logits": _DATA.logits[:, :0], "labels": _DATA.labels[:0]}, {}),
    "two_d_logits": ({"logits": _DATA.logits[0], "labels": _DATA.labels}, {}),
    "integer_logits": ({"logits": _DATA.logits.astype(np.int32), "labels": _DATA.labels}, {}),
    "float_labels": ({"logits": _DATA.logits, "labels": _DATA.labels.astype(float)}, {}),
    "labels_too_short": ({"logits": _DATA.logits, "labels": _DATA.labels[:10]}, {}),
    "labels_2d": ({"logits": _DATA.logits, "labels": _DATA.labels[None, :]}, {}),
    "missing_labels": ({"logits": _DATA.logits}, {}),
    "names_count": ({"logits": _DATA.logits, "labels": _DATA.labels}, {"exit_names": ["a", "b"]}),
    "scores_without_correct": ({"scores": _SCORES}, {}),
    "correct_not_01": ({"scores": _SCORES, "correct": 2 * _DATA.correct.astype(int)}, {}),
    "correct_shape": ({"scores": _SCORES, "correct": _DATA.correct[:, :5]}, {}),
    "scores_nan": ({"scores": np.where(np.arange(12) == 4, np.inf, _SCORES), "correct": _DATA.correct}, {}),
}


def _file_message(exc_text: str, path) -> str:
    """The reader's message with the file named the way write_exits names its arguments."""
    text = exc_text.replace(f"{path}: ", "write_exits: ", 1)
    for name in ("logits", "probs", "scores", "correct", "labels"):
        text = text.replace(f"/{name}", name)
    return text.replace("attribute exit_names", "exit_names").replace(" dataset ", " argument ")


@pytest.mark.parametrize("case", sorted(BAD))
def test_write_exits_refuses_what_the_reader_refuses_with_the_same_message(tmp_path, case):
    arrays, attrs = BAD[case]
    bad_file = write_h5(tmp_path / "bad.h5", attrs, **arrays)
    with pytest.raises(InputError) as read_err:
        read_exits(bad_file)
    target = tmp_path / "out.h5"
    target.write_bytes(b"earlier file")
    kwargs = dict(arrays)
    if "exit_names" in attrs:
        kwargs["exit_names"] = attrs["exit_names"]
    with pytest.raises(ValueError) as write_err:
        write_exits(target, **kwargs)
    assert str(write_err.value) == _file_message(str(read_err.value), bad_file)
    assert target.read_bytes() == b"earlier file"
    assert sorted(os.listdir(tmp_path)) == ["bad.h5", "out.h5"]  # no temporary file left


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(logits="abc", labels=[0]), TypeError, "logits"),
    (dict(logits=None, labels=[0]), ValueError, "exactly one of logits="),
    (dict(logits=np.zeros((2, 3, 2)), probs=np.full((2, 3, 2), 0.5), labels=[0, 1, 0]), ValueError, "logits and probs"),
    (dict(logits=[np.zeros((3, 2)), np.zeros((4, 2))], labels=[0, 1, 0]), ValueError, "logits: the per-exit arrays"),
    (dict(logits=[], labels=[]), ValueError, "logits is an empty list"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], exit_names="ab"), TypeError, "exit_names"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], exit_names=[1, 2]), TypeError, "exit_names"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], attrs={"format": "x"}), ValueError, "attrs"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], attrs=[1]), TypeError, "attrs"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], confidence="entropy"), ValueError, "confidence"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], ignore_index=1.5), TypeError, "ignore_index"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], compression="zstd"), ValueError, "compression"),
    (dict(logits=np.zeros((2, 3, 2)), labels=[0, 1, 0], correct=np.ones((2, 3))), ValueError, "correct"),
])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, exc, words):
    with pytest.raises(exc, match=words):
        write_exits(tmp_path / "x.h5", **kwargs)
    assert not (tmp_path / "x.h5").exists()


def test_write_exits_replaces_an_earlier_file_keeping_its_permissions(tmp_path):
    target = tmp_path / "out.h5"
    target.write_bytes(b"old")
    os.chmod(target, 0o640)
    write_exits(target, logits=_DATA.logits, labels=_DATA.labels)
    assert read_exits(target).n_samples == 12
    assert (os.stat(target).st_mode & 0o777) == 0o640


# ---------------------------------------------------------------------------
# ExitWriter
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 40, 1000])
def test_exit_writer_in_batches_equals_write_exits(tmp_path, batch):
    data = make_exit_data(seed=6, n_exits=4, n_samples=97, n_classes=7)
    logits = data.logits.astype(np.float32)
    whole = write_exits(tmp_path / "whole.h5", logits=logits, labels=data.labels, exit_names=list("abcd"))
    path = tmp_path / "batched.h5"
    with ExitWriter(path, exit_names=list("abcd"), attrs={"split": "val"}) as w:
        for s in range(0, 97, batch):
            w.append([x for x in logits[:, s:s + batch]], data.labels[s:s + batch])
        assert not path.exists()  # only on close
    assert w.n_samples == 97
    for measure in MEASURES:
        _same(read_exits(path, confidence=measure), read_exits(whole, confidence=measure))
    with h5py.File(path) as f:
        ds = f["logits"]
        assert ds.maxshape == (4, None, 7)
        assert ds.chunks is not None and ds.chunks[0] == 4 and ds.chunks[2] == 7
        assert ds.compression == "gzip"
        assert_array_equal(ds[()], logits)
        assert f["labels"].maxshape == (None,)


def test_exit_writer_probs_scores_and_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    data = make_exit_data(seed=7, n_exits=3, n_samples=30, n_classes=5)
    with ExitWriter(tmp_path / "p.h5", kind="probs") as w:
        for s in range(0, 30, 8):
            w.append(torch.from_numpy(data.probs[:, s:s + 8]), torch.from_numpy(data.labels[s:s + 8]))
    _same(read_exits(tmp_path / "p.h5", confidence="margin"),
          read_exits(write_exits(tmp_path / "ref.h5", probs=data.probs, labels=data.labels), confidence="margin"))
    with ExitWriter(tmp_path / "s.h5", kind="scores", confidence="entropy") as w:
        for s in range(0, 30, 8):
            w.append(data.scores("entropy")[:, s:s + 8], correct=data.correct[:, s:s + 8])
    out = read_exits(tmp_path / "s.h5")
    assert out.confidence == "entropy"
    assert_array_equal(out.scores, data.scores("entropy"))


def test_exit_writer_failing_midway_leaves_no_file_and_keeps_an_earlier_one(tmp_path):
    data = make_exit_data(seed=8, n_exits=3, n_samples=50, n_classes=4)
    target = tmp_path / "out.h5"
    target.write_bytes(b"earlier")

    class Stop(Exception):
        pass

    with pytest.raises(Stop):
        with ExitWriter(target) as w:
            w.append(data.logits[:, :20], data.labels[:20])
            raise Stop
    assert target.read_bytes() == b"earlier"
    bad = data.logits.copy()
    bad[2, 33, 1] = np.inf
    with pytest.raises(ValueError, match=r"ExitWriter.append .*logits contains NaN or Inf \(first at index \(2, 33, 1\)\)"):
        with ExitWriter(target) as w:
            for s in range(0, 50, 10):
                w.append(bad[:, s:s + 10], data.labels[s:s + 10])
    assert target.read_bytes() == b"earlier"
    with pytest.raises(KeyboardInterrupt):
        with ExitWriter(target) as w:
            w.append(data.logits[:, :5], data.labels[:5])
            raise KeyboardInterrupt
    assert target.read_bytes() == b"earlier"
    assert os.listdir(tmp_path) == ["out.h5"]


def test_exit_writer_never_closed_leaves_no_file(tmp_path):
    data = make_exit_data(seed=9, n_exits=2, n_samples=10, n_classes=3)
    w = ExitWriter(tmp_path / "out.h5")
    w.append(data.logits, data.labels)
    del w
    import gc

    gc.collect()
    assert os.listdir(tmp_path) == []


def test_exit_writer_batches_must_agree(tmp_path):
    data = make_exit_data(seed=10, n_exits=3, n_samples=20, n_classes=4)
    with pytest.raises(ValueError, match="C = 5 classes, earlier batches had C = 4"):
        with ExitWriter(tmp_path / "x.h5") as w:
            w.append(data.logits[:, :10], data.labels[:10])
            w.append(np.zeros((3, 4, 5)), np.zeros(4, int))
    with pytest.raises(ValueError, match="N = 2 exits, earlier batches had N = 3"):
        with ExitWriter(tmp_path / "x.h5") as w:
            w.append(data.logits[:, :10], data.labels[:10])
            w.append(data.logits[:2, 10:], data.labels[10:])
    with pytest.raises(ValueError, match=r"labels\[13\] = 4 is outside \[0, 4\)"):
        with ExitWriter(tmp_path / "x.h5") as w:
            w.append(data.logits[:, :10], data.labels[:10])
            w.append(data.logits[:, 10:], np.where(np.arange(10) == 3, 4, data.labels[10:]))
    with pytest.raises(ValueError, match="no samples were appended"):
        with ExitWriter(tmp_path / "x.h5"):
            pass
    with pytest.raises(ValueError, match="kind"):
        ExitWriter(tmp_path / "x.h5", kind="logprobs")
    w = ExitWriter(tmp_path / "y.h5")
    w.append(data.logits, data.labels)
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.append(data.logits, data.labels)
    assert sorted(os.listdir(tmp_path)) == ["y.h5"]


# ---------------------------------------------------------------------------
# ignore_index: tokens
# ---------------------------------------------------------------------------


def _tokens(seed=11, n_exits=3, batch=4, seq=9, vocab=6):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((n_exits, batch, seq, vocab))
    labels = rng.integers(0, vocab, (batch, seq))
    labels[:, -3:] = -100  # padding at the end of every sequence
    labels[1, :] = -100
    return logits, labels


def test_token_level_batches_with_ignore_index(tmp_path):
    logits, labels = _tokens()
    keep = labels.reshape(-1) != -100
    flat = logits.reshape(3, -1, 6)
    ref = write_exits(tmp_path / "ref.h5", logits=flat[:, keep], labels=labels.reshape(-1)[keep])
    one = write_exits(tmp_path / "one.h5", logits=[x for x in logits], labels=labels, ignore_index=-100)
    _same(read_exits(one), read_exits(ref))
    with ExitWriter(tmp_path / "batched.h5", ignore_index=-100) as w:
        for b in range(4):  # one sequence per batch; sequence 1 is all padding
            w.append([x[b:b + 1] for x in logits], labels[b:b + 1])
    assert w.n_ignored == int((~keep).sum())
    _same(read_exits(tmp_path / "batched.h5"), read_exits(ref))


def test_read_exits_ignore_index_equals_a_file_without_those_samples(tmp_path):
    logits, labels = _tokens(seed=12)
    flat, lab = logits.reshape(3, -1, 6), labels.reshape(-1)
    keep = lab != -100
    padded = write_h5(tmp_path / "padded.h5", None, logits=flat, labels=lab)
    clean = write_h5(tmp_path / "clean.h5", None, logits=flat[:, keep], labels=lab[keep])
    for measure in MEASURES:
        got = read_exits(padded, confidence=measure, ignore_index=-100, chunk_bytes=200)
        _same(got, read_exits(clean, confidence=measure))
        assert got.ignored == int((~keep).sum())
    with pytest.raises(InputError, match=r"labels\[6\] = -100 is outside \[0, 6\).*ignore_index"):
        read_exits(padded)
    scores = write_h5(tmp_path / "scores.h5", None, scores=np.ones((2, 3)), correct=np.ones((2, 3)))
    with pytest.raises(InputError, match="ignore_index needs /labels"):
        read_exits(scores, ignore_index=-100)
    with pytest.raises(TypeError, match="ignore_index"):
        read_exits(padded, ignore_index="-100")
    assert lab[6] == -100 and lab[5] != -100
    bad = flat.copy()
    bad[1, 6, 0] = np.nan  # a padding token: left out, so not checked
    read_exits(write_h5(tmp_path / "nan_pad.h5", None, logits=bad, labels=lab), ignore_index=-100)
    bad[1, 5, 0] = np.nan  # a real token: named by its index in the file
    with pytest.raises(InputError, match=r"contains NaN or Inf \(first at index \(1, 5, 0\)\)"):
        read_exits(write_h5(tmp_path / "nan.h5", None, logits=bad, labels=lab), ignore_index=-100,
                   chunk_bytes=200)


def _invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="eexit")


def test_cli_ignore_index(tmp_path):
    data = make_exit_data(seed=13, n_exits=3, n_samples=200, n_classes=5)
    lab = data.labels.copy()
    lab[::4] = -100
    keep = lab != -100
    padded = write_h5(tmp_path / "padded.h5", None, logits=data.logits, labels=lab)
    clean = write_h5(tmp_path / "clean.h5", None, logits=data.logits[:, keep], labels=lab[keep])
    t_pad = _invoke("tune", padded, "--costs", "1,2,3", "--budget", "60%", "--ignore-index", "-100",
                    "-o", tmp_path / "t_pad.json")
    assert t_pad.exit_code == 0, t_pad.stderr
    t_clean = _invoke("tune", clean, "--costs", "1,2,3", "--budget", "60%", "-o", tmp_path / "t_clean.json")
    assert t_clean.exit_code == 0, t_clean.stderr
    a = json.loads((tmp_path / "t_pad.json").read_text())
    b = json.loads((tmp_path / "t_clean.json").read_text())
    assert a["thresholds"] == b["thresholds"]
    e_pad = _invoke("evaluate", padded, tmp_path / "t_clean.json", "--ignore-index", "-100", "--json")
    e_clean = _invoke("evaluate", clean, tmp_path / "t_clean.json", "--json")
    ra, rb = json.loads(e_pad.stdout), json.loads(e_clean.stdout)
    assert ra["samples"] == rb["samples"] == int(keep.sum())
    assert ra["entries"][0]["per_exit"] == rb["entries"][0]["per_exit"]
    refused = _invoke("evaluate", padded, tmp_path / "t_clean.json")
    assert refused.exit_code == 2
    assert "-100 is outside" in refused.stderr and "ignore_index" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_paths_must_be_paths():
    with pytest.raises(TypeError, match="path must be a file path"):
        write_exits(None, logits=_DATA.logits, labels=_DATA.labels)
    with pytest.raises(TypeError, match="path must be a file path"):
        ExitWriter(3)
    with pytest.raises(TypeError, match="path must be a file path"):
        read_exits(["val.h5"])


def test_exit_writer_keeps_one_dtype_and_one_set_of_datasets(tmp_path):
    data = make_exit_data(seed=14, n_exits=2, n_samples=20, n_classes=3)
    with ExitWriter(tmp_path / "a.h5") as w:
        w.append(data.logits[:, :10].astype(np.float16), data.labels[:10])
        w.append(data.logits[:, 10:], data.labels[10:])  # float64: stored as float16
    with h5py.File(tmp_path / "a.h5") as f:
        assert f["logits"].dtype == np.float16
        assert_array_equal(f["logits"][()], data.logits.astype(np.float16))
    big = data.logits[:, 10:] * 1e6
    with pytest.raises(ValueError, match="do not fit the file's float16"):
        with ExitWriter(tmp_path / "b.h5") as w:
            w.append(data.logits[:, :10].astype(np.float16), data.labels[:10])
            w.append(big, data.labels[10:])
    scores, correct = data.scores("margin"), data.correct
    with pytest.raises(ValueError, match="labels was given with the first batch but not with this one"):
        with ExitWriter(tmp_path / "c.h5", kind="scores") as w:
            w.append(scores[:, :10], data.labels[:10], correct=correct[:, :10])
            w.append(scores[:, 10:], correct=correct[:, 10:])
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]


def test_huge_vocabularies_are_chunked_by_classes(tmp_path):
    from eexit_cli.io.writer import CHUNK_BYTES, _chunks

    assert _chunks((4, 10**6, 1000), 4) == (4, CHUNK_BYTES // 16000, 1000)
    assert _chunks((32, 10**6, 32000), 2) == (1, CHUNK_BYTES // 64000, 32000)
    assert _chunks((32, 10**6, 600_000), 4) == (1, 1, CHUNK_BYTES // 4)
    rng = np.random.default_rng(15)
    vocab = 300_000  # one exit's row is larger than a chunk
    logits = rng.standard_normal((2, 3, vocab), dtype=np.float32)
    labels = np.array([5, vocab - 1, 0])
    with ExitWriter(tmp_path / "v.h5", compression=None) as w:
        w.append(list(logits), labels)
    with h5py.File(tmp_path / "v.h5") as f:
        assert f["logits"].chunks == (1, 1, CHUNK_BYTES // 4)
        assert_array_equal(f["logits"][()], logits)


def test_exit_writer_memory_does_not_grow_with_the_split(tmp_path):
    import tracemalloc

    rng = np.random.default_rng(16)
    batch = rng.standard_normal((2, 256, 1000), dtype=np.float32)  # 2 MB
    labels = rng.integers(0, 1000, 256)

    def peak(n_batches):
        tracemalloc.start()
        try:
            with ExitWriter(tmp_path / f"m{n_batches}.h5", compression=None) as w:
                for _ in range(n_batches):
                    w.append(batch, labels)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak(4), peak(24)  # 8 MB and 48 MB of logits
    assert large < 4 * batch.nbytes, large
    assert large < 1.25 * small + 2**20, (small, large)
