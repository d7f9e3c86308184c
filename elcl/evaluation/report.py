"""Forgetting report over many runs: scoring and aggregation.

The report is built in three parts:

* scoring — pure functions over accuracy matrices and per-mention correctness:
  :mod:`elcl.evaluation.metrics` (one run), :mod:`elcl.evaluation.stats` (paired
  ratio-of-means reduction, bootstrap intervals), :mod:`elcl.evaluation.frontier`;
* this module — reads the runs, keeps the comparable ones, pairs every run with the
  baseline (naive) and the forgetting reference (single) on the same (seed, order),
  groups by (method, λ, order), selects λ on dev data, and fills a :class:`Report`
  (data only). Which method plays which role it asks the method registry
  (:func:`elcl.continual.methods.role`); it never names a method;
* rendering — :mod:`elcl.evaluation.render` (DataFrames → Markdown / CSV / JSON, rich
  on a terminal) and :mod:`elcl.evaluation.plots` (matplotlib PNGs);
  :func:`write_report` writes both.
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
from elcl.errors import ElclError
from elcl.evaluation import metrics as M
from elcl.evaluation import stats as S
from elcl.evaluation.comparable import split_comparable
from elcl.evaluation.frontier import (
    FrontierPoint,
    MatchedComparison,
    matched_plasticity,
)
from elcl.evaluation.runs import (
    Run,
    accuracy_matrix,
    discover_runs,
    lam_label,
    order_label,
    prediction_file,
    read_correctness,
    single_baseline,
)
from elcl.provenance import machine_counts

__all__ = [
    "SCALAR_METRICS",
    "TASK_METRICS",
    "ArmStats",
    "Comparison",
    "DiffStats",
    "GroupScores",
    "Report",
    "RunScores",
    "build_report",
    "write_report",
]

SCALAR_METRICS = (
    "avg_final_acc1",
    "avg_final_acc5",
    "avg_final_dev_acc1",
    "newest_acc1",
    "mean_forgetting",
    "bwt",
)
TASK_METRICS = ("final_acc1", "forgetting_single", "forgetting_best")

Cell = tuple[int, tuple[str, ...]]
"""(seed, task order): the unit runs are paired on."""


def is_rule(lam: float | str | None) -> bool:
    """λ set by a rule per task (``lambda: auto…``) rather than one value of a grid."""
    return isinstance(lam, str)


@dataclass
class RunScores:
    """Metrics of one run (accuracies as fractions; per-task arrays in the run's order)."""

    run: Run
    R: np.ndarray  # acc1 on the report split, [n_steps, n_tasks]
    R5: np.ndarray
    R_dev: np.ndarray  # acc1 on dev
    final: np.ndarray  # per task final acc1 (the diagonal for a per-task-model method: single)
    avg_final_acc1: float
    avg_final_acc5: float
    avg_final_dev_acc1: float
    newest_acc1: float  # final acc1 on the order's last task (plasticity)
    forgetting_best: np.ndarray
    bwt: float
    single: np.ndarray = field(default_factory=lambda: np.zeros(0))
    single_from: str = "none"
    forgetting_single: np.ndarray = field(default_factory=lambda: np.zeros(0))
    mean_forgetting: float = math.nan
    first_pair_dev_acc1: float = math.nan
    """Mean dev acc@1 over the first two tasks right after the second (sequences of 3+)."""

    @property
    def cell(self) -> Cell:
        return (self.run.seed, self.run.order)

    def per_task(self, name: str) -> np.ndarray:
        return {
            "final_acc1": self.final,
            "forgetting_single": self.forgetting_single,
            "forgetting_best": self.forgetting_best,
        }[name]

    def scalar(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass
class GroupScores:
    """Runs sharing (method, λ, order), aggregated over seeds: (mean, std, n)."""

    method: str
    lam: float | str | None
    order: tuple[str, ...]
    runs: list[RunScores]
    chosen: bool = False
    scalars: dict = field(default_factory=dict)  # name -> (mean, std, n)
    tasks: dict = field(default_factory=dict)  # name -> task -> (mean, std, n)
    R_mean: np.ndarray | None = None
    R_std: np.ndarray | None = None
    reduction: S.Interval | None = None
    """Ratio-of-means forgetting reduction vs naive over the paired seeds, with its interval."""
    acc_interval: S.Interval | None = None
    """Average final acc@1 with its 95% bootstrap interval over the group's runs and,
    when their prediction files hold the same mentions, those mentions."""
    n_paired: int = 0

    @property
    def seeds(self) -> list[int]:
        return sorted(r.run.seed for r in self.runs)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def key(self) -> tuple:
        return (self.method, self.lam, self.order)

    @property
    def shown(self) -> bool:
        """In the main table: the dev-selected λ, or a rule-set λ (its own point)."""
        return self.chosen or is_rule(self.lam)


@dataclass(frozen=True)
class ArmStats:
    """One method (at its selected λ per order, or a λ rule) against naive, pooled over orders."""

    method: str
    lam: str  # "1000" or "o0: 100, o1: 1000" or "auto"
    n_cells: int
    forgetting: S.Interval
    reduction: S.Interval
    rule: bool = False
    """λ set by a rule (``auto…``), not chosen on dev from a grid."""


@dataclass(frozen=True)
class DiffStats:
    """``a − b`` in mean forgetting and in reduction, over the cells both have."""

    a: str
    b: str
    n_cells: int
    forgetting: S.Interval
    reduction: S.Interval


@dataclass
class Comparison:
    """The paired statistics of the report: every method against the baseline (naive),
    and penalty pairs."""

    baseline: str
    """The method the reductions are measured against (``methods.role("baseline")``)."""
    reference: str
    """The method forgetting is measured from (``methods.role("forgetting_reference")``)."""
    base: S.Interval | None
    """The baseline's mean forgetting over its paired cells."""
    n_cells: int
    arms: list[ArmStats]
    diffs: list[DiffStats]
    resampling: str
    n_boot: int
    seed: int


@dataclass
class Report:
    split: str
    runs: list[RunScores]
    groups: list[GroupScores]
    selections: dict  # (method, order) -> LambdaChoice
    warnings: list[str]
    notes: list[str]
    experiments: list[str]
    comparison: Comparison | None = None
    frontier: list[FrontierPoint] = field(default_factory=list)
    matched: list[MatchedComparison] = field(default_factory=list)
    unpaired: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    first_pair: dict = field(default_factory=dict)
    """(method, order) -> LambdaChoice made on the first task pair's dev accuracy alone."""
    machines: dict[str, int] = field(default_factory=dict)
    """Runs per machine they computed on (``elcl.provenance.machine_counts``)."""

    @property
    def orders(self) -> list[tuple[str, ...]]:
        return list(dict.fromkeys(g.order for g in self.groups))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for order in self.orders for t in order))

    def chosen_groups(self) -> list[GroupScores]:
        return [g for g in self.groups if g.shown]

    # Rendering lives in render.py; these keep the report's own API short to use.
    def main_table_markdown(self) -> str:
        from elcl.evaluation import render

        return render.markdown(render.group_table(self, self.chosen_groups()))

    def all_lambda_markdown(self) -> str:
        from elcl.evaluation import render

        return render.markdown(render.group_table(self, self.groups))

    def selection_markdown(self) -> str:
        from elcl.evaluation import render

        return render.markdown(render.selection_table(self))

    def stdout_markdown(self) -> str:
        from elcl.evaluation import render

        return render.stdout_markdown(self)

    def to_markdown(self) -> str:
        from elcl.evaluation import render

        return render.report_markdown(self)

    def summary_dict(self) -> dict:
        from elcl.evaluation import render

        return render.summary_dict(self)


