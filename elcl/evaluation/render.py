"""Rendering a :class:`~elcl.evaluation.report.Report`: pandas DataFrames, written as
Markdown, CSV and JSON, and shown with rich on a terminal.

Files written by :func:`write_tables` (atomically):

* ``report.md`` — the paired comparison (every method vs naive at its dev-selected λ,
  the K-FAC − EWC difference, each with a 95% bootstrap interval and a sentence saying
  whether it excludes 0), the stability–plasticity frontier with the matched-plasticity
  verdicts, the main table, λ selection, all λ, forgetting vs best earlier accuracy,
  left-out / unpaired runs, warnings and notes.
* ``summary.csv`` — one row per (method, λ, order) group: ``method, lambda, order,
  chosen, n_runs, seeds``, ``<metric>_mean/_std`` for the per-run metrics,
  ``avg_final_acc1_lo/_hi`` (its 95% bootstrap interval), then
  ``forgetting_reduction, forgetting_reduction_lo, forgetting_reduction_hi, n_paired``,
  then per task ``<metric>[<task>]_mean/_std``. Fractions (0..1); NaN as empty cells.
* ``comparison.csv`` — the paired statistics (rows ``vs naive`` and ``difference``).
* ``frontier.csv`` — one row per (method, λ), pooled over orders.
* ``summary.json`` — all of the above plus λ selection and per-run scores (NaN as null).
* ``accuracy_matrices.json`` — per run and per group the matrices ``R[step][task]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from elcl.continual import methods
from elcl.evaluation import metrics as M
from elcl.evaluation.paper import SOURCE, paper_checks
from elcl.evaluation.runs import lam_label, order_label
from elcl.fileio import atomic_write_text

if TYPE_CHECKING:
    from elcl.evaluation.report import GroupScores, Report
    from elcl.evaluation.stats import Interval

__all__ = [
    "comparison_frame",
    "frontier_frame",
    "group_table",
    "markdown",
    "print_terminal",
    "report_markdown",
    "selection_table",
    "stdout_markdown",
    "summary_dict",
    "summary_frame",
    "write_tables",
]

SEQUENTIAL_NOTE = (
    "accuracy = acc@1 averaged over the tasks after the last step ('single': each task's "
    "own model); forgetting of task j = single-task acc of j (same seed and order) minus "
    "final acc of j, over the earlier tasks j < n-1; forgetting reduction = 1 − mean "
    "F(method) / mean F(naive), a ratio of means over the paired seeds, orders and "
    "earlier tasks; BWT = mean over j < n-1 of R[n-1][j] − R[j][j]."
)


# ---------------------------------------------------------------------- cells
def clean(x: Any) -> Any:
    """NaN -> None, numpy -> python (recursively) for strict JSON."""
    if isinstance(x, np.ndarray):
        return [clean(v) for v in x.tolist()]
    if isinstance(x, dict):
        return {k: clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if math.isnan(x) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def fmt_pm(t: tuple | None, scale: float = 100.0) -> str:
    """(mean, std, n) -> 'mean ± std' in % (or points); 'n/a' for NaN."""
    if t is None:
        return "n/a"
    mean, std, _ = t
    if mean is None or math.isnan(mean):
        return "n/a"
    if std is None or math.isnan(std):
        return f"{mean * scale:.1f}"
    return f"{mean * scale:.1f} ± {std * scale:.1f}"


def fmt_interval(iv: Interval | None, scale: float = 100.0) -> str:
    """'point [lo, hi]'; the point alone when the interval is empty or has no width."""
    if iv is None or math.isnan(iv.point):
        return "n/a"
    if math.isnan(iv.lo) or math.isclose(iv.lo, iv.hi, abs_tol=1e-12):
        return f"{iv.point * scale:.1f}"
    return f"{iv.point * scale:.1f} [{iv.lo * scale:.1f}, {iv.hi * scale:.1f}]"


def fmt_bounds(iv: Interval | None, scale: float = 100.0) -> str:
    """'[lo, hi]' of an interval (the point is shown beside it); 'n/a' without one."""
    if iv is None or math.isnan(iv.lo):
        return "n/a"
    return f"[{iv.lo * scale:.1f}, {iv.hi * scale:.1f}]"


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame of display strings as a GitHub Markdown table."""

    def esc(s: object) -> str:
        return str(s).replace("|", "\\|")

    header = [esc(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(esc(c) for c in row) + " |")
    if df.empty:
        lines.append("| " + " | ".join("" for _ in header) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------- tables
def group_table(report: Report, groups: list[GroupScores]) -> pd.DataFrame:
    multi_order = len(report.orders) > 1
    records = []
    for g in groups:
        rec: dict[str, str] = {"method": g.method, "λ": lam_label(g.lam)}
        if multi_order:
            rec["order"] = order_label(g.order)
        rec["avg acc@1 (%)"] = fmt_pm(g.scalars["avg_final_acc1"])
        rec["avg acc@1 95% CI"] = fmt_bounds(g.acc_interval)
        rec["avg acc@5 (%)"] = fmt_pm(g.scalars["avg_final_acc5"])
        for t in report.tasks:
            rec[f"forgetting {t} (pp)"] = fmt_pm(g.tasks["forgetting_single"].get(t))
        rec["mean forgetting (pp)"] = fmt_pm(g.scalars["mean_forgetting"])
        rec["forgetting reduction (%)"] = "ref." if methods.get(g.method).baseline else fmt_interval(g.reduction)
        rec["BWT (pp)"] = fmt_pm(g.scalars["bwt"])
        rec["n runs"] = str(g.n_runs)
        records.append(rec)
    columns = (
        ["method", "λ"]
        + (["order"] if multi_order else [])
        + [
            "avg acc@1 (%)",
            "avg acc@1 95% CI",
            "avg acc@5 (%)",
            *[f"forgetting {t} (pp)" for t in report.tasks],
            "mean forgetting (pp)",
            "forgetting reduction (%)",
            "BWT (pp)",
            "n runs",
        ]
    )
    return pd.DataFrame.from_records(records, columns=columns)


def selection_table(report: Report) -> pd.DataFrame:
    multi_order = len(report.orders) > 1
    records = []
    for g in report.groups:
        rec = {"method": g.method}
        if multi_order:
            rec["order"] = order_label(g.order)
        rec |= {
            "λ": lam_label(g.lam),
            "dev acc@1 (%)": fmt_pm(g.scalars["avg_final_dev_acc1"]),
            f"{report.split} acc@1 (%)": fmt_pm(g.scalars["avg_final_acc1"]),
            "n runs": str(g.n_runs),
            "chosen": "yes" if g.chosen else ("rule" if isinstance(g.lam, str) else ""),
        }
        records.append(rec)
    columns = (
        ["method"]
        + (["order"] if multi_order else [])
        + [
            "λ",
            "dev acc@1 (%)",
            f"{report.split} acc@1 (%)",
            "n runs",
            "chosen",
        ]
    )
    return pd.DataFrame.from_records(records, columns=columns)


FIRST_PAIR_RULE = (
    "λ chosen on the first task pair: the λ of the grid maximising the mean over seeds of "
    "the average dev acc@1 over the first two tasks right after the second (ties -> smaller "
    "λ), carried forward to the whole sequence; it needs the grid over two tasks only. "
    "Reductions are those of the whole-sequence runs at each λ."
)


def first_pair_table(report: Report) -> pd.DataFrame:
    """The first-pair rule's λ next to the whole-sequence dev choice, with both reductions."""
    multi_order = len(report.orders) > 1
    by_key = {(g.method, g.lam, g.order): g for g in report.groups}
    records = []
    for (method, order), fp in report.first_pair.items():
        full = report.selections[(method, order)]
        rec = {"method": method}
        if multi_order:
            rec["order"] = order_label(order)
        g_fp, g_full = by_key.get((method, fp.chosen, order)), by_key.get((method, full.chosen, order))
        rec |= {
            "λ (first pair)": lam_label(fp.chosen),
            "λ (whole sequence)": lam_label(full.chosen),
            "reduction at first-pair λ (%)": fmt_interval(g_fp.reduction if g_fp else None),
            "reduction at whole-sequence λ (%)": fmt_interval(g_full.reduction if g_full else None),
        }
        records.append(rec)
    columns = (
        ["method"]
        + (["order"] if multi_order else [])
        + ["λ (first pair)", "λ (whole sequence)", "reduction at first-pair λ (%)", "reduction at whole-sequence λ (%)"]
    )
    return pd.DataFrame.from_records(records, columns=columns)


def best_forgetting_table(report: Report) -> pd.DataFrame:
    from elcl.continual.methods import SEQUENTIAL_METHODS

    multi_order = len(report.orders) > 1
    records = []
    for g in report.chosen_groups():
        if g.method not in SEQUENTIAL_METHODS:
            continue
        rec = {"method": g.method, "λ": lam_label(g.lam)}
        if multi_order:
            rec["order"] = order_label(g.order)
        for t in report.tasks:
            rec[f"{t} (pp)"] = fmt_pm(g.tasks["forgetting_best"].get(t))
        records.append(rec)
    columns = ["method", "λ"] + (["order"] if multi_order else []) + [f"{t} (pp)" for t in report.tasks]
    return pd.DataFrame.from_records(records, columns=columns)


def comparison_frame(report: Report) -> pd.DataFrame:
    """Numeric rows of the paired statistics (fractions; empty when there is none)."""
    c = report.comparison
    rows: list[dict] = []
    if c is None:
        return pd.DataFrame(rows)

    def iv(prefix: str, v: Interval | None) -> dict:
        if v is None:
            return {f"{prefix}": math.nan, f"{prefix}_lo": math.nan, f"{prefix}_hi": math.nan}
        return {f"{prefix}": v.point, f"{prefix}_lo": v.lo, f"{prefix}_hi": v.hi}

    rows.append(
        {
            "kind": f"vs {c.baseline}",
            "method": c.baseline,
            "lambda": "-",
            "n_paired": c.n_cells,
            **iv("mean_forgetting", c.base),
            **iv("reduction", None),
        }
    )
    for a in c.arms:
        rows.append(
            {
                "kind": f"vs {c.baseline}",
                "method": a.method,
                "lambda": a.lam,
                "n_paired": a.n_cells,
                **iv("mean_forgetting", a.forgetting),
                **iv("reduction", a.reduction),
            }
        )
    for d in c.diffs:
        rows.append(
            {
                "kind": "difference",
                "method": f"{d.a} - {d.b}",
                "lambda": "selected",
                "n_paired": d.n_cells,
                **iv("mean_forgetting", d.forgetting),
                **iv("reduction", d.reduction),
            }
        )
    return pd.DataFrame(rows)


def _comparison_tables(report: Report) -> tuple[pd.DataFrame, pd.DataFrame]:
    c = report.comparison
    assert c is not None
    arms = [
        {
            "method": c.baseline,
            "λ": "-",
            "paired runs": str(c.n_cells),
            "mean forgetting (pp) [95% CI]": fmt_interval(c.base),
            "forgetting reduction (%) [95% CI]": "ref.",
            "reduction CI excludes 0": "",
        }
    ]
    for a in c.arms:
        arms.append(
            {
                "method": a.method,
                "λ": a.lam,
                "paired runs": str(a.n_cells),
                "mean forgetting (pp) [95% CI]": fmt_interval(a.forgetting),
                "forgetting reduction (%) [95% CI]": fmt_interval(a.reduction),
                "reduction CI excludes 0": "yes" if a.reduction.excludes_zero else "no",
            }
        )
    diffs = [
        {
            "difference": f"{d.a} − {d.b}",
            "paired runs": str(d.n_cells),
            "Δ mean forgetting (pp) [95% CI]": fmt_interval(d.forgetting),
            "Δ reduction (pp) [95% CI]": fmt_interval(d.reduction),
            "forgetting CI excludes 0": "yes" if d.forgetting.excludes_zero else "no",
        }
        for d in c.diffs
    ]
    return pd.DataFrame(arms), pd.DataFrame(
        diffs,
        columns=[
            "difference",
            "paired runs",
            "Δ mean forgetting (pp) [95% CI]",
            "Δ reduction (pp) [95% CI]",
            "forgetting CI excludes 0",
        ],
    )


def comparison_sentences(report: Report) -> list[str]:
    """The verdicts in words: does each interval exclude 0?"""
    c = report.comparison
    if c is None:
        return []
    out = []
    for a in c.arms:
        lam = "" if a.lam == "-" else f" (λ {a.lam})"
        out.append(a.reduction.words(f"{a.method}{lam} forgetting reduction vs {c.baseline}", "%"))
    for d in c.diffs:
        out.append(d.forgetting.words(f"{d.a} − {d.b} mean forgetting"))
        out.append(d.reduction.words(f"{d.a} − {d.b} forgetting reduction"))
    return out


def frontier_frame(report: Report) -> pd.DataFrame:
    rows = [
        {
            "method": p.method,
            "lambda": lam_label(p.lam),
            "newest_task_acc1": p.newest_acc,
            "mean_forgetting": p.forgetting,
            "avg_final_acc1": p.avg_final_acc,
            "n_runs": p.n_runs,
        }
        for p in sorted(report.frontier, key=lambda p: (methods.rank(p.method), M.lam_key(p.lam)))
    ]
    return pd.DataFrame(
        rows,
        columns=[
            "method",
            "lambda",
            "newest_task_acc1",
            "mean_forgetting",
            "avg_final_acc1",
            "n_runs",
        ],
    )


def _frontier_display(report: Report) -> pd.DataFrame:
    df = frontier_frame(report)
    out = pd.DataFrame(
        {
            "method": df["method"],
            "λ": df["lambda"],
            "newest-task acc@1 (%)": df["newest_task_acc1"].map(_pct),
            "mean forgetting (pp)": df["mean_forgetting"].map(_pct),
            "avg final acc@1 (%)": df["avg_final_acc1"].map(_pct),
            "n runs": df["n_runs"].astype(str),
        }
    )
    return out


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x * 100:.1f}"


# ---------------------------------------------------------------------- markdown
def stdout_markdown(report: Report) -> str:
    """What `elcl evaluate` prints: the main table, the paired verdicts, the λ rule and table."""
    parts = [
        (
            f"## Forgetting ({report.split} split, chosen λ per method; accuracies in %, "
            f"forgetting in points, mean ± std over seeds; avg acc@1 CI and reduction: 95% "
            f"bootstrap over seeds and test mentions; reduction: ratio of means)"
        ),
        "",
        markdown(group_table(report, report.chosen_groups())),
        "",
    ]
    sentences = comparison_sentences(report) + [m.words() for m in report.matched]
    if sentences:
        parts += [f"- {s}" for s in sentences] + [""]
    parts += _paper_lines(report)
    parts += [M.SELECTION_RULE, "", markdown(selection_table(report))]
    return "\n".join(parts) + "\n"


def _paper_lines(report: Report) -> list[str]:
    """The paper's published reductions against this report's intervals (none when no
    method with a published value was compared)."""
    checks = paper_checks(report.comparison)
    if not checks:
        return []
    return [f"### Against the paper ({SOURCE})", ""] + [f"- {c.words()}" for c in checks] + [""]


def machines_line(report: Report) -> str:
    """Runs per machine (``run.json`` environments): float32 kernels differ between CPU
    ISAs and GPUs, so runs of one seed made on two machines are not bit-identical."""
    return "; ".join(f"{label} ({n} run{'s' if n != 1 else ''})" for label, n in report.machines.items()) or "-"


def report_markdown(report: Report) -> str:
    lines = [
        "# elcl continual entity-linking report",
        "",
        f"- runs: {len(report.runs)}; split: {report.split}; experiment(s): " + (", ".join(report.experiments) or "-"),
        f"- {SEQUENTIAL_NOTE}",
        f"- computed on: {machines_line(report)}",
        "",
    ]
    c = report.comparison
    if c is not None:
        arms, diffs = _comparison_tables(report)
        lines += [
            "## Paired comparison (each method at its chosen λ: dev-selected from a grid, else the one it ran)",
            "",
            (
                f"Each method paired with {c.baseline} and {c.reference} on the same (seed, order); 95% "
                f"percentile intervals from {c.n_boot} bootstrap resamples (seed {c.seed}) of "
                f"{c.resampling}."
            ),
            "",
            markdown(arms),
            "",
        ]
        if not diffs.empty:
            lines += [markdown(diffs), ""]
        lines += [f"- {s}" for s in comparison_sentences(report)] + [""]
        lines += _paper_lines(report)
    if report.frontier:
        lines += [
            "## Stability–plasticity frontier",
            "",
            (
                "Per (method, λ), pooled over seeds and orders: accuracy on the newest task "
                "(plasticity) and mean forgetting of the earlier tasks (stability). "
                "Plot: frontier.png."
            ),
            "",
            markdown(_frontier_display(report)),
            "",
        ]
        if report.matched:
            lines += [f"- {m.words()}" for m in report.matched] + [""]
        else:
            lines += [
                ("- No two penalty methods share a range of newest-task accuracy: no matched-plasticity comparison."),
                "",
            ]
    lines += [
        "## Forgetting (chosen λ per method)",
        "",
        markdown(group_table(report, report.chosen_groups())),
        "",
        "## λ selection",
        "",
        M.SELECTION_RULE,
        "",
        markdown(selection_table(report)),
        "",
        "## All λ",
        "",
        markdown(group_table(report, report.groups)),
        "",
    ]
    if report.first_pair:
        lines += ["## λ chosen on the first task pair", "", FIRST_PAIR_RULE, "", markdown(first_pair_table(report)), ""]
    lines += [
        "## Forgetting vs best earlier accuracy (chosen λ)",
        "",
        "max over steps j..n-2 of R[i][j] minus R[n-1][j], tasks j < n-1.",
        "",
        markdown(best_forgetting_table(report)),
        "",
    ]
    for title, items in (
        ("Runs left out (config differs)", report.left_out),
        ("Unpaired runs", report.unpaired),
        ("Warnings", report.warnings),
        ("Notes", report.notes),
    ):
        if items:
            lines += [f"## {title}", ""] + [f"- {x}" for x in items] + [""]
    return "\n".join(lines)


def print_terminal(report: Report) -> None:
    """The stdout summary rendered by rich (tables drawn, not piped Markdown)."""
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(stdout_markdown(report)))


