"""Helpers for tests that wrap the runner's per-task training call."""

from __future__ import annotations

import inspect
from typing import Any

from elcl.continual import runner

# Taken at import, before a test replaces runner._train with its wrapper.
_TRAIN = inspect.signature(runner._train)


def train_task(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The task a call of ``runner._train`` trains, however its arguments were passed (a
    wrapper that names them positionally breaks whenever the signature grows)."""
    return _TRAIN.bind(*args, **kwargs).arguments["task"]
