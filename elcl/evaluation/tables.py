"""A :class:`~elcl.evaluation.scores.Report`'s tables as pandas DataFrames, the cell
formats they share, and the sentences that state the paired verdicts.

The Markdown report (:mod:`elcl.evaluation.render`) and the CSV / JSON files
(:mod:`elcl.evaluation.summary`) are both made from these frames, so a figure reads the
same in every file.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from elcl.continual import methods
from elcl.evaluation import metrics as M
from elcl.evaluation.runs import lam_label, order_label

if TYPE_CHECKING:
    from elcl.evaluation.scores import GroupScores, Report
    from elcl.evaluation.stats import Interval


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


def comparison_tables(report: Report) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def frontier_display(report: Report) -> pd.DataFrame:
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