# ---------------------------------------------------------------------- scoring
def _diag(R: np.ndarray) -> np.ndarray:
    out = np.full(R.shape[1], math.nan)
    for j in range(min(R.shape)):
        out[j] = R[j, j]
    return out


def _earlier(rs: RunScores) -> int:
    """How many tasks were trained before the last step (joint sees all at once)."""
    steps = rs.run.n_tasks if methods.get(rs.run.method).all_tasks_at_once else rs.R.shape[0]
    return max(0, min(rs.run.n_tasks, steps - 1))


def _score_run(run: Run, split: str) -> RunScores:
    R = accuracy_matrix(run, split, "acc1")
    R5 = accuracy_matrix(run, split, "acc5")
    R_dev = accuracy_matrix(run, "dev", "acc1")
    method = methods.get(run.method)
    if method.per_task_model:
        final, final5, final_dev = _diag(R), _diag(R5), _diag(R_dev)
    else:
        final, final5, final_dev = R[-1].copy(), R5[-1].copy(), R_dev[-1].copy()
    sequential = method.sequential()
    n = run.n_tasks
    return RunScores(
        run=run,
        R=R,
        R5=R5,
        R_dev=R_dev,
        final=final,
        avg_final_acc1=M.nanmean(final),
        avg_final_acc5=M.nanmean(final5),
        avg_final_dev_acc1=M.nanmean(final_dev),
        newest_acc1=float(final[-1]),
        forgetting_best=M.forgetting_vs_best(R) if sequential else np.full(n, math.nan),
        bwt=M.backward_transfer(R) if sequential else math.nan,
        single=np.full(n, math.nan),
        forgetting_single=np.full(n, math.nan),
        first_pair_dev_acc1=M.nanmean(R_dev[1, :2]) if sequential and n >= 3 and R_dev.shape[0] >= 2 else math.nan,
    )


