"""``elcl update``: train an exported linker on one new task, its stored curvature as the
penalty, and write the next version — without the data of the versions before it.

The update is one step of a sequence run, made by the same pieces: the method object
(its ``penalty`` and ``after_task``), the runner's training and curvature functions, the
no-old-data guard. What a run keeps in its directory between steps comes from the export
instead: the stored curvature is laid out in a working run directory the way the method
reads it (online K-FAC's ``_running/<step>_<task>/``, per-task ``curvature/<task>/``),
the RNG state is restored, and the step trains with the seed ``seed + step`` it would
have had. So v1 → update B → update C gives the weights ``elcl train`` gives for the
sequence A → B → C (``tests/test_update.py``).

Settings come from the model's lineage (the experiment config its last version trained
with); ``--set`` overrides them, except the model's architecture. Only numeric λ are
supported (``lambda: auto`` weighs earlier tasks by their example counts at each step;
the export does not keep those per step).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from elcl.config import ExperimentConfig, ModelConfig, apply_overrides, config_from_dict
from elcl.continual.guard import TrainDataGuard
from elcl.continual.methods import Method, StepContext, is_auto
from elcl.continual.methods import get as get_method
from elcl.continual.methods.online_kfac import RUNNING_FILE, fold, running_dir
from elcl.continual.rundir import RunDir
from elcl.continual.runner import _train, compute_curvature, curvature_approx
from elcl.continual.versions import (
    CurvatureState,
    StateEntry,
    anchor_sha256,
    export_state,
    fold_diag,
    lineage_tasks,
    model_weights_sha256,
    new_version,
    read_lineage,
    task_data,
    tensors_sha256,
    write_extras,
)
from elcl.curvature.storage import DTYPES, save_curvature
from elcl.data.overlap import TrainRemoval
from elcl.data.task_config import CustomTaskConfig, TaskRef, is_task_file, read_task_spec, task_name
from elcl.errors import CheckpointError, ElclError
from elcl.models.linker import model_config_hash
from elcl.runtime import RNG_FILE, Runtime, load_rng_state, save_rng_state, seed_everything
from elcl.schemas import EvalScore, Lineage
from elcl.training.batching import TokenCache
from elcl.training.predict import evaluate_examples
from elcl.training.tasks import prepare_eval_task, task_ontology, task_prior


@dataclass(frozen=True)
class EvalSet:
    """A held-out evaluation set named on the command line: a task's split."""

    task: str
    split: str

    ref: TaskRef | None = None
    """The custom task of a YAML file (a fixed audit set: its test file), None for a name."""

    @classmethod
    def parse(cls, text: str) -> EvalSet:
        """``TASK[:SPLIT]``: a task of the lineage or a built-in one, or a YAML file of one
        task entry (``audit.yaml[:test]``); SPLIT is dev or test (default test)."""
        spec, split = text, "test"
        head, sep, tail = text.rpartition(":")
        if sep and tail in ("dev", "test"):
            spec, split = head, tail
        elif sep and not is_task_file(text):
            raise ElclError(f"--eval {text!r}: expected TASK[:SPLIT] with SPLIT dev or test, e.g. ncbi_disease:test")
        if not spec:
            raise ElclError(f"--eval {text!r}: expected TASK[:SPLIT], e.g. ncbi_disease:test")
        if is_task_file(spec):
            ref = read_task_spec(spec)
            return cls(task_name(ref), split, ref)
        return cls(spec, split)

    @property
    def label(self) -> str:
        return f"{self.task}:{self.split}"


@dataclass
class UpdateResult:
    out: Path
    lineage: Lineage
    before: dict[str, EvalScore] = field(default_factory=dict)
    after: dict[str, EvalScore] = field(default_factory=dict)
    curvature_bytes: int | None = None
    train_examples: int = 0


def updatable(cls: type[Method]) -> bool:
    """Methods one step of which needs nothing of earlier tasks but the export: not the
    references, not joint, not replay (its memory holds earlier examples)."""
    return cls.sequential() and not cls.all_tasks_at_once and cls.train_examples is Method.train_examples


def _task_entries(lineage: Lineage) -> dict[str, Any]:
    """The custom task entries of every version (name -> entry as its config held it), so
    an earlier custom task can still be evaluated on its held-out split."""
    out: dict[str, Any] = {}
    for v in lineage.versions:
        for t in v.settings.get("tasks") or []:
            if isinstance(t, dict) and "name" in t:
                out[str(t["name"])] = t
    return out


