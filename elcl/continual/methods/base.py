"""What a continual method is: a few moments the runner calls, and its own settings.

A method is one class in one file of this package (the registry in ``__init__`` lists
them). The runner, ``elcl fisher``, the reports and config validation ask the method's
class attributes and moments, never its name. The moments, in the order the runner
calls them for each step of a sequence:

* :meth:`Method.steps` — the steps of a run (one per task; ``joint``: one for all);
* :meth:`Method.fresh_model` — whether the step starts from a new model (``single``);
* :meth:`Method.train_examples` — what the step trains on (the step's tasks' data,
  which the runner reads through the no-old-data guard, plus e.g. a replay memory);
* :meth:`Method.optimiser` — learning rate and parameter groups of the step;
* :meth:`Method.penalty` — the extra term over earlier tasks (the curvature penalties);
* :meth:`Method.after_task` — what it keeps once the task is learned (curvature,
  a replay memory); :meth:`Method.restore` rebuilds in-memory state on resume.

``curvature`` says which statistics the method needs after each task (``diag``,
``kfac`` or ``none``); ``Settings`` is the pydantic model of its config section (it
lives in :mod:`elcl.method_settings`, below the config, with the method's one-line
summary), so a key that belongs to another method is an error naming the key.

The reports never name a method either: the roles a method plays in them are class
attributes (``forgetting_reference``, ``baseline``, ``headline``), looked up through
:func:`elcl.continual.methods.role` and :func:`~elcl.continual.methods.headline`.
A role is a plain class attribute, so a subclass inherits it unless it sets it back
(``OnlineKFAC(KFAC)`` sets ``headline = False``); the lookups refuse a registry where
a role is not played by the expected number of methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from elcl.errors import ElclError
from elcl.method_settings import (
    AUTO,
    MethodSettings,
    PenaltySettings,
    RunLambda,
    format_lambda,
    is_auto,
    lambda_sort_key,
    lambda_token,
    parse_run_lambda,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from elcl.continual.rundir import RunDir
    from elcl.curvature.collect import CurvatureStats
    from elcl.curvature.penalty import Penalty
    from elcl.training.examples import LinkingExample

CurvatureNeed = Literal["none", "diag", "kfac"]


class TrainData(Protocol):
    """What a method may read of the training data: the current task's examples, through
    the no-old-data guard (:class:`elcl.continual.guard.TrainDataGuard`, which asks this
    registry which methods read every task, so it is named here by its shape)."""

    def train_examples(self, task: str) -> Sequence[LinkingExample]: ...


@dataclass(frozen=True)
class Step:
    """One training step of a run: its label (the task, or ``joint``) and the tasks it trains on."""

    label: str
    tasks: tuple[str, ...]


@dataclass
class StepContext:
    """What a method may use at a step; built by the runner."""

    rd: RunDir
    order: tuple[str, ...]
    step: int
    task: str
    model: nn.Module
    config_hash: str
    device: torch.device
    curvature_rank: int | None = None
    curvature_dtype: torch.dtype | None = None
    amp: str = "none"
    n_examples: int = 0
    """N: examples with a gold label the step's loss is averaged over (for λ auto)."""
    is_main: bool = True
    record: dict[str, Any] = field(default_factory=dict)
    """Filled by the method (e.g. the per-task λ_t used); the runner logs it in run.json."""

    @property
    def done(self) -> tuple[str, ...]:
        return self.order[: self.step]


