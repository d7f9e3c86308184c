"""λ by search against λ by grid on the reproduce-cpu benchmark (docs/guides/sweeps.md).

Reads the Optuna studies an `elcl sweep … --set sweep.search=optuna` left in
``SEARCH_EXP/.sweep/search.journal`` and the committed grid runs (``--grid``), and
prints, per (method, order): the λ each chooses by the report's dev rule
(``select_lambda`` over ``dev_score``: the same function both ways), its dev score and
final test accuracy, and what each spent. Cost is counted in *later-task steps* (a run
trains tasks 2 and 3 itself; the first is shared by every run of its (seed, order) in
both designs); a trial reusing a committed grid run of the same config and seed costs
nothing. Writes JSON and Markdown to ``--out``.

    python scripts/compare_search.py --search runs_search/reproduce_cpu --grid results/reproduce_cpu/runs \\
        --seeds 13 --out results/sweep_search
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from elcl.evaluation.metrics import select_lambda
from elcl.evaluation.report import dev_score
from elcl.evaluation.runs import accuracy_matrix, load_run
from elcl.hardware import cpu_info


def later_steps(run_dir: Path) -> int:
    """Steps 1.. a run finished itself (0 for a run that does not exist here)."""
    try:
        state = json.loads((run_dir / "run.json").read_text())
    except OSError:
        return 0
    return max(0, int(state.get("steps_done", 0)) - 1)


def test_score(run_dir: Path) -> float:
    R = accuracy_matrix(load_run(run_dir), "test", "acc1")
    vals = [v for v in R[-1] if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def grid_side(grid: Path, method: str, order: int, seeds: list[int]) -> dict:
    scores: dict[float, list[float]] = {}
    dirs: dict[float, list[Path]] = {}
    for seed in seeds:
        for d in sorted(grid.glob(f"{method}-lam*-o{order}-s{seed}")):
            state = json.loads((d / "run.json").read_text())
            if state.get("status") != "done" or isinstance(state.get("lambda"), str):
                continue  # unfinished, or a λ rule (auto): not a point of the grid
            lam = float(state["lambda"])
            scores.setdefault(lam, []).append(dev_score(d))
            dirs.setdefault(lam, []).append(d)
    choice = select_lambda(scores)
    n_runs = sum(len(v) for v in dirs.values())
    return {
        "lambdas": sorted(scores),
        "dev_scores": {f"{k:g}": sum(v) / len(v) for k, v in sorted(scores.items())},
        "chosen": choice.chosen,
        "dev": choice.scores[choice.chosen],
        "test": sum(test_score(d) for d in dirs[choice.chosen]) / len(dirs[choice.chosen]),
        "runs": n_runs,
        "later_steps": 2 * n_runs,
    }


def search_side(search: Path, grid: Path, method: str, order: int, seeds: list[int]) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(search / ".sweep" / "search.journal")))
    study = optuna.load_study(study_name=f"{method}-o{order}", storage=storage)
    trials: dict[float, dict] = {}
    for t in study.get_trials(deepcopy=False):
        if "log10_lambda" not in t.params:
            continue
        lam = float(f"{10 ** t.params['log10_lambda']:.6g}")
        state = t.state.name.lower()
        if lam in trials and (trials[lam]["optuna_state"] != "fail" or state == "fail"):
            continue  # a λ drawn again runs nothing; a failed (stopped) trial was drawn again
        names = [f"{method}-lam{lam:g}-o{order}-s{s}" for s in seeds]
        here = [search / n for n in names if (search / n / "run.json").is_file()]
        raw = state
        if state in ("fail", "running") and any(
            json.loads((d / "run.json").read_text()).get("status") in ("interrupted", "running") for d in here
        ):
            state = "stopped"  # by the end of the sweep (its run resumes), not a failed run
        trials[lam] = {
            "lambda": lam,
            "state": state,
            "optuna_state": raw,
            "dev": t.value,
            "intermediate": {str(k): v for k, v in t.intermediate_values.items()},
            "reused": len(here) == 0 and all((grid / n / "run.json").is_file() for n in names),
            "later_steps": sum(later_steps(d) for d in here),
            "dirs": [str(d) for d in here] or [str(grid / n) for n in names],
        }
    complete = {lam: [t["dev"]] for lam, t in trials.items() if t["state"] == "complete"}
    choice = select_lambda(complete) if complete else None
    chosen = choice.chosen if choice else None
    return {
        "trials": [trials[k] for k in sorted(trials)],
        "chosen": chosen,
        "dev": choice.scores[chosen] if choice else None,
        "test": sum(test_score(Path(d)) for d in trials[chosen]["dirs"]) / len(trials[chosen]["dirs"])
        if choice
        else None,
        "runs_trained": sum(1 for t in trials.values() if not t["reused"]),
        "runs_reused": sum(1 for t in trials.values() if t["reused"]),
        "later_steps": sum(t["later_steps"] for t in trials.values()),
    }


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--search", type=Path, required=True, help="experiment directory of the search sweep")
    ap.add_argument("--grid", type=Path, default=Path("results/reproduce_cpu/runs"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[13])
    ap.add_argument("--methods", nargs="+", default=["kfac", "ewc"])
    ap.add_argument("--orders", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--out", type=Path, default=Path("results/sweep_search"))
    args = ap.parse_args()
    rows, doc = [], {"seeds": args.seeds, "cpu": cpu_info().describe(), "cells": {}}
    for m in args.methods:
        for o in args.orders:
            g = grid_side(args.grid, m, o, args.seeds)
            s = search_side(args.search, args.grid, m, o, args.seeds)
            doc["cells"][f"{m}-o{o}"] = {"grid": g, "search": s}
            tried = ", ".join(f"{t['lambda']:g} {t['state']}{' (reused)' if t['reused'] else ''}" for t in s["trials"])
            rows.append(
                f"| {m} | {o} | {g['chosen']:g} | {pct(g['dev'])} | {pct(g['test'])} | {g['runs']} runs, {g['later_steps']} steps "
                f"| {'-' if s['chosen'] is None else format(s['chosen'], 'g')} | {pct(s['dev'])} | {pct(s['test'])} "
                f"| {s['runs_trained']} trained + {s['runs_reused']} reused, {s['later_steps']} steps | {tried} |"
            )
    head = (
        "| method | order | grid λ | grid dev | grid test | grid cost | search λ | search dev | search test | search cost | trials (λ state) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    md = "\n".join([head, *rows])
    print(md)
    print(f"\nseeds {args.seeds}; {doc['cpu']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "comparison.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (args.out / "comparison.md").write_text(md + f"\n\nseeds {args.seeds}; {doc['cpu']}\n")


if __name__ == "__main__":
    main()