def update_config(
    lineage: Lineage,
    task: TaskRef,
    method: str,
    lam: float | None,
    overrides: Sequence[str],
    where: str,
    evals: Sequence[TaskRef] = (),
) -> ExperimentConfig:
    """The experiment config of the update: the lineage's settings with the new task (a
    built-in name or a custom entry, its files pinned by sha256), the method and λ asked.
    Earlier custom tasks and custom ``--eval`` sets are listed too, so they can be found by
    name; only the new task is trained."""
    raw: dict[str, Any] = json.loads(json.dumps(lineage.current.settings))
    name = task_name(task)
    entries = _task_entries(lineage)
    for ref in evals:
        if isinstance(ref, CustomTaskConfig):
            entries[ref.name] = ref.to_dict()
    entries.pop(name, None)
    new = task if isinstance(task, str) else task.pinned().to_dict()
    raw["tasks"] = [*entries.values(), new]
    raw.pop("orders", None)
    raw["seeds"] = [lineage.current.seed]
    section = dict(raw.get("method") or {})
    section["name"] = method
    if lam is not None:
        own = dict(section.get(method) or {})
        own.pop("lambda_grid", None)
        own.pop("lambda_scale", None)
        own["lambda"] = lam
        section[method] = own
    raw["method"] = section
    raw = apply_overrides(raw, list(overrides))
    cfg = config_from_dict(raw, f"{where} (settings of the lineage, with --set)")
    settings = cfg.method.settings
    lams = settings.lambdas()
    if len(lams) != 1:
        raise ElclError(f"method.{method}.lambda_grid lists {len(lams)} λ; an update trains one: give --lambda L")
    if is_auto(lams[0]):
        raise ElclError(f"method.{method}.lambda: auto is not supported by elcl update; give --lambda NUMBER")
    setattr(cfg.method, method, settings.for_run(lams[0]))
    return cfg


def _check_model(cfg: ExperimentConfig, meta: dict, where: Path) -> None:
    stored = ModelConfig.model_validate(meta["model"]).model_dump(mode="json")
    if cfg.model.model_dump(mode="json") != stored:
        changed = sorted(k for k in stored if stored[k] != cfg.model.model_dump(mode="json").get(k))
        raise ElclError(
            f"--set model.{changed[0] if changed else '?'}: an update keeps the architecture of {where} (model settings cannot change)"
        )


def _check_record(path: Path, cls: type[Method], lineage: Lineage) -> None:
    """What the lineage alone says against the update (checked before any weights load)."""
    rec = lineage.curvature
    if not cls.penalised():
        return
    if rec is None:
        raise ElclError(
            f"{path}: carries no curvature, so a {cls.name} penalty has nothing to hold it to; "
            "update it with --method naive, or export a run that collected curvature"
        )
    need = cls.curvature
    if need == "kfac" and rec.approximation not in ("kfac", "both"):
        raise ElclError(f"{path}: carries {rec.approximation} curvature; {cls.name} needs K-FAC blocks (kfac or both)")
    if need == "diag" and rec.approximation not in ("diag", "both"):
        raise ElclError(
            f"{path}: carries {rec.approximation} curvature; {cls.name} needs a diagonal for every parameter (diag or both)"
        )
    if cls.consolidation == "per_task" and rec.mode == "online" and len(rec.entries[-1].tasks) > 1:
        raise ElclError(
            f"{path}: carries one running curvature of {len(rec.entries[-1].tasks)} tasks; {cls.name} sums each "
            "task's own block at its own anchor: update it with the online method instead"
        )


def _check_curvature(
    path: Path, cls: type[Method], lineage: Lineage, model: torch.nn.Module, config_hash: str
) -> CurvatureState | None:
    """The export's curvature, verified against its weights (model config hash, file
    checksums, anchor hash); None for methods without a penalty and no curvature."""
    rec = lineage.curvature
    if rec is None or not cls.penalised():
        return export_state(path, rec) if rec is not None else None
    if rec.model_config_hash != config_hash:
        raise CheckpointError(
            f"{path}: curvature was computed for model config {rec.model_config_hash!r}, not this model's {config_hash!r}"
        )
    state = export_state(path, rec)
    assert state is not None
    from elcl.curvature.storage import load_curvature

    latest = load_curvature(state.entries[-1].source, config_hash)  # checks the file's sha256
    anchors = tensors_sha256(latest.anchors)
    weights = model_weights_sha256(model, list(latest.anchors))
    if anchors != rec.anchor_sha256 or weights != anchors:
        raise CheckpointError(
            f"{path}: the curvature's anchor (sha256 {rec.anchor_sha256[:12]}…) does not match the weights "
            f"(sha256 {weights[:12]}…): the weights or the curvature were changed after export"
        )
    return state


