"""The stability–plasticity frontier of the penalty methods (pure numpy, no I/O).

λ is not the same strength for EWC and K-FAC (the traces of their curvature diagonals
differ), so comparing them at one λ, or each at its own selected λ, partly compares
strengths. Across its λ grid each penalty method traces a curve of *plasticity*
(accuracy on the newest task, the one just learned) against *stability* (mean
forgetting of the earlier tasks). At the same newest-task accuracy, the method whose
curve lies lower forgets less: :func:`matched_plasticity` interpolates both curves
linearly at the newest-task accuracies they share and compares them there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["FrontierPoint", "MatchedComparison", "interpolate", "matched_plasticity"]


@dataclass(frozen=True)
class FrontierPoint:
    """One (method, λ): means over its runs (cells), fractions."""

    method: str
    lam: float | str | None
    newest_acc: float
    """Accuracy on the last task of the order after the last step."""
    forgetting: float
    """Mean forgetting of the earlier tasks (single-task accuracy minus final)."""
    avg_final_acc: float
    """Average final accuracy over all tasks."""
    n_runs: int


def interpolate(xs: Sequence[float], ys: Sequence[float], at: np.ndarray) -> np.ndarray:
    """Piecewise-linear y(x) through the points, NaN outside their x range.

    Points sharing an x are averaged first, so a flat stretch of the grid (several λ
    with one newest-task accuracy) gives one value.
    """
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    at = np.asarray(at, dtype=float)
    if x.size == 0:
        return np.full(at.shape, math.nan)
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, weights=y) / np.bincount(inv)
    out = np.interp(at, ux, uy)
    return np.where((at >= ux[0]) & (at <= ux[-1]), out, math.nan)


@dataclass(frozen=True)
class MatchedComparison:
    """Method ``a`` against ``b`` at matched newest-task accuracy."""

    a: str
    b: str
    at: np.ndarray
    """Common newest-task accuracies (both methods' points inside the shared range)."""
    forgetting_a: np.ndarray
    forgetting_b: np.ndarray

    @property
    def diff(self) -> np.ndarray:
        return self.forgetting_a - self.forgetting_b

    @property
    def mean_diff(self) -> float:
        return float(np.mean(self.diff)) if self.diff.size else math.nan

    def words(self, names: dict[str, str] | None = None) -> str:
        """Which method forgets less at matched plasticity, by how much, over which range."""
        names = names or {}
        na, nb = names.get(self.a, self.a), names.get(self.b, self.b)
        lo, hi = float(self.at.min()) * 100, float(self.at.max()) * 100
        where = (
            f"newest-task acc@1 {lo:.1f}%"
            if math.isclose(lo, hi)
            else f"newest-task acc@1 {lo:.1f}–{hi:.1f}% ({self.at.size} matched points)"
        )
        d = self.mean_diff * 100
        if math.isclose(d, 0.0, abs_tol=0.05):
            return f"At matched plasticity ({where}), {na} and {nb} forget the same (difference {d:+.1f} points)."
        better, worse = (na, nb) if d < 0 else (nb, na)
        always = bool(np.all(self.diff < 0) or np.all(self.diff > 0))
        return (
            f"At matched plasticity ({where}), {better} forgets less than {worse}: by "
            f"{abs(d):.1f} points of mean forgetting on average"
            + ("" if always else " (not at every matched point)")
            + "."
        )


def matched_plasticity(a: Sequence[FrontierPoint], b: Sequence[FrontierPoint]) -> MatchedComparison | None:
    """Compare two frontiers where their newest-task accuracies overlap (None if they don't).

    The matched accuracies are every point of either frontier inside the shared range
    [max(min a, min b), min(max a, max b)]; both curves are interpolated there.
    """
    xa = np.array([p.newest_acc for p in a], dtype=float)
    xb = np.array([p.newest_acc for p in b], dtype=float)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    if xa.size == 0 or xb.size == 0:
        return None
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if lo > hi:
        return None
    at = np.unique(np.concatenate([xa, xb]))
    at = at[(at >= lo) & (at <= hi)]
    fa = interpolate([p.newest_acc for p in a], [p.forgetting for p in a], at)
    fb = interpolate([p.newest_acc for p in b], [p.forgetting for p in b], at)
    ok = np.isfinite(fa) & np.isfinite(fb)
    if not ok.any():
        return None
    return MatchedComparison(a[0].method, b[0].method, at[ok], fa[ok], fb[ok])