class Method:
    """Base class: plain fine-tuning on each task in turn (``naive``); subclasses
    change the moments they need."""

    name: ClassVar[str]
    label: ClassVar[str]
    """Display name in reports."""
    Settings: ClassVar[type[MethodSettings]] = MethodSettings
    curvature: ClassVar[CurvatureNeed] = "none"
    reference: ClassVar[bool] = False
    """single / joint: baselines the sequential methods are measured against, not
    continual methods (no forgetting vs best or BWT in reports, no curvature collected)."""
    per_task_model: ClassVar[bool] = False
    """single: a fresh model per task; its final accuracies are the diagonal ``R[j][j]``."""
    all_tasks_at_once: ClassVar[bool] = False
    """joint: one step over every task's training data (its one step label is not a task)."""
    consolidation: ClassVar[Literal["online", "per_task"] | None] = None
    """How an export keeps its curvature for a later ``elcl update``
    (:mod:`elcl.continual.versions`): ``online`` one running state at the latest anchor,
    ``per_task`` each task's own; None: what the run collected, if anything."""

    # Roles in the forgetting report (exactly one method each, except ``headline``: two).
    forgetting_reference: ClassVar[bool] = False
    """single: its accuracy on each task, trained on that task alone, is what forgetting is
    measured from (forgetting of task j = its acc on j − a run's final acc on j). Every run
    is paired with its run of the same seed and order."""
    baseline: ClassVar[bool] = False
    """naive: the method the forgetting reductions are measured against
    (1 − F(method) / F(baseline)); ``ref.`` in the tables."""
    headline: ClassVar[bool] = False
    """ewc and kfac: the pair of penalties whose paired difference and matched-plasticity
    verdict the report lists first (does K-FAC forget less than EWC?)."""
    paper_reduction: ClassVar[float | None] = None
    """The forgetting reduction McInerney et al. (2021) report for this method with a
    BERT-based linker (K-FAC 0.51, EWC 0.27): a published reference value, not a result of
    elcl; the report says whether its own interval contains it (``evaluation.paper``)."""

    def __init__(self, settings: MethodSettings | None = None, seed: int = 0) -> None:
        self.settings = settings if settings is not None else self.Settings()
        self.seed = seed

    # ------------------------------------------------------------------ class-level
    @classmethod
    def penalised(cls) -> bool:
        return issubclass(cls.Settings, PenaltySettings)

    @classmethod
    def sequential(cls) -> bool:
        return not cls.reference

    @classmethod
    def step_labels(cls, order: Sequence[str], n_steps: int | None = None) -> list[str]:
        return [s.label for s in cls.steps(order)][: n_steps if n_steps is not None else None]

    @classmethod
    def steps(cls, order: Sequence[str]) -> list[Step]:
        return [Step(t, (t,)) for t in order]

    @classmethod
    def fresh_model(cls, step: int) -> bool:
        """Start the step from a newly built, freshly seeded model."""
        return cls.per_task_model

    @classmethod
    def shares_first_step(cls) -> bool:
        """Its first step is plain training on the first task (so siblings can share it)."""
        return not cls.all_tasks_at_once

    @classmethod
    def collects_curvature(cls) -> bool:
        """Whether the runner computes curvature after a task when the config asks for it."""
        return not (cls.reference)

    # ------------------------------------------------------------------ moments
    def train_examples(self, step: Step, current: list[LinkingExample]) -> list[LinkingExample]:
        """The step's training set, given the training examples of ``step.tasks``."""
        return current

    def optimiser(self, model: nn.Module, lr: float, step: int) -> tuple[float, list[dict] | None]:
        """(learning rate, parameter groups or None for one group of everything)."""
        return lr, None

    def penalty(self, ctx: StepContext) -> Penalty | None:
        return None

    def after_task(self, ctx: StepContext, stats: CurvatureStats | None, guard: TrainData) -> None:
        """Keep what later steps need. Default: the task's curvature, if computed."""
        if stats is not None and ctx.is_main:
            from elcl.curvature.storage import DTYPES, save_curvature

            dtype = ctx.curvature_dtype or DTYPES["float32"]
            save_curvature(stats, ctx.rd.curvature(ctx.task), ctx.config_hash, dtype=dtype)

    def restore(self, step: Step, guard: TrainData) -> None:
        """A finished step skipped on resume: rebuild in-memory state (replay memory)."""

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def load_task_curvature(ctx: StepContext, tasks: Sequence[str]) -> list[CurvatureStats]:
        from elcl.curvature.storage import load_curvature

        return [load_curvature(ctx.rd.curvature(t), ctx.config_hash, device=ctx.device) for t in tasks]


class PenaltyMethod(Method):
    """A method whose penalty is a quadratic over earlier tasks' curvature."""

    Settings: ClassVar[type[MethodSettings]] = PenaltySettings
    settings: PenaltySettings

    def task_lambdas(self, ctx: StepContext, stats: Sequence[CurvatureStats]) -> list[float] | None:
        """λ_t of each earlier task for ``lambda: auto`` (scale · N_t / N, N_t the
        examples task t's Fisher averaged over, N the current step's training examples);
        None for a numeric λ (one λ for all). Recorded in ``ctx.record``."""
        if not self.settings.is_auto:
            ctx.record["lambda_t"] = {t: float(self.settings.lambda_) for t in ctx.done}
            return None
        if len(stats) != len(ctx.done):
            raise ElclError(f"{self.name}: lambda auto needs one curvature per earlier task")
        if ctx.n_examples < 1:
            raise ElclError(
                f"{self.name}: lambda auto needs the number of training examples of the current task (got {ctx.n_examples})"
            )
        lams = []
        for t, st in zip(ctx.done, stats):
            if st.n_examples < 1:
                raise ElclError(f"{self.name}: lambda auto: the curvature of task '{t}' records no n_examples")
            lams.append(self.settings.lambda_scale * st.n_examples / ctx.n_examples)
        ctx.record["lambda_t"] = dict(zip(ctx.done, lams))
        return lams

    @property
    def lam(self) -> float:
        """The scalar λ of the penalty objects: the number, or 1 with per-task weights (auto)."""
        return 1.0 if self.settings.is_auto else float(self.settings.lambda_)


__all__ = [
    "AUTO",
    "Method",
    "MethodSettings",
    "PenaltyMethod",
    "PenaltySettings",
    "RunLambda",
    "Step",
    "StepContext",
    "format_lambda",
    "is_auto",
    "lambda_sort_key",
    "lambda_token",
    "parse_run_lambda",
]
