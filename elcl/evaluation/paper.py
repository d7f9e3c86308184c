"""Where the paper's headline falls against the report's own intervals.

McInerney et al. (2021) report that K-FAC cuts forgetting by 51% and diagonal EWC by 27%
(``Method.paper_reduction``). A verdict written by hand goes stale when a seed is added
(the README's did once, when it held the tables: a ninth seed moved EWC's dev-chosen λ and closed an eight-seed
gap), so the report states it from the numbers it has: for each method with a published
value, and for the headline pair's difference, whether the paper's value lies inside,
below or above the 95% interval. Pure functions of a :class:`Comparison`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from elcl.continual import methods

if TYPE_CHECKING:
    from elcl.evaluation.scores import Comparison
    from elcl.evaluation.stats import Interval

__all__ = ["SOURCE", "PaperCheck", "paper_checks"]

SOURCE = "McInerney et al. 2021, arXiv 2111.06012, BERT-based linker"

Position = Literal["inside", "below", "above", "untested"]


@dataclass(frozen=True)
class PaperCheck:
    """One published value against one interval of this report (both as fractions)."""

    what: str
    """``"kfac (λ 10000) forgetting reduction"`` or ``"kfac − ewc forgetting reduction"``."""
    paper: float
    ours: Interval
    difference: bool
    """A difference of two reductions (points) rather than one reduction (%)."""

    @property
    def position(self) -> Position:
        """The paper's value relative to the interval; ``untested`` without an interval."""
        if math.isnan(self.ours.lo) or math.isnan(self.ours.hi):
            return "untested"
        if self.paper < self.ours.lo:
            return "below"
        if self.paper > self.ours.hi:
            return "above"
        return "inside"

    def words(self) -> str:
        """One sentence: our estimate and interval, where the paper's value falls, and what
        that means (consistent with the paper or not)."""
        if self.difference:
            ours = f"{self.ours.point * 100:+.1f} points"
            paper = f"{self.paper * 100:+.0f} points"
        else:
            ours = f"{self.ours.point * 100:.1f}%"
            paper = f"{self.paper * 100:.0f}%"
        head = f"{self.what}: {ours}"
        if self.position == "untested":
            return f"{head} (no interval); the paper's {paper} is not tested"
        head += f", 95% CI [{self.ours.lo * 100:.1f}, {self.ours.hi * 100:.1f}]"
        if self.position == "inside":
            verdict = f"the paper's {paper} lies inside the interval: consistent with the paper"
        else:
            verdict = f"the paper's {paper} lies {self.position} the interval: not consistent with the paper"
        if self.difference and self.ours.lo <= 0 <= self.ours.hi:
            verdict += "; the interval includes 0: no difference separated"
        return f"{head}; {verdict}"


def _published(method: str) -> float | None:
    cls = methods.REGISTRY.get(method)
    return None if cls is None else cls.paper_reduction


def paper_checks(comparison: Comparison | None) -> list[PaperCheck]:
    """Every arm at its dev-chosen λ whose method has a published reduction (λ rules such
    as ``auto`` are not what the paper tuned), then every difference of two such methods
    (the paper's gap: the difference of its two values)."""
    if comparison is None:
        return []
    out: list[PaperCheck] = []
    for a in comparison.arms:
        value = _published(a.method)
        if value is None or a.rule:
            continue
        lam = "" if a.lam == "-" else f" (λ {a.lam})"
        out.append(PaperCheck(f"{a.method}{lam} forgetting reduction", value, a.reduction, difference=False))
    for d in comparison.diffs:
        va, vb = _published(d.a), _published(d.b)
        if va is None or vb is None:
            continue
        out.append(PaperCheck(f"{d.a} − {d.b} forgetting reduction", va - vb, d.reduction, difference=True))
    return out
