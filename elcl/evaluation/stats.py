"""Paired statistics that can separate two methods: ratio-of-means forgetting reduction
and bootstrap intervals (pure numpy, no I/O).

The unit of pairing is a *cell*: one (seed, task order) for which the method, naive
fine-tuning and the single-task baseline all have a run. In a cell, forgetting of an
earlier task j (position ``j < n - 1`` of the order) is ``single_j - R[last][j]``.

* mean forgetting of an arm: the mean over its cells and their earlier tasks;
* forgetting reduction: ``1 - mean F(method) / mean F(naive)`` — a ratio of means over
  the same cells and tasks. A cell whose naive forgetting is 0 (or negative) still
  counts: it adds its method forgetting to the numerator and nothing to the
  denominator, instead of dropping out as a per-seed ratio would.
* bootstrap: each replicate resamples cells with replacement (seeds and orders) and,
  when per-mention correctness is known, the test mentions of every task with
  replacement — one draw per task shared by all runs, because every run is scored on
  the same mentions. The 95% interval is the 2.5–97.5 percentile of the replicates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_BOOTSTRAP_SEED",
    "Interval",
    "MentionBlock",
    "bootstrap_mean_accuracy",
    "bootstrap_mean_forgetting",
    "forgetting_cells",
    "mean_forgetting",
    "percentile_interval",
    "reduction",
]

DEFAULT_BOOTSTRAP = 2000
DEFAULT_BOOTSTRAP_SEED = 20211111  # fixed, so a report is reproducible to the digit


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95% bootstrap interval (NaN when not computable)."""

    point: float
    lo: float
    hi: float

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.lo) and (self.lo > 0 or self.hi < 0)

    def words(self, what: str, unit: str = "points", scale: float = 100.0) -> str:
        """One sentence: the estimate, its interval, and whether it excludes 0."""
        if math.isnan(self.point):
            return f"{what}: n/a"
        unit = unit if unit == "%" else " " + unit
        if math.isnan(self.lo):
            return f"{what}: {self.point * scale:.1f}{unit} (no interval)"
        side = "" if not self.excludes_zero else (" (above 0)" if self.lo > 0 else " (below 0)")
        verdict = f"the interval excludes 0{side}" if self.excludes_zero else "the interval includes 0: not separated"
        return (
            f"{what}: {self.point * scale:.1f}{unit}, 95% CI [{self.lo * scale:.1f}, {self.hi * scale:.1f}]; {verdict}"
        )


def forgetting_cells(single: np.ndarray, final: np.ndarray) -> np.ndarray:
    """``single - final`` elementwise: forgetting per (…, cell, earlier task)."""
    return np.asarray(single, dtype=float) - np.asarray(final, dtype=float)


def mean_forgetting(single: np.ndarray, final: np.ndarray) -> np.ndarray:
    """Mean forgetting per arm over cells and earlier tasks.

    ``single``: ``[C, J]`` single-task accuracies of cell c's earlier task j;
    ``final``: ``[K, C, J]`` final accuracies of arm k. NaN entries (no metric) are left
    out of the mean of that arm only. Returns ``[K]``.
    """
    F = forgetting_cells(single[None], final)
    valid = ~np.isnan(F)
    n = valid.sum(axis=(1, 2))
    total = np.where(valid, F, 0.0).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), math.nan)


def reduction(f_method: float | np.ndarray, f_naive: float | np.ndarray) -> np.ndarray | float:
    """``1 - F(method) / F(naive)`` on mean forgetting (NaN where naive's is not > 0)."""
    fm = np.asarray(f_method, dtype=float)
    fn = np.asarray(f_naive, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(fn > 0, 1.0 - fm / np.where(fn > 0, fn, 1.0), math.nan)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class MentionBlock:
    """Per-mention top-1 correctness of one task's test mentions, for the bootstrap.

    ``correct`` is ``[M, V]``: column v is one run's 0/1 vector over the task's M
    mentions (the same mentions in the same order for every column), and
    ``targets[v] = (k, c, j)`` says which accuracy it replaces: arm k (``k = -1``: the
    single-task baseline), cell c, earlier-task slot j.
    """

    correct: np.ndarray
    targets: Sequence[tuple[int, int, int]]


def bootstrap_mean_forgetting(
    single: np.ndarray,
    final: np.ndarray,
    blocks: Sequence[MentionBlock] | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    cells: bool = True,
) -> np.ndarray:
    """Bootstrap replicates of :func:`mean_forgetting`: ``[n_boot, K]``.

    Each replicate draws C cells with replacement (multinomial weights) and, for every
    block, M mentions with replacement; a block's accuracies are then the weighted
    means of its correctness columns. Accuracies not covered by a block stay fixed (so
    without blocks only cells are resampled). ``cells=False`` keeps every cell once: the
    replicates then vary with the mentions alone.
    """
    single = np.asarray(single, dtype=float)
    final = np.asarray(final, dtype=float)
    K, C, J = final.shape
    rng = np.random.default_rng(seed)
    # [B, K+1, C, J]: slot 0 is the single baseline, 1..K the arms.
    acc = np.broadcast_to(np.concatenate([single[None], final], axis=0)[None], (n_boot, K + 1, C, J)).copy()
    for block in blocks or ():
        corr = np.asarray(block.correct, dtype=float)
        M = corr.shape[0]
        if M == 0:
            continue
        counts = rng.multinomial(M, np.full(M, 1.0 / M), size=n_boot)  # [B, M]
        res = counts @ corr / M  # [B, V]
        for v, (k, c, j) in enumerate(block.targets):
            acc[:, k + 1, c, j] = res[:, v]
    F = acc[:, :1] - acc[:, 1:]  # [B, K, C, J]
    if cells:
        w_cells = rng.multinomial(C, np.full(C, 1.0 / C), size=n_boot).astype(float)  # [B, C]
    else:
        w_cells = np.ones((n_boot, C))
    valid = ~np.isnan(F)
    w = w_cells[:, None, :, None] * valid
    total = (np.where(valid, F, 0.0) * w).sum(axis=(2, 3))
    n = w.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.where(n > 0, n, 1.0), math.nan)


def bootstrap_mean_accuracy(
    acc: np.ndarray,
    blocks: Sequence[MentionBlock] | None = None,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_BOOTSTRAP_SEED,
    cells: bool = True,
) -> np.ndarray:
    """Bootstrap replicates (``[n_boot]``) of the mean of ``acc`` (``[C, J]``: run c's
    accuracy on task j; NaN entries left out), resampled exactly as
    :func:`bootstrap_mean_forgetting` resamples: runs with replacement and, per block
    (targets ``(-1, c, j)``), the task's mentions. It is that function with one arm of
    zeros, since forgetting from ``acc`` down to 0 is ``acc``."""
    acc = np.asarray(acc, dtype=float)
    return bootstrap_mean_forgetting(acc, np.zeros((1, *acc.shape)), blocks, n_boot, seed, cells=cells)[:, 0]


def percentile_interval(point: float, samples: np.ndarray | float, level: float = 0.95) -> Interval:
    """``point`` with the central ``level`` percentile interval of finite ``samples``."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if math.isnan(point) or s.size < 2:
        return Interval(float(point), math.nan, math.nan)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(s, [a, 1.0 - a])
    return Interval(float(point), float(lo), float(hi))
