"""The run directory: the only place a run's state lives (so runs can resume).

::

    <exp>/<run>/config.yaml            resolved config of this run (one seed/λ/order)
    <exp>/<run>/run.json               method, λ, seed, order, status, steps_done, lambda_t
    <exp>/<run>/metrics.jsonl          one row per (step, eval task, split)
    <exp>/<run>/train_log.jsonl        losses during training
    <exp>/<run>/steps/<i>_<task>/model.safetensors
    <exp>/<run>/predictions/<i>_<task>/<eval task>.<split>.jsonl
    <exp>/<run>/curvature/<task>/factors.safetensors + meta.json
    <exp>/<run>/log.txt
    <exp>/<run>/pruned.json            what `elcl prune` removed (finished runs only)

Every file is written atomically (temp file + rename), so a crash never leaves a
half-written file and ``elcl train --resume`` can trust what it finds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from elcl.errors import ElclError
from elcl.fileio import append_jsonl as append_jsonl  # re-exported: the run files' helpers
from elcl.fileio import atomic_write_text
from elcl.fileio import read_jsonl as read_jsonl
from elcl.fileio import write_jsonl as write_jsonl
from elcl.schemas import PruneRecord, RunRecord, parse_json_file


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class RunSpec:
    experiment: str
    method: str
    lam: float | str | None
    """A number, an ``auto`` token (``auto``, ``auto10``: λ auto with lambda_scale 10) or None."""
    seed: int
    order: tuple[str, ...]
    order_index: int

    @property
    def dirname(self) -> str:
        lam = "" if self.lam is None else f"-lam{self.lam}" if isinstance(self.lam, str) else f"-lam{self.lam:g}"
        return f"{self.method}{lam}-o{self.order_index}-s{self.seed}"


class RunDir:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.state_extra: dict[str, Any] = {}
        """Facts about the run's data decided before training (e.g. ``train_documents_removed``)."""

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    def step_dir(self, step: int, task: str) -> Path:
        return self.path / "steps" / f"{step}_{task}"

    def checkpoint(self, step: int, task: str) -> Path:
        return self.step_dir(step, task) / "model.safetensors"

    @property
    def pruned_json(self) -> Path:
        return self.path / "pruned.json"

    def existing_checkpoint(self, step: int, task: str) -> Path:
        """The checkpoint of ``step``; one line naming ``elcl prune`` when it removed it."""
        ckpt = self.checkpoint(step, task)
        if not ckpt.is_file() and self.pruned_json.is_file():
            if step in parse_json_file(PruneRecord, self.pruned_json).removed_steps:
                raise ElclError(
                    f"{ckpt}: removed by `elcl prune` ({self.pruned_json}); its metrics and predictions remain, "
                    "the weights of this step do not: use a step that was kept or train the run again"
                )
        return ckpt

    def predictions(self, step: int, task: str, eval_task: str, split: str) -> Path:
        return self.path / "predictions" / f"{step}_{task}" / f"{eval_task}.{split}.jsonl"

    def curvature(self, task: str) -> Path:
        return self.path / "curvature" / task

    def read_state(self) -> dict:
        if not self.run_json.is_file():
            raise ElclError(f"{self.run_json}: not found; is {self.path} a run directory made by `elcl train`?")
        try:
            return json.loads(self.run_json.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ElclError(f"{self.run_json}: not valid JSON") from None

    def write_state(self, spec: RunSpec, status: str, steps_done: int, extra: dict | None = None) -> None:
        """run.json: the spec, progress, ``state_extra`` (set once by the runner) and ``extra``."""
        record = RunRecord.model_validate(
            {
                "experiment": spec.experiment,
                "method": spec.method,
                "lambda": spec.lam,
                "seed": spec.seed,
                "order": list(spec.order),
                "order_index": spec.order_index,
                "status": status,
                "steps_done": steps_done,
                **self.state_extra,
                **(extra or {}),
            }
        )
        write_json(self.run_json, record.dump())

    def write_config(self, cfg_dict: dict) -> None:
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(cfg_dict, sort_keys=False))

    def log(self, message: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(message.rstrip() + "\n")
