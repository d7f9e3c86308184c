"""What an export carries so that it can be updated later: curvature, anchors, lineage.

Beside the weights (which still load with transformers alone), an export folder holds::

    lineage.json              Lineage (elcl-lineage/1, elcl.schemas): every version so far
    curvature/<i>_<task>/     elcl-curvature/1 directories (factors, diagonals, anchors)
    rng_state.safetensors     torch's generator state at the end of training

How the curvature of a run is consolidated depends on its method's ``consolidation``
(a class attribute, never its name):

* ``online`` (online_kfac, online_ewc): ONE running state — online K-FAC's running
  factors and total weight W as its run kept them, online EWC's diagonals folded
  ``F̃ = γ F̃ + F_t`` — at the latest anchor (the exported weights). Its size is one
  task's, whatever the number of versions.
* ``per_task`` (kfac, ewc): each task's own block at its own anchor, because their
  penalty sums the tasks' terms exactly; the curvature grows by one task's block per
  version. (Folding them would make them online K-FAC / online EWC with γ = 1; that is
  what ``--method online_kfac`` does with a per-task export.)
* none (naive, lr_control...): per-task curvature where the run collected it
  (``curvature.approx``), else none.

With a single task the two forms coincide, so a v1 serves every method.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from elcl import __version__
from elcl.continual.methods import get as get_method
from elcl.continual.methods.online_kfac import RUNNING_FILE
from elcl.curvature.storage import DTYPES, FACTORS_FILE, META_FILE, load_curvature, save_curvature
from elcl.errors import CheckpointError, ElclError
from elcl.runtime import RNG_FILE
from elcl.schemas import (
    CurvatureEntry,
    EvalScore,
    ExportCurvature,
    Lineage,
    LineageVersion,
    TaskData,
    dump_json,
    parse_json_file,
)

if TYPE_CHECKING:
    from elcl.config import ExperimentConfig
    from elcl.continual.rundir import RunDir
    from elcl.curvature.collect import CurvatureStats

LINEAGE_FILE = "lineage.json"
CURVATURE_DIR = "curvature"


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of each tensor, names sorted: the identity
    of a set of weights, whatever file they were read from."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_weights_sha256(model: torch.nn.Module, names: Iterable[str] | None = None) -> str:
    params = dict(model.named_parameters())
    if names is not None:
        missing = [n for n in names if n not in params]
        if missing:
            raise CheckpointError(f"the curvature's anchor '{missing[0]}' is not a parameter of the model")
        params = {n: params[n] for n in names}
    return tensors_sha256(params)


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def task_data(task: str, cfg: ExperimentConfig, train_examples: int | None) -> TaskData:
    """The files ``task`` was read from (sha256 each, by role: ``train``, ``dev``, ``test``,
    ``ontology...``) and the documents it holds out."""
    from elcl.config import resolve_data_dir
    from elcl.data.custom import load_task_corpus
    from elcl.data.overlap import held_out_ids
    from elcl.data.task_config import task_data_hashes
    from elcl.training.tasks import prepare_eval_task

    ref = cfg.task_ref(task)
    data_dir = resolve_data_dir(cfg.data.data_dir)
    corpus = load_task_corpus(ref, data_dir)
    return TaskData(
        task=task,
        files=task_data_hashes(ref, data_dir),
        ontology_hash=prepare_eval_task(task, cfg).ontology.content_hash(),
        train_examples=train_examples,
        held_out_documents=sorted(held_out_ids(corpus)),
    )


# ---------------------------------------------------------------------------- state


@dataclass
class StateEntry:
    """One curvature directory of a consolidated state (where it lies now)."""

    source: Path
    tasks: list[str]
    weight: float
    n_examples: dict[str, int]


@dataclass
class CurvatureState:
    """The consolidated curvature of a linker, as files somewhere (a run, an export)."""

    mode: str
    approximation: str
    gamma: float | None
    entries: list[StateEntry]
    model_config_hash: str

    def load(self, device: torch.device | str = "cpu") -> list[CurvatureStats]:
        return [load_curvature(e.source, self.model_config_hash, device=device) for e in self.entries]


def _approx(directory: Path) -> str:
    from elcl.curvature.storage import read_meta

    return str(read_meta(directory)["approximation"])


def fold_diag(stats: Sequence[CurvatureStats], gamma: float, prev: CurvatureStats | None = None) -> CurvatureStats:
    """Online EWC's running diagonal ``F̃ = γ F̃ + F_t`` over ``stats`` (oldest first, after
    ``prev``) at the latest anchor, accumulated in float64 as its penalty does."""
    from elcl.curvature.collect import CurvatureStats

    f64 = torch.float64
    running: dict[str, torch.Tensor] = {k: v.to(f64) for k, v in prev.diag.items()} if prev is not None else {}
    anchors = dict(prev.anchors) if prev is not None else {}
    meta = dict(prev.meta) if prev is not None else {}
    for st in stats:
        if not st.diag:
            raise ElclError("online_ewc: a task's curvature has no diagonal (collected with approx kfac?)")
        running = {k: gamma * v for k, v in running.items()}
        for n, F in st.diag.items():
            running[n] = running[n] + F.to(f64) if n in running else F.to(f64).clone()
        anchors.update(st.anchors)
        meta = dict(st.meta)
    return CurvatureStats(kfac={}, diag=running, anchors=anchors, meta=meta | {"approx": "diag"})


def run_state(
    rd: RunDir, method_name: str, settings: object, order: Sequence[str], step: int, config_hash: str, work: Path
) -> CurvatureState | None:
    """The consolidated curvature after ``step`` of a run (files under ``rd`` or ``work``)."""
    cls = get_method(method_name)
    tasks = list(order[: step + 1])
    gamma = getattr(settings, "gamma", None)
    if cls.consolidation == "online" and cls.curvature == "kfac":
        d = rd.path / "curvature" / "_running" / f"{step}_{order[step]}"
        info_path = d / RUNNING_FILE
        if not info_path.is_file():
            return None
        info = json.loads(info_path.read_text(encoding="utf-8"))
        entry = StateEntry(d, tasks, float(info["weight"]), {k: int(v) for k, v in info["n_examples"].items()})
        return CurvatureState("online", _approx(d), gamma, [entry], config_hash)
    per_task = [rd.curvature(t) for t in tasks]
    if not all((d / META_FILE).is_file() for d in per_task):
        return None
    if cls.consolidation == "online":
        stats = [load_curvature(d, config_hash) for d in per_task]
        folded = fold_diag(stats, float(gamma or 1.0))
        target = work / "running_diag"
        save_curvature(folded, target, config_hash, dtype=DTYPES[str(stats[-1].meta.get("dtype", "float32"))])
        weight = sum(float(gamma or 1.0) ** (len(stats) - 1 - i) for i in range(len(stats)))
        n_ex = {t: s.n_examples for t, s in zip(tasks, stats)}
        return CurvatureState("online", "diag", gamma, [StateEntry(target, tasks, weight, n_ex)], config_hash)
    entries = [
        StateEntry(d, [t], 1.0, {t: int(json.loads((d / META_FILE).read_text())["n_examples"])})
        for t, d in zip(tasks, per_task)
    ]
    return CurvatureState("per_task", _approx(per_task[-1]), None, entries, config_hash)


def write_state(state: CurvatureState, export_dir: Path, anchors_sha256: str) -> ExportCurvature:
    """Copy the state's directories under ``export_dir/curvature/`` (bytes unchanged)."""
    root = export_dir / CURVATURE_DIR
    root.mkdir(parents=True, exist_ok=True)
    entries, size = [], 0
    for i, e in enumerate(state.entries):
        name = f"{i}_{e.tasks[-1]}" if state.mode == "per_task" else "online"
        target = root / name
        target.mkdir()
        for f in (FACTORS_FILE, META_FILE):
            shutil.copyfile(e.source / f, target / f)
        size += (target / FACTORS_FILE).stat().st_size
        entries.append(CurvatureEntry(dir=name, tasks=e.tasks, weight=e.weight, n_examples=e.n_examples))
    return ExportCurvature(
        mode=state.mode,  # type: ignore[arg-type]
        approximation=state.approximation,
        gamma=state.gamma,
        entries=entries,
        model_config_hash=state.model_config_hash,
        anchor_sha256=anchors_sha256,
        bytes=size,
    )


