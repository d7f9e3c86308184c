"""``online_kfac``: one running pair of Kronecker factors per layer and the latest anchor
(the Kronecker analogue of online EWC; Ritter et al. 2018), so the curvature kept stays
the size of one task's however many tasks come.

After task t, with weight ω_t (1 for a numeric λ; N_t, the examples its Fisher averaged
over, for ``lambda: auto``) and decay γ, each K-FAC block keeps

    W_t = γ W_{t−1} + ω_t
    Ā_t = (γ W_{t−1} Ā_{t−1} + ω_t A_t) / W_t        (Ḡ_t likewise)

and the penalty uses ``W_t · Ā_t ⊗ Ḡ_t`` for the weighted sum ``Σ_s γ^{t−s} ω_s A_s ⊗ G_s``:
the Kronecker product of the (weighted) mean factors, times the total weight. It is
exact when every task has the same A (or the same G); otherwise it differs from the
sum by ``−(1/2W) Σ_{r,s} w_r w_s (A_r − A_s) ⊗ (G_r − G_s)`` (w_s = γ^{t−s} ω_s),
which ``tests/test_online_kfac.py`` checks. Parameters without a block (embeddings,
LayerNorm) keep a running diagonal ``F̃_t = γ F̃_{t−1} + ω_t F_t``, as online EWC does.

What it keeps after each task: ``curvature/_running/<step>_<task>/`` (factors, diagonal,
latest anchor; ``running.json`` with W, γ and each task's N_t); the running state of
the step before is kept until the next task (a resumed step needs it), older ones are
deleted. The per-task statistics are not kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from elcl.continual.methods.base import StepContext, TrainData
from elcl.continual.methods.kfac import KFAC
from elcl.errors import ElclError
from elcl.method_settings import OnlineKFACSettings

if TYPE_CHECKING:
    from elcl.curvature.collect import CurvatureStats
    from elcl.curvature.penalty import Penalty

RUNNING_DIR = "_running"
RUNNING_FILE = "running.json"


def running_dir(ctx: StepContext, step: int) -> Path:
    return ctx.rd.path / "curvature" / RUNNING_DIR / f"{step}_{ctx.order[step]}"


def fold(
    prev: CurvatureStats | None, prev_weight: float, new: CurvatureStats, omega: float, gamma: float
) -> tuple[CurvatureStats, float]:
    """(running statistics, W) after adding ``new`` with weight ``omega`` (see the module
    docstring). ``kfac`` holds the weighted mean factors (Ā, Ḡ), ``diag`` the running sum."""
    import torch

    from elcl.curvature.collect import CurvatureStats

    f64 = torch.float64
    if prev is None:
        kfac = {k: (A.to(f64), G.to(f64)) for k, (A, G) in new.kfac.items()}
        diag = {k: omega * F.to(f64) for k, F in new.diag.items()}
        weight = omega
    else:
        if set(prev.kfac) != set(new.kfac):
            raise ElclError(
                "online_kfac: the running factors and the new task's cover different layers (curvature from another model?)"
            )
        weight = gamma * prev_weight + omega
        a, b = gamma * prev_weight / weight, omega / weight
        kfac = {
            k: (a * prev.kfac[k][0].to(f64) + b * A.to(f64), a * prev.kfac[k][1].to(f64) + b * G.to(f64))
            for k, (A, G) in new.kfac.items()
        }
        diag = {
            k: gamma * prev.diag[k].to(f64) + omega * F.to(f64) if k in prev.diag else omega * F.to(f64)
            for k, F in new.diag.items()
        }
    meta = dict(new.meta)
    return CurvatureStats(kfac=kfac, diag=diag, anchors=dict(new.anchors), meta=meta), weight


class OnlineKFAC(KFAC):
    name = "online_kfac"
    label = "online K-FAC"
    consolidation: ClassVar[Literal["online", "per_task"] | None] = "online"
    headline = False  # K-FAC's role is not inherited: the headline pair is K-FAC vs EWC
    paper_reduction = None  # the paper's 51% is offline K-FAC's
    Settings = OnlineKFACSettings
    settings: OnlineKFACSettings

    def _load_running(self, ctx: StepContext, step: int) -> tuple[CurvatureStats, dict[str, Any]]:
        from elcl.curvature.storage import load_curvature

        d = running_dir(ctx, step)
        info_path = d / RUNNING_FILE
        if not info_path.is_file():
            raise ElclError(
                f"{info_path}: running curvature of step {step} not found (was the run made by another method?)"
            )
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise ElclError(f"{info_path}: not valid JSON") from None
        return load_curvature(d, ctx.config_hash, device=ctx.device), info

    def penalty(self, ctx: StepContext) -> Penalty | None:
        from elcl.curvature.collect import CurvatureStats

        if not ctx.done:
            return None
        running, info = self._load_running(ctx, ctx.step - 1)
        W = float(info["weight"])
        scaled = CurvatureStats(
            kfac={k: (W * A, G) for k, (A, G) in running.kfac.items()},
            diag=running.diag,
            anchors=running.anchors,
            meta=running.meta,
        )
        if self.settings.is_auto:
            # ω_t = N_t in the running sums; λ_t = scale · N_t / N
            if ctx.n_examples < 1:
                raise ElclError(f"{self.name}: lambda auto needs the number of training examples of the current task")
            factor = self.settings.lambda_scale / ctx.n_examples
            ctx.record["lambda_t"] = {t: factor * float(n) for t, n in info["n_examples"].items()}
            return self.kfac_penalty(ctx, [scaled], weights=[factor])
        return self.kfac_penalty(ctx, [scaled])  # one λ; task_lambdas records it per task

    def after_task(self, ctx: StepContext, stats: CurvatureStats | None, guard: TrainData) -> None:
        from elcl.curvature.storage import DTYPES, save_curvature
        from elcl.fileio import atomic_write_text

        if stats is None or not ctx.is_main:
            return
        prev: CurvatureStats | None = None
        info: dict[str, Any] = {"weight": 0.0, "n_examples": {}}
        if ctx.step > 0:
            prev, info = self._load_running(ctx, ctx.step - 1)
        omega = float(stats.n_examples) if self.settings.is_auto else 1.0
        running, weight = fold(prev, float(info["weight"]), stats, omega, self.settings.gamma)
        target = running_dir(ctx, ctx.step)
        save_curvature(running, target, ctx.config_hash, dtype=ctx.curvature_dtype or DTYPES["float32"])
        n_examples = {**info["n_examples"], ctx.task: stats.n_examples}
        record = {
            "weight": weight,
            "gamma": self.settings.gamma,
            "auto": self.settings.is_auto,
            "n_examples": n_examples,
        }
        atomic_write_text(target / RUNNING_FILE, json.dumps(record, indent=2, sort_keys=True) + "\n")
        for old in range(ctx.step - 1):
            shutil.rmtree(running_dir(ctx, old), ignore_errors=True)