# ---------------------------------------------------------------------- csv / json
def group_head(g: GroupScores) -> dict:
    """The identifying fields of an aggregated (method, λ, order) group."""
    return {
        "method": g.method,
        "lambda": g.lam,
        "order": list(g.order),
        "chosen": g.chosen,
        "n_runs": g.n_runs,
        "seeds": g.seeds,
    }


def run_head(r: Any) -> dict:
    """The identifying fields of one run, as written in JSON outputs."""
    return {
        "run": str(r.path),
        "experiment": r.experiment,
        "method": r.method,
        "lambda": r.lam,
        "seed": r.seed,
        "order": list(r.order),
        "status": r.status,
    }


def _interval_dict(iv: Interval | None) -> dict:
    if iv is None:
        return {"point": None, "lo": None, "hi": None, "excludes_zero": None}
    return {"point": clean(iv.point), "lo": clean(iv.lo), "hi": clean(iv.hi), "excludes_zero": iv.excludes_zero}


def summary_frame(report: Report) -> pd.DataFrame:
    from elcl.evaluation.report import SCALAR_METRICS, TASK_METRICS

    records = []
    for g in report.groups:
        rec: dict = {
            "method": g.method,
            "lambda": g.lam,
            "order": order_label(g.order),
            "chosen": g.chosen,
            "n_runs": g.n_runs,
            "seeds": " ".join(str(s) for s in g.seeds),
        }
        for name in SCALAR_METRICS:
            mean, std, _ = g.scalars[name]
            rec[f"{name}_mean"], rec[f"{name}_std"] = mean, std
        rec["avg_final_acc1_lo"] = g.acc_interval.lo if g.acc_interval else math.nan
        rec["avg_final_acc1_hi"] = g.acc_interval.hi if g.acc_interval else math.nan
        iv = g.reduction
        rec["forgetting_reduction"] = iv.point if iv else math.nan
        rec["forgetting_reduction_lo"] = iv.lo if iv else math.nan
        rec["forgetting_reduction_hi"] = iv.hi if iv else math.nan
        rec["n_paired"] = g.n_paired
        for name in TASK_METRICS:
            for t in report.tasks:
                mean, std, _ = g.tasks[name].get(t, (math.nan, math.nan, 0))
                rec[f"{name}[{t}]_mean"], rec[f"{name}[{t}]_std"] = mean, std
        records.append(rec)
    return pd.DataFrame.from_records(records)


