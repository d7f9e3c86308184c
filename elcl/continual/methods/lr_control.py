"""``lr_control``: lower, discriminative learning rates after the first task (ULMFiT)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from elcl.continual.methods.base import Method
from elcl.method_settings import LRControlSettings

if TYPE_CHECKING:
    from torch import nn


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


class LRControl(Method):
    name = "lr_control"
    label = "LR control"
    Settings = LRControlSettings
    settings: LRControlSettings

    def optimiser(self, model: nn.Module, lr: float, step: int) -> tuple[float, list[dict] | None]:
        if step == 0:
            return lr, None
        lr = lr * self.settings.lr_scale
        return lr, discriminative_groups(model, lr, self.settings.layer_decay)
