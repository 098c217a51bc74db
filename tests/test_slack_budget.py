"""Budgets that constrain nothing (at or above every exit's cost) are pointed out."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from eexit_cli.cli.main import cli
from eexit_cli.core.latency import slack_budget_warning

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], prog_name="eexit")


@pytest.mark.parametrize("budgets, texts, expect", [
    ([40.0], ["40"], "write 40%"),
    ([4.0], ["4"], "write 4%"),  # equal to the largest cost: still constrains nothing
    ([4.0, 5.0, 2.0], ["2..5:3"], "budgets 4, 5 cost are at or above"),
    ([6.0], ["150%"], "constrains nothing: every threshold set meets it"),
])
def test_slack_budgets_are_named_with_the_percent_hint_where_one_was_left_out(budgets, texts, expect):
    line = slack_budget_warning(budgets, [1, 2, 3, 4], "cost", texts)
    assert line is not None and expect in line
    assert ("write" in line) == ("%" not in texts[0])


def test_a_budget_below_the_largest_cost_gives_no_warning():
    assert slack_budget_warning([3.999], [1, 2, 3, 4], "cost", ["3.999"]) is None
    assert slack_budget_warning([None], [1, 2, 3, 4]) is None
    # the largest cost, not the last one, bounds every mean latency
    assert slack_budget_warning([4.5], [1, 5, 3, 4], "cost") is None


def test_tune_and_evaluate_warn_about_a_budget_without_its_percent_sign(tmp_path):
    out = tmp_path / "t.json"
    r = run("tune", SAMPLE / "digits_val.h5", "--costs", "1,2,3,4", "--budget", "40", "-o", out)
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("warning")]
    assert len(lines) == 1 and "--budget" in lines[0] and "write 40%" in lines[0], r.stderr
    r = run("evaluate", SAMPLE / "digits_test.h5", out, "-o", tmp_path / "e.json")
    assert r.exit_code == 0, r.output
    assert any("the latency gate cannot fail" in ln for ln in r.stderr.splitlines()), r.stderr
    # a binding budget: no such warning from either command
    r = run("tune", SAMPLE / "digits_val.h5", "--costs", "1,2,3,4", "--budget", "40%", "-o", out)
    assert r.exit_code == 0 and "constrain" not in r.stderr, r.stderr
    r = run("evaluate", SAMPLE / "digits_test.h5", out, "-o", tmp_path / "e.json")
    assert r.exit_code in (0, 1) and "constrain" not in r.stderr, r.stderr
