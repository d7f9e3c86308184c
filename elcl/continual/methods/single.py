"""``single``: a fresh model per task (the single-task reference forgetting is measured against)."""

from __future__ import annotations

from elcl.continual.methods.base import Method


class Single(Method):
    name = "single"
    label = "single-task"
    reference = True
    per_task_model = True
    forgetting_reference = True
