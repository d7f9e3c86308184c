"""Forgetting report over many runs: build it, and write its files.

The report is built in parts, each a module, each importing only those before it:

* scoring — pure functions over accuracy matrices and per-mention correctness:
  :mod:`elcl.evaluation.metrics` (one run), :mod:`elcl.evaluation.stats` (paired
  ratio-of-means reduction, bootstrap intervals), :mod:`elcl.evaluation.frontier`;
  :mod:`elcl.evaluation.scores` — the :class:`Report` record (data only) and the scores
  of a run and a group;
* :mod:`elcl.evaluation.pairing` — pairs every run with the baseline (naive) and the
  forgetting reference (single) on the same (seed, order) and draws the intervals;
* this module — reads the runs, keeps the comparable ones, groups by (method, λ, order),
  selects λ on dev data, and fills a :class:`Report`. Which method plays which role it
  asks the method registry (:func:`elcl.continual.methods.role`); it never names a method;
* rendering — :mod:`elcl.evaluation.tables` (DataFrames), :mod:`elcl.evaluation.render`
  (Markdown, rich on a terminal), :mod:`elcl.evaluation.summary` (CSV / JSON) and
  :mod:`elcl.evaluation.plots` (matplotlib PNGs); :func:`write_report` writes them all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from elcl.evaluation.pairing import (
    RESAMPLE,
    Boot,
    accuracy_interval,
    by_cell,
    compare,
    pair,
    reduction_interval,
)
from elcl.evaluation.runs import (
    Run,
    discover_runs,
    lam_label,
    order_label,
    single_baseline,
)
from elcl.evaluation.scores import (
    SCALAR_METRICS,
    TASK_METRICS,
    ArmStats,
    Comparison,
    DiffStats,
    GroupScores,
    Report,
    RunScores,
    aggregate,
    is_rule,
    n_earlier,
    score_run,
)
from elcl.provenance import machine_counts

__all__ = [
    "RESAMPLE",
    "SCALAR_METRICS",
    "TASK_METRICS",
    "ArmStats",
    "Comparison",
    "DiffStats",
    "GroupScores",
    "Report",
    "RunScores",
    "build_report",
    "check_options",
    "write_report",
]


# ---------------------------------------------------------------------- build
def check_options(split: str, resample: str) -> None:
    """One line naming the option when ``split`` or ``resample`` is not a known value."""
    if split not in ("dev", "test"):
        raise ElclError(f"--split: '{split}' is not one of dev, test")
    if resample not in RESAMPLE:
        raise ElclError(f"--resample: '{resample}' is not one of {', '.join(RESAMPLE)}")


def lambda_sources(runs: Sequence[Run]) -> dict[tuple[str, str], str]:
    """(method, λ label) -> the ``lambda_source`` note its runs' configs carry (one note
    per pair; runs without one, or without a config, add nothing)."""
    out: dict[tuple[str, str], str] = {}
    for r in runs:
        section = ((r.config or {}).get("method") or {}).get(r.method) or {}
        note = section.get("lambda_source") if isinstance(section, dict) else None
        if note:
            out.setdefault((r.method, lam_label(r.lam)), str(note))
    return out


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

    scores = [score_run(r, split) for r in runs]
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
        k = n_earlier(rs)
        rs.mean_forgetting = M.nanmean(rs.forgetting_single[:k]) if k > 0 else math.nan

    # Pairing: the paired statistics use only runs with the baseline (naive) and the
    # reference (single) on their cell.
    single_cells = by_cell(single_runs)
    naive_cells = by_cell([rs for rs in scores if rs.run.method == baseline])
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
        aggregate(g)
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
        dev_scores, mismatch = _on_common_seeds(gs, "avg_final_dev_acc1")
        if mismatch:
            warnings.append(f"{method} {order_label(order)}: λ selection: {mismatch}")
        choice = M.select_lambda(dev_scores)
        selections[(method, order)] = choice
        for g in gs:
            g.chosen = g.lam == choice.chosen
        if len(gs) > 1 and choice.reason != "max mean dev acc@1":
            notes.append(f"{method} {order_label(order)}: λ selection: {choice.reason}")
    first_pair = _first_pair_selections(per_mo)

    boot = Boot(resample, n_boot, boot_seed)
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
        g.acc_interval, why = accuracy_interval(g, split, boot)
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
        p = pair([naive_cells, by_cell(g.runs)], single_cells, split, boot)
        if p is not None:
            g.reduction = reduction_interval(p, 1)
            g.n_paired = len(p.cells)

    comparison = compare(groups, naive_cells, single_cells, split, boot, baseline, reference)
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
        lambda_sources=lambda_sources([r.run for r in scores]),
    )


def _on_common_seeds(gs: list[GroupScores], score: str) -> tuple[dict, str | None]:
    """Each λ's per-seed dev scores, on the seeds every λ of the grid has.

    A mean over seeds {13, 17} against one over {13} alone compares seed luck as much as λ:
    the rule picks among λ on the seeds they share, and says which runs it set aside (the
    message is None when the grid is balanced). With no seed shared by all λ nothing can be
    compared like for like; every run counts and the message says the means are over
    different seeds.
    """
    seeds = {g.lam: {rs.run.seed for rs in g.runs} for g in gs}
    common = set.intersection(*seeds.values())
    kept = {g.lam: [getattr(rs, score) for rs in g.runs if not common or rs.run.seed in common] for g in gs}
    if all(s == common for s in seeds.values()):
        return kept, None
    extra = "; ".join(
        f"λ={lam_label(lam)} also has seed(s) {', '.join(map(str, sorted(s - common)))}"
        for lam, s in seeds.items()
        if s - common
    )
    if not common:
        return kept, f"no seed is shared by every λ ({extra}); the means compared are over different seeds"
    return kept, (
        f"chosen on seed(s) {', '.join(map(str, sorted(common)))}, the ones every λ has ({extra}: "
        f"left out of the choice, kept in the tables)"
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
        scores, _ = _on_common_seeds(gs, "first_pair_dev_acc1")
        if all(math.isnan(v) for vs in scores.values() for v in vs):
            continue
        out[(method, order)] = M.select_lambda(scores)
    return out


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


def dev_score(path: Path) -> float:
    """The score λ selection ranks a run by (its final-row average dev acc@1, as
    :func:`build_report` computes it): what ``elcl sweep``'s λ search maximises, so the
    search and the report's grid selection agree on "best"."""
    from elcl.evaluation.runs import load_run
    from elcl.evaluation.scores import score_run

    return score_run(load_run(path), "test").avg_final_dev_acc1


def dev_row_score(path: Path, step: int) -> float:
    """The same average over the tasks of the order, after ``step`` (NaN before it): what a
    search compares trials by after each task, to stop the hopeless ones early."""
    from elcl.evaluation.runs import accuracy_matrix, load_run

    R_dev = accuracy_matrix(load_run(path), "dev", "acc1")
    return M.nanmean(R_dev[step]) if step < R_dev.shape[0] else math.nan
