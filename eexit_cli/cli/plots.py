"""Pictures of evaluation reports: a PNG (matplotlib, optional) and a terminal rendering (rich).

Both take the per-threshold-set report dicts built by ``eexit evaluate``: keys
``accuracy``, ``mean_latency``, ``budget`` (or None), ``method`` (optional) and
``per_exit`` (a list of ``{exit, name, fraction, accuracy}``).
"""

from __future__ import annotations

import io
import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from eexit_cli.errors import MissingDependencyError
from eexit_cli.io.atomic import atomic_write_bytes

__all__ = ["plot_evaluation", "render_terminal", "featured_report"]

_SPARK = "▁▂▃▄▅▆▇█"
_BAR_WIDTH = 24
_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _check_reports(reports) -> list[dict]:
    reports = list(reports)
    if not reports:
        raise ValueError("reports is empty: nothing to draw")
    for i, r in enumerate(reports):
        missing = [k for k in ("accuracy", "mean_latency", "per_exit") if k not in r]
        if missing:
            raise ValueError(f"reports[{i}] lacks {', '.join(missing)}")
    return reports


def _method(r: dict) -> str:
    return r.get("method") or "thresholds"


def _groups(reports: list[dict]) -> dict[str, list[dict]]:
    """Reports per method, each sorted by mean latency (a frontier reads left to right)."""
    out: dict[str, list[dict]] = {}
    for r in reports:
        out.setdefault(_method(r), []).append(r)
    return {m: sorted(rs, key=lambda r: r["mean_latency"]) for m, rs in out.items()}


def featured_report(reports: list[dict]) -> dict:
    """The report whose exits are shown: the only one, else the first method's at its middle budget."""
    reports = _check_reports(reports)
    first = [r for r in reports if _method(r) == _method(reports[0])]
    ordered = sorted(first, key=lambda r: (r.get("budget") is None, r.get("budget") or 0.0,
                                           r["mean_latency"]))
    return ordered[(len(ordered) - 1) // 2]


def _num(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def _exit_label(row: dict) -> str:
    name = row.get("name")
    return f"{row['exit']}" if not name or name == str(row["exit"]) else f"{row['exit']}\n{name}"


def plot_evaluation(reports: list[dict], unit: str, path: str) -> None:
    """Draw accuracy against mean latency and the exits taken; write a PNG atomically.

    Left: accuracy against mean latency, one series per method (a line through
    the points when there are several budgets), the budget(s) as vertical lines
    and points over their budget ringed in red.  Right: the share of samples
    leaving at each exit, with the accuracy of those samples, for one threshold
    set (see :func:`featured_report`).

    Raises ``MissingDependencyError`` when matplotlib is not installed.
    """
    reports = _check_reports(reports)
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError(
            "--plot needs matplotlib; install with: pip install 'eexit[plot]'"
        ) from None

    fig = Figure(figsize=(11, 4.4), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})

    budgets = sorted({float(r["budget"]) for r in reports if r.get("budget") is not None})
    few = len(budgets) <= 3
    if few:  # a line per budget; with more they would hide the curves, so each point gets a tick
        for i, b in enumerate(budgets):
            ax.axvline(b, color="0.35", linestyle="--", linewidth=1.2, zorder=1,
                       label=f"budget{'s' if len(budgets) > 1 else ''} ({unit})" if i == 0 else None)
            ax.annotate(_num(b), (b, 1.0), xycoords=("data", "axes fraction"), xytext=(3, -12),
                        textcoords="offset points", fontsize="small", color="0.35")
    over = []
    tick_labelled = False
    for k, (method, rs) in enumerate(_groups(reports).items()):
        color = _COLORS[k % len(_COLORS)]
        x = [r["mean_latency"] for r in rs]
        y = [r["accuracy"] for r in rs]
        ax.plot(x, y, "-o" if len(rs) > 1 else "o", color=color, markersize=6, linewidth=1.6,
                label=method, zorder=3)
        if not few:
            ticks = [(r["budget"], r["accuracy"]) for r in rs if r.get("budget") is not None]
            if ticks:
                ax.scatter(*zip(*ticks), marker="|", s=120, linewidths=1.5, color=color, alpha=0.6,
                           zorder=2, label=None if tick_labelled else "budget of each point")
                tick_labelled = True
        over += [(r["mean_latency"], r["accuracy"]) for r in rs
                 if r.get("budget") is not None and r["mean_latency"] > r["budget"] * (1 + 1e-12)]
    if over:
        ax.scatter(*zip(*over), s=140, facecolors="none", edgecolors="#d62728", linewidths=1.6,
                   zorder=4, label="over budget")
    xs = [r["mean_latency"] for r in reports] + budgets
    lo, hi = min(xs), max(xs)
    # never zoom in below 5% of the latency itself: a 0.3% overshoot must not look huge
    pad = max(0.08 * (hi - lo), 0.05 * max(abs(lo), abs(hi))) or 1.0
    ax.set_xlim(lo - pad, hi + pad)
    ys = [r["accuracy"] for r in reports]
    ypad = 0.1 * (max(ys) - min(ys)) if max(ys) > min(ys) else 0.02
    ax.set_ylim(max(0.0, min(ys) - ypad), min(1.0, max(ys) + ypad) + 1e-9)
    if len(reports) == 1:
        r = reports[0]
        note = f"accuracy {r['accuracy']:.4f}\n{_num(r['mean_latency'])} {unit}"
        if r.get("budget"):
            note += f" ({100 * (r['mean_latency'] / r['budget'] - 1):+.2f}% vs budget)"
        cert = r.get("certified")
        if isinstance(cert, dict) and cert.get("upper_bound") is not None:
            note += f"\ncertified expected latency <= {_num(cert['upper_bound'])}"
            if cert.get("level") is not None:
                note += f" at {100 * cert['level']:g}%"
        left_half = r["mean_latency"] < (lo - pad + hi + pad) / 2  # keep the note inside the axes
        ax.annotate(note, (r["mean_latency"], r["accuracy"]), xytext=(8 if left_half else -8, 10),
                    textcoords="offset points", ha="left" if left_half else "right", va="bottom",
                    fontsize="small")
    ax.set_xlabel(f"mean latency [{unit}]")
    ax.set_ylabel("accuracy")
    ax.set_title("Accuracy against mean latency")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")

    shown = featured_report(reports)
    rows = shown["per_exit"]
    labels = [_exit_label(row) for row in rows]
    fractions = [row["fraction"] for row in rows]
    bars = bx.bar(range(len(rows)), fractions, color=_COLORS[0], alpha=0.85)
    for bar, row in zip(bars, rows):
        acc = row.get("accuracy")
        text = f"{100 * row['fraction']:.1f}%"
        if acc is not None:
            text += f"\nacc {acc:.3f}"
        bx.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    xytext=(0, 3), textcoords="offset points", ha="center", va="bottom",
                    fontsize="small")
    bx.set_xticks(range(len(rows)), labels)
    top = max(fractions, default=1.0)
    bx.set_ylim(0, top * 1.2 + 0.08)  # room for the labels above the tallest bar
    bx.set_yticks([t for t in bx.get_yticks() if 0 <= t <= 1.0])
    bx.set_xlabel("exit")
    bx.set_ylabel("share of samples leaving")
    title = "Exits taken"
    if len(reports) > 1 or shown.get("budget") is not None:
        parts = []
        if len(_groups(reports)) > 1:
            parts.append(_method(shown))
        if shown.get("budget") is not None:
            parts.append(f"budget {_num(shown['budget'])} {unit}")
        if parts:
            title += f" ({', '.join(parts)})"
    bx.set_title(title)
    bx.grid(True, axis="y", alpha=0.3)

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


