"""Each continual method's config section (a pydantic model) and the λ forms runs record.

Why here, at the bottom of the layers: ``elcl/config.py`` validates ``method.<name>``
against these models and ``elcl/schemas.py`` checks a run record's method and λ, while
the methods themselves (``elcl/continual/methods/``) use training and curvature code that
reads the config. Keeping the settings below both breaks what was an import circle. This
module and ``elcl/continual/methods/`` are together the method registry: ``SECTIONS``
lists a settings model and a one-line summary per method, the registry there the method
object of each, and it refuses (at import) a method whose name or settings disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

AUTO = "auto"

RunLambda = float | str | None
"""The λ of one run: a number, an ``auto`` token (``"auto"``, or ``"auto10"`` for
``lambda_scale: 10``), or None for methods without a penalty."""


class MethodSettings(BaseModel):
    """A method's own config keys (none by default); unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)

    def lambdas(self) -> list[RunLambda]:
        """The λ of each run this section expands into (one ``None`` without a penalty)."""
        return [None]

    def for_run(self, lam: RunLambda) -> MethodSettings:
        """This section as one run sees it (its λ fixed, no grid)."""
        return self.model_copy(deep=True)


def _parse_lambda(v: Any) -> Any:
    """A λ as written in a config: a non-negative number or ``auto``."""
    if isinstance(v, (list, tuple, dict)):
        raise ValueError("a run has one λ (a number or auto); list several under lambda_grid")  # noqa: TRY004 (pydantic reports ValueError)
    if v == AUTO:
        return AUTO
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"expected a non-negative number or auto, got {v!r}") from None
    if not math.isfinite(x):
        raise ValueError("Input should be a finite number")
    if isinstance(v, bool) or x < 0:
        raise ValueError(f"expected a non-negative number or auto, got {v!r}")
    return x


LambdaValue = Annotated[float | Literal["auto"], BeforeValidator(_parse_lambda)]


class PenaltySettings(MethodSettings):
    """Keys shared by the curvature penalties.

    ``lambda`` is the one λ of a run (a number, or ``auto``: each earlier task t
    weighted by its Laplace precision, λ_t = N_t / N); ``lambda_grid`` lists the λ
    values to run, one run each, and replaces ``lambda`` when given.
    ``lambda_scale`` multiplies the ``auto`` value (a tempered posterior)."""

    lambda_: LambdaValue = Field(1.0, alias="lambda")
    """Penalty strength of the run: a non-negative number, or auto (λ_t = N_t / N per earlier task)."""
    lambda_grid: list[LambdaValue] | None = None
    """One run per entry (numbers and/or ``auto``); the run's ``lambda`` is the entry."""
    lambda_scale: float = Field(1.0, gt=0)
    """Multiplier of ``lambda: auto`` (λ_t = lambda_scale · N_t / N); only with auto."""
    fast_grad: bool = True
    """Add the penalty gradient directly (no second autograd graph)."""
    lambda_source: str | None = None
    """Where ``lambda`` came from (e.g. the report whose dev selection chose it). It does not
    change training; the report prints it beside the method's λ, so a fixed λ copied from
    elsewhere says so."""

    @field_validator("lambda_grid")
    @classmethod
    def _grid(cls, v: list[LambdaValue] | None) -> list[LambdaValue] | None:
        if v is not None and not v:
            raise ValueError("lambda_grid must list at least one λ")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PenaltySettings:
        if self.lambda_grid is not None and "lambda_" in self.model_fields_set:
            raise ValueError("give either lambda (one run) or lambda_grid (one run per entry), not both")
        if self.lambda_scale != 1.0 and AUTO not in self._values():
            raise ValueError("lambda_scale multiplies lambda: auto; it has no effect on a numeric λ")
        return self

    def _values(self) -> list[LambdaValue]:
        return list(self.lambda_grid) if self.lambda_grid is not None else [self.lambda_]

    def lambdas(self) -> list[RunLambda]:
        return [lambda_token(v, self.lambda_scale) for v in self._values()]

    def for_run(self, lam: RunLambda) -> PenaltySettings:
        # model_validate rather than model_copy(update=...): the copy must be valid on its own
        data = self.model_dump(by_alias=True, exclude={"lambda_grid"})
        data["lambda"] = AUTO if is_auto(lam) else lam
        if not is_auto(lam):
            data.pop("lambda_scale", None)
        return type(self).model_validate(data)

    @property
    def is_auto(self) -> bool:
        return self.lambda_ == AUTO


