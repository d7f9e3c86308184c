"""Forgetting report over many runs: tables (Markdown / CSV / JSON) and PNG plots.

Library entry points: :func:`build_report` (run or experiment directories -> a
:class:`Report`) and :func:`write_report` (a report -> files in a directory).

Files written by :func:`write_report` (all atomically: temp file + ``os.replace``):

* ``report.md``: main forgetting table (chosen λ per method), λ selection table,
  table of all λ, forgetting vs best earlier accuracy, warnings and notes.
* ``summary.csv``: one row per (method, λ, order) group; columns ``method, lambda,
  order, chosen, n_runs, seeds``, then ``<metric>_mean, <metric>_std`` for
  ``avg_final_acc1, avg_final_acc5, avg_final_dev_acc1, mean_forgetting,
  forgetting_reduction, bwt``, then per task ``<per-task metric>[<task>]_mean/_std`` for
  ``final_acc1, forgetting_single, forgetting_best, reduction``. Fractions (0..1), NaN
  written as empty cells.
* ``summary.json``: the same plus λ selection, per-run scores, warnings and notes (NaN
  as ``null``).
* ``accuracy_matrices.json``: per run and per group the matrices ``R[step][task]``.
* ``heatmap_<method>[_<order>].png``, ``forgetting_reduction.png``,
  ``acc_vs_lambda_<method>[_<order>].png``.
"""

from __future__ import annotations

import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from elcl.continual import methods as methods_registry
from elcl.continual.methods import format_lambda, is_auto, lambda_sort_key
from elcl.fileio import atomic_write_bytes, atomic_write_text
from elcl.evaluation import metrics as M
from elcl.evaluation.runs import (
    Run,
    accuracy_matrix,
    discover_runs,
    single_baseline,
)
from elcl.errors import ElclError

__all__ = [
    "RunScores",
    "GroupScores",
    "Report",
    "build_report",
    "write_report",
    "SCALAR_METRICS",
    "TASK_METRICS",
]

SCALAR_METRICS = (
    "avg_final_acc1",
    "avg_final_acc5",
    "avg_final_dev_acc1",
    "mean_forgetting",
    "forgetting_reduction",
    "bwt",
)
TASK_METRICS = ("final_acc1", "forgetting_single", "forgetting_best", "reduction")


def _method(name: str):
    return methods_registry.get(name)