def _bar(fraction: float, width: int = _BAR_WIDTH) -> str:
    """A left-aligned bar of eighth-blocks, ``fraction`` of ``width`` cells long."""
    eighths = int(round(max(0.0, min(1.0, fraction)) * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")


def sparkline(values: list[float]) -> str:
    """One block character per value, scaled between the smallest and largest."""
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi <= lo:
        return _SPARK[len(_SPARK) // 2] * len(values)
    top = len(_SPARK) - 1
    return "".join(_SPARK[int(round((v - lo) / (hi - lo) * top))] for v in values)


def render_terminal(reports: list[dict], unit: str):
    """A compact rich rendering: exit shares as bars and, for several sets, a sparkline.

    The table shows the exits of one threshold set (see :func:`featured_report`);
    with several sets, each method gets a line of accuracy, ordered by mean
    latency, with the latency and accuracy ranges.
    """
    reports = _check_reports(reports)
    shown = featured_report(reports)
    title = "Exits taken"
    if len(reports) > 1 and shown.get("budget") is not None:
        title += f" at budget {_num(shown['budget'])} {unit}"
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    table.add_column("exit", justify="right")
    table.add_column("name")
    table.add_column("share", justify="right")
    table.add_column("", no_wrap=True, min_width=_BAR_WIDTH)
    table.add_column("accuracy", justify="right")
    for row in shown["per_exit"]:
        table.add_row(str(row["exit"]), str(row.get("name") or ""), f"{100 * row['fraction']:5.1f}%",
                      Text(_bar(row["fraction"]), style="cyan"),
                      "-" if row.get("accuracy") is None else f"{row['accuracy']:.4f}")
    parts = [table]
    if len(reports) > 1:
        lines = Text()
        groups = _groups(reports)
        width = max(len(m) for m in groups)
        for method, rs in groups.items():
            acc = [r["accuracy"] for r in rs]
            lat = [r["mean_latency"] for r in rs]
            lines.append(f"{method:<{width}}  ")
            lines.append(sparkline(acc), style="green")
            lines.append(f"  accuracy {_num(min(acc))}..{_num(max(acc))} over mean latency "
                         f"{_num(min(lat))}..{_num(max(lat))} {unit}\n")
        lines.rstrip()
        parts += [Text("Accuracy as mean latency grows", style="bold"), lines]
    return Group(*parts)
