"""λ by search: an Optuna study per (penalty method, order) over log10 λ.

A trial is one λ run on every seed of the sweep (one cell per seed). Its value is the
report's own selection score: the mean over seeds of each run's final-row average dev
acc@1 (:func:`elcl.evaluation.report.dev_score`), and the best λ of a study is chosen by
the report's rule itself (:func:`elcl.evaluation.metrics.select_lambda` over the finished
trials; ties to the smaller λ), so search and grid agree on what "best" means. After
each task a trial reports the average dev acc@1 of that row; Optuna's MedianPruner stops
it when that is below the median of earlier trials after the same task (the first task
is shared by every λ, so pruning starts after the second).

Trials are drawn one at a time per study (TPE learns from each), studies run side by
side. The studies live in ``<exp>/.sweep/search.journal`` (Optuna's journal file), so a
second ``elcl sweep`` continues them: a trial left running by a stopped sweep is proposed
again with the same λ and its runs resume. A trial whose λ lands on a finished run of
``sweep.reuse`` of the same config and seed reads its score there instead of training.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elcl.config import ExperimentConfig
from elcl.errors import ElclError
from elcl.fileio import atomic_write_text
from elcl.sweep import cells as C
from elcl.sweep.grid import OWNER_PREFERENCE, Cell, assign_owners, make_cell
from elcl.sweep.scheduler import SweepResult
from elcl.sweep.spec import SweepSection

MISSING_OPTUNA = "sweep.search: optuna needs Optuna: pip install 'elcl[sweep]'"
PARAM = "log10_lambda"


@dataclass
class _Trial:
    trial: Any  # optuna.Trial
    lam: float
    cells: list[Cell]
    status: dict[str, str] = field(default_factory=dict)
    dirs: dict[str, Path] = field(default_factory=dict)
    reported: int = 0
    pruned: bool = False


def lam_of(x: float) -> float:
    """λ = 10**x, rounded to 6 significant digits (grid points come out exact: 1000.0)."""
    return float(f"{10**x:.6g}")


class OptunaSearch:
    def __init__(self, cfg: ExperimentConfig, sweep: SweepSection, methods: list[str], exp: Path, grid: list[Cell]):
        try:
            import optuna
        except ImportError:
            raise ElclError(MISSING_OPTUNA) from None
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.cfg, self.sweep, self.exp = cfg, sweep, exp
        self.seeds = sweep.seeds or cfg.seeds
        orders = sweep.orders if sweep.orders is not None else list(range(len(cfg.task_orders())))
        C.sweep_dir(exp).mkdir(parents=True, exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(C.sweep_dir(exp) / "search.journal")))
        self.owners: dict[tuple[int, int], str] = {}
        for c in grid:
            if c.owner is not None:
                self.owners[c.block] = c.owner
        for c in grid:
            if c.owner is None and c.block not in self.owners and c.spec.method in OWNER_PREFERENCE:
                self.owners[c.block] = c.name
        self.studies: dict[str, Any] = {}
        self.bounds: dict[str, tuple[float, float]] = {}
        self.order_of: dict[str, tuple[str, int]] = {}
        self.current: dict[str, _Trial | None] = {}
        self.by_cell: dict[str, _Trial] = {}
        self.pending_params: dict[str, list[float]] = {}
        for m in methods:
            lo, hi = self._bounds(m)
            for o in orders:
                key = f"{m}-o{o}"
                pruner = (
                    optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
                    if sweep.prune
                    else optuna.pruners.NopPruner()
                )
                sampler = optuna.samplers.TPESampler(seed=sweep.search_seed + o, n_startup_trials=min(3, sweep.trials))
                study = optuna.create_study(
                    study_name=key,
                    storage=storage,
                    direction="maximize",
                    sampler=sampler,
                    pruner=pruner,
                    load_if_exists=True,
                )
                self._recover(study)
                self.studies[key], self.bounds[key], self.order_of[key], self.current[key] = (
                    study,
                    (lo, hi),
                    (m, o),
                    None,
                )

    def _bounds(self, method: str) -> tuple[float, float]:
        if self.sweep.log10_range and method in self.sweep.log10_range:
            return self.sweep.log10_range[method]
        grid = getattr(self.cfg.method, method).lambda_grid
        values = [float(v) for v in grid or [] if not isinstance(v, str) and float(v) > 0]
        if not values:
            raise ElclError(
                f"sweep.search: {method} has no numeric method.{method}.lambda_grid to bound the search; set sweep.log10_range.{method}: [lo, hi]"
            )
        return math.log10(min(values)), math.log10(max(values))

    def _recover(self, study: Any) -> None:
        """A trial a stopped sweep left running: failed in the journal, proposed again."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(t.number, state=TrialState.FAIL)
            if PARAM in t.params:
                study.enqueue_trial({PARAM: t.params[PARAM]}, skip_if_exists=False)

    def _ended(self, key: str) -> dict[float, Any]:
        """λ -> its ended (complete or pruned) trial: a λ drawn again is not run again."""
        from optuna.trial import TrialState

        trials = self.studies[key].get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        return {lam_of(t.params[PARAM]): t for t in trials if PARAM in t.params}

    def _counted(self, key: str) -> int:
        """Distinct λ tried: the budget counts runs, not draws."""
        return len(self._ended(key))

    def _space(self, key: str) -> int | None:
        lo, hi = self.bounds[key]
        step = self.sweep.log10_step
        return None if step is None else int(math.floor((hi - lo) / step + 1e-9)) + 1

    def _spent(self, key: str) -> bool:
        n_draws = len(self.studies[key].get_trials(deepcopy=False))
        space = self._space(key)
        return (
            self._counted(key) >= self.sweep.trials
            or (space is not None and self._counted(key) >= space)
            or n_draws >= 5 * self.sweep.trials  # a sampler stuck on tried λ
        )

    # ------------------------------------------------------------- scheduler calls
    def propose(self, free_slots: int) -> list[Cell]:
        out: list[Cell] = []
        # the study with the fewest λ tried first, then the method with the fewest over its
        # orders: one method's studies cannot starve another's
        tried = {k: self._counted(k) for k in self.studies}
        per_method = {
            m: sum(n for k, n in tried.items() if self.order_of[k][0] == m) for m, _ in self.order_of.values()
        }
        for key in sorted(self.studies, key=lambda k: (tried[k], per_method[self.order_of[k][0]], k)):
            study = self.studies[key]
            if free_slots <= 0:
                break
            lam = None
            while self.current[key] is None and not self._spent(key):
                trial = study.ask()
                lo, hi = self.bounds[key]
                step = self.sweep.log10_step
                if step is not None:
                    hi = lo + math.floor((hi - lo) / step + 1e-9) * step
                lam = lam_of(trial.suggest_float(PARAM, lo, hi, step=step))
                earlier = self._ended(key).get(lam)
                if earlier is None:
                    break
                # drawn again: the sampler learns the same outcome, nothing is run
                if earlier.state == self.optuna.trial.TrialState.COMPLETE:
                    study.tell(trial, earlier.value)
                else:
                    study.tell(trial, state=self.optuna.trial.TrialState.PRUNED)
                lam = None
            if lam is None:
                continue
            method, order = self.order_of[key]
            cells = [make_cell(self.cfg, method, lam, seed, order) for seed in self.seeds]
            for c in cells:
                c.trial = (key, trial.number)
            assign_owners(cells, self.owners)
            t = _Trial(trial, lam, cells)
            self.current[key] = t
            for c in cells:
                self.by_cell[c.name] = t
            out.extend(cells)
            free_slots -= len(cells)
        return out

    def progress(self, cell: Cell, run_dir: Path) -> bool:
        t = self.by_cell.get(cell.name)
        if t is None:
            return False
        if t.pruned:
            return True
        from elcl.evaluation.report import dev_row_score

        n_steps = cell.n_steps
        while t.reported + 1 < n_steps:
            step = t.reported + 1  # step 0 is the shared first task: the same for every λ
            if any(C.steps_done(t.dirs.get(c.name, self.exp / c.name)) < step + 1 for c in t.cells):
                break
            vals = [dev_row_score(t.dirs.get(c.name, self.exp / c.name), step) for c in t.cells]
            vals = [v for v in vals if not math.isnan(v)]
            t.reported = step
            if not vals:
                continue
            t.trial.report(sum(vals) / len(vals), step)
            if step + 1 < n_steps and t.trial.should_prune():
                t.pruned = True
                return True
        return False

    def finished(self, cell: Cell, status: str, run_dir: Path) -> None:
        t = self.by_cell.get(cell.name)
        if t is None:
            return
        t.status[cell.name], t.dirs[cell.name] = status, run_dir
        if status in ("done", "reused"):
            self.progress(cell, run_dir)  # the rows it reached are reported before the end
        if len(t.status) < len(t.cells):
            return
        key = t.cells[0].trial[0] if t.cells[0].trial else ""
        states = set(t.status.values())
        TS = self.optuna.trial.TrialState
        if states <= {"done", "reused"}:
            from elcl.evaluation.report import dev_score

            vals = [dev_score(t.dirs[c.name]) for c in t.cells]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                self.studies[key].tell(t.trial, sum(vals) / len(vals))
            else:
                self.studies[key].tell(t.trial, state=TS.FAIL)
        elif "failed" in states:
            self.studies[key].tell(t.trial, state=TS.FAIL)
        elif "pruned" in states or t.pruned:
            self.studies[key].tell(t.trial, state=TS.PRUNED)
        else:
            return  # interrupted: left running in the journal, proposed again next time
        self.current[key] = None

    def exhausted(self) -> bool:
        return all(self.current[k] is None and self._spent(k) for k in self.studies)

    # ------------------------------------------------------------------ summary
    def summary(self, result: SweepResult | None = None) -> dict:
        """Per study: every trial (λ, state, score, what it cost), and the chosen λ."""
        from elcl.evaluation.metrics import select_lambda

        out: dict[str, Any] = {}
        for key, study in self.studies.items():
            method, order = self.order_of[key]
            rows = []
            # per λ its first trial that did not fail (a λ drawn again ran nothing; a trial
            # failed by a stopped sweep was drawn again with the same λ), else the failed one
            last: dict[float, Any] = {}
            for tr in study.get_trials(deepcopy=False):
                if PARAM in tr.params:
                    lam = lam_of(tr.params[PARAM])
                    if lam not in last or (last[lam].state.name == "FAIL" and tr.state.name != "FAIL"):
                        last[lam] = tr
            for lam, tr in last.items():
                names = [make_cell(self.cfg, method, lam, s, order).name for s in self.seeds]
                cost = [
                    _cost(self.exp / n, result.states[n].status if result and n in result.states else None)
                    for n in names
                ]
                rows.append(
                    {
                        "trial": tr.number,
                        "lambda": lam,
                        "state": tr.state.name.lower(),
                        "dev_score": tr.value,
                        "intermediate": {str(k): v for k, v in tr.intermediate_values.items()},
                        "steps_trained": sum(c[0] for c in cost),
                        "runs_trained": sum(1 for c in cost if c[0] > 0),
                        "runs_reused": sum(1 for c in cost if c[1]),
                    }
                )
            complete = {r["lambda"]: [r["dev_score"]] for r in rows if r["state"] == "complete"}
            choice = select_lambda(complete) if complete else None
            out[key] = {
                "method": method,
                "order_index": order,
                "seeds": self.seeds,
                "trials": rows,
                "chosen_lambda": choice.chosen if choice else None,
                "chosen_dev_score": choice.scores[choice.chosen] if choice else None,
                "steps_trained": sum(r["steps_trained"] for r in rows),
            }
        return out

    def write_summary(self, result: SweepResult | None) -> Path:
        path = C.sweep_dir(self.exp) / "search_summary.json"
        atomic_write_text(path, json.dumps(self.summary(result), indent=2, default=_nan_null) + "\n")
        return path

    def summary_markdown(self, result: SweepResult) -> str:
        lines = [
            "| study | λ chosen | dev score | trials (complete/pruned/failed) | task-steps trained | runs reused |",
            "|---|---|---|---|---|---|",
        ]
        for key, s in self.summary(result).items():
            states = [r["state"] for r in s["trials"]]
            lam = "-" if s["chosen_lambda"] is None else f"{s['chosen_lambda']:g}"
            score = "-" if s["chosen_dev_score"] is None else f"{100 * s['chosen_dev_score']:.2f}"
            lines.append(
                f"| {key} | {lam} | {score} | {states.count('complete')}/{states.count('pruned')}/{states.count('fail')} "
                f"| {s['steps_trained']} | {sum(r['runs_reused'] for r in s['trials'])} |"
            )
        return "\n".join(lines)


def _nan_null(o: Any) -> Any:
    return None


def _cost(run_dir: Path, status: str | None) -> tuple[int, bool]:
    """(task-steps this run trained itself, whether it was reused instead of run)."""
    if status == "reused":
        return 0, True
    n = C.steps_done(run_dir)
    log = run_dir / "log.txt"
    adopted = log.is_file() and "adopted from" in log.read_text(encoding="utf-8", errors="replace")
    # a pruned or interrupted run counts its finished steps (the one in progress is not)
    return max(0, n - (1 if adopted and n > 0 else 0)), False
