"""A sweep's cells: one run each (method, λ, seed, order), with the run's own config.

Pure: no file is read or written. Each cell is what ``elcl train`` would run for that
(method, λ, seed, order) (``expand_runs``), so a cell's run directory is the one
``elcl train --resume`` continues, and the two commands can take turns on one grid.

First steps: every method that ``shares_first_step`` trains the same first task in a
(seed, order) block, so one cell of the block (``single`` if it runs, else ``naive``,
else the first such cell) is its *owner*: the others wait until the owner has finished
step 0, then adopt it (``train.share_first_task``) instead of training it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from elcl.config import ExperimentConfig, config_from_dict
from elcl.continual.methods import REGISTRY, RunLambda, role
from elcl.continual.rundir import RunSpec
from elcl.continual.runner import expand_runs
from elcl.sweep.spec import SweepSection

OWNER_PREFERENCE = (role("forgetting_reference"), role("baseline"))
"""Which cell of a (seed, order) block trains the shared first step: the single-task
reference, else the forgetting baseline (asked of the registry, never written out)."""


@dataclass
class Cell:
    spec: RunSpec
    config: dict
    """The run's resolved config (``ExperimentConfig.to_dict`` of one seed, λ and order)."""
    owner: str | None = None
    """Name of the cell whose first step this one adopts (None: it trains its own)."""
    trial: tuple[str, int] | None = field(default=None, compare=False)
    """(study, trial number) when a λ search proposed this cell."""

    @property
    def name(self) -> str:
        return self.spec.dirname

    @property
    def block(self) -> tuple[int, int]:
        """(order index, seed): the cells that can share a first step."""
        return (self.spec.order_index, self.spec.seed)

    @property
    def n_steps(self) -> int:
        cls = REGISTRY[self.spec.method]
        return 1 if cls.all_tasks_at_once else len(self.spec.order)


def method_config(cfg: ExperimentConfig, method: str, seeds: Sequence[int] | None = None) -> ExperimentConfig:
    """``cfg`` with ``method.name`` set to ``method`` (its section as the config has it)."""
    raw = cfg.model_dump(mode="json", by_alias=True, exclude_unset=True)  # as written: lambda or lambda_grid
    raw.setdefault("method", {})["name"] = method
    if seeds is not None:
        raw["seeds"] = list(seeds)
    return config_from_dict(raw, f"method {method}")


def make_cell(cfg: ExperimentConfig, method: str, lam: RunLambda, seed: int, order_index: int) -> Cell:
    """The cell of one (method, λ, seed, order), λ given (a search's trial): the run
    ``expand_runs`` makes of the config with that one λ."""
    mcfg = method_config(cfg, method, [seed])
    setattr(mcfg.method, method, mcfg.method.settings.for_run(lam))
    for spec, run_cfg in expand_runs(mcfg):
        if spec.order_index == order_index:
            return Cell(spec, run_cfg.to_dict())
    raise ValueError(f"order {order_index} is not in the config")


def expand_cells(cfg: ExperimentConfig, sweep: SweepSection, searched: Sequence[str] = ()) -> list[Cell]:
    """Every cell of the grid, block by block; methods in ``searched`` are left out (a
    search proposes their λ). Owners are assigned with :func:`assign_owners`."""
    methods = sweep.methods or [cfg.method.name]
    seeds = sweep.seeds or cfg.seeds
    orders = sweep.orders if sweep.orders is not None else list(range(len(cfg.task_orders())))
    cells: list[Cell] = []
    for method in methods:
        if method in searched:
            continue
        for spec, run_cfg in expand_runs(method_config(cfg, method, seeds)):
            if spec.order_index in orders:
                cells.append(Cell(spec, run_cfg.to_dict()))
    cells.sort(key=lambda c: (c.block, 0 if c.spec.method in OWNER_PREFERENCE else 1))
    return assign_owners(cells)


def assign_owners(cells: list[Cell], owners: dict[tuple[int, int], str] | None = None) -> list[Cell]:
    """Give each sharing cell of a block the block's owner (``owners`` keeps earlier ones)."""
    owners = {} if owners is None else owners
    by_block: dict[tuple[int, int], list[Cell]] = {}
    for c in cells:
        by_block.setdefault(c.block, []).append(c)
    for block, members in by_block.items():
        sharing = [
            c
            for c in members
            if REGISTRY[c.spec.method].shares_first_step() and c.config["train"].get("share_first_task", True)
        ]
        if not sharing:
            continue
        if block not in owners:
            rank = {m: i for i, m in enumerate(OWNER_PREFERENCE)}
            owners[block] = min(sharing, key=lambda c: rank.get(c.spec.method, len(rank))).name
        for c in sharing:
            c.owner = None if c.name == owners[block] else owners[block]
    return cells


def blocks(cells: Sequence[Cell]) -> list[tuple[int, int]]:
    """The (order, seed) blocks of the cells, in run order: what ``--part N`` counts."""
    return sorted({c.block for c in cells})