def lambda_token(value: LambdaValue, scale: float = 1.0) -> RunLambda:
    """A run's λ as written in ``run.json`` and its directory name (``-lam<token>``)."""
    if value == AUTO:
        return AUTO if scale == 1.0 else f"{AUTO}{scale:g}"
    return float(value)


def is_auto(lam: RunLambda) -> bool:
    return isinstance(lam, str) and lam.startswith(AUTO)


def format_lambda(lam: RunLambda) -> str:
    """``-`` for no λ, ``auto``/``auto10`` as is, numbers with ``:g``."""
    if lam is None:
        return "-"
    return lam if isinstance(lam, str) else f"{lam:g}"


def lambda_sort_key(lam: RunLambda) -> tuple[int, float]:
    """None first, then numbers ascending, then auto tokens by their scale."""
    if lam is None:
        return (0, 0.0)
    if isinstance(lam, str):
        rest = lam[len(AUTO) :]
        return (2, float(rest) if rest else 1.0)
    return (1, float(lam))


def parse_run_lambda(value: Any) -> RunLambda:
    """A λ read back from ``run.json``; raises ValueError when it is none of the forms."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == AUTO:
            return value
        if value.startswith(AUTO):
            scale = float(value[len(AUTO) :])  # ValueError when not a number
            if math.isfinite(scale) and scale > 0:
                return value
        raise ValueError(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    raise ValueError(value)


class LRControlSettings(MethodSettings):
    lr_scale: float = Field(0.5, gt=0, le=1)
    """Learning rate of tasks after the first, as a fraction of train.lr."""
    layer_decay: float = Field(0.8, gt=0, le=1)
    """Discriminative factor per layer below the top (ULMFiT)."""


class ReplaySettings(MethodSettings):
    replay_size: int = Field(500, ge=1)
    """Examples kept over all earlier tasks, shared equally among them."""


class OnlineEWCSettings(PenaltySettings):
    gamma: float = Field(1.0, gt=0, le=1)
    """Decay of the running Fisher per later task."""


class KFACSettings(PenaltySettings):
    penalty_dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    """dtype of the dense factor products. auto = bfloat16 when training runs in bf16 on a
    device that computes it natively (the forward pass is bf16 already; 3× faster products,
    gradient within ~1%), else float32."""


class OnlineKFACSettings(KFACSettings):
    gamma: float = Field(1.0, gt=0, le=1)
    """Decay of the running factors per later task."""


@dataclass(frozen=True)
class Section:
    """A method's config section: its settings model and the line that describes it."""

    settings: type[MethodSettings]
    summary: str


SECTIONS: dict[str, Section] = {
    "naive": Section(MethodSettings, "fine-tuning on each task in turn, nothing kept"),
    "lr_control": Section(LRControlSettings, "lower, per-layer decayed learning rates after the first task"),
    "replay": Section(ReplaySettings, "current task plus a bounded memory of earlier tasks' examples"),
    "ewc": Section(PenaltySettings, "diagonal Fisher penalty per earlier task"),
    "online_ewc": Section(OnlineEWCSettings, "running diagonal Fisher (decayed by γ) at the latest anchor"),
    "kfac": Section(KFACSettings, "Kronecker-factored Fisher per layer and per earlier task"),
    "online_kfac": Section(OnlineKFACSettings, "running Kronecker factors (decayed by γ) at the latest anchor"),
    "joint": Section(MethodSettings, "all tasks' training data at once (upper reference; not continual)"),
    "single": Section(MethodSettings, "a new model per task; each task's own accuracy is the reference"),
}
"""One section per registered method, in the registry's order (the order of reports)."""
NAMES: tuple[str, ...] = tuple(SECTIONS)
DEFAULT = NAMES[0]
"""The method of a config that names none (the forgetting baseline, ``naive``)."""
