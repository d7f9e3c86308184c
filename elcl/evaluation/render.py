"""Rendering a :class:`~elcl.evaluation.scores.Report`: the Markdown report, the same on
a terminal with rich, and every file of a report directory (tables from
:mod:`elcl.evaluation.tables`, CSV / JSON documents from :mod:`elcl.evaluation.summary`).

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
* ``summary.json`` — all of the above plus λ selection, each fixed λ's source (``lambda_sources``) and per-run scores (NaN as null).
* ``accuracy_matrices.json`` — per run and per group the matrices ``R[step][task]``.
"""

from __future__ import annotations

import json
from pathlib import Path

from elcl.evaluation import metrics as M
from elcl.evaluation.paper import SOURCE, paper_checks
from elcl.evaluation.scores import Report
from elcl.evaluation.summary import group_head, matrices_dict, run_head, summary_dict, summary_frame
from elcl.evaluation.tables import (
    FIRST_PAIR_RULE,
    best_forgetting_table,
    clean,
    comparison_frame,
    comparison_sentences,
    comparison_tables,
    first_pair_table,
    fmt_bounds,
    fmt_interval,
    fmt_pm,
    frontier_display,
    frontier_frame,
    group_table,
    markdown,
    selection_table,
)
from elcl.fileio import atomic_write_text

# The tables' and files' names are re-exported: callers render through this module.
__all__ = [
    "best_forgetting_table",
    "clean",
    "comparison_frame",
    "first_pair_table",
    "fmt_bounds",
    "fmt_interval",
    "fmt_pm",
    "frontier_frame",
    "group_head",
    "group_table",
    "main_table_markdown",
    "all_lambda_markdown",
    "selection_markdown",
    "markdown",
    "matrices_dict",
    "print_terminal",
    "report_markdown",
    "run_head",
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
    parts += lambda_source_lines(report)
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


def lambda_source_lines(report: Report) -> list[str]:
    """Where each fixed λ came from, as its runs' configs say (``lambda_source``)."""
    if not report.lambda_sources:
        return []
    out = [f"- {method} λ {lam}: {note}" for (method, lam), note in sorted(report.lambda_sources.items())]
    return ["λ sources (`method.<name>.lambda_source` in the runs' configs):", "", *out, ""]


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
        arms, diffs = comparison_tables(report)
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
        lines += lambda_source_lines(report)
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
            markdown(frontier_display(report)),
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


# ---------------------------------------------------------------------- tables as markdown
def main_table_markdown(report: Report) -> str:
    """The main table: every method at its chosen λ."""
    return markdown(group_table(report, report.chosen_groups()))


def all_lambda_markdown(report: Report) -> str:
    """The table of every (method, λ, order) group."""
    return markdown(group_table(report, report.groups))


def selection_markdown(report: Report) -> str:
    """The λ selection table."""
    return markdown(selection_table(report))


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
