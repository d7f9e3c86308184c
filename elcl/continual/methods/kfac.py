"""``kfac``: a Kronecker-factored Fisher block ``A ⊗ G`` per Linear/Conv1d layer of each
earlier task, diagonal Fisher elsewhere (McInerney et al. 2021; Martens & Grosse 2015):
``Σ_t (λ_t/2) tr(ΔW_tᵀ G_t ΔW_t A_t)``, every task's factors and anchor kept."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from elcl.continual.methods.base import PenaltyMethod, StepContext
from elcl.method_settings import KFACSettings

if TYPE_CHECKING:
    import torch

    from elcl.curvature.collect import CurvatureStats
    from elcl.curvature.penalty import Penalty


def matmul_dtype(choice: str, amp: str, device: Any = None) -> torch.dtype | None:
    """``penalty_dtype`` resolved: ``auto`` is bfloat16 when training runs in bf16 on a
    device that computes bfloat16 natively (see :mod:`elcl.hardware`), else float32."""
    import torch

    if choice == "auto":
        from elcl.hardware import bf16_native, resolve_amp

        native = bf16_native(device)
        choice = "bfloat16" if native and resolve_amp(amp, device) == "bf16" else "float32"
    return torch.bfloat16 if choice == "bfloat16" else None


def penalty_matmul_dtype(cfg: Any, device: Any = None) -> torch.dtype | None:
    """The K-FAC product dtype of an experiment config whose method is kfac-like."""
    return matmul_dtype(cfg.method.settings.penalty_dtype, cfg.train.amp, device)


class KFAC(PenaltyMethod):
    name = "kfac"
    label = "K-FAC"
    consolidation: ClassVar[Literal["online", "per_task"] | None] = "per_task"
    curvature = "kfac"
    headline = True
    paper_reduction: ClassVar[float | None] = 0.51
    Settings: ClassVar[type[KFACSettings]] = KFACSettings
    settings: KFACSettings

    def penalty(self, ctx: StepContext) -> Penalty | None:
        if not ctx.done:
            return None
        return self.kfac_penalty(ctx, self.load_task_curvature(ctx, ctx.done))

    def kfac_penalty(
        self, ctx: StepContext, stats: Sequence[CurvatureStats], weights: list[float] | None = None
    ) -> Penalty:
        from elcl.curvature.penalty import KFACPenalty

        if ctx.curvature_rank is not None:
            stats = [s.to_low_rank(ctx.curvature_rank) for s in stats]
        if weights is None:
            weights = self.task_lambdas(ctx, stats)
        return KFACPenalty(
            stats, self.lam, matmul_dtype(self.settings.penalty_dtype, ctx.amp, ctx.device), weights=weights
        )
