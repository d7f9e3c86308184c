"""Where `elcl link` and `elcl export` get a trained linker: a run's finished step
(with the ontology and candidate settings that run trained with) or an export folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from elcl.candidates.prior import ConceptPrior
from elcl.config import CandidatesConfig, ExperimentConfig, load_run_config
from elcl.continual import methods
from elcl.continual.rundir import RunDir, read_jsonl
from elcl.data.ontology import Ontology
from elcl.data.pubtator import IdRules
from elcl.errors import ElclError
from elcl.models.checkpoint import load_checkpoint
from elcl.models.export import is_export_dir, load_exported
from elcl.models.linker import Linker


@dataclass
class RunStep:
    """One finished step of a run: which task it trained and what it measured."""

    path: Path
    state: dict
    cfg: ExperimentConfig
    step: int
    trained_task: str
    metrics: list[dict] = field(default_factory=list)


@dataclass
class LinkerSource:
    model: Linker
    candidates: CandidatesConfig
    ontology: Ontology
    task: str
    label: str
    run: RunStep | None = None
    export_meta: dict | None = None
    prior: ConceptPrior | None = None

    @property
    def context_window(self) -> int:
        return self.model.cfg.context_window

    @property
    def max_length(self) -> int:
        return self.model.cfg.max_length


def run_step(path: Path, step: int | None) -> RunStep:
    """The run's ``step`` (default: its last finished one); refuses unfinished steps."""
    rd = RunDir(path)
    if not rd.run_json.is_file():
        raise ElclError(f"{path}: not a run directory (no run.json) nor an export folder (no elcl_linker.json)")
    state = rd.read_state()
    done = int(state.get("steps_done", 0))
    order = list(state.get("order", []))
    method = state.get("method")
    if done <= 0:
        raise ElclError(f"{path}: no finished step yet (run.json steps_done is 0); wait for the first task to finish")
    if step is None:
        step = done - 1
    if step < 0 or step >= done:
        raise ElclError(
            f"--step {step}: not a finished step of {path} (finished: {', '.join(str(i) for i in range(done))})"
        )
    cls = methods.REGISTRY.get(str(method))
    trained = cls.step_labels(order)[0] if cls is not None and cls.all_tasks_at_once else order[step]
    cfg = load_run_config(rd.path)
    metrics = [r for r in read_jsonl(rd.metrics) if int(r["step"]) == step]
    return RunStep(rd.path, state, cfg, step, trained, metrics)


def default_task(rs: RunStep, task: str | None) -> str:
    """The ontology's task: the trained task by default (a joint run: the last of its order)."""
    order = list(rs.state.get("order", []))
    if task is None:
        return rs.trained_task if rs.trained_task in order else order[-1]
    if task not in order:
        raise ElclError(f"--task {task}: not a task of {rs.path} (its tasks: {', '.join(order)})")
    return task


def input_id_rules(path: Path, step: int | None = None, task: str | None = None) -> IdRules:
    """How the gold ids of an input for this linker are read (its task's id rules), known
    before the model loads so a bad input fails first: a run's task from its config.yaml,
    an export's from the task definition it carries (built-in rules otherwise)."""
    from elcl.data.custom import task_id_rules
    from elcl.data.task_config import custom_task_from_dict

    path = Path(path).expanduser()
    if is_export_dir(path):
        from elcl.models.export import read_export_meta

        definition = read_export_meta(path).get("task_definition")
        if isinstance(definition, dict):
            return task_id_rules(custom_task_from_dict(definition, f"{path}: task_definition"))
        return IdRules()
    if not path.exists():
        return IdRules()  # open_source names the problem
    rs = run_step(path, step)
    return task_id_rules(rs.cfg.task_ref(default_task(rs, task)))


def open_source(
    path: Path, step: int | None = None, task: str | None = None, device: torch.device | str = "cpu"
) -> LinkerSource:
    """A linker ready to link: from an export folder, or from a run (checkpoint + its data)."""
    path = Path(path).expanduser()
    if is_export_dir(path):
        if step is not None:
            raise ElclError(f"--step: {path} is an export folder of one step; --step applies to run directories")
        ex = load_exported(path, device)
        exported_task = str(ex.meta.get("task", ""))
        if task is not None and task != exported_task:
            raise ElclError(f"--task {task}: {path} links against the ontology of {exported_task} only")
        return LinkerSource(
            ex.model, ex.candidates, ex.ontology, exported_task, str(path), export_meta=ex.meta, prior=ex.prior
        )
    if not path.exists():
        raise ElclError(f"{path}: no such run directory or export folder")
    from elcl.training.tasks import task_ontology, task_prior

    rs = run_step(path, step)
    task = default_task(rs, task)
    ckpt = RunDir(path).existing_checkpoint(rs.step, rs.trained_task)  # before the encoder loads
    corpus, ontology = task_ontology(task, rs.cfg)  # changed or missing data fails before it too
    model = Linker(rs.cfg.model).to(device)
    load_checkpoint(model, ckpt)
    model.eval()
    return LinkerSource(
        model,
        rs.cfg.candidates,
        ontology,
        task,
        f"{path} step {rs.step} ({rs.trained_task})",
        run=rs,
        prior=task_prior(task, corpus, ontology, rs.cfg),
    )
