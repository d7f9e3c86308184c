"""Continual-learning metrics on accuracy matrices (pure functions, numpy only).

An accuracy matrix ``R`` has shape ``[n_steps, n_tasks]``: ``R[i, j]`` is the acc@1 on
task ``j`` (index in the run's training order) after training step ``i``. Missing
entries are NaN. For a finished sequential run ``n_steps == n_tasks``; the *final* row
is always the last row (``R[-1]``), so a partial run is scored on what it has done.

Definitions (docs/concepts/forgetting.md on the docs site; the
forgetting reduction is the metric of McInerney et al. 2021, arXiv 2111.06012):

* forgetting vs single baseline: ``single[j] - R[-1, j]``
* forgetting vs best earlier accuracy: ``max_{j <= i < n-1} R[i, j] - R[-1, j]`` for
  ``j < n - 1`` (``n = n_steps``), NaN otherwise
* average final accuracy: ``mean_j R[-1, j]``
* backward transfer: ``mean_{j < n-1} (R[-1, j] - R[j, j])``

Statistics across runs (forgetting reduction as a ratio of means over paired runs,
bootstrap intervals) live in :mod:`elcl.evaluation.stats`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Baseline",
    "LambdaChoice",
    "as_matrix",
    "average_final_accuracy",
    "backward_transfer",
    "final_accuracies",
    "forgetting_vs_best",
    "forgetting_vs_single",
    "lam_key",
    "match_baseline",
    "mean_std",
    "nanmean",
    "select_lambda",
]


def nanmean(values: Sequence[float] | np.ndarray) -> float:
    """Mean of the non-NaN values (NaN when there is none)."""
    values = np.asarray(values, dtype=float)
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def as_matrix(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Return ``R`` as a 2-D float array (raises ValueError otherwise)."""
    arr = np.asarray(R, dtype=float)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"accuracy matrix must be 2-D and non-empty, got shape {arr.shape}")
    return arr


