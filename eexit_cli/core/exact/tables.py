"""The tables of the exact sweeps: histograms and running sums in int64.

A sweep turns per-sample changes (of hits and of the fixed-point rows, integer
valued, so that every sum is exact) into tables over candidate indices: one
histogram of every quantity by candidate, then a running sum, laid out so that
numpy adds whole rows.  :func:`_prefix` makes the tables of one threshold
(:func:`_prefixes` of one threshold for several labelled groups of samples at
once), :func:`_pair_tables` those of two, and :func:`_pair_index` maps a cell of
a pair table back to candidate indices and to the tie-break order of the search.
"""

from __future__ import annotations

import numpy as np


def _histograms(flat, w, width: int, size: int) -> np.ndarray:
    """One histogram of every quantity in one call: bin ``flat + q * width`` sums
    ``w[q]`` (``w`` (Q, S)); ``size`` bins in all, float (exact: integer-valued weights)."""
    nq = w.shape[0]
    if nq == 1:
        return np.bincount(flat, weights=w[0], minlength=size)
    flat = (flat + (np.arange(nq, dtype=np.intp) * width)[:, None]).reshape(-1)
    return np.bincount(flat, weights=w.reshape(-1), minlength=size)


def _prefix(rho, w, k: int) -> np.ndarray:
    """(Q, k) int64: entry ``[q, a]`` sums ``w[q]`` over the samples with ``rho <= a``.

    ``rho`` holds values in ``0..k``; ``w`` (Q, S) integer-valued floats (exact sums)."""
    nq = w.shape[0]
    h = _histograms(rho, w, k + 1, nq * (k + 1))
    if k > 16_384:  # large: the plain running sum along each quantity's row is faster
        out = h.reshape(nq, k + 1)[:, :k].astype(np.int64)
        return np.cumsum(out, axis=1, out=out)
    # written into a (k, Q) buffer: the running sum then adds whole rows of Q values
    # (2-3x faster than along each quantity's row while the buffer stays in cache);
    # returned as a (Q, k) view
    out = np.empty((k, nq), dtype=np.int64)
    np.cumsum(h.reshape(nq, k + 1)[:, :k], axis=1, dtype=np.int64, out=out.T)
    return out.T


def _prefixes(lab, rho, w, n_lab: int, k: int) -> np.ndarray:
    """(n_lab, Q, k) int64: entry ``[t, q, a]`` sums ``w[q]`` over the samples with
    ``lab == t`` and ``rho <= a`` (``rho`` in ``0..k``; ``w`` as for :func:`_prefix`)."""
    nq = w.shape[0]
    h = _histograms(lab * (nq * (k + 1)) + rho, w, k + 1, n_lab * nq * (k + 1))
    h = h.reshape(n_lab, nq, k + 1)[:, :, :k].astype(np.int64)
    return np.cumsum(h, axis=2, out=h)


def _pair_tables(rho_i, rho_j, d2, ki: int, kj: int, c1):
    """The tables of a two-threshold sweep as ``(neg, off)``: entry ``[q, a]`` of

        ``c1[q, a]`` plus the sum of ``d2[q]`` over the samples with ``rho_i <= a``
        and ``rho_j > b``

    is ``off[q, a] - neg[q, b, a]``; ``neg`` (Q, kj, ki) and ``off`` (Q, ki), int64.

    ``rho_i`` in ``0..ki``, ``rho_j`` in ``0..kj``; ``d2`` (Q, S) integer-valued floats
    (exact sums); ``c1`` (Q, ki) int64.  One histogram for every quantity, a running
    sum over ``a`` (along rows: numpy adds whole rows), then one over ``b`` written
    transposed, so that it too adds whole rows; ``neg`` holds the sums over
    ``rho_j <= b``, ``off`` the totals over every ``b`` plus ``c1``.
    """
    nq = d2.shape[0]
    cells = (ki + 1) * (kj + 1)
    flat = rho_i.astype(np.intp) * (kj + 1)
    flat += rho_j
    h = _histograms(flat, d2, cells, nq * cells)
    h = h.astype(np.int64).reshape(nq, ki + 1, kj + 1)
    np.cumsum(h, axis=1, out=h)  # rho_i <= a
    c = np.empty((nq, kj + 1, ki), dtype=np.int64)
    np.cumsum(h[:, :ki, :], axis=2, out=c.transpose(0, 2, 1))  # rho_j <= b
    off = c[:, kj, :] + c1
    return c[:, :kj, :], off


def _pair_index(index: np.ndarray, i: int, j: int, gi: np.ndarray, gj: np.ndarray):
    """``make_index`` and ``order`` of a two-threshold sweep.

    The tables of :func:`_pair_tables` hold cell ``b * gi.size + a`` for candidate
    ``gi[a]`` at threshold ``i`` and ``gj[b]`` at ``j``; ties go to the smallest
    ``a * gj.size + b`` (``a`` first)."""
    ki, kj = gi.size, gj.size

    def make_index(f):
        b, a = divmod(f, ki)
        out = index.copy()
        out[i], out[j] = gi[a], gj[b]
        return out

    def order(cells):
        b, a = np.divmod(cells, ki)
        return a * kj + b

    return make_index, order
