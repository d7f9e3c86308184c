"""The ``sweep:`` section of a config: which cells of the grid `elcl sweep` runs, and how.

A config already holds most of a grid: ``seeds``, ``orders`` and each penalty's
``method.<m>.lambda_grid``. What it lacks is the list of methods (a config names one,
``method.name``); the ``sweep:`` section adds it, picks orders, and switches λ from the
grid to a search. ``elcl train`` ignores the section, so one file serves both commands.
``--set sweep.KEY=VALUE`` overrides it like any other key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from elcl.config import (
    _DEFAULT_NAME,
    SWEEP_KEY,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    read_config_tree,
    short_repr,
)
from elcl.errors import ConfigError


class SweepSection(BaseModel):
    """``sweep:`` keys (all optional)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    methods: list[str] | None = None
    """Methods to run (default: the config's ``method.name``)."""
    orders: list[int] | None = None
    """Indices into the config's task orders (default: every order)."""
    seeds: list[int] | None = None
    """Seeds (default: the config's ``seeds``)."""
    search: Literal["grid", "optuna"] = "grid"
    """grid: one run per λ of each ``lambda_grid``; optuna: λ of the penalty methods found by
    an Optuna study per (method, order), the other methods run as in the grid."""
    trials: int = Field(4, ge=1, le=1000)
    """Search: trials per (method, order) (each trial runs one λ on every seed)."""
    log10_range: dict[str, tuple[float, float]] | None = None
    """Search: log10 λ bounds per method (default: the method's lambda_grid, min to max)."""
    log10_step: float | None = Field(0.5, gt=0)
    """Search: log10 λ is drawn on this step (0.5: 100, 316, 1000, ...), so a trial can land on
    a grid point (and reuse a finished run there); null draws it continuously."""
    prune: bool = True
    """Search: stop a trial whose dev accuracy after a task is below the median of the
    earlier trials after the same task (Optuna's MedianPruner)."""
    search_seed: int = 0
    """Search: the sampler's seed (the same seed proposes the same λ sequence)."""
    reuse: list[str] = Field(default_factory=list)
    """Folders of finished runs (e.g. results/X/runs): a cell whose run is there, done and of
    the same experiment config and seed, is not run again (its metrics are read there)."""

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, v: list[str] | None) -> list[str] | None:
        from elcl.continual.methods import NAMES

        if v is not None:
            if not v:
                raise ValueError("list at least one method")
            bad = [m for m in v if m not in NAMES]
            if bad:
                raise ValueError(f"unknown method {bad[0]!r}; known: {', '.join(NAMES)}")
        return v

    @model_validator(mode="after")
    def _ranges(self) -> SweepSection:
        for m, (lo, hi) in (self.log10_range or {}).items():
            if lo > hi:
                raise ValueError(f"log10_range.{m}: lower bound {lo} is above the upper bound {hi}")
        return self


def _section_error(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    key = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(SweepSection.model_fields))
        return f"{source}: config key '{SWEEP_KEY}.{key}': unknown grid key; allowed keys here: {allowed}"
    msg = e["msg"].removeprefix("Value error, ")
    value = f"invalid value {short_repr(e.get('input'))}: " if "input" in e and e["type"] != "missing" else ""
    return f"{source}: config key '{SWEEP_KEY}.{key}': {value}{msg}"


def load_sweep(path: str | Path, overrides: list[str] | None = None) -> tuple[ExperimentConfig, SweepSection]:
    """The experiment config and its sweep section, ``--set`` applied to both."""
    p = Path(path)
    raw, base = read_config_tree(p)
    raw = apply_overrides(raw, overrides or [])
    section: Any = raw.pop(SWEEP_KEY, None) or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{p}: config key '{SWEEP_KEY}': expected a mapping of grid keys, got {short_repr(section)}")
    if base is not None and raw.get("name", _DEFAULT_NAME) == base[1]:
        raise ConfigError(f"{p}: config key 'name': a config that extends {base[0]!r} must name its own experiment")
    cfg = config_from_dict(raw, str(p))
    try:
        sweep = SweepSection.model_validate(section)
    except ValidationError as err:
        raise ConfigError(_section_error(err, str(p))) from None
    n_orders = len(cfg.task_orders())
    bad = [o for o in sweep.orders or [] if not 0 <= o < n_orders]
    if bad:
        raise ConfigError(
            f"{p}: config key '{SWEEP_KEY}.orders': order {bad[0]} does not exist; the config has {n_orders} (0..{n_orders - 1})"
        )
    return cfg, sweep
