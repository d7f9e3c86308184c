"""Which runs may share one report: those whose experiment-defining config agrees.

Each run directory keeps its resolved ``config.yaml``. Two runs are comparable when
their configs agree on everything that defines the experiment — the set of tasks,
data and ontology, candidates, model, training settings (``max_eval_mentions``
included), curvature settings — and may differ only in what a report compares or
averages over: the method and its own settings (the ``method`` section), the seed and
the task order, and settings that do not change results (names, paths, device,
threads, sharing of the first step).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from elcl.config import RESUME_SAFE_KEYS, resolved_run_config

__all__ = ["NOT_DEFINING", "defining_config", "split_comparable"]

NOT_DEFINING = (
    *RESUME_SAFE_KEYS,  # where and how fast a run executes (train.device, threads, paths)
    "name",
    "seeds",
    "orders",
    "tasks",  # replaced by the set of tasks: the order is a report dimension
    "method",
    "train.share_first_task",
)
"""Dotted config keys ignored when deciding whether runs are comparable."""


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def defining_config(config: dict[str, Any]) -> dict[str, Any]:
    """The experiment-defining part of a resolved config, flattened to dotted keys."""
    config = resolved_run_config(config)
    flat = _flatten(config)
    out = {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NOT_DEFINING)}
    tasks = config.get("orders") or [config.get("tasks") or []]
    out["tasks (set)"] = sorted({t for order in tasks for t in order})
    return out


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def split_comparable(
    items: Sequence[tuple[Path, dict[str, Any] | None]],
) -> tuple[list[int], list[str], list[str]]:
    """Indices of the items that form the largest comparable group, plus messages.

    ``items``: (run directory, its config or None). Items without a config cannot be
    checked: they are kept, with a warning. Among the others the largest group with one
    defining config is kept (ties: the group of the first item); every other run is
    left out with a message naming the keys that differ. Returns (kept indices, left-out
    messages, warnings).
    """
    keyed: dict[tuple, list[int]] = {}
    defs: dict[int, dict[str, Any]] = {}
    warnings: list[str] = []
    kept: list[int] = []
    if items and all(cfg is None for _, cfg in items):
        return list(range(len(items))), [], ["no run has a config.yaml: comparability not checked"]
    for i, (path, cfg) in enumerate(items):
        if cfg is None:
            warnings.append(f"{path}: no config.yaml; comparability with the other runs not checked")
            kept.append(i)
            continue
        d = defining_config(cfg)
        defs[i] = d
        key = tuple(sorted((k, _freeze(v)) for k, v in d.items()))
        keyed.setdefault(key, []).append(i)
    if not keyed:
        return kept, [], warnings
    best = max(keyed.values(), key=lambda idx: (len(idx), -idx[0]))
    ref = defs[best[0]]
    left_out: list[str] = []
    for idx in keyed.values():
        if idx is best:
            continue
        for i in idx:
            d = defs[i]
            diff = sorted(k for k in set(ref) | set(d) if ref.get(k, "<unset>") != d.get(k, "<unset>"))
            shown = ", ".join(
                f"{k} = {d.get(k, '<unset>')!r} (compared runs: {ref.get(k, '<unset>')!r})" for k in diff[:3]
            )
            more = f" and {len(diff) - 3} more key(s)" if len(diff) > 3 else ""
            left_out.append(
                f"{items[i][0]}: left out: its config differs from the {len(best)} compared run(s) in {shown}{more}"
            )
    kept.extend(best)
    return sorted(kept), left_out, warnings
