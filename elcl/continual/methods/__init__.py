"""The continual methods, one file each, and the registry everything else asks.

The tuple below is the one list of method objects: the runner, ``elcl fisher`` and the
reports read it. Its order is the order of methods in reports. Config validation reads
the other half of the registry, :data:`elcl.method_settings.SECTIONS` (a settings model
and a summary per method), which sits below the config; the two must list the same
methods in the same order with the same settings, or importing this package fails. To
add a method, write its settings and summary there, a
:class:`~elcl.continual.methods.base.Method` subclass in a new file here, and add it to
the tuple (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import Literal

from elcl.continual.methods.base import (
    AUTO,
    Method,
    MethodSettings,
    PenaltyMethod,
    PenaltySettings,
    RunLambda,
    Step,
    StepContext,
    format_lambda,
    is_auto,
    lambda_sort_key,
    lambda_token,
    parse_run_lambda,
)
from elcl.continual.methods.ewc import EWC
from elcl.continual.methods.joint import Joint
from elcl.continual.methods.kfac import KFAC
from elcl.continual.methods.lr_control import LRControl, discriminative_groups
from elcl.continual.methods.naive import Naive
from elcl.continual.methods.online_ewc import OnlineEWC
from elcl.continual.methods.online_kfac import OnlineKFAC
from elcl.continual.methods.replay import Replay, ReplayMemory
from elcl.continual.methods.single import Single
from elcl.errors import ElclError
from elcl.method_settings import SECTIONS

REGISTRY: dict[str, type[Method]] = {
    cls.name: cls for cls in (Naive, LRControl, Replay, EWC, OnlineEWC, KFAC, OnlineKFAC, Joint, Single)
}
NAMES: tuple[str, ...] = tuple(REGISTRY)
# Derived from the classes (not second lists): what reports group methods by.
PENALTY_METHODS: tuple[str, ...] = tuple(n for n, c in REGISTRY.items() if c.penalised())
SEQUENTIAL_METHODS: tuple[str, ...] = tuple(n for n, c in REGISTRY.items() if c.sequential())
DEFAULT = Naive.name


def _check_sections() -> None:
    """The method objects and the config sections of ``elcl.method_settings`` agree."""
    if NAMES != tuple(SECTIONS):
        raise ElclError(
            f"the method registry ({', '.join(NAMES)}) and elcl.method_settings.SECTIONS "
            f"({', '.join(SECTIONS)}) must list the same methods in the same order"
        )
    for name, cls in REGISTRY.items():
        if cls.Settings is not SECTIONS[name].settings:
            raise ElclError(
                f"method {name}: Settings is {cls.Settings.__name__}, its config section is "
                f"{SECTIONS[name].settings.__name__} (elcl.method_settings.SECTIONS)"
            )


_check_sections()


def get(name: str) -> type[Method]:
    """The method class of ``name``; an ElclError listing the known names otherwise."""
    cls = REGISTRY.get(name)
    if cls is None:
        raise ElclError(f"unknown method {name!r}; known methods: {', '.join(NAMES)}")
    return cls


def rank(name: str) -> int:
    """Position of a method in reports (unknown names last)."""
    return NAMES.index(name) if name in REGISTRY else len(NAMES)


def label(name: str) -> str:
    return REGISTRY[name].label if name in REGISTRY else name


Role = Literal["forgetting_reference", "baseline"]


def role(which: Role) -> str:
    """The name of the one registered method playing ``which`` in the reports (its class
    attribute of that name is true): ``forgetting_reference`` (single) or ``baseline``
    (naive). Asked at report time, so the report follows the classes, never a name."""
    names = [n for n, cls in REGISTRY.items() if getattr(cls, which)]
    if len(names) != 1:
        raise ElclError(f"exactly one method must be the {which} of the reports; registered: {names or 'none'}")
    return names[0]


def headline() -> tuple[str, str]:
    """The two methods (``headline = True``) whose paired difference the report lists
    first, later one first in method order (kfac, ewc)."""
    names = [n for n, cls in REGISTRY.items() if cls.headline]
    if len(names) != 2:
        raise ElclError(f"exactly two methods must be the headline pair of the reports; registered: {names or 'none'}")
    return names[1], names[0]


__all__ = [
    "AUTO",
    "DEFAULT",
    "NAMES",
    "PENALTY_METHODS",
    "REGISTRY",
    "SEQUENTIAL_METHODS",
    "Method",
    "MethodSettings",
    "PenaltyMethod",
    "PenaltySettings",
    "ReplayMemory",
    "Role",
    "RunLambda",
    "Step",
    "StepContext",
    "discriminative_groups",
    "format_lambda",
    "get",
    "headline",
    "is_auto",
    "label",
    "lambda_sort_key",
    "lambda_token",
    "parse_run_lambda",
    "rank",
    "role",
]
