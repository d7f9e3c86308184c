"""A :class:`~elcl.evaluation.scores.Report` as the machine-readable files: the rows of
``summary.csv`` and the documents ``summary.json`` and ``accuracy_matrices.json``
(fractions; NaN as null). Layouts: :mod:`elcl.evaluation.render`, which writes them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from elcl.continual import methods
from elcl.evaluation import metrics as M
from elcl.evaluation.paper import paper_checks
from elcl.evaluation.runs import order_label
from elcl.evaluation.scores import SCALAR_METRICS, TASK_METRICS, GroupScores, Report
from elcl.evaluation.tables import clean, comparison_sentences, frontier_frame

if TYPE_CHECKING:
    from elcl.evaluation.stats import Interval


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
            # the baseline's entry, under its method's name
            c.baseline: {"n_paired": c.n_cells, "mean_forgetting": _interval_dict(c.base)},
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
        # where each fixed λ came from (`method.<name>.lambda_source`), so a reader of the JSON alone sees it was not tuned here
        "lambda_sources": [
            {"method": method, "lambda": lam, "source": note}
            for (method, lam), note in sorted(report.lambda_sources.items())
        ],
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