def export_state(export_dir: Path, record: ExportCurvature | None) -> CurvatureState | None:
    if record is None:
        return None
    entries = [
        StateEntry(export_dir / CURVATURE_DIR / e.dir, list(e.tasks), e.weight, dict(e.n_examples))
        for e in record.entries
    ]
    return CurvatureState(record.mode, record.approximation, record.gamma, entries, record.model_config_hash)


# ---------------------------------------------------------------------------- lineage


def scores(rows: Iterable[Mapping]) -> list[EvalScore]:
    return [
        EvalScore(
            task=str(r["eval_task"]), split=str(r["split"]), acc1=float(r["acc1"]), acc5=float(r["acc5"]), n=int(r["n"])
        )
        for r in rows
    ]


def write_lineage(export_dir: Path, lineage: Lineage) -> None:
    (export_dir / LINEAGE_FILE).write_text(dump_json(lineage), encoding="utf-8")


def read_lineage(export_dir: Path) -> Lineage:
    path = Path(export_dir) / LINEAGE_FILE
    if not path.is_file():
        raise ElclError(
            f"{path}: not found; this export carries no lineage (written by an older elcl?): re-export its run with `elcl export`"
        )
    return parse_json_file(Lineage, path)


def lineage_tasks(lineage: Lineage) -> list[str]:
    return [t for v in lineage.versions for t in v.tasks]


