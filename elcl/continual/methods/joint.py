"""``joint``: one model trained once on every task's data (the multi-task reference)."""

from __future__ import annotations

from collections.abc import Sequence

from elcl.continual.methods.base import Method, Step

JOINT = "joint"


class Joint(Method):
    name = JOINT
    label = "joint"
    reference = True
    all_tasks_at_once = True

    @classmethod
    def steps(cls, order: Sequence[str]) -> list[Step]:
        return [Step(JOINT, tuple(order))]
