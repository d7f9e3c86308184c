"""Per-method ingredients: learning-rate groups, replay memory, penalty choice."""

from __future__ import annotations

import random
import re
from typing import Sequence

from torch import nn

from elcl.config import ExperimentConfig
from elcl.training.examples import LinkingExample

PENALTY_METHODS = ("ewc", "online_ewc", "kfac")
SEQUENTIAL_METHODS = ("naive", "lr_control", "replay", "ewc", "online_ewc", "kfac")


def curvature_approx(cfg: ExperimentConfig) -> str:
    """What to collect after each task: what the method needs, unless set explicitly."""
    if cfg.curvature.approx != "auto":
        return cfg.curvature.approx
    return {"kfac": "kfac", "ewc": "diag", "online_ewc": "diag"}.get(cfg.method.name, "none")


_LAYER = re.compile(r"\.(?:layer|blocks)\.(\d+)\.")


def _depth_from_top(name: str, n_layers: int) -> int:
    m = _LAYER.search(name)
    if m:
        return n_layers - 1 - int(m.group(1))
    if "embed" in name:
        return n_layers
    return 0


def discriminative_groups(model: nn.Module, lr: float, decay: float) -> list[dict]:
    """ULMFiT-style groups: each layer below the top gets ``decay`` times the lr above it."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    layers = [int(m.group(1)) for n, _ in named if (m := _LAYER.search(n))]
    n_layers = (max(layers) + 1) if layers else 1
    groups: dict[int, list] = {}
    for name, p in named:
        groups.setdefault(_depth_from_top(name, n_layers), []).append(p)
    return [{"params": ps, "lr": lr * decay**d} for d, ps in sorted(groups.items())]


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
