"""The no-old-data rule, enforced in code rather than by convention.

Continual methods other than ``replay`` and ``joint`` must never read the training
data of a task they have moved past; ``replay`` may only read what it stored in its
bounded memory while the task was current. Every training-data access of the runner
goes through :class:`TrainDataGuard`, which raises on a violation.
"""

from __future__ import annotations

from typing import Callable, Sequence

from elcl.errors import ElclError
from elcl.training.examples import LinkingExample


class OldDataAccessError(ElclError):
    """A method tried to read training data of a task it is not currently learning."""


class TrainDataGuard:
    def __init__(self, loader: Callable[[str], Sequence[LinkingExample]], method: str) -> None:
        self._loader = loader
        self.method = method
        self.current: str | None = None
        self.finished: set[str] = set()
        self.accesses: list[str] = []

    def begin(self, task: str) -> None:
        if self.current is not None:
            self.finished.add(self.current)
        self.current = task

    def train_examples(self, task: str) -> Sequence[LinkingExample]:
        """Training examples of ``task``; only the current task (all tasks for joint)."""
        allowed = self.method == "joint" or task == self.current
        if not allowed:
            raise OldDataAccessError(
                f"method '{self.method}' may not read training data of task '{task}' while learning '{self.current}'"
            )
        self.accesses.append(task)
        return self._loader(task)