def summary_dict(report: Report) -> dict:
    from elcl.evaluation.report import SCALAR_METRICS, TASK_METRICS

    def ms(t: tuple | None) -> dict:
        mean, std, n = t if t is not None else (math.nan, math.nan, 0)
        return {"mean": clean(mean), "std": clean(std), "n": n}

    groups = [
        {
            **group_head(g),
            "metrics": {name: ms(g.scalars[name]) for name in SCALAR_METRICS},
            "avg_final_acc1_interval": _interval_dict(g.acc_interval),
            "forgetting_reduction": _interval_dict(g.reduction) | {"n_paired": g.n_paired},
            "per_task": {t: {name: ms(g.tasks[name].get(t)) for name in TASK_METRICS} for t in g.order},
        }
        for g in report.groups
    ]
    selections = [
        {
            "method": method,
            "order": list(order),
            "chosen_lambda": choice.chosen,
            "reason": choice.reason,
            "candidates": [
                {"lambda": lam, "dev_acc1_mean": clean(choice.scores[lam]), "n": choice.counts[lam]}
                for lam in choice.scores
            ],
        }
        for (method, order), choice in report.selections.items()
    ]
    runs = [
        {
            **run_head(rs.run),
            "metrics": {name: clean(rs.scalar(name)) for name in SCALAR_METRICS},
            "per_task": {
                t: {name: clean(rs.per_task(name)[j]) for name in TASK_METRICS} for j, t in enumerate(rs.run.order)
            },
            "single_baseline": {t: clean(rs.single[j]) for j, t in enumerate(rs.run.order)},
            "single_baseline_from": rs.single_from,
        }
        for rs in report.runs
    ]
    c = report.comparison
    comparison = (
        None
        if c is None
        else {
            "resampling": c.resampling,
            "n_boot": c.n_boot,
            "seed": c.seed,
            # the baseline's entry: "naive" is the file format's key, whichever method it is
            "naive": {"n_paired": c.n_cells, "mean_forgetting": _interval_dict(c.base)},
            "methods": [
                {
                    "method": a.method,
                    "lambda": a.lam,
                    "n_paired": a.n_cells,
                    "mean_forgetting": _interval_dict(a.forgetting),
                    "forgetting_reduction": _interval_dict(a.reduction),
                }
                for a in c.arms
            ],
            "differences": [
                {
                    "a": d.a,
                    "b": d.b,
                    "n_paired": d.n_cells,
                    "mean_forgetting": _interval_dict(d.forgetting),
                    "forgetting_reduction": _interval_dict(d.reduction),
                }
                for d in c.diffs
            ],
            "verdicts": comparison_sentences(report),
            "against_paper": [
                {
                    "what": k.what,
                    "paper": k.paper,
                    "ours": _interval_dict(k.ours),
                    "position": k.position,
                    "verdict": k.words(),
                }
                for k in paper_checks(c)
            ],
        }
    )
    return {
        "split": report.split,
        "selection_rule": M.SELECTION_RULE,
        "experiments": report.experiments,
        "n_runs": len(report.runs),
        "tasks": report.tasks,
        "comparison": comparison,
        "frontier": clean(frontier_frame(report).to_dict(orient="records")),
        "matched_plasticity": [
            {
                "a": m.a,
                "b": m.b,
                "newest_task_acc1": clean(m.at),
                "forgetting_a": clean(m.forgetting_a),
                "forgetting_b": clean(m.forgetting_b),
                "mean_difference": clean(m.mean_diff),
                "verdict": m.words(),
            }
            for m in report.matched
        ],
        "lambda_selection": selections,
        "lambda_first_pair": [
            {
                "method": method,
                "order": list(order),
                "chosen_lambda": choice.chosen,
                "whole_sequence_lambda": report.selections[(method, order)].chosen,
                "candidates": [
                    {"lambda": lam, "first_pair_dev_acc1_mean": clean(choice.scores[lam]), "n": choice.counts[lam]}
                    for lam in choice.scores
                ],
            }
            for (method, order), choice in report.first_pair.items()
        ],
        "groups": groups,
        "runs": runs,
        "left_out": report.left_out,
        "unpaired": report.unpaired,
        "warnings": report.warnings,
        "notes": report.notes,
        "machines": report.machines,
    }