def new_version(
    parent: Lineage | None,
    *,
    made_by: str,
    tasks: list[str],
    data: list[TaskData],
    method: str,
    lam: float | str | None,
    gamma: float | None,
    seed: int,
    step: int,
    settings: dict,
    metrics: list[EvalScore],
    weights_sha256: str,
    metrics_before: list[EvalScore] | None = None,
) -> list[LineageVersion]:
    before = list(parent.versions) if parent is not None else []
    return [
        *before,
        LineageVersion(
            version=len(before) + 1,
            parent=len(before) or None,
            made_by=made_by,  # type: ignore[arg-type]
            created=utc_now(),
            elcl_version=__version__,
            tasks=tasks,
            data=data,
            method=method,
            lam=lam,
            gamma=gamma,
            seed=seed,
            step=step,
            settings=settings,
            metrics=metrics,
            metrics_before=metrics_before or [],
            weights_sha256=weights_sha256,
        ),
    ]


def write_extras(
    export_dir: Path, lineage: Lineage, state: CurvatureState | None, anchors_sha256: str, rng: Path | None
) -> Lineage:
    """Write curvature, RNG state and lineage into an export folder being built."""
    record = write_state(state, export_dir, anchors_sha256) if state is not None else None
    rng_name = None
    if rng is not None and rng.is_file():
        shutil.copyfile(rng, export_dir / RNG_FILE)
        rng_name = RNG_FILE
    lineage = lineage.model_copy(update={"curvature": record, "rng_state": rng_name})
    write_lineage(export_dir, lineage)
    return lineage


def run_extras(
    run_path: Path, state: dict, cfg: ExperimentConfig, step: int, metrics: list[dict], model: torch.nn.Module
) -> Callable[[Path], None]:
    """What ``elcl export`` of a run's ``step`` adds to the folder: the run's consolidated
    curvature, its RNG state and a one-version lineage (made_by ``train``)."""
    import tempfile

    from elcl.continual.rundir import RunDir

    rd = RunDir(run_path)
    method = str(state.get("method", cfg.method.name))
    order = list(state.get("order", cfg.tasks))
    tasks = order if get_method(method).all_tasks_at_once else order[: step + 1]
    label = get_method(method).step_labels(order)[step]
    config_hash = str(getattr(model, "config_hash", ""))

    def extra(out: Path) -> None:
        with tempfile.TemporaryDirectory(prefix=".elcl-export-", dir=out.parent) as work:
            cstate = (
                None
                if get_method(method).reference
                else run_state(rd, method, cfg.method.settings, order, step, config_hash, Path(work))
            )
            anchors = anchor_sha256(cstate)
            versions = new_version(
                None,
                made_by="train",
                tasks=list(tasks),
                data=[task_data(t, cfg, None) for t in tasks],
                method=method,
                lam=state.get("lambda"),
                gamma=getattr(cfg.method.settings, "gamma", None),
                seed=int(state.get("seed", cfg.seeds[0])),
                step=step,
                settings=cfg.to_dict(),
                metrics=scores(metrics),
                weights_sha256=model_weights_sha256(model),
            )
            write_extras(
                out, Lineage(versions=versions, curvature=None), cstate, anchors, rd.step_dir(step, label) / RNG_FILE
            )

    return extra


def anchor_sha256(state: CurvatureState | None) -> str:
    """sha256 of the latest anchor of ``state`` (the weights its penalty pulls towards)."""
    if state is None:
        return ""
    return tensors_sha256(load_curvature(state.entries[-1].source, state.model_config_hash).anchors)
