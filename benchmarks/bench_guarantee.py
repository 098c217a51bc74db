"""Do budgets hold on unseen data?  With and without `tune --guarantee`.

    python benchmarks/bench_guarantee.py [--splits 100] [--level 0.9] [--models alex,scan,msd]

1. Exchangeable check: for each reference model, pool its val and test samples, draw
   `--splits` random 50/50 splits (seeded), tune on one half at 5 budgets spread over
   the README's sweep range, once plainly and once with the guarantee at `--level`, and
   replay on the other half. Prints the share of (split, budget) pairs whose mean latency
   exceeds the budget, and the accuracy given up for the guarantee.
2. The original splits, for the record: tune on val, evaluate on test, per budget.

Default parameters only. Uses the library directly (same code as the CLI).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from eexit_cli.core.guarantee import certify
from eexit_cli.core.replay import replay
from eexit_cli.core.tuner import tune
from eexit_cli.errors import InfeasibleBudgetError

from refdata import SWEEPS, load_costs, require
from refdata import load_split as load


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=100)
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--models", default="alex,scan,msd")
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    require()

    print(f"Exchangeable check: {args.splits} random 50/50 splits of val+test, 5 budgets, "
          f"guarantee level {args.level:.0%}")
    print(f"{'model':6} {'pairs':>5} {'plain: over':>12} {'guar.: over':>12} {'uncertified':>11} "
          f"{'acc plain':>9} {'acc guar.':>9} {'acc given up':>12} {'s/pair':>7}")
    record = []
    for name in args.models.split(","):
        costs = load_costs(name)
        sv, cv = load(name, "val")
        st, ct = load(name, "test")
        scores, correct = np.hstack([sv, st]), np.hstack([cv, ct])
        m = scores.shape[1]
        budgets = np.linspace(*SWEEPS[name], 5)
        rng = np.random.default_rng(args.seed)
        over_plain = over_g = pairs = uncertified = 0
        acc_plain, acc_g = [], []
        t0 = time.perf_counter()
        for _ in range(args.splits):
            perm = rng.permutation(m)
            a, b = perm[: m // 2], perm[m // 2:]
            sa, ca, sb, cb = scores[:, a], correct[:, a], scores[:, b], correct[:, b]
            for budget in budgets:
                pairs += 1
                plain = tune(sa, ca, costs, budget)
                rp = replay(sb, cb, plain.thresholds, costs)
                over_plain += rp.mean_latency > budget
                acc_plain.append(rp.accuracy)
                try:
                    g = certify(sa, ca, costs, budget, level=args.level, seed=int(rng.integers(2**31)),
                                tune_fn=lambda s, c, d, bud, init=None: tune(s, c, d, bud, init=init))
                except InfeasibleBudgetError:
                    uncertified += 1
                    acc_g.append(np.nan)
                    continue
                rg = replay(sb, cb, g.thresholds, costs)
                over_g += rg.mean_latency > budget
                acc_g.append(rg.accuracy)
        dt = (time.perf_counter() - t0) / pairs
        acc_plain, acc_g = np.array(acc_plain), np.array(acc_g)
        ok = ~np.isnan(acc_g)
        given_up = float(np.mean(acc_plain[ok] - acc_g[ok])) if ok.any() else float("nan")
        print(f"{name:6} {pairs:5d} {over_plain / pairs:12.1%} {over_g / max(1, pairs - uncertified):12.1%} "
              f"{uncertified:11d} {acc_plain.mean():9.4f} {np.nanmean(acc_g):9.4f} "
              f"{100 * given_up:11.2f}pt {dt:7.2f}")
        record.append(name)

    print()
    print(f"Original splits (tune on val, evaluate on test), level {args.level:.0%}: violation = "
          "(mean latency - budget) / budget on test")
    print(f"{'model':6} {'budget':>11} {'plain viol.':>11} {'guar. viol.':>11} {'plain acc':>9} "
          f"{'guar. acc':>9} {'certified bound':>15}")
    for name in record:
        costs = load_costs(name)
        sv, cv = load(name, "val")
        st, ct = load(name, "test")
        for budget in np.linspace(*SWEEPS[name], 5):
            plain = tune(sv, cv, costs, budget)
            rp = replay(st, ct, plain.thresholds, costs)
            try:
                g = certify(sv, cv, costs, budget, level=args.level, seed=0,
                            tune_fn=lambda s, c, d, bud, init=None: tune(s, c, d, bud, init=init))
                rg = replay(st, ct, g.thresholds, costs)
                gv, ga, ub = f"{100 * (rg.mean_latency / budget - 1):+10.2f}%", f"{rg.accuracy:9.4f}", f"{g.upper_bound:15.6g}"
            except InfeasibleBudgetError:
                gv, ga, ub = f"{'uncertified':>11}", f"{'-':>9}", f"{'-':>15}"
            print(f"{name:6} {budget:11.6g} {100 * (rp.mean_latency / budget - 1):+10.2f}% {gv} "
                  f"{rp.accuracy:9.4f} {ga} {ub}")


if __name__ == "__main__":
    main()
