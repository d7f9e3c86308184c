"""``ewc``: elastic weight consolidation with each earlier task's diagonal Fisher
(Kirkpatrick et al. 2017): ``Σ_t (λ_t/2) Σ_i F_{t,i} (θ_i − θ*_{t,i})²``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from elcl.continual.methods.base import PenaltyMethod, StepContext

if TYPE_CHECKING:
    from elcl.curvature.penalty import Penalty


class EWC(PenaltyMethod):
    name = "ewc"
    label = "EWC"
    consolidation: ClassVar[Literal["online", "per_task"] | None] = "per_task"
    curvature = "diag"
    headline = True
    paper_reduction: ClassVar[float | None] = 0.27

    def penalty(self, ctx: StepContext) -> Penalty | None:
        from elcl.curvature.penalty import EWCPenalty

        if not ctx.done:
            return None
        stats = self.load_task_curvature(ctx, ctx.done)
        return EWCPenalty(stats, self.lam, weights=self.task_lambdas(ctx, stats))