def _aggregate(g: GroupScores) -> None:
    for name in SCALAR_METRICS:
        g.scalars[name] = M.mean_std([rs.scalar(name) for rs in g.runs])
    for name in TASK_METRICS:
        g.tasks[name] = {t: M.mean_std([rs.per_task(name)[j] for rs in g.runs]) for j, t in enumerate(g.order)}
    n_steps = max(rs.R.shape[0] for rs in g.runs)
    stack = np.full((len(g.runs), n_steps, len(g.order)), math.nan)
    for k, rs in enumerate(g.runs):
        stack[k, : rs.R.shape[0]] = rs.R
    g.R_mean = np.full(stack.shape[1:], math.nan)
    g.R_std = np.full(stack.shape[1:], math.nan)
    for i in range(n_steps):
        for j in range(len(g.order)):
            mean, std, _ = M.mean_std(stack[:, i, j])
            g.R_mean[i, j], g.R_std[i, j] = mean, std


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
class _Boot:
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
    cols: dict[str, list[tuple[Path, tuple[int, int, int], float]]], boot: _Boot
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


def _pair(
    arms: Sequence[dict[Cell, RunScores]],
    singles: dict[Cell, RunScores],
    split: str,
    boot: _Boot,
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
                final[k, c, j] = rs.final[j] if j < _earlier(rs) else math.nan
                cols[task].append((prediction_file(rs.run, rs.R.shape[0] - 1, task, split), (k, c, j), final[k, c, j]))
    blocks, why = _mention_blocks(cols, boot)
    point = S.mean_forgetting(single, final)
    return _Paired(cells, point, boot.forgetting(single, final, blocks), blocks is not None, why)


def _by_cell(runs: Sequence[RunScores]) -> dict[Cell, RunScores]:
    out: dict[Cell, RunScores] = {}
    for rs in sorted(runs, key=lambda r: str(r.run.path)):
        out.setdefault(rs.cell, rs)
    return out


def _accuracy_interval(g: GroupScores, split: str, boot: _Boot) -> tuple[S.Interval, str]:
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


def _reduction_interval(p: _Paired, k: int, naive: int = 0) -> S.Interval:
    point = S.reduction(p.point[k], p.point[naive])
    return S.percentile_interval(float(point), S.reduction(p.boot[:, k], p.boot[:, naive]))


# ---------------------------------------------------------------------- build
def check_options(split: str, resample: str) -> None:
    """One line naming the option when ``split`` or ``resample`` is not a known value."""
    if split not in ("dev", "test"):
        raise ElclError(f"--split: '{split}' is not one of dev, test")
    if resample not in RESAMPLE:
        raise ElclError(f"--resample: '{resample}' is not one of {', '.join(RESAMPLE)}")


def build_report(
    run_dirs: list[Path] | list[str],
    split: str = "test",
    include_partial: bool = False,
    n_boot: int = S.DEFAULT_BOOTSTRAP,
    boot_seed: int = S.DEFAULT_BOOTSTRAP_SEED,
    resample: str = "mentions",
) -> Report:
    """Score every comparable run under ``run_dirs`` and aggregate (``resample``: see
    :data:`RESAMPLE`).

    Raises :class:`ElclError` on a bad split, resample, unreadable/invalid files or no usable run.
    """
    check_options(split, resample)
    if n_boot < 100:
        raise ElclError(f"--bootstrap: {n_boot} resamples are too few for a 95% interval; use >= 100")
    runs, warnings, _ = discover_runs(run_dirs, include_partial=include_partial)
    kept, left_out, cfg_warnings = split_comparable([(r.path, r.config) for r in runs])
    runs = [runs[i] for i in kept]
    warnings += cfg_warnings
    if not runs:
        raise ElclError(
            "no usable run under "
            + ", ".join(str(p) for p in run_dirs)
            + (f" ({len(warnings)} skipped; see warnings)" if warnings else "")
        )
    notes: list[str] = []
    for r in runs:
        if split not in r.splits():
            warnings.append(f"{r.path}: no '{split}' rows in metrics.jsonl; its accuracies are n/a")

    scores = [_score_run(r, split) for r in runs]
    reference, baseline = methods.role("forgetting_reference"), methods.role("baseline")

    # Single-task baseline of each run (for its own per-task forgetting): the reference
    # (single) run of the same seed and order when there is one, else the mean of them.
    single_runs = [rs for rs in scores if rs.run.method == reference]
    singles = [
        M.Baseline(rs.run.seed, rs.run.order, single_baseline(rs.run, split), str(rs.run.path)) for rs in single_runs
    ]
    if not singles:
        notes.append(
            f"no '{reference}' run: forgetting vs the single-task baseline and forgetting "
            "reduction are n/a (see forgetting vs best earlier accuracy instead)"
        )
    for rs in scores:
        if singles:
            vals, how = M.match_baseline(rs.run.seed, rs.run.order, singles, match_order=True)
            rs.single = np.array([vals[t] for t in rs.run.order], dtype=float)
            rs.single_from = how
        rs.forgetting_single = rs.single - rs.final
        k = _earlier(rs)
        rs.mean_forgetting = M.nanmean(rs.forgetting_single[:k]) if k > 0 else math.nan

    # Pairing: the paired statistics use only runs with the baseline (naive) and the
    # reference (single) on their cell.
    single_cells = _by_cell(single_runs)
    naive_cells = _by_cell([rs for rs in scores if rs.run.method == baseline])
    if singles and not naive_cells:
        notes.append(f"no '{baseline}' run: forgetting reduction is n/a")
    unpaired: list[str] = []
    for rs in scores:
        if rs.run.method == reference:
            continue
        missing = [
            what
            for what, pool in ((reference, single_cells), (baseline, naive_cells))
            if rs.cell not in pool and not (what == baseline and rs.run.method == baseline)
        ]
        if missing and (single_cells or naive_cells):
            unpaired.append(
                f"{rs.run.path}: no {' and no '.join(missing)} run with seed {rs.run.seed} and "
                f"order {order_label(rs.run.order)}; left out of the paired statistics"
            )

    # Groups (method, λ, order).
    order_rank = list(dict.fromkeys(rs.run.order for rs in scores))
    by_key: dict[tuple, GroupScores] = {}
    for rs in scores:
        key = (rs.run.method, rs.run.lam, rs.run.order)
        by_key.setdefault(key, GroupScores(rs.run.method, rs.run.lam, rs.run.order, []))
        by_key[key].runs.append(rs)
    groups = sorted(
        by_key.values(),
        key=lambda g: (order_rank.index(g.order), methods.rank(g.method), M.lam_key(g.lam)),
    )
    for g in groups:
        _aggregate(g)
        if len(set(g.seeds)) < len(g.seeds):
            warnings.append(
                f"{g.method} λ={lam_label(g.lam)} {order_label(g.order)}: several runs share "
                f"a seed ({', '.join(str(r.run.path) for r in g.runs)}); the first is paired, "
                f"all are averaged in the per-group means"
            )

    # λ selection per (method, order), over the grid values (a λ rule is its own point).
    selections: dict = {}
    per_mo: dict[tuple, list[GroupScores]] = {}
    for g in groups:
        if not is_rule(g.lam):
            per_mo.setdefault((g.method, g.order), []).append(g)
    for (method, order), gs in per_mo.items():
        choice = M.select_lambda({g.lam: [rs.avg_final_dev_acc1 for rs in g.runs] for g in gs})
        selections[(method, order)] = choice
        for g in gs:
            g.chosen = g.lam == choice.chosen
        if len(gs) > 1 and choice.reason != "max mean dev acc@1":
            notes.append(f"{method} {order_label(order)}: λ selection: {choice.reason}")
    first_pair = _first_pair_selections(per_mo)

    boot = _Boot(resample, n_boot, boot_seed)
    if not boot.mentions:
        notes.append(
            "--resample cells: every interval resamples (seed, order) cells (seeds for accuracies) "
            "only, not test mentions"
        )
    elif not boot.cells:
        notes.append(
            "--resample mentions-only: every interval resamples the test mentions only, with the "
            "(seed, order) cells held fixed; where prediction files are missing there is no interval"
        )

    seeds_only: list[str] = []
    for g in groups:
        g.acc_interval, why = _accuracy_interval(g, split, boot)
        if why and boot.mentions:
            seeds_only.append(f"{g.method} λ={lam_label(g.lam)} {order_label(g.order)} ({why})")
    if seeds_only:
        what = "seeds only, not test mentions" if boot.cells else "nothing (no interval)"
        notes.append(
            f"avg acc@1 intervals resample {what}, for {len(seeds_only)} group(s): "
            + "; ".join(seeds_only[:3])
            + (" …" if len(seeds_only) > 3 else "")
        )

    # Per group: the ratio-of-means reduction over its paired seeds, with an interval.
    for g in groups:
        if g.method in (reference, baseline):
            continue
        p = _pair([naive_cells, _by_cell(g.runs)], single_cells, split, boot)
        if p is not None:
            g.reduction = _reduction_interval(p, 1)
            g.n_paired = len(p.cells)

    comparison = _compare(groups, naive_cells, single_cells, split, boot, baseline, reference)
    if comparison is not None and comparison.base is not None and not comparison.base.point > 0:
        notes.append(
            f"{baseline} forgetting is {comparison.base.point * 100:.1f} points on average: the "
            f"forgetting reduction is undefined (it divides by it)"
        )
    frontier = _frontier(groups, reference)
    matched = _matched(frontier)
    experiments = sorted({r.experiment for r in runs})
    return Report(
        split,
        scores,
        groups,
        selections,
        warnings,
        notes,
        experiments,
        comparison=comparison,
        frontier=frontier,
        matched=matched,
        unpaired=unpaired,
        left_out=left_out,
        first_pair=first_pair,
        machines=machine_counts([r.run.environments for r in scores]),
    )


def _first_pair_selections(per_mo: dict[tuple, list[GroupScores]]) -> dict:
    """λ chosen as if only the first two tasks had been run with the grid.

    A λ that needs no grid over the whole sequence: select it on the dev accuracy of the
    first task pair (both tasks, right after the second) and carry it forward. Every run of
    a penalty grid holds that row already, so the rule is scored from the same runs; it
    applies to orders of three or more tasks (with two, the pair is the sequence).
    """
    out: dict = {}
    for (method, order), gs in per_mo.items():
        if not methods.get(method).penalised() or len(gs) < 2:
            continue
        scores = {g.lam: [rs.first_pair_dev_acc1 for rs in g.runs] for g in gs}
        if all(math.isnan(v) for vs in scores.values() for v in vs):
            continue
        out[(method, order)] = M.select_lambda(scores)
    return out


def _arm_label(gs: Sequence[GroupScores]) -> str:
    lams = {g.order: g.lam for g in gs}
    values = set(lams.values())
    if len(values) == 1:
        return lam_label(next(iter(values)))
    return ", ".join(f"{order_label(o)}: {lam_label(v)}" for o, v in lams.items())


def _compare(
    groups: list[GroupScores],
    naive_cells: dict[Cell, RunScores],
    single_cells: dict[Cell, RunScores],
    split: str,
    boot: _Boot,
    baseline: str,
    reference: str,
) -> Comparison | None:
    """Every method at its selected λ (pooled over orders) against the ``baseline``
    (naive, runs ``naive_cells``), and the penalty methods against each other, with
    paired bootstrap intervals; forgetting from the ``reference`` (single, ``single_cells``)."""
    if not naive_cells or not single_cells:
        return None
    base = _pair([naive_cells], single_cells, split, boot)
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
    arm_runs = {k: _by_cell([rs for g in gs for rs in g.runs]) for k, gs in arms.items()}
    out_arms: list[ArmStats] = []
    for (method, kind), gs in arms.items():
        p = _pair([naive_cells, arm_runs[(method, kind)]], single_cells, split, boot)
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
                _reduction_interval(p, 1),
                rule=kind != "chosen",
            )
        )
    diffs: list[DiffStats] = []
    penalty = [k for k in arms if k[0] in PENALTY_METHODS and k[1] == "chosen"]
    pairs = [(a, b) for b, a in combinations(penalty, 2)]  # later − earlier in method order
    first = methods.headline()
    pairs.sort(key=lambda ab: (ab[0][0], ab[1][0]) != first)
    for a, b in pairs:
        p = _pair([naive_cells, arm_runs[a], arm_runs[b]], single_cells, split, boot)
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