def _evaluate(model, cache: TokenCache, cfg: ExperimentConfig, sets: Sequence[EvalSet]) -> dict[str, EvalScore]:
    out = {}
    for s in sets:
        data = prepare_eval_task(s.task, cfg)
        res = evaluate_examples(model, data.examples[s.split], cache)
        out[s.label] = EvalScore(task=s.task, split=s.split, acc1=res.acc1, acc5=res.acc5, n=res.n)
    return out


def _removal(lineage: Lineage, task: str) -> TrainRemoval:
    """The documents earlier versions' tasks hold out (recorded in their lineage): a
    sequence run keeps them out of a later task's training data, and so does an update."""
    held: dict[str, set[str]] = {}
    for v in lineage.versions:
        for d in v.data:
            held.setdefault(d.task, set()).update(d.held_out_documents)
    ids = set().union(*held.values()) if held else set()
    return TrainRemoval(task, frozenset(ids))


def _context_order(
    cls: type[Method], state: CurvatureState | None, done: list[str], task: str
) -> tuple[tuple[str, ...], int]:
    """(labels, step) of the update's step context: its ``done`` part names the stored
    curvature entries as the method will look them up."""
    labels = [f"{i}_{t}" for i, t in enumerate(done)]
    if (
        state is not None
        and cls.penalised()
        and cls.consolidation == "online"
        and cls.curvature == "diag"
        and state.mode == "online"
        and len(state.entries[0].tasks) > 1
    ):
        return ("0_running", task), 1  # online EWC's running diagonal: one earlier "task" whose Fisher is F̃
    return (*labels, task), len(done)