def _nanmean(x) -> float:
    arr = np.asarray(x, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan


def _diag(R: np.ndarray) -> np.ndarray:
    out = np.full(R.shape[1], math.nan)
    for j in range(min(R.shape)):
        out[j] = R[j, j]
    return out


def _fmt_lam(lam: float | str | None) -> str:
    return format_lambda(lam)


def _order_label(order: tuple[str, ...]) -> str:
    return ">".join(order)


@dataclass
class RunScores:
    """Metrics of one run (accuracies as fractions; per-task arrays in the run's order)."""

    run: Run
    R: np.ndarray  # acc1 on the report split, [n_steps, n_tasks]
    R5: np.ndarray
    R_dev: np.ndarray  # acc1 on dev
    final: np.ndarray  # per task final acc1 (diagonal for "single")
    avg_final_acc1: float
    avg_final_acc5: float
    avg_final_dev_acc1: float
    single: np.ndarray  # matched single baseline per task
    single_from: str
    forgetting_single: np.ndarray
    forgetting_best: np.ndarray
    mean_forgetting: float
    bwt: float
    reduction: M.ReductionResult | None = None
    naive_from: str = ""

    def per_task(self, name: str) -> np.ndarray:
        if name == "final_acc1":
            return self.final
        if name == "forgetting_single":
            return self.forgetting_single
        if name == "forgetting_best":
            return self.forgetting_best
        if name == "reduction":
            if self.reduction is None:
                return np.full(len(self.final), math.nan)
            return self.reduction.per_task
        raise KeyError(name)

    def scalar(self, name: str) -> float:
        if name == "forgetting_reduction":
            return self.reduction.mean if self.reduction is not None else math.nan
        return float(getattr(self, name))


@dataclass
class GroupScores:
    """Runs sharing (method, λ, order), aggregated over seeds: (mean, std, n)."""

    method: str
    lam: float | None
    order: tuple[str, ...]
    runs: list[RunScores]
    chosen: bool = False
    scalars: dict = field(default_factory=dict)  # name -> (mean, std, n)
    tasks: dict = field(default_factory=dict)  # name -> task -> (mean, std, n)
    R_mean: np.ndarray | None = None
    R_std: np.ndarray | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(r.run.seed for r in self.runs)

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def key(self) -> tuple:
        return (self.method, self.lam, self.order)


@dataclass
class Report:
    split: str
    runs: list[RunScores]
    groups: list[GroupScores]
    selections: dict  # (method, order) -> LambdaChoice
    warnings: list[str]
    notes: list[str]
    experiments: list[str]

    # ------------------------------------------------------------------ tables
    @property
    def orders(self) -> list[tuple[str, ...]]:
        seen: list[tuple[str, ...]] = []
        for g in self.groups:
            if g.order not in seen:
                seen.append(g.order)
        return seen

    @property
    def tasks(self) -> list[str]:
        seen: list[str] = []
        for order in self.orders:
            for t in order:
                if t not in seen:
                    seen.append(t)
        return seen

    def chosen_groups(self) -> list[GroupScores]:
        return [g for g in self.groups if g.chosen]

    def _table_rows(self, groups: list[GroupScores]) -> tuple[list[str], list[list[str]]]:
        multi_order = len(self.orders) > 1
        header = ["method", "λ"] + (["order"] if multi_order else [])
        header += ["avg acc@1 (%)", "avg acc@5 (%)"]
        header += [f"forgetting {t} (pp)" for t in self.tasks]
        header += ["mean forgetting (pp)", "forgetting reduction (%)", "BWT (pp)", "n runs"]
        rows = []
        for g in groups:
            row = [g.method, _fmt_lam(g.lam)] + ([_order_label(g.order)] if multi_order else [])
            row += [_pm(g.scalars["avg_final_acc1"]), _pm(g.scalars["avg_final_acc5"])]
            for t in self.tasks:
                row.append(_pm(g.tasks["forgetting_single"].get(t)))
            row += [
                _pm(g.scalars["mean_forgetting"]),
                _pm(g.scalars["forgetting_reduction"]),
                _pm(g.scalars["bwt"]),
                str(g.n_runs),
            ]
            rows.append(row)
        return header, rows

    def main_table_markdown(self) -> str:
        header, rows = self._table_rows(self.chosen_groups())
        return _markdown(header, rows)

    def all_lambda_markdown(self) -> str:
        header, rows = self._table_rows(self.groups)
        return _markdown(header, rows)

    def selection_markdown(self) -> str:
        multi_order = len(self.orders) > 1
        header = ["method"] + (["order"] if multi_order else [])
        header += ["λ", "dev acc@1 (%)", f"{self.split} acc@1 (%)", "n runs", "chosen"]
        rows = []
        for g in self.groups:
            row = [g.method] + ([_order_label(g.order)] if multi_order else [])
            row += [
                _fmt_lam(g.lam),
                _pm(g.scalars["avg_final_dev_acc1"]),
                _pm(g.scalars["avg_final_acc1"]),
                str(g.n_runs),
                "yes" if g.chosen else "",
            ]
            rows.append(row)
        return _markdown(header, rows)

    def best_forgetting_markdown(self) -> str:
        header = ["method", "λ"] + (["order"] if len(self.orders) > 1 else [])
        header += [f"{t} (pp)" for t in self.tasks]
        rows = []
        for g in self.chosen_groups():
            if not _method(g.method).sequential():
                continue
            row = [g.method, _fmt_lam(g.lam)]
            row += [_order_label(g.order)] if len(self.orders) > 1 else []
            row += [_pm(g.tasks["forgetting_best"].get(t)) for t in self.tasks]
            rows.append(row)
        return _markdown(header, rows)

    def stdout_markdown(self) -> str:
        """What `elcl evaluate` prints: the main table, the rule and the λ table."""
        parts = [
            f"## Forgetting ({self.split} split, chosen λ per method; "
            f"accuracies in %, forgetting in points, mean ± std over seeds)",
            "",
            self.main_table_markdown(),
            "",
            M.SELECTION_RULE,
            "",
            self.selection_markdown(),
        ]
        return "\n".join(parts) + "\n"

    def to_markdown(self) -> str:
        lines = [
            "# elcl continual entity-linking report",
            "",
            f"- runs: {len(self.runs)}; split: {self.split}; experiment(s): "
            + (", ".join(self.experiments) or "-"),
            "- accuracy = acc@1 averaged over the tasks after the last step ('single': each "
            "task's own model); forgetting of task j = single-task acc of j minus final acc "
            "of j; forgetting reduction = mean over tasks j < n-1 of 1 - f_method/f_naive; "
            "BWT = mean over j < n-1 of R[n-1][j] - R[j][j].",
            "",
            "## Forgetting (chosen λ per method)",
            "",
            self.main_table_markdown(),
            "",
            "## λ selection",
            "",
            M.SELECTION_RULE,
            "",
            self.selection_markdown(),
            "",
            "## All λ",
            "",
            self.all_lambda_markdown(),
            "",
            "## Forgetting vs best earlier accuracy (chosen λ)",
            "",
            "max over steps j..n-2 of R[i][j] minus R[n-1][j], tasks j < n-1.",
            "",
            self.best_forgetting_markdown(),
            "",
        ]
        if self.warnings:
            lines += ["## Warnings", ""] + [f"- {w}" for w in self.warnings] + [""]
        if self.notes:
            lines += ["## Notes", ""] + [f"- {n}" for n in self.notes] + [""]
        return "\n".join(lines)

    def summary_frame(self) -> pd.DataFrame:
        records = []
        for g in self.groups:
            rec: dict = {
                "method": g.method,
                "lambda": g.lam,
                "order": _order_label(g.order),
                "chosen": g.chosen,
                "n_runs": g.n_runs,
                "seeds": " ".join(str(s) for s in g.seeds),
            }
            for name in SCALAR_METRICS:
                mean, std, _ = g.scalars[name]
                rec[f"{name}_mean"] = mean
                rec[f"{name}_std"] = std
            for name in TASK_METRICS:
                for t in self.tasks:
                    mean, std, _ = g.tasks[name].get(t, (math.nan, math.nan, 0))
                    rec[f"{name}[{t}]_mean"] = mean
                    rec[f"{name}[{t}]_std"] = std
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def summary_dict(self) -> dict:
        def ms(t):
            mean, std, n = t if t is not None else (math.nan, math.nan, 0)
            return {"mean": _clean(mean), "std": _clean(std), "n": n}

        groups = []
        for g in self.groups:
            groups.append(
                {
                    **group_head(g),
                    "metrics": {name: ms(g.scalars[name]) for name in SCALAR_METRICS},
                    "per_task": {
                        t: {name: ms(g.tasks[name].get(t)) for name in TASK_METRICS}
                        for t in g.order
                    },
                }
            )
        selections = []
        for (method, order), choice in self.selections.items():
            selections.append(
                {
                    "method": method,
                    "order": list(order),
                    "chosen_lambda": choice.chosen,
                    "reason": choice.reason,
                    "candidates": [
                        {
                            "lambda": lam,
                            "dev_acc1_mean": _clean(choice.scores[lam]),
                            "n": choice.counts[lam],
                        }
                        for lam in choice.scores
                    ],
                }
            )
        runs = []
        for rs in self.runs:
            r = rs.run
            runs.append(
                {
                    **run_head(r),
                    "metrics": {name: _clean(rs.scalar(name)) for name in SCALAR_METRICS},
                    "per_task": {
                        t: {name: _clean(rs.per_task(name)[j]) for name in TASK_METRICS}
                        for j, t in enumerate(r.order)
                    },
                    "single_baseline": {
                        t: _clean(rs.single[j]) for j, t in enumerate(r.order)
                    },
                    "single_baseline_from": rs.single_from,
                    "naive_from": rs.naive_from,
                    "reduction_skipped_tasks": (
                        [r.order[j] for j in rs.reduction.skipped] if rs.reduction else []
                    ),
                }
            )
        return {
            "split": self.split,
            "selection_rule": M.SELECTION_RULE,
            "experiments": self.experiments,
            "n_runs": len(self.runs),
            "tasks": self.tasks,
            "lambda_selection": selections,
            "groups": groups,
            "runs": runs,
            "warnings": self.warnings,
            "notes": self.notes,
        }

    def matrices_dict(self) -> dict:
        def step_labels(method: str, order: tuple[str, ...], n_steps: int) -> list[str]:
            return _method(method).step_labels(order, n_steps)

        runs = []
        for rs in self.runs:
            r = rs.run
            runs.append(
                {
                    "run": str(r.path),
                    "method": r.method,
                    "lambda": r.lam,
                    "seed": r.seed,
                    "order": list(r.order),
                    "trained": step_labels(r.method, r.order, rs.R.shape[0]),
                    "acc1": _clean(rs.R),
                    "acc5": _clean(rs.R5),
                    "dev_acc1": _clean(rs.R_dev),
                }
            )
        groups = []
        for g in self.groups:
            groups.append(
                {
                    **group_head(g),
                    "trained": step_labels(g.method, g.order, g.R_mean.shape[0]),
                    "acc1_mean": _clean(g.R_mean),
                    "acc1_std": _clean(g.R_std),
                }
            )
        return {
            "split": self.split,
            "layout": "acc1[i][j] = acc@1 on order[j] after training step i (trained[i])",
            "runs": runs,
            "groups": groups,
        }


# ---------------------------------------------------------------------- helpers
def _clean(x):
    """NaN -> None, numpy -> python (recursively) for strict JSON."""
    if isinstance(x, np.ndarray):
        return [_clean(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def _pm(t, scale: float = 100.0) -> str:
    """(mean, std, n) -> 'mean ± std' in % (or points); 'n/a' for NaN."""
    if t is None:
        return "n/a"
    mean, std, _ = t
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    def esc(s: str) -> str:
        return str(s).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        lines.append("| " + " | ".join(esc(c) for c in row) + " |")
    if not rows:
        lines.append("| " + " | ".join("" for _ in header) + " |")
    return "\n".join(lines)


def _method_rank(method: str) -> int:
    return methods_registry.rank(method)


def _lam_sort(lam: float | str | None) -> tuple[int, float]:
    return lambda_sort_key(lam)


# ---------------------------------------------------------------------- build
def _score_run(run: Run, split: str) -> RunScores:
    R = accuracy_matrix(run, split, "acc1")
    R5 = accuracy_matrix(run, split, "acc5")
    R_dev = accuracy_matrix(run, "dev", "acc1")
    if _method(run.method).per_task_model:
        final, final5, final_dev = _diag(R), _diag(R5), _diag(R_dev)
    else:
        final, final5, final_dev = R[-1].copy(), R5[-1].copy(), R_dev[-1].copy()
    n = run.n_tasks
    if _method(run.method).sequential():
        f_best = M.forgetting_vs_best(R)
        bwt = M.backward_transfer(R)
    else:
        f_best = np.full(n, math.nan)
        bwt = math.nan
    return RunScores(
        run=run,
        R=R,
        R5=R5,
        R_dev=R_dev,
        final=final,
        avg_final_acc1=_nanmean(final),
        avg_final_acc5=_nanmean(final5),
        avg_final_dev_acc1=_nanmean(final_dev),
        single=np.full(n, math.nan),
        single_from="none",
        forgetting_single=np.full(n, math.nan),
        forgetting_best=f_best,
        mean_forgetting=math.nan,
        bwt=bwt,
    )


def _reduction_steps(rs: RunScores) -> int:
    # Tasks j < n_steps - 1 were trained before the last step; joint sees all at once.
    return rs.run.n_tasks if _method(rs.run.method).all_tasks_at_once else rs.R.shape[0]


def _aggregate(g: GroupScores) -> None:
    for name in SCALAR_METRICS:
        g.scalars[name] = M.mean_std([rs.scalar(name) for rs in g.runs])
    for name in TASK_METRICS:
        g.tasks[name] = {
            t: M.mean_std([rs.per_task(name)[j] for rs in g.runs]) for j, t in enumerate(g.order)
        }
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


def build_report(
    run_dirs: list[Path] | list[str],
    split: str = "test",
    include_partial: bool = False,
) -> Report:
    """Score every run under ``run_dirs`` (run or experiment directories) and aggregate.

    Raises :class:`ElclError` on a bad split, unreadable/invalid files or no usable run.
    """
    if split not in ("dev", "test"):
        raise ElclError(f"--split: '{split}' is not one of dev, test")
    runs, warnings, _ = discover_runs(list(run_dirs), include_partial=include_partial)
    if not runs:
        raise ElclError(
            "no usable run under " + ", ".join(str(p) for p in run_dirs)
            + (f" ({len(warnings)} skipped; see warnings)" if warnings else "")
        )
    notes: list[str] = []
    missing_split = [r for r in runs if split not in r.splits()]
    for r in missing_split:
        warnings.append(f"{r.path}: no '{split}' rows in metrics.jsonl; its accuracies are n/a")

    scores = [_score_run(r, split) for r in runs]

    # Single-task baselines, matched by seed (else the mean over single runs).
    singles = [
        M.Baseline(rs.run.seed, rs.run.order, single_baseline(rs.run, split), str(rs.run.path))
        for rs in scores
        if _method(rs.run.method).per_task_model
    ]
    if not singles:
        notes.append(
            "no 'single' run: forgetting vs the single-task baseline and forgetting "
            "reduction are n/a (see forgetting vs best earlier accuracy instead)"
        )
    for rs in scores:
        if singles:
            vals, how = M.match_baseline(rs.run.seed, rs.run.order, singles)
            rs.single = np.array([vals[t] for t in rs.run.order], dtype=float)
            rs.single_from = how
        rs.forgetting_single = rs.single - rs.final
        k = min(rs.run.n_tasks, _reduction_steps(rs) - 1)
        rs.mean_forgetting = _nanmean(rs.forgetting_single[:k]) if k > 0 else math.nan

    # Naive forgetting, matched by seed and order (else mean).
    naives = [
        M.Baseline(
            rs.run.seed,
            rs.run.order,
            {t: rs.forgetting_single[j] for j, t in enumerate(rs.run.order)},
            str(rs.run.path),
        )
        for rs in scores
        if _method(rs.run.method).baseline
    ]
    if not naives:
        notes.append("no 'naive' run: forgetting reduction is n/a")
    for rs in scores:
        if not naives or _method(rs.run.method).per_task_model:
            continue
        vals, how = M.match_baseline(rs.run.seed, rs.run.order, naives, match_order=True)
        f_naive = np.array([vals[t] for t in rs.run.order], dtype=float)
        rs.reduction = M.forgetting_reduction(rs.forgetting_single, f_naive, _reduction_steps(rs))
        rs.naive_from = how

    # Groups (method, λ, order).
    by_key: dict[tuple, GroupScores] = {}
    for rs in scores:
        key = (rs.run.method, rs.run.lam, rs.run.order)
        if key not in by_key:
            by_key[key] = GroupScores(rs.run.method, rs.run.lam, rs.run.order, [])
        by_key[key].runs.append(rs)
    groups = sorted(
        by_key.values(),
        key=lambda g: (
            [o for o in dict.fromkeys(r.run.order for r in scores)].index(g.order),
            _method_rank(g.method),
            _lam_sort(g.lam),
        ),
    )
    for g in groups:
        _aggregate(g)
        if len(set(g.seeds)) < len(g.seeds):
            warnings.append(
                f"{g.method} λ={_fmt_lam(g.lam)} {_order_label(g.order)}: several runs share "
                f"a seed ({', '.join(str(r.run.path) for r in g.runs)}); all are averaged"
            )

    # Skipped tasks in the reduction, one note per group.
    for g in groups:
        skipped: dict[str, int] = {}
        for rs in g.runs:
            if rs.reduction is not None:
                for j in rs.reduction.skipped:
                    skipped[rs.run.order[j]] = skipped.get(rs.run.order[j], 0) + 1
        if skipped and not _method(g.method).baseline:
            what = ", ".join(f"{t} ({c} run(s))" for t, c in skipped.items())
            notes.append(
                f"{g.method} λ={_fmt_lam(g.lam)} {_order_label(g.order)}: task(s) {what} "
                f"left out of the forgetting reduction (naive forgetting <= 0 or n/a)"
            )

    # λ selection per (method, order).
    selections: dict = {}
    per_mo: dict[tuple, list[GroupScores]] = {}
    for g in groups:
        per_mo.setdefault((g.method, g.order), []).append(g)
    for (method, order), gs in per_mo.items():
        choice = M.select_lambda({g.lam: [rs.avg_final_dev_acc1 for rs in g.runs] for g in gs})
        selections[(method, order)] = choice
        for g in gs:
            g.chosen = g.lam == choice.chosen
        if len(gs) > 1 and choice.reason != "max mean dev acc@1":
            notes.append(f"{method} {_order_label(order)}: λ selection: {choice.reason}")

    experiments = sorted({r.experiment for r in runs})
    return Report(split, scores, groups, selections, warnings, notes, experiments)


# ---------------------------------------------------------------------- write
def group_head(g) -> dict:
    """The identifying fields of an aggregated (method, λ, order) group."""
    return {"method": g.method, "lambda": g.lam, "order": list(g.order), "chosen": g.chosen, "n_runs": g.n_runs, "seeds": g.seeds}


def run_head(r) -> dict:
    """The identifying fields of one run, as written in JSON outputs."""
    return {
        "run": str(r.path), "experiment": r.experiment, "method": r.method, "lambda": r.lam,
        "seed": r.seed, "order": list(r.order), "status": r.status,
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _save_fig(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def _plot_heatmap(g: GroupScores, split: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    R = g.R_mean * 100.0
    n_steps, n_tasks = R.shape
    fig, ax = plt.subplots(figsize=(1.2 * n_tasks + 2.5, 0.8 * n_steps + 1.8))
    masked = np.ma.masked_invalid(R)
    im = ax.imshow(masked, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_tasks), labels=list(g.order))
    m = _method(g.method)
    labels = m.step_labels(g.order, n_steps)
    if m.all_tasks_at_once:
        ylabels = labels
    elif m.per_task_model:
        ylabels = [f"only {t}" for t in labels]
    else:
        ylabels = [f"after {t}" for t in labels]
    ax.set_yticks(range(n_steps), labels=ylabels)
    ax.set_xlabel(f"evaluated on ({split})")
    ax.set_ylabel("trained")
    for i in range(n_steps):
        for j in range(n_tasks):
            if not math.isnan(R[i, j]):
                ax.text(
                    j, i, f"{R[i, j]:.1f}", ha="center", va="center",
                    color="white" if R[i, j] < 60 else "black", fontsize=9,
                )
    lam = "" if g.lam is None else f" λ={_fmt_lam(g.lam)}"
    ax.set_title(f"{methods_registry.label(g.method)}{lam}: acc@1 (%), mean of {g.n_runs} run(s)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    _save_fig(fig, path)


def _plot_reduction(groups: list[GroupScores], multi_order: bool, path: Path) -> None:
    import matplotlib.pyplot as plt

    labels, means, stds = [], [], []
    for g in groups:
        mean, std, _ = g.scalars["forgetting_reduction"]
        lam = f" λ={_fmt_lam(g.lam)}" if is_auto(g.lam) else ""
        labels.append(methods_registry.label(g.method) + lam + (f"\n{_order_label(g.order)}" if multi_order else ""))
        means.append(mean * 100.0)
        stds.append(0.0 if math.isnan(std) else std * 100.0)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.8))
    x = np.arange(len(labels))
    ax.bar(x, means, yerr=stds, capsize=4, color="tab:blue")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels=labels)
    ax.set_ylabel("forgetting reduction vs naive (%)")
    ax.set_title("Forgetting reduction (mean ± std over seeds)")
    for xi, m in zip(x, means):
        ax.annotate(f"{m:.0f}%", (xi, m), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")
    _save_fig(fig, path)


def _plot_lambda(gs: list[GroupScores], split: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    lams = np.array([g.lam for g in gs], dtype=float)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, label in (("avg_final_acc1", f"{split} acc@1"), ("avg_final_dev_acc1", "dev acc@1")):
        if split == "dev" and name == "avg_final_dev_acc1":
            continue
        m = np.array([g.scalars[name][0] for g in gs]) * 100.0
        s = np.array([g.scalars[name][1] for g in gs]) * 100.0
        s = np.where(np.isnan(s), 0.0, s)
        ax.errorbar(lams, m, yerr=s, marker="o", capsize=3, label=label)
    chosen = [g.lam for g in gs if g.chosen]
    if chosen:
        ax.axvline(chosen[0], color="gray", linestyle="--", linewidth=0.8, label="chosen λ")
    if np.all(lams > 0):
        ax.set_xscale("log")
    elif np.any(lams > 0):
        ax.set_xscale("symlog", linthresh=float(np.min(lams[lams > 0])))
    ax.set_xlabel("λ")
    ax.set_ylabel("avg final acc@1 (%)")
    ax.set_title(f"{methods_registry.label(gs[0].method)}: accuracy vs λ")
    ax.legend(fontsize=8)
    _save_fig(fig, path)


def write_report(report: Report, out_dir: Path | str) -> list[Path]:
    """Write report.md, summary.csv, summary.json, accuracy_matrices.json and PNG plots.

    Returns the paths written, in that order.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ElclError(f"{out}: cannot create output directory: {exc.strerror or exc}") from None
    written: list[Path] = []

    def put_text(name: str, text: str) -> None:
        p = out / name
        atomic_write_text(p, text)
        written.append(p)

    try:
        put_text("report.md", report.to_markdown())
        put_text("summary.csv", report.summary_frame().to_csv(index=False))
        put_text(
            "summary.json",
            json.dumps(report.summary_dict(), indent=2, allow_nan=False, ensure_ascii=False) + "\n",
        )
        put_text(
            "accuracy_matrices.json",
            json.dumps(report.matrices_dict(), indent=2, allow_nan=False) + "\n",
        )
        multi_order = len(report.orders) > 1
        suffix = {o: (f"_{_slug('-'.join(o))}" if multi_order else "") for o in report.orders}
        for g in report.chosen_groups():
            p = out / f"heatmap_{_slug(g.method)}{suffix[g.order]}.png"
            _plot_heatmap(g, report.split, p)
            written.append(p)
        red = [
            g
            for g in report.chosen_groups()
            if not (_method(g.method).baseline or _method(g.method).per_task_model)
            and not math.isnan(g.scalars["forgetting_reduction"][0])
        ]
        if red:
            p = out / "forgetting_reduction.png"
            _plot_reduction(red, multi_order, p)
            written.append(p)
        per_mo: dict[tuple, list[GroupScores]] = {}
        for g in report.groups:
            if g.lam is not None and not is_auto(g.lam):  # the λ axis is numeric; auto is in the tables
                per_mo.setdefault((g.method, g.order), []).append(g)
        for (method, order), gs in per_mo.items():
            if len(gs) < 2:
                continue
            p = out / f"acc_vs_lambda_{_slug(method)}{suffix[order]}.png"
            _plot_lambda(sorted(gs, key=lambda g: g.lam), report.split, p)
            written.append(p)
    except OSError as exc:
        raise ElclError(f"{out}: cannot write report: {exc.strerror or exc}") from None
    return written