def matrices_dict(report: Report) -> dict:
    def trained(method: str, order: tuple[str, ...], n_steps: int) -> list[str]:
        return methods.get(method).step_labels(order, n_steps)

    runs = [
        {
            "run": str(rs.run.path),
            "method": rs.run.method,
            "lambda": rs.run.lam,
            "seed": rs.run.seed,
            "order": list(rs.run.order),
            "trained": trained(rs.run.method, rs.run.order, rs.R.shape[0]),
            "acc1": clean(rs.R),
            "acc5": clean(rs.R5),
            "dev_acc1": clean(rs.R_dev),
        }
        for rs in report.runs
    ]
    groups = [
        {
            **group_head(g),
            "trained": trained(g.method, g.order, g.R_mean.shape[0]),
            "acc1_mean": clean(g.R_mean),
            "acc1_std": clean(g.R_std),
        }
        for g in report.groups
        if g.R_mean is not None
    ]
    return {
        "split": report.split,
        "layout": "acc1[i][j] = acc@1 on order[j] after training step i (trained[i])",
        "runs": runs,
        "groups": groups,
    }


def write_tables(report: Report, out: Path) -> list[Path]:
    """report.md, summary.csv, comparison.csv, frontier.csv, summary.json, accuracy_matrices.json."""
    written: list[Path] = []

    def put(name: str, text: str) -> None:
        atomic_write_text(out / name, text)
        written.append(out / name)

    def js(obj: dict) -> str:
        return json.dumps(obj, indent=2, allow_nan=False, ensure_ascii=False) + "\n"

    put("report.md", report_markdown(report))
    put("summary.csv", summary_frame(report).to_csv(index=False))
    if report.comparison is not None:
        put("comparison.csv", comparison_frame(report).to_csv(index=False))
    if report.frontier:
        put("frontier.csv", frontier_frame(report).to_csv(index=False))
    put("summary.json", js(summary_dict(report)))
    put("accuracy_matrices.json", js(matrices_dict(report)))
    return written
