"""``naive``: fine-tune the one model on each task in turn (the forgetting baseline)."""

from __future__ import annotations

from elcl.continual.methods.base import Method


class Naive(Method):
    name = "naive"
    label = "naive"
    baseline = True
