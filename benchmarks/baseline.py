"""Another revision's tuner, importable next to this one, for side-by-side runs.

``extract(rev)`` puts that revision's package in a temporary folder;
``load_tune("main")`` extracts ``eexit_cli`` of that git revision into a
temporary folder as the package ``eexit_base`` and returns its
``eexit_base.core.tuner.tune``; the folder is deleted at exit.
"""

from __future__ import annotations

import atexit
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def extract(rev: str = "main", name: str = "eexit_cli") -> Path:
    """A temporary folder holding that revision's ``eexit_cli`` as package ``name``.

    With ``name="eexit_cli"``, ``PYTHONPATH=<folder> python -m eexit_cli`` runs
    that revision's command line.
    """
    tmp = Path(tempfile.mkdtemp(prefix="eexit_base_"))
    atexit.register(shutil.rmtree, tmp, True)
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "eexit_cli"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="data")
    if name != "eexit_cli":
        (tmp / "eexit_cli").rename(tmp / name)
    return tmp


def load_tune(rev: str = "main"):
    tmp = extract(rev, "eexit_base")
    sys.path.insert(0, str(tmp))
    try:
        return importlib.import_module("eexit_base.core.tuner").tune
    finally:
        sys.path.remove(str(tmp))
