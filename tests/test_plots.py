"""Evaluation pictures: valid PNGs for one or several reports, terminal rendering, missing matplotlib."""

from __future__ import annotations

import io
import sys

import pytest
from rich.console import Console

from eexit_cli.cli.plots import featured_report, plot_evaluation, render_terminal, sparkline
from eexit_cli.errors import MissingDependencyError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = ["block1", "block2", "final"]


def report(budget, mean_latency, accuracy, fractions=(0.5, 0.3, 0.2), method="ippp"):
    return {
        "accuracy": accuracy,
        "mean_latency": mean_latency,
        "budget": budget,
        "method": method,
        "per_exit": [
            {"exit": i + 1, "name": n, "fraction": f, "accuracy": None if f == 0 else 0.8 + 0.05 * i}
            for i, (n, f) in enumerate(zip(NAMES, fractions))
        ],
    }


FRONTIER = [report(b, b * 0.99, 0.8 + 0.1 * b) for b in (0.4, 0.5, 0.6, 0.7, 0.8)] + [
    report(b, b * 1.02, 0.78 + 0.1 * b, method="heuristic") for b in (0.4, 0.5, 0.6, 0.7, 0.8)
]


def check_png(path):
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 600 and im.size[1] > 300


@pytest.mark.parametrize(
    "reports",
    [
        [report(0.6, 0.58, 0.9)],
        [report(None, 0.58, 0.9, method=None)],  # no budget, no method
        [report(0.5, 0.49, 0.88), report(0.7, 0.71, 0.91)],
        FRONTIER,
        [report(0.6, 0.58, 0.9, fractions=(1.0, 0.0, 0.0))],  # everything at one exit
        [dict(report(0.6, 0.55, 0.9), certified={"level": 0.95, "upper_bound": 0.59, "bound": "betting"})],
    ],
    ids=["one", "no-budget", "two", "frontier", "one-exit", "certified"],
)
def test_plot_is_a_valid_png(tmp_path, reports):
    out = tmp_path / "eval.png"
    plot_evaluation(reports, "ms", str(out))
    check_png(out)
    assert [p.name for p in tmp_path.iterdir()] == ["eval.png"]  # no temporary file left


def test_plot_replaces_an_earlier_file(tmp_path):
    out = tmp_path / "eval.png"
    out.write_bytes(b"old")
    plot_evaluation([report(0.6, 0.58, 0.9)], "ms", str(out))
    check_png(out)


def test_plot_into_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot_evaluation([report(0.6, 0.58, 0.9)], "ms", str(tmp_path / "nope" / "eval.png"))


def test_plot_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails as if absent
    with pytest.raises(MissingDependencyError, match=r"pip install 'eexit\[plot\]'"):
        plot_evaluation([report(0.6, 0.58, 0.9)], "ms", str(tmp_path / "eval.png"))
    assert not (tmp_path / "eval.png").exists()


def test_plot_rejects_empty_or_malformed_reports(tmp_path):
    with pytest.raises(ValueError, match="reports is empty"):
        plot_evaluation([], "ms", str(tmp_path / "a.png"))
    with pytest.raises(ValueError, match=r"reports\[0\] lacks per_exit"):
        plot_evaluation([{"accuracy": 0.9, "mean_latency": 1.0}], "ms", str(tmp_path / "a.png"))


def test_featured_report_is_the_middle_budget_of_the_first_method():
    assert featured_report(FRONTIER)["budget"] == 0.6
    assert featured_report(FRONTIER)["method"] == "ippp"
    one = [report(0.6, 0.58, 0.9)]
    assert featured_report(one) is one[0]


def render(reports) -> str:
    console = Console(width=100, record=True, file=io.StringIO(), color_system=None)
    console.print(render_terminal(reports, "ms"))
    return console.export_text()


def test_render_terminal_one_report():
    text = render([report(0.6, 0.58, 0.9)])
    for name in NAMES:
        assert name in text
    assert "50.0%" in text and "0.8500" in text
    assert "█" in text
    assert "Accuracy as mean latency grows" not in text


def test_render_terminal_frontier_has_a_sparkline_per_method():
    text = render(FRONTIER)
    assert "at budget 0.6 ms" in text
    lines = [ln for ln in text.splitlines() if ln.startswith(("ippp", "heuristic"))]
    assert len(lines) == 2 and all("▁" in ln and "█" in ln for ln in lines)


def test_sparkline():
    assert sparkline([0.0, 0.5, 1.0]) == "▁▅█"
    assert sparkline([2.0, 2.0]) == "▅▅"
    assert sparkline([]) == ""
