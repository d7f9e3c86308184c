"""``replay``: a bounded memory of earlier tasks' examples trained with each new task
(the data-dependent reference: it reads old data, which the penalties never do)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

from elcl.continual.methods.base import Method, Step, StepContext, TrainData
from elcl.method_settings import ReplaySettings

if TYPE_CHECKING:
    from elcl.curvature.collect import CurvatureStats
    from elcl.training.examples import LinkingExample


class ReplayMemory:
    """A bounded memory shared equally by the tasks seen so far (random subsets)."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rng = random.Random(seed)
        self.per_task: dict[str, list[LinkingExample]] = {}

    def add_task(self, task: str, examples: Sequence[LinkingExample]) -> None:
        self.per_task[task] = list(examples)
        quota = max(1, self.capacity // len(self.per_task))
        for t, exs in self.per_task.items():
            if len(exs) > quota:
                self.per_task[t] = self.rng.sample(exs, quota)

    def examples(self) -> list[LinkingExample]:
        return [e for exs in self.per_task.values() for e in exs]

    def __len__(self) -> int:
        return sum(len(v) for v in self.per_task.values())


class Replay(Method):
    name = "replay"
    label = "replay"
    Settings = ReplaySettings
    settings: ReplaySettings

    def __init__(self, settings: ReplaySettings | None = None, seed: int = 0) -> None:
        super().__init__(settings, seed)
        self.memory = ReplayMemory(self.settings.replay_size, seed)

    def train_examples(self, step: Step, current: list[LinkingExample]) -> list[LinkingExample]:
        return current + self.memory.examples() if len(self.memory) else current

    def after_task(self, ctx: StepContext, stats: CurvatureStats | None, guard: TrainData) -> None:
        super().after_task(ctx, stats, guard)
        self.memory.add_task(ctx.task, guard.train_examples(ctx.task))

    def restore(self, step: Step, guard: TrainData) -> None:
        self.memory.add_task(step.label, guard.train_examples(step.label))
