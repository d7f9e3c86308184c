"""Pairing runs on (seed, order) cells and drawing the report's bootstrap intervals.

Every paired statistic of the report compares runs of the same cell: a method's final
accuracies against the forgetting reference's (single) and the baseline's (naive). This
module pairs them (:func:`pair`), resamples cells and, where prediction files allow, test
mentions (:class:`Boot`), and builds the :class:`~elcl.evaluation.scores.Comparison`
(:func:`compare`). Which method plays which role the caller passes in (from the method
registry); nothing here names a method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from elcl.continual import methods
from elcl.continual.methods import PENALTY_METHODS
from elcl.evaluation import metrics as M
from elcl.evaluation import stats as S
from elcl.evaluation.runs import (
    lam_label,
    order_label,
    prediction_file,
    read_correctness,
)
from elcl.evaluation.scores import (
    ArmStats,
    Cell,
    Comparison,
    DiffStats,
    GroupScores,
    RunScores,
    is_rule,
    n_earlier,
)

# ---------------------------------------------------------------------- pairing
RESAMPLE = ("mentions", "cells", "mentions-only")
"""What the bootstrap resamples: ``mentions`` — (seed, order) cells and, where every run
kept its prediction files, the test mentions; ``cells`` — cells only; ``mentions-only`` —
the test mentions with the cells held fixed. The last two split an interval's width into
the part more seeds would shrink and the part a larger evaluation sample would."""


class _Correctness:
    """Per-mention correctness read from prediction files, each file once."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[list, np.ndarray] | None] = {}

    def __call__(self, path: Path) -> tuple[list, np.ndarray] | None:
        if path not in self._cache:
            self._cache[path] = read_correctness(path)
        return self._cache[path]


@dataclass
class Boot:
    """How every interval of one report is drawn: the :data:`RESAMPLE` mode, the number of
    replicates and their seed, and the reader of per-mention correctness they share."""

    mode: str
    n_boot: int
    seed: int
    read: _Correctness = field(default_factory=_Correctness)

    @property
    def cells(self) -> bool:
        return self.mode != "mentions-only"

    @property
    def mentions(self) -> bool:
        return self.mode != "cells"

    def _nothing_to_draw(self, blocks: list[S.MentionBlock] | None) -> bool:
        """Only mentions were to be resampled and there are none: no interval (NaN
        replicates), rather than a zero-width one."""
        return blocks is None and not self.cells

    def forgetting(self, single: np.ndarray, final: np.ndarray, blocks: list[S.MentionBlock] | None) -> np.ndarray:
        """Replicates of mean forgetting per arm (``[n_boot, K]``)."""
        if self._nothing_to_draw(blocks):
            return np.full((self.n_boot, final.shape[0]), math.nan)
        return S.bootstrap_mean_forgetting(single, final, blocks, self.n_boot, self.seed, cells=self.cells)

    def accuracy(self, acc: np.ndarray, blocks: list[S.MentionBlock] | None) -> np.ndarray:
        """Replicates of the mean accuracy (``[n_boot]``)."""
        if self._nothing_to_draw(blocks):
            return np.full(self.n_boot, math.nan)
        return S.bootstrap_mean_accuracy(acc, blocks, self.n_boot, self.seed, cells=self.cells)


@dataclass
class _Paired:
    cells: list[Cell]
    point: np.ndarray  # [K] mean forgetting per arm
    boot: np.ndarray  # [B, K]
    mention_level: bool
    why_not: str


def _mention_blocks(
    cols: dict[str, list[tuple[Path, tuple[int, int, int], float]]], boot: Boot
) -> tuple[list[S.MentionBlock] | None, str]:
    if not boot.mentions:
        return None, "--resample cells"
    blocks = []
    for task, entries in cols.items():
        keys0 = None
        columns = []
        for path, _, acc in entries:
            got = boot.read(path)
            if got is None:
                return None, f"no prediction file {path}"
            keys, corr = got
            if keys0 is None:
                keys0 = keys
            elif keys != keys0:
                return None, f"{path}: its test mentions differ from the other runs' on {task}"
            if corr.size and not math.isnan(acc) and abs(float(corr.mean()) - acc) > 1e-6:
                return None, f"{path}: its correctness does not match the run's acc@1 ({acc:.4f})"
            columns.append(corr)
        blocks.append(S.MentionBlock(np.stack(columns, axis=1), [t for _, t, _ in entries]))
    return blocks, ""


def pair(
    arms: Sequence[dict[Cell, RunScores]],
    singles: dict[Cell, RunScores],
    split: str,
    boot: Boot,
) -> _Paired | None:
    """Mean forgetting per arm over the cells every arm and the single baseline have."""
    common = set(singles).intersection(*[set(a) for a in arms])
    cells = sorted(common, key=lambda c: (c[1], c[0]))
    if not cells:
        return None
    J = max(len(order) - 1 for _, order in cells)
    K = len(arms)
    if J <= 0:
        return None
    single = np.full((len(cells), J), math.nan)
    final = np.full((K, len(cells), J), math.nan)
    cols: dict[str, list[tuple[Path, tuple[int, int, int], float]]] = {}
    for c, cell in enumerate(cells):
        order = cell[1]
        srs = singles[cell]
        for j in range(len(order) - 1):
            task = order[j]
            single[c, j] = srs.final[j]
            cols.setdefault(task, []).append((prediction_file(srs.run, j, task, split), (-1, c, j), single[c, j]))
            for k, arm in enumerate(arms):
                rs = arm[cell]
                final[k, c, j] = rs.final[j] if j < n_earlier(rs) else math.nan
                cols[task].append((prediction_file(rs.run, rs.R.shape[0] - 1, task, split), (k, c, j), final[k, c, j]))
    blocks, why = _mention_blocks(cols, boot)
    point = S.mean_forgetting(single, final)
    return _Paired(cells, point, boot.forgetting(single, final, blocks), blocks is not None, why)


