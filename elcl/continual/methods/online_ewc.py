"""``online_ewc``: one running diagonal Fisher ``F̃_t = γ F̃_{t−1} + F_t`` and the
latest anchor (Schwarz et al. 2018).

With ``lambda: auto`` each task enters the running sum weighted by its λ_t = N_t / N
(times ``lambda_scale``): ``F̃ = Σ_t γ^{T−t} (N_t/N) F_t``, i.e. the running Fisher
is a precision in units of examples (N_t = the examples task t's Fisher averaged over),
decayed by γ per later task, and the current task's mean loss weighs one example's
worth per 1/N."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from elcl.continual.methods.base import PenaltyMethod, StepContext
from elcl.method_settings import OnlineEWCSettings

if TYPE_CHECKING:
    from elcl.curvature.penalty import Penalty


class OnlineEWC(PenaltyMethod):
    name = "online_ewc"
    label = "online EWC"
    consolidation: ClassVar[Literal["online", "per_task"] | None] = "online"
    curvature = "diag"
    Settings = OnlineEWCSettings
    settings: OnlineEWCSettings

    def penalty(self, ctx: StepContext) -> Penalty | None:
        from elcl.curvature.penalty import OnlineEWCPenalty

        if not ctx.done:
            return None
        stats = self.load_task_curvature(ctx, ctx.done)
        return OnlineEWCPenalty.from_stats(stats, self.lam, self.settings.gamma, weights=self.task_lambdas(ctx, stats))
