"""What a forgetting report holds, and the scores of one run and of one group of runs.

Data only (dataclasses over numpy arrays) and the pure functions that fill them from a
run's accuracy matrices: :func:`score_run` (one run), :func:`aggregate` (a group's
means). Built by :mod:`elcl.evaluation.report`, paired by :mod:`elcl.evaluation.pairing`,
rendered by :mod:`elcl.evaluation.render`, :mod:`elcl.evaluation.tables`,
:mod:`elcl.evaluation.summary` and :mod:`elcl.evaluation.plots`, which all import this
module and none of which it imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from elcl.continual import methods
from elcl.evaluation import metrics as M
from elcl.evaluation import stats as S
from elcl.evaluation.frontier import (
    FrontierPoint,
    MatchedComparison,
)
from elcl.evaluation.runs import (
    Run,
    accuracy_matrix,
)

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
    lambda_sources: dict[tuple[str, str], str] = field(default_factory=dict)
    """(method, λ label) -> where that fixed λ came from (``method.<name>.lambda_source``)."""

    @property
    def orders(self) -> list[tuple[str, ...]]:
        return list(dict.fromkeys(g.order for g in self.groups))

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(t for order in self.orders for t in order))

    def chosen_groups(self) -> list[GroupScores]:
        return [g for g in self.groups if g.shown]


# ---------------------------------------------------------------------- scoring
def _diag(R: np.ndarray) -> np.ndarray:
    out = np.full(R.shape[1], math.nan)
    for j in range(min(R.shape)):
        out[j] = R[j, j]
    return out


def n_earlier(rs: RunScores) -> int:
    """How many tasks were trained before the last step (joint sees all at once)."""
    steps = rs.run.n_tasks if methods.get(rs.run.method).all_tasks_at_once else rs.R.shape[0]
    return max(0, min(rs.run.n_tasks, steps - 1))


def score_run(run: Run, split: str) -> RunScores:
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


def aggregate(g: GroupScores) -> None:
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