def by_cell(runs: Sequence[RunScores]) -> dict[Cell, RunScores]:
    out: dict[Cell, RunScores] = {}
    for rs in sorted(runs, key=lambda r: str(r.run.path)):
        out.setdefault(rs.cell, rs)
    return out


def accuracy_interval(g: GroupScores, split: str, boot: Boot) -> tuple[S.Interval, str]:
    """The group's average final acc@1 with a 95% interval: seeds resampled, and mentions too
    when every run's final predictions of a task cover the same mentions (else the reason
    they could not be, for the report's notes)."""
    acc = np.array([rs.final for rs in g.runs], dtype=float)  # [C, J]
    cols: dict[str, list[tuple[Path, tuple[int, int, int], float]]] = {}
    for c, rs in enumerate(g.runs):
        per_task = methods.get(rs.run.method).per_task_model
        for j, task in enumerate(rs.run.order):
            step = j if per_task else rs.R.shape[0] - 1
            cols.setdefault(task, []).append((prediction_file(rs.run, step, task, split), (-1, c, j), acc[c, j]))
    blocks, why = _mention_blocks(cols, boot)
    point = M.nanmean(acc)
    return S.percentile_interval(point, boot.accuracy(acc, blocks)), why


def reduction_interval(p: _Paired, k: int, naive: int = 0) -> S.Interval:
    point = S.reduction(p.point[k], p.point[naive])
    return S.percentile_interval(float(point), S.reduction(p.boot[:, k], p.boot[:, naive]))


def _arm_label(gs: Sequence[GroupScores]) -> str:
    lams = {g.order: g.lam for g in gs}
    values = set(lams.values())
    if len(values) == 1:
        return lam_label(next(iter(values)))
    return ", ".join(f"{order_label(o)}: {lam_label(v)}" for o, v in lams.items())


def compare(
    groups: list[GroupScores],
    naive_cells: dict[Cell, RunScores],
    single_cells: dict[Cell, RunScores],
    split: str,
    boot: Boot,
    baseline: str,
    reference: str,
) -> Comparison | None:
    """Every method at its selected λ (pooled over orders) against the ``baseline``
    (naive, runs ``naive_cells``), and the penalty methods against each other, with
    paired bootstrap intervals; forgetting from the ``reference`` (single, ``single_cells``)."""
    if not naive_cells or not single_cells:
        return None
    base = pair([naive_cells], single_cells, split, boot)
    if base is None:
        return None
    naive = S.percentile_interval(float(base.point[0]), base.boot[:, 0])
    resampling = {"cells": True, "mentions": base.mention_level, "why": base.why_not}

    arms: dict[tuple[str, str], list[GroupScores]] = {}
    for g in groups:
        if g.method in (reference, baseline) or not g.shown:
            continue
        # The selected λ of each order forms one arm; each λ rule ('auto…') its own.
        arms.setdefault((g.method, str(g.lam) if is_rule(g.lam) else "chosen"), []).append(g)
    arm_runs = {k: by_cell([rs for g in gs for rs in g.runs]) for k, gs in arms.items()}
    out_arms: list[ArmStats] = []
    for (method, kind), gs in arms.items():
        p = pair([naive_cells, arm_runs[(method, kind)]], single_cells, split, boot)
        if p is None:
            continue
        if not p.mention_level:
            resampling["mentions"] = False
            resampling["why"] = resampling["why"] or p.why_not
        out_arms.append(
            ArmStats(
                method,
                _arm_label(gs),
                len(p.cells),
                S.percentile_interval(float(p.point[1]), p.boot[:, 1]),
                reduction_interval(p, 1),
                rule=kind != "chosen",
            )
        )
    diffs: list[DiffStats] = []
    penalty = [k for k in arms if k[0] in PENALTY_METHODS and k[1] == "chosen"]
    pairs = [(a, b) for b, a in combinations(penalty, 2)]  # later − earlier in method order
    first = methods.headline()
    pairs.sort(key=lambda ab: (ab[0][0], ab[1][0]) != first)
    for a, b in pairs:
        p = pair([naive_cells, arm_runs[a], arm_runs[b]], single_cells, split, boot)
        if p is None:
            continue
        if not p.mention_level:
            resampling["mentions"] = False
            resampling["why"] = resampling["why"] or p.why_not
        d_f = S.percentile_interval(float(p.point[1] - p.point[2]), p.boot[:, 1] - p.boot[:, 2])
        ra, rb = S.reduction(p.point[1], p.point[0]), S.reduction(p.point[2], p.point[0])
        d_r = S.percentile_interval(
            float(ra - rb),
            S.reduction(p.boot[:, 1], p.boot[:, 0]) - S.reduction(p.boot[:, 2], p.boot[:, 0]),
        )
        diffs.append(DiffStats(a[0], b[0], len(p.cells), d_f, d_r))
    text = "seeds and orders (paired cells)" if boot.cells else "test mentions only ((seed, order) cells held fixed)"
    if resampling["mentions"]:
        if boot.cells:
            text += " and test mentions (one draw per task, shared by all runs)"
    elif not boot.mentions:
        text += "; test mentions not resampled (--resample cells)"
    elif not boot.cells:
        text += f"; no interval where prediction files are missing or disagree ({resampling['why']})"
    else:
        text += (
            f"; test mentions not resampled in the comparisons whose prediction files are "
            f"missing or disagree ({resampling['why']})"
        )
    return Comparison(baseline, reference, naive, len(base.cells), out_arms, diffs, text, boot.n_boot, boot.seed)
