"""Token-scale synthetic problems made from real exit outputs.

The reference data has at most 5 exits and 50,000 samples; token-level early
exit has 24-32 exits and ~1e6 samples.  ``make(n_exits, n_samples, seed)``
builds such a problem from MSDNet's validation outputs (5 x 50,000, max
softmax):

* samples: drawn with replacement from the 50,000 (every exit of a sample is
  taken from the same real sample, so the exits stay correlated as in a real
  model);
* exits: exit ``n`` of ``N`` sits at position ``x = 4 n / (N - 1)`` between the
  real exits ``floor(x)`` and ``ceil(x)``, with weight ``w = x - floor(x)``.
  Its score is ``(1 - w) s_floor + w s_ceil``; its correctness is the real
  correctness of exit ``floor(x)`` for the samples whose uniform draw ``v``
  (one per sample, shared by all exits, so that correctness changes little
  between neighbouring exits) is at least ``w`` and of exit ``ceil(x)``
  otherwise;
* scores get a jitter of 1e-6 (normal, clipped to [0, 1]) so that resampled
  copies are not exact ties, as real scores of distinct tokens would not be;
* costs: MSDNet's FLOPs interpolated the same way.
"""

from __future__ import annotations

import numpy as np

from refdata import load_costs, load_split


def make(n_exits: int, n_samples: int, seed: int = 0):
    """(scores (N, M) float64, correct (N, M) bool, costs (N,)) of a synthetic problem."""
    s_real, c_real = load_split("msd", "val")
    d_real = load_costs("msd")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, s_real.shape[1], n_samples)
    v = rng.random(n_samples)
    pos = np.linspace(0.0, s_real.shape[0] - 1, n_exits)
    scores = np.empty((n_exits, n_samples))
    correct = np.empty((n_exits, n_samples), dtype=bool)
    costs = np.empty(n_exits)
    for n, x in enumerate(pos):
        lo = int(np.floor(x))
        hi = min(lo + 1, s_real.shape[0] - 1)
        w = x - lo
        scores[n] = (1 - w) * s_real[lo, pick] + w * s_real[hi, pick]
        correct[n] = np.where(v >= w, c_real[lo, pick], c_real[hi, pick])
        costs[n] = (1 - w) * d_real[lo] + w * d_real[hi]
        scores[n] += rng.normal(0.0, 1e-6, n_samples)  # one row at a time: no (N, M) temporary
        np.clip(scores[n], 0.0, 1.0, out=scores[n])
    return scores, correct, costs
