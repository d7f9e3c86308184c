"""The report's PNG plots (matplotlib, Agg backend; every file written atomically).

* ``heatmap_<method>[_<order>].png`` — mean accuracy matrix of each shown group;
* ``forgetting_reduction.png`` — ratio-of-means reduction per method with its 95% interval;
* ``acc_vs_lambda_<method>[_<order>].png`` — test and dev accuracy across the λ grid;
* ``frontier.png`` — stability–plasticity frontier: mean forgetting of the earlier tasks
  against newest-task accuracy (left) and against average final accuracy (right), one
  curve per penalty method across its λ grid, other methods (and λ rules) as points.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from elcl.continual import methods
from elcl.evaluation.runs import lam_label
from elcl.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from elcl.evaluation.scores import GroupScores, Report

__all__ = ["write_plots"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def heatmap(g: GroupScores, split: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    assert g.R_mean is not None
    R = g.R_mean * 100.0
    n_steps, n_tasks = R.shape
    fig, ax = plt.subplots(figsize=(1.2 * n_tasks + 2.5, 0.8 * n_steps + 1.8))
    im = ax.imshow(np.ma.masked_invalid(R), vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(n_tasks), labels=list(g.order))
    method = methods.get(g.method)
    steps = method.step_labels(g.order, n_steps)
    if method.all_tasks_at_once:
        ylabels = steps
    elif method.per_task_model:
        ylabels = [f"only {t}" for t in steps]
    else:
        ylabels = [f"after {t}" for t in steps]
    ax.set_yticks(range(n_steps), labels=ylabels)
    ax.set_xlabel(f"evaluated on ({split})")
    ax.set_ylabel("trained")
    for i in range(n_steps):
        for j in range(n_tasks):
            if not math.isnan(R[i, j]):
                ax.text(
                    j,
                    i,
                    f"{R[i, j]:.1f}",
                    ha="center",
                    va="center",
                    color="white" if R[i, j] < 60 else "black",
                    fontsize=9,
                )
    lam = "" if g.lam is None else f" λ={lam_label(g.lam)}"
    ax.set_title(f"{g.method}{lam}: acc@1 (%), mean of {g.n_runs} run(s)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    _save(fig, path)


def reduction_bars(report: Report, path: Path) -> bool:
    import matplotlib.pyplot as plt

    c = report.comparison
    if c is None:
        return False
    arms = [a for a in c.arms if not math.isnan(a.reduction.point)]
    if not arms:
        return False
    labels = [f"{a.method}\nλ {a.lam}" for a in arms]
    mid = np.array([a.reduction.point for a in arms]) * 100
    lo = np.array([a.reduction.lo for a in arms]) * 100
    hi = np.array([a.reduction.hi for a in arms]) * 100
    err = np.vstack([np.nan_to_num(mid - lo), np.nan_to_num(hi - mid)])
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(labels) + 2), 3.8))
    x = np.arange(len(labels))
    ax.bar(x, mid, yerr=err, capsize=4, color="tab:blue")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, labels=labels)
    ax.set_ylabel(f"forgetting reduction vs {c.baseline} (%)")
    ax.set_title("Forgetting reduction (ratio of means, 95% bootstrap interval)")
    for xi, m in zip(x, mid, strict=True):
        ax.annotate(
            f"{m:.0f}%", (xi, m), ha="center", va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points"
        )
    _save(fig, path)
    return True


def acc_vs_lambda(gs: list[GroupScores], split: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    lams = np.array([g.lam for g in gs], dtype=float)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, label in (("avg_final_acc1", f"{split} acc@1"), ("avg_final_dev_acc1", "dev acc@1")):
        if split == "dev" and name == "avg_final_dev_acc1":
            continue
        m = np.array([g.scalars[name][0] for g in gs]) * 100.0
        s = np.nan_to_num(np.array([g.scalars[name][1] for g in gs]) * 100.0)
        ax.errorbar(lams, m, yerr=s, marker="o", capsize=3, label=label)
    chosen = [float(g.lam) for g in gs if g.chosen and isinstance(g.lam, (int, float))]
    if chosen:
        ax.axvline(chosen[0], color="gray", linestyle="--", linewidth=0.8, label="chosen λ")
    if np.all(lams > 0):
        ax.set_xscale("log")
    elif np.any(lams > 0):
        ax.set_xscale("symlog", linthresh=float(np.min(lams[lams > 0])))
    ax.set_xlabel("λ")
    ax.set_ylabel("avg final acc@1 (%)")
    ax.set_title(f"{gs[0].method}: accuracy vs λ")
    ax.legend(fontsize=8)
    _save(fig, path)


def frontier(report: Report, path: Path) -> bool:
    import matplotlib.pyplot as plt

    from elcl.continual.methods import PENALTY_METHODS
    from elcl.evaluation.metrics import lam_key

    pts = [p for p in report.frontier if not math.isnan(p.forgetting)]
    if not pts:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2), sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown = list(dict.fromkeys(p.method for p in pts))
    for ax, attr, xlabel in (
        (axes[0], "newest_acc", "newest-task acc@1 (%)"),
        (axes[1], "avg_final_acc", "average final acc@1 (%)"),
    ):
        for i, method in enumerate(shown):
            color = colors[i % len(colors)]
            mine = sorted((p for p in pts if p.method == method), key=lambda p: lam_key(p.lam))
            grid = [p for p in mine if isinstance(p.lam, (int, float))]
            rules = [p for p in mine if isinstance(p.lam, str)]
            plain = [p for p in mine if p.lam is None]
            if method in PENALTY_METHODS and grid:
                xs = [getattr(p, attr) * 100 for p in grid]
                ys = [p.forgetting * 100 for p in grid]
                ax.plot(xs, ys, marker="o", color=color, label=method)
                for p, x, y in zip(grid, xs, ys, strict=True):
                    ax.annotate(f"λ={lam_label(p.lam)}", (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            for p in rules:
                ax.scatter(
                    getattr(p, attr) * 100,
                    p.forgetting * 100,
                    marker="*",
                    s=120,
                    color=color,
                    label=f"{method} λ={lam_label(p.lam)}",
                )
            for p in plain:
                ax.scatter(getattr(p, attr) * 100, p.forgetting * 100, marker="s", s=50, color=color, label=method)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean forgetting of earlier tasks (points)")
    axes[0].set_title("forgetting vs plasticity")
    axes[1].set_title("forgetting vs average accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles, strict=True))
    axes[1].legend(uniq.values(), uniq.keys(), fontsize=8, loc="best")
    _save(fig, path)
    return True


def write_plots(report: Report, out: Path) -> list[Path]:
    """Every plot of the report into ``out``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    written: list[Path] = []
    multi_order = len(report.orders) > 1
    suffix = {o: (f"_{_slug('-'.join(o))}" if multi_order else "") for o in report.orders}
    for g in report.chosen_groups():
        lam = f"_lam{_slug(lam_label(g.lam))}" if isinstance(g.lam, str) else ""
        p = out / f"heatmap_{_slug(g.method)}{lam}{suffix[g.order]}.png"
        heatmap(g, report.split, p)
        written.append(p)
    p = out / "forgetting_reduction.png"
    if reduction_bars(report, p):
        written.append(p)
    per_mo: dict[tuple, list[GroupScores]] = {}
    for g in report.groups:
        if isinstance(g.lam, (int, float)) and not isinstance(g.lam, bool):
            per_mo.setdefault((g.method, g.order), []).append(g)
    for (method, order), gs in per_mo.items():
        if len(gs) < 2:
            continue
        p = out / f"acc_vs_lambda_{_slug(method)}{suffix[order]}.png"
        acc_vs_lambda(sorted(gs, key=lambda g: float(g.lam)), report.split, p)  # type: ignore[arg-type]
        written.append(p)
    p = out / "frontier.png"
    if frontier(report, p):
        written.append(p)
    return written
