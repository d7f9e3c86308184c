"""The no-old-data rule, enforced in code rather than by convention.

Continual methods other than ``replay`` and ``joint`` must never read the training
data of a task they have moved past; ``replay`` may only read what it stored in its
bounded memory while the task was current. The guard is the only owner of training
examples: it loads a task's training split when the task is current, hands it out,
drops it when the task is finished, and raises on a read of an earlier task. Evaluation
works on :class:`~elcl.training.tasks.EvalTask` objects, which carry no training data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Generic, TypeVar

from elcl.continual.methods import get
from elcl.errors import ElclError

if TYPE_CHECKING:
    from elcl.config import ExperimentConfig
    from elcl.data.overlap import TrainRemoval
    from elcl.training.tasks import TrainSplit

S = TypeVar("S", bound=Sequence)


class OldDataAccessError(ElclError):
    """A method tried to read training data of a task it is not currently learning."""


class TrainDataGuard(Generic[S]):
    def __init__(self, loader: Callable[[str], S], method: str) -> None:
        self._loader = loader
        self._loaded: dict[str, S] = {}
        self.method = method
        self.every_task = get(method).all_tasks_at_once
        """The method trains on every task at once (``joint``): each task stays readable."""
        self.current: str | None = None
        self.finished: set[str] = set()
        self.accesses: list[str] = []

    @classmethod
    def for_config(
        cls, cfg: ExperimentConfig, method: str, removals: Mapping[str, TrainRemoval] | None = None
    ) -> TrainDataGuard[TrainSplit]:
        """A guard over the tasks' real training splits as ``cfg`` prepares them, less the
        documents ``removals`` takes out (another task's dev/test abstracts)."""
        from elcl.training.tasks import load_train_split

        return TrainDataGuard(lambda task: load_train_split(task, cfg, (removals or {}).get(task)), method)

    def begin(self, task: str) -> None:
        if self.current is not None:
            self.finished.add(self.current)
        self.current = task
        if not self.every_task:
            # What may no longer be read is no longer kept.
            self._loaded = {t: s for t, s in self._loaded.items() if t == task}

    def train_examples(self, task: str) -> S:
        """Training examples of ``task``; only the current task (all tasks for joint)."""
        allowed = self.every_task or task == self.current
        if not allowed:
            raise OldDataAccessError(
                f"method '{self.method}' may not read training data of task '{task}' while learning '{self.current}'"
            )
        self.accesses.append(task)
        if task not in self._loaded:
            self._loaded[task] = self._loader(task)
        return self._loaded[task]