def _frontier(groups: list[GroupScores], reference: str) -> list[FrontierPoint]:
    """(method, λ) points pooled over orders: newest-task accuracy vs mean forgetting
    (every method but the forgetting ``reference``, whose accuracies define forgetting)."""
    pooled: dict[tuple, list[RunScores]] = {}
    for g in groups:
        if g.method == reference:
            continue
        pooled.setdefault((g.method, g.lam), []).extend(g.runs)
    points = []
    for (method, lam), rss in pooled.items():
        points.append(
            FrontierPoint(
                method,
                lam,
                newest_acc=M.nanmean([rs.newest_acc1 for rs in rss]),
                forgetting=M.nanmean([rs.mean_forgetting for rs in rss]),
                avg_final_acc=M.nanmean([rs.avg_final_acc1 for rs in rss]),
                n_runs=len(rss),
            )
        )
    return points


def _matched(points: list[FrontierPoint]) -> list[MatchedComparison]:
    curves: dict[str, list[FrontierPoint]] = {}
    for p in points:
        if p.method in PENALTY_METHODS and not is_rule(p.lam) and p.lam is not None:
            curves.setdefault(p.method, []).append(p)
    out = []
    penalties = sorted(curves, key=methods.rank)
    for b, a in combinations(penalties, 2):
        m = matched_plasticity(curves[a], curves[b])
        if m is not None:
            out.append(m)
    first = methods.headline()
    out.sort(key=lambda m: (m.a, m.b) != first)
    return out


def write_report(report: Report, out_dir: Path | str) -> list[Path]:
    """Write report.md, summary.csv, summary.json, accuracy_matrices.json, frontier.csv
    and the PNG plots; returns the paths written."""
    from elcl.evaluation import plots, render

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ElclError(f"{out}: cannot create output directory: {exc.strerror or exc}") from None
    try:
        return render.write_tables(report, out) + plots.write_plots(report, out)
    except OSError as exc:
        raise ElclError(f"{out}: cannot write report: {exc.strerror or exc}") from None
