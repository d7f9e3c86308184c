"""Reuse the first task of a sibling run instead of training it again.

Every sequential method (and ``single``) starts the same way: a fresh model, seeded
alike, trained on the first task with no penalty. Within one experiment directory the
runs of a λ grid and of the other methods therefore hold identical first steps, and a
grid of m runs would train that step m times. A run may adopt the step from a sibling
whose configuration matches in everything that shapes that step (data, candidates,
model, training settings, seed and order); the method and curvature settings do not
enter. The adopted checkpoint, metrics rows and predictions are copied, so the run
directory stays self-contained; the curvature of the first task is still computed by
the run itself with its own settings.
"""

from __future__ import annotations

import json
import shutil

import yaml

from elcl.config import resolved_run_config
from elcl.continual.methods import REGISTRY
from elcl.continual.rundir import RunDir, RunSpec, read_jsonl
from elcl.fileio import atomic_path
from elcl.models.checkpoint import meta_path

_IGNORED_SECTIONS = ("method", "curvature", "output_dir", "name")


def first_step_key(cfg_dict: dict) -> str:
    """What a first step depends on, from a resolved config (every default filled in)."""
    key = {k: v for k, v in cfg_dict.items() if k not in _IGNORED_SECTIONS}
    if isinstance(key.get("train"), dict):
        # Where curves are logged does not change the step.
        key["train"] = {k: v for k, v in key["train"].items() if k != "log_to"}
    return json.dumps(key, sort_keys=True)


def find_sibling(rd: RunDir, spec: RunSpec, cfg_dict: dict) -> RunDir | None:
    """A finished-first-step sibling run with the same first-step configuration, if any."""
    key = first_step_key(cfg_dict)
    for other in sorted(rd.path.parent.iterdir()) if rd.path.parent.is_dir() else []:
        if other == rd.path or not (other / "run.json").is_file() or not (other / "config.yaml").is_file():
            continue
        try:
            state = json.loads((other / "run.json").read_text(encoding="utf-8"))
            other_cfg = yaml.safe_load((other / "config.yaml").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, yaml.YAMLError, OSError):
            continue
        cls = REGISTRY.get(str(state.get("method")))
        if cls is None or not cls.shares_first_step() or int(state.get("steps_done", 0)) < 1:
            continue
        if int(state.get("seed", -1)) != spec.seed or tuple(state.get("order", ())) != spec.order:
            continue
        sibling = RunDir(other)
        # resolved: a sibling written by an older elcl (without a key added since, at its
        # default) still matches
        if (
            first_step_key(resolved_run_config(other_cfg)) == key
            and meta_path(sibling.checkpoint(0, spec.order[0])).is_file()
        ):
            return sibling
    return None


def adopt_first_step(src: RunDir, dst: RunDir, task: str) -> list[dict]:
    """Copy checkpoint, predictions and training log of step 0; return its metric rows."""
    ckpt = dst.checkpoint(0, task)
    for s, d in ((src.checkpoint(0, task), ckpt), (meta_path(src.checkpoint(0, task)), meta_path(ckpt))):
        with atomic_path(d) as tmp:
            shutil.copyfile(s, tmp)
    preds_src = src.path / "predictions" / f"0_{task}"
    if preds_src.is_dir():
        shutil.copytree(preds_src, dst.path / "predictions" / f"0_{task}", dirs_exist_ok=True)
    return [r for r in read_jsonl(src.metrics) if int(r["step"]) == 0]


def adopted_train_log(src: RunDir, task: str) -> list[dict]:
    return [r for r in read_jsonl(src.path / "train_log.jsonl") if r.get("task") == task]