def final_accuracies(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Last row of ``R``: accuracy on every task after the last step."""
    return as_matrix(R)[-1].copy()


def average_final_accuracy(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """``mean_j R[-1, j]`` (NaN entries ignored; NaN when all are NaN)."""
    return nanmean(final_accuracies(R))


def forgetting_vs_single(R: Sequence[Sequence[float]] | np.ndarray, single: Sequence[float] | np.ndarray) -> np.ndarray:
    """Per task ``j``: ``single[j] - R[-1, j]`` (NaN where either is missing)."""
    final = final_accuracies(R)
    base = np.asarray(single, dtype=float)
    if base.shape != final.shape:
        raise ValueError(f"single baseline has shape {base.shape}, expected {final.shape}")
    return base - final


def forgetting_vs_best(R: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Per task ``j < n-1``: best accuracy at steps ``j..n-2`` minus the final one.

    ``n`` is the number of steps (rows). Tasks not trained before the last step get NaN.
    """
    arr = as_matrix(R)
    n_steps, n_tasks = arr.shape
    out = np.full(n_tasks, math.nan)
    for j in range(min(n_tasks, n_steps - 1)):
        earlier = arr[j : n_steps - 1, j]
        earlier = earlier[~np.isnan(earlier)]
        if earlier.size:
            out[j] = earlier.max() - arr[-1, j]
    return out


def backward_transfer(R: Sequence[Sequence[float]] | np.ndarray) -> float:
    """``mean_{j < n-1} (R[-1, j] - R[j, j])``; NaN when there is no earlier task."""
    arr = as_matrix(R)
    n_steps, n_tasks = arr.shape
    k = min(n_tasks, n_steps - 1)
    if k <= 0:
        return math.nan
    diffs = np.array([arr[-1, j] - arr[j, j] for j in range(k)])
    return nanmean(diffs)


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean and sample standard deviation (ddof=1) over the non-NaN values, and their count.

    The standard deviation is NaN with fewer than two values; everything is NaN with none.
    """
    arr = np.asarray(values, dtype=float).ravel()
    arr = arr[~np.isnan(arr)]
    n = int(arr.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if n > 1 else math.nan
    return mean, std, n


@dataclass(frozen=True)
class LambdaChoice:
    """Result of the λ selection rule for one (method, order)."""

    chosen: float | str | None
    scores: dict  # λ -> mean dev score over seeds (NaN when no dev score)
    counts: dict  # λ -> number of runs with a dev score
    reason: str


SELECTION_RULE = (
    "λ selection: for each (method, order) with several λ values, the λ maximising the "
    "mean over seeds of the final-row average dev acc@1 over all tasks of the order "
    "(ties -> smaller λ)."
)


def lam_key(lam: float | str | None) -> tuple[int, float]:
    """Sort key of λ values: no penalty first, then numbers ascending, then the auto
    tokens (``auto``, ``auto10``) by their scale (the registry's one rule)."""
    from elcl.continual.methods import lambda_sort_key

    return lambda_sort_key(lam)


def select_lambda(dev_scores: Mapping[float | str | None, Sequence[float]]) -> LambdaChoice:
    """Choose the λ whose mean dev score over seeds is highest.

    ``dev_scores`` maps each λ (``None`` allowed: a method without penalty) to the
    per-seed scores (final-row average dev acc@1). NaN scores are ignored. Ties go to the
    smaller λ. With a single λ it is chosen whatever its score; with no finite score
    at all the smallest λ is chosen and the reason says so.
    """
    if not dev_scores:
        raise ValueError("no λ to select from")
    lams = sorted(dev_scores, key=lam_key)
    scores: dict = {}
    counts: dict = {}
    for lam in lams:
        mean, _, n = mean_std(dev_scores[lam])
        scores[lam] = mean
        counts[lam] = n
    if len(lams) == 1:
        return LambdaChoice(lams[0], scores, counts, "only one λ")
    finite = [lam for lam in lams if not math.isnan(scores[lam])]
    if not finite:
        return LambdaChoice(lams[0], scores, counts, "no dev scores; smallest λ taken")
    best = max(finite, key=lambda lam: (scores[lam], -lam_key(lam)[0], -lam_key(lam)[1]))
    return LambdaChoice(best, scores, counts, "max mean dev acc@1")


@dataclass(frozen=True)
class Baseline:
    """Per-task values (by task name) from one run, for seed matching."""

    seed: int
    order: tuple[str, ...]
    values: Mapping[str, float]
    label: Hashable = None  # e.g. the run directory, for reporting


def _mean_for(task: str, pool: Sequence[Baseline]) -> tuple[float, int]:
    vals = [float(b.values[task]) for b in pool if task in b.values]
    vals = [v for v in vals if not math.isnan(v)]
    return (float(np.mean(vals)), len(vals)) if vals else (math.nan, 0)


def match_baseline(
    seed: int,
    order: Sequence[str],
    candidates: Sequence[Baseline],
    match_order: bool = False,
) -> tuple[dict[str, float], str]:
    """Per-task baseline values for a run with ``seed`` and ``order``.

    Rule: with ``match_order`` the pool is the candidates with the same order (all
    candidates when none has it); otherwise all candidates. Within the pool the candidate
    with the same seed is used when it exists (and has the task), else the mean over the
    pool. Returns (task -> value, NaN when unavailable) and a short description.
    """
    order = tuple(order)
    pool = list(candidates)
    how_order = ""
    if match_order:
        same = [b for b in pool if tuple(b.order) == order]
        if same:
            pool = same
        elif pool:
            how_order = ", other orders"
    if not pool:
        return {t: math.nan for t in order}, "none"
    exact = [b for b in pool if b.seed == seed]
    out: dict[str, float] = {}
    used_mean = False
    for task in order:
        val, n = _mean_for(task, exact)
        if n == 0:
            val, n = _mean_for(task, pool)
            used_mean = used_mean or n > 0
        out[task] = val
    if exact and not used_mean:
        how = f"seed {seed}"
    else:
        how = f"mean of {len(pool)} run(s)"
    return out, how + how_order