def _layout(
    cls: type[Method], method: Method, state: CurvatureState | None, ctx: StepContext, dtype: torch.dtype
) -> None:
    """Lay the stored curvature out in ``ctx.rd`` the way ``method`` reads it."""
    if state is None or not cls.penalised():
        return
    if cls.consolidation == "online" and cls.curvature == "kfac":
        gamma = float(getattr(method.settings, "gamma", 1.0))
        target = running_dir(ctx, ctx.step - 1)
        if len(state.entries) == 1:
            _copy_entry(state.entries[0].source, target)
            weight = state.entries[0].weight
        else:  # a per-task export, folded as online K-FAC would have
            stats = state.load()
            running, weight = fold(None, 0.0, stats[0], 1.0, gamma)
            for st in stats[1:]:
                running, weight = fold(running, weight, st, 1.0, gamma)
            save_curvature(running, target, ctx.config_hash, dtype=dtype)
        n_examples = {k: v for e in state.entries for k, v in e.n_examples.items()}
        info = {"weight": weight, "gamma": gamma, "auto": False, "n_examples": n_examples}
        (target / RUNNING_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return
    for label, e in zip(ctx.done, state.entries):
        _copy_entry(e.source, ctx.rd.curvature(label))


def _copy_entry(src: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for f in ("factors.safetensors", "meta.json"):
        shutil.copyfile(src / f, target / f)


def _new_state(
    cls: type[Method],
    method: Method,
    state: CurvatureState | None,
    ctx: StepContext,
    tasks: list[str],
    n_new: int,
    work: Path,
    config_hash: str,
    dtype: torch.dtype,
) -> CurvatureState | None:
    """The consolidated curvature after the update (files under the working directory)."""
    rd = ctx.rd
    new_dir = rd.curvature(ctx.task)
    gamma = getattr(method.settings, "gamma", None)
    if cls.consolidation == "online" and cls.curvature == "kfac":
        d = running_dir(ctx, ctx.step)
        info = json.loads((d / RUNNING_FILE).read_text(encoding="utf-8"))
        n_examples = {
            **{k: v for e in (state.entries if state else []) for k, v in e.n_examples.items()},
            tasks[-1]: n_new,
        }
        from elcl.curvature.storage import read_meta

        return CurvatureState(
            "online",
            str(read_meta(d)["approximation"]),
            gamma,
            [StateEntry(d, tasks, float(info["weight"]), n_examples)],
            config_hash,
        )
    if not (new_dir / "meta.json").is_file():
        return None
    from elcl.curvature.storage import load_curvature, read_meta

    approx = str(read_meta(new_dir)["approximation"])
    new_entry = StateEntry(new_dir, [tasks[-1]], 1.0, {tasks[-1]: n_new})
    if cls.consolidation == "online":
        g = float(gamma or 1.0)
        if state is not None and state.mode == "online" and len(state.entries[0].tasks) > 1:
            prev, prev_w, before = state.load()[0], state.entries[0].weight, []
        else:
            prev, prev_w, before = None, 0.0, state.load() if state is not None else []
        stats = [*before, load_curvature(new_dir, config_hash)]
        folded = fold_diag(stats, g, prev)
        weight = prev_w
        for _ in stats:
            weight = g * weight + 1.0
        target = work / "online_state"
        save_curvature(folded, target, config_hash, dtype=dtype)
        n_examples = {
            **{k: v for e in (state.entries if state else []) for k, v in e.n_examples.items()},
            tasks[-1]: n_new,
        }
        return CurvatureState("online", "diag", gamma, [StateEntry(target, tasks, weight, n_examples)], config_hash)
    if cls.consolidation == "per_task" or state is None or state.mode == "per_task":
        before_entries = list(state.entries) if state is not None and state.mode == "per_task" else []
        return CurvatureState("per_task", approx, None, [*before_entries, new_entry], config_hash)
    return CurvatureState("per_task", approx, None, [new_entry], config_hash)


def update_linker(
    model_dir: Path,
    spec: TaskRef,
    method_name: str,
    out: Path,
    lam: float | None = None,
    overrides: Sequence[str] = (),
    evals: Sequence[EvalSet] = (),
    rt: Runtime | None = None,
    log=print,
) -> UpdateResult:
    """Train the export at ``model_dir`` on the task ``spec`` (a built-in name, a YAML file
    of one task entry, or the entry) and write the next version to ``out``."""
    from elcl.continual.model_card import render_card
    from elcl.models.export import export_linker, load_exported, read_export_meta

    ref = read_task_spec(spec) if isinstance(spec, str) else spec
    task = task_name(ref)

    model_dir, out = Path(model_dir).expanduser(), Path(out).expanduser()
    if out.exists():
        raise ElclError(f"{out}: already exists; write the new version to a new folder (nothing was written)")
    meta = read_export_meta(model_dir)
    lineage = read_lineage(model_dir)
    cls = get_method(method_name)
    if not updatable(cls):
        raise ElclError(
            f"--method {method_name}: an update trains one new task on the model; {method_name} needs "
            "more than the export (earlier data or models); use naive, lr_control, ewc, online_ewc, kfac or online_kfac"
        )
    cfg = update_config(
        lineage, ref, method_name, lam, overrides, str(model_dir / "lineage.json"), [e.ref for e in evals if e.ref]
    )
    _check_model(cfg, meta, model_dir)
    _check_record(model_dir, cls, lineage)
    rt = rt or Runtime(torch.device(cfg.train.device if cfg.train.device != "auto" else "cpu"), 0, 1)
    ex = load_exported(model_dir, rt.device)
    model = ex.model
    # The settings it trains with, as the run's model had them (not the export's paths).
    model.cfg = cfg.model.model_copy(deep=True)
    if cfg.train.freeze_embeddings:
        model.freeze_embeddings()
    config_hash = model_config_hash(cfg.model, len(model.tokenizer))
    if lineage.current.weights_sha256 != model_weights_sha256(model):
        raise CheckpointError(
            f"{model_dir}: the weights do not match lineage.json (sha256 {lineage.current.weights_sha256[:12]}…): "
            "they were changed after export"
        )
    state = _check_curvature(model_dir, cls, lineage, model, config_hash)
    method = cls(cfg.method.settings, lineage.current.seed)
    done = lineage_tasks(lineage)
    k = len(done)
    seed = lineage.current.seed
    dtype = DTYPES[cfg.curvature.dtype]
    cache = TokenCache(model.tokenizer, cfg.model.max_length)
    result = UpdateResult(out, lineage)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.update-", dir=out.parent) as work_s:
        work = Path(work_s)
        rd = RunDir(work / "run")
        rd.path.mkdir()
        order, step = _context_order(cls, state, done, task)
        removal = _removal(lineage, task)
        guard = TrainDataGuard.for_config(cfg, method_name, {task: removal})
        for t in done:
            guard.begin(t)  # finished: the guard refuses their training data
        guard.begin(task)
        model.eval()
        result.before = _evaluate(model, cache, cfg, evals)
        current = list(guard.train_examples(task))
        result.train_examples = len(current)
        examples = method.train_examples(method.steps([task])[0], current)
        lr, groups = method.optimiser(model, cfg.train.lr_at(k), k)
        ctx = StepContext(
            rd=rd,
            order=order,
            step=step,
            task=order[-1],
            model=model,
            config_hash=config_hash,
            device=rt.device,
            curvature_rank=cfg.curvature.rank,
            curvature_dtype=dtype,
            amp=cfg.train.amp,
            n_examples=sum(1 for e in examples if e.has_gold),
            is_main=True,
        )
        _layout(cls, method, state, ctx, dtype)
        penalty = method.penalty(ctx)
        rng = model_dir / (lineage.rng_state or RNG_FILE)
        if lineage.rng_state and rng.is_file():
            load_rng_state(rng)
        else:
            seed_everything(seed + k)
        log(
            f"update: {model_dir} (v{lineage.current.version}, {', '.join(done)}) + {task} by {method_name}, "
            f"{len(examples)} training examples, {removal.documents} held-out documents of earlier tasks kept out"
        )
        _train(model, examples, cache, cfg, lr, cfg.train.epochs_at(k), groups, seed + k, task, rt, rd, penalty=penalty)
        model.eval()
        result.after = _evaluate(model, cache, cfg, evals)
        own = _evaluate(model, cache, cfg, [EvalSet(task, s) for s in ("dev", "test") if s in cfg.train.eval_splits])
        approx = curvature_approx(cfg) if method.collects_curvature() else "none"
        stats = (
            compute_curvature(model, guard.train_examples(task), cache, cfg, approx, seed + k, rt)
            if approx != "none"
            else None
        )
        method.after_task(ctx, stats, guard)
        save_rng_state(work / RNG_FILE)
        new_state = _new_state(
            cls, method, state, ctx, [*done, task], stats.n_examples if stats else 0, work, config_hash, dtype
        )
        model = model.to("cpu")
        versions = new_version(
            lineage,
            made_by="update",
            tasks=[task],
            data=[task_data(task, cfg, len(current))],
            method=method_name,
            lam=getattr(cfg.method.settings, "lambda_", None),
            gamma=getattr(cfg.method.settings, "gamma", None),
            seed=seed,
            step=k,
            settings=cfg.to_dict(),
            metrics=[*result.after.values(), *own.values()],
            metrics_before=list(result.before.values()),
            weights_sha256=model_weights_sha256(model),
        )
        new_lineage = Lineage(versions=versions, curvature=None)
        anchors = anchor_sha256(new_state)
        holder: dict[str, Lineage] = {}

        def extra(folder: Path) -> None:
            holder["lineage"] = write_extras(folder, new_lineage, new_state, anchors, work / RNG_FILE)

        corpus, ontology = task_ontology(task, cfg)
        rows = [
            {
                "eval_task": s.task,
                "split": s.split,
                "acc1": s.acc1,
                "acc5": s.acc5,
                "n": s.n,
                "step": k,
                "trained_task": task,
            }
            for s in [*result.after.values(), *own.values()]
        ]
        run_state = {"order": [*done, task], "method": method_name, "lambda": versions[-1].lam, "seed": seed}
        card = render_card(cfg, run_state, k, task, task, rows, ontology.source, len(ontology))
        info = {
            "task": task,
            "run": {
                "experiment": cfg.name,
                "method": method_name,
                "lambda": versions[-1].lam,
                "seed": seed,
                "order": [*done, task],
                "step": k,
                "trained_task": task,
                "version": len(versions),
            },
            "metrics": rows,
        }
        if isinstance(ref, CustomTaskConfig):
            # what reads its ids (`elcl link` inputs with gold ids) travels along, as `elcl export` does
            info["task_definition"] = cfg.task_ref(task).to_dict()  # type: ignore[union-attr]
        export_linker(
            model, cfg.candidates, ontology, out, info, card, task_prior(task, corpus, ontology, cfg), extra=extra
        )
    result.lineage = holder["lineage"]
    result.curvature_bytes = result.lineage.curvature.bytes if result.lineage.curvature else None
    return result


__all__ = ["EvalSet", "UpdateResult", "tensors_sha256", "update_linker", "updatable"]
