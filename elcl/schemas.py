"""One typed schema per file a run writes, shared by the writers, the readers and tests.

* :class:`RunRecord` — ``<run>/run.json``: what the run is (method, λ, seed, order) and
  how far it got (status, steps done).
* :class:`MetricRow` — one line of ``<run>/metrics.jsonl``: acc@1/@5 of the model after
  step ``step`` (trained on ``trained_task``) on ``eval_task``'s ``split``.
* :class:`PredictionRow` — one line of ``<run>/predictions/<i>_<task>/<eval>.<split>.jsonl``:
  one mention, its gold ids, the ranked candidates and whether the top one is right.
* :class:`CurvatureMeta` — ``<run>/curvature/<task>/meta.json`` (format ``elcl-curvature/1``).
* :class:`PruneRecord` — ``<run>/pruned.json``: what ``elcl prune`` removed from a finished
  run, so a later reader can say why a checkpoint is gone instead of "not found".
* :class:`Lineage` — ``<export>/lineage.json`` (format ``elcl-lineage/1``): the versions of
  an exported linker (:class:`LineageVersion`: tasks, data hashes, method, λ, γ, metrics,
  settings, parent) and the curvature it carries for the next update
  (:class:`ExportCurvature`).

The trainer builds these objects and writes :meth:`dump`; readers call :func:`parse`,
which turns every validation failure into one :class:`~elcl.errors.ElclError` line
``FILE[:LINE]: key 'X' = value: expected ...`` (or ``missing key 'X' (expected ...)``).
Keys a newer elcl adds are kept and ignored by older code (``extra="allow"``), so a file
written by any elcl that wrote these keys loads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from elcl.errors import CheckpointError, ElclError
from elcl.method_settings import NAMES, parse_run_lambda

__all__ = [
    "CURVATURE_DTYPES",
    "CURVATURE_FORMAT",
    "known_methods",
    "SPLITS",
    "STATUSES",
    "CurvatureMeta",
    "EvalScore",
    "ExportCurvature",
    "CurvatureEntry",
    "LINEAGE_FORMAT",
    "Lineage",
    "LineageVersion",
    "TaskData",
    "MetricRow",
    "PredictionRow",
    "PruneRecord",
    "RunRecord",
    "dump_json",
    "format_error",
    "parse",
    "parse_json_file",
    "parse_jsonl_file",
]


def known_methods() -> tuple[str, ...]:
    """The registered continual methods (their config sections: :mod:`elcl.method_settings`)."""
    return NAMES


STATUSES = ("running", "done", "interrupted", "failed")
SPLITS = ("dev", "test")
CURVATURE_FORMAT = "elcl-curvature/1"
CURVATURE_DTYPES = ("float32", "float16", "bfloat16", "float64")


def _fraction(v: float) -> float:
    # NaN is a legitimate score of an empty split; anything else must be a fraction.
    if not (math.isnan(v) or 0.0 <= v <= 1.0):
        raise ValueError("out of range")
    return v


Fraction = Annotated[float, AfterValidator(_fraction)]


def _expected(text: str) -> Any:
    return Field(json_schema_extra={"expected": text})


class _Schema(BaseModel):
    # strict: "13" is not a seed and true is not a count; ints are accepted as floats.
    model_config = ConfigDict(strict=True, extra="allow", populate_by_name=True, frozen=True)

    def dump(self) -> dict[str, Any]:
        """The JSON object written to disk (aliases as keys, extra keys kept)."""
        return self.model_dump(mode="json", by_alias=True)


class TrainDocumentsRemoved(_Schema):
    """What the no-document-in-two-tasks rule removed from one task's training data."""

    documents: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    mentions: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    by_task: dict[str, int] = _expected("task name -> documents")
    doc_ids: list[str] = _expected("a list of document ids")


class Environment(_Schema):
    """One start of a run: the code, libraries and hardware it computed with from
    ``from_step`` on (``elcl.provenance``)."""

    from_step: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    elcl: str = _expected("a version string")
    commit: str | None = _expected("a git commit or null")
    torch: str = _expected("a version string")
    python: str = _expected("a version string")
    device: str = _expected("cpu|cuda")
    gpu: str | None = _expected("a GPU name or null")
    processes: int = Field(ge=1, json_schema_extra={"expected": "a positive integer"})
    threads: int = Field(ge=1, json_schema_extra={"expected": "a positive integer"})
    cpu_capability: str = _expected("torch's CPU capability (AVX2, AVX512, ...)")
    native_bf16: bool = _expected("true or false")


class RunRecord(_Schema):
    """``run.json``."""

    experiment: str = _expected("a string")
    method: str = _expected("a registered method name (elcl.continual.methods)")
    lam: float | str | None = Field(
        alias="lambda",
        json_schema_extra={"expected": "a non-negative number, 'auto…' or null"},
    )
    """The penalty strength of this run; ``auto…`` labels a rule that sets λ per task
    (``lambda: auto``) instead of one value; null for methods without a penalty."""
    seed: int = _expected("an integer")
    order: list[str] = _expected("a non-empty list of distinct task names")
    order_index: int = _expected("an integer")
    status: Literal["running", "done", "interrupted", "failed"] = _expected("one of " + "|".join(STATUSES))
    steps_done: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    train_documents_removed: dict[str, TrainDocumentsRemoved] | None = None
    """Per task of the order: its training documents held out because another task of
    the sequence has them in dev/test (no document in two tasks); absent in runs of
    older elcl."""
    environments: list[Environment] | None = None
    """One per start of the run, oldest first: a resumed run appends one (absent in runs
    of older elcl)."""

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        if v not in known_methods():
            raise ValueError("unknown method")
        return v

    @field_validator("lam")
    @classmethod
    def _lam(cls, v: float | str | None) -> float | str | None:
        if isinstance(v, str):
            parse_run_lambda(v)  # 'auto' or 'auto<scale>'; ValueError otherwise
        elif v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError("not a non-negative finite number")
        return v

    @field_validator("order")
    @classmethod
    def _order(cls, v: list[str]) -> list[str]:
        if not v or not all(v) or len(set(v)) != len(v):
            raise ValueError("bad order")
        return v


class PruneRecord(_Schema):
    """``pruned.json``: the files ``elcl prune`` removed from a finished run."""

    removed_steps: list[int] = _expected("a list of step indices")
    """Steps whose checkpoint (``steps/<i>_<task>/``) was removed."""
    removed_curvature: list[str] = _expected("a list of task names")
    """Tasks whose curvature statistics (``curvature/<task>/``) were removed."""
    bytes_freed: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})


class MetricRow(_Schema):
    """One line of ``metrics.jsonl``.

    Validated with ``context={"order": [...], "method": ...}`` (as :func:`parse_jsonl_file`
    is given by the run reader), a row must also belong to its run: ``eval_task`` in the
    order, ``trained_task`` the order's task at ``step``. For a method trained on all tasks
    at once the reader adds ``"one_step"``, the label of its one step: the row must be of
    step 0 with that label (the registry that knows which methods these are sits above
    this module)."""

    step: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    trained_task: str = _expected("a string")
    eval_task: str = _expected("a string")
    split: Literal["dev", "test"] = _expected("dev|test")
    acc1: Fraction = _expected("a number in [0, 1]")
    acc5: Fraction = _expected("a number in [0, 1]")
    n: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    n_unlinkable: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    tfidf_acc1: Fraction | None = Field(default=None, json_schema_extra={"expected": "a number in [0, 1] or null"})
    """The retriever's own top-1 on the same mentions (absent in files of elcl < 0.1)."""

    @model_validator(mode="after")
    def _belongs_to_run(self, info: ValidationInfo) -> MetricRow:
        ctx = info.context or {}
        order = ctx.get("order")
        if order is None:
            return self
        if self.eval_task not in order:
            raise _RunMismatch(f"eval_task '{self.eval_task}' is not in the run's order ({', '.join(order)})")
        label = ctx.get("one_step")  # a method trained on every task at once: its one step's label
        if label is not None:
            if self.step != 0 or self.trained_task != label:
                raise _RunMismatch(
                    f"{ctx.get('method')} runs have one step (step 0, trained_task '{label}'), got step "
                    f"{self.step}, trained_task '{self.trained_task}'"
                )
        elif self.step >= len(order):
            raise _RunMismatch(f"step {self.step} but the order has only {len(order)} task(s)")
        elif self.trained_task != order[self.step]:
            raise _RunMismatch(
                f"trained_task '{self.trained_task}' at step {self.step}, but "
                f"order[{self.step}] is '{order[self.step]}'"
            )
        return self


class PredictionRow(_Schema):
    """One mention in a predictions file: the unit the bootstrap resamples."""

    doc_id: str = _expected("a string")
    start: int = _expected("an integer")
    end: int = _expected("an integer")
    mention: str = _expected("a string")
    gold: list[str] = _expected("a list of concept ids")
    predicted: list[tuple[str, float]] = _expected("a list of [concept id, score] pairs")
    """Candidates ranked best first."""
    correct: bool | None = _expected("true|false|null")
    """Whether the top candidate is one of the gold ids (what acc@1 counts); null for a
    mention without gold ids (``elcl link`` on unannotated text)."""

    @field_validator("predicted", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        # JSON has no tuples: a [id, score] list is the pair.
        return [tuple(p) if isinstance(p, list) else p for p in v] if isinstance(v, list) else v

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.doc_id, self.start, self.end)


class CurvatureMeta(_Schema):
    """``meta.json`` of a curvature directory (see :mod:`elcl.curvature.storage`)."""

    format: Literal["elcl-curvature/1"] = Field(
        default="elcl-curvature/1", json_schema_extra={"expected": CURVATURE_FORMAT}
    )
    file: str = Field(default="factors.safetensors", json_schema_extra={"expected": "a file name"})
    approximation: str | None = _expected("kfac|diag|both")
    fisher_kind: str | None = _expected("empirical|sampled")
    sequence_variant: str | None = _expected("expand|reduce")
    n_examples: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})
    n_samples: int = Field(ge=1, json_schema_extra={"expected": "a positive integer"})
    model_config_hash: str = _expected("a string")
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = _expected("|".join(CURVATURE_DTYPES))
    symmetric_storage: Literal["full", "triu"] = _expected("full|triu")
    factors_sha256: str = _expected("a sha256 hex digest")
    elcl_version: str | None = Field(default=None, json_schema_extra={"expected": "a string"})


LINEAGE_FORMAT = "elcl-lineage/1"


class TaskData(_Schema):
    """The data one version trained on: a task, the files read for it (sha256 each) and
    the documents its dev/test splits hold out (a later update leaves them out of its
    training data, as a sequence run does, without reading this task's data again)."""

    task: str = _expected("a task name")
    files: dict[str, str] = _expected("file role (train, dev, test, ontology...) -> sha256 hex digest")
    ontology_hash: str | None = Field(default=None, json_schema_extra={"expected": "a content hash or null"})
    train_examples: int | None = Field(ge=0, json_schema_extra={"expected": "a non-negative integer or null"})
    held_out_documents: list[str] = _expected("a list of document ids (dev and test)")


class EvalScore(_Schema):
    """acc@1/@5 of a version on one evaluation set (a task's split)."""

    task: str = _expected("a task name")
    split: str = _expected("dev|test")
    acc1: Fraction = _expected("a fraction in [0, 1]")
    acc5: Fraction = _expected("a fraction in [0, 1]")
    n: int = Field(ge=0, json_schema_extra={"expected": "a non-negative integer"})


class LineageVersion(_Schema):
    """One version of an exported linker: what made it, from what, and how it scored."""

    version: int = Field(ge=1, json_schema_extra={"expected": "a positive integer"})
    parent: int | None = _expected("the parent version number or null")
    made_by: Literal["train", "update"] = _expected("train|update")
    created: str = _expected("an ISO 8601 UTC time")
    elcl_version: str = _expected("a version string")
    tasks: list[str] = _expected("the tasks trained in this version")
    data: list[TaskData] = _expected("one entry per task trained")
    method: str = _expected("a registered method name")
    lam: float | str | None = Field(
        alias="lambda", json_schema_extra={"expected": "a non-negative number, 'auto…' or null"}
    )
    gamma: float | None = _expected("a decay in (0, 1] or null")
    seed: int = _expected("an integer")
    step: int = Field(ge=0, json_schema_extra={"expected": "the sequence step of the version's last task"})
    settings: dict[str, Any] = _expected("the experiment config the version was trained with")
    metrics: list[EvalScore] = _expected("a list of evaluation scores")
    metrics_before: list[EvalScore] = Field(
        default_factory=list,
        json_schema_extra={"expected": "the --eval scores of the parent, before the update"},
    )
    weights_sha256: str = _expected("sha256 of the version's trainable weights")


class CurvatureEntry(_Schema):
    """One curvature directory (``elcl-curvature/1``) of an export."""

    dir: str = _expected("a folder name under curvature/")
    tasks: list[str] = _expected("the tasks it stands for")
    weight: float = Field(gt=0, json_schema_extra={"expected": "W, the total weight of a running state"})
    n_examples: dict[str, int] = _expected("task -> examples its Fisher averaged over")


class ExportCurvature(_Schema):
    """The curvature an export carries for the next update.

    ``online``: one running state (online K-FAC or online EWC: constant size whatever the
    number of versions; its anchor is the exported weights). ``per_task``: one entry per
    task with that task's own anchor (kfac/ewc, whose penalty sums the tasks' blocks
    exactly; one task's block more per version). With one task the two coincide."""

    mode: Literal["online", "per_task"] = _expected("online|per_task")
    approximation: str = _expected("kfac|diag|both")
    gamma: float | None = _expected("the decay of the running state or null")
    entries: list[CurvatureEntry] = _expected("a list of curvature directories, oldest first")
    model_config_hash: str = _expected("the model config hash the curvature was computed for")
    anchor_sha256: str = _expected("sha256 of the latest anchor (= the exported weights)")
    bytes: int = Field(ge=0, json_schema_extra={"expected": "the tensor files' total size (factors.safetensors)"})


class Lineage(_Schema):
    """``lineage.json`` of an export: every version so far, oldest first."""

    format: Literal["elcl-lineage/1"] = Field(default="elcl-lineage/1", json_schema_extra={"expected": LINEAGE_FORMAT})
    versions: list[LineageVersion] = _expected("a non-empty list of versions, oldest first")
    curvature: ExportCurvature | None = _expected("the curvature carried, or null")
    rng_state: str | None = Field(
        default=None, json_schema_extra={"expected": "a file holding torch's RNG state at the end of training, or null"}
    )

    @field_validator("versions")
    @classmethod
    def _nonempty(cls, v: list[LineageVersion]) -> list[LineageVersion]:
        if not v:
            raise ValueError("a lineage has at least one version")
        for i, ver in enumerate(v, 1):
            if ver.version != i:
                raise ValueError(f"version {ver.version} at position {i}; versions are numbered 1, 2, ...")
        return v

    @property
    def current(self) -> LineageVersion:
        return self.versions[-1]


class _RunMismatch(ValueError):
    """A well-formed row that does not belong to its run (message used as is)."""


S = TypeVar("S", bound=_Schema)


def _expected_of(model: type[BaseModel], key: str) -> str:
    field = model.model_fields.get(key)
    if field is None:
        for f in model.model_fields.values():
            if f.alias == key:
                field = f
                break
    extra = field.json_schema_extra if field is not None else None
    if isinstance(extra, dict) and "expected" in extra:
        return str(extra["expected"])
    return "a valid value"


def format_error(model: type[BaseModel], err: ValidationError, where: str) -> str:
    """The first problem of ``err`` as one line naming ``where`` and the key."""
    first = err.errors()[0]
    loc = first["loc"]
    if not loc:  # a model-level check
        ctx_err = (first.get("ctx") or {}).get("error")
        if isinstance(ctx_err, _RunMismatch):
            return f"{where}: {ctx_err}"
        if first["type"] == "model_type":
            return f"{where}: expected a JSON object"
        return f"{where}: {first['msg']}"
    key = str(loc[0])
    what = _expected_of(model, key)
    if first["type"] == "missing":
        return f"{where}: missing key '{key}' (expected {what})"
    shown = repr(first.get("input"))
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{where}: key '{key}' = {shown}, expected {what}"


def parse(model: type[S], obj: Any, where: str, context: dict | None = None, error: type[ElclError] = ElclError) -> S:
    """Validate one decoded JSON object; a failure is ``error`` with one line."""
    if not isinstance(obj, dict):
        raise error(f"{where}: expected a JSON object")
    try:
        return model.model_validate(obj, context=context)
    except ValidationError as err:
        if len(err.errors()[0]["loc"]) > 1 and isinstance(obj, dict):
            # Report the key's own value, not the inner item pydantic points at.
            key = str(err.errors()[0]["loc"][0])
            if key in obj:
                shown = repr(obj[key])
                shown = shown if len(shown) <= 60 else shown[:57] + "..."
                raise error(f"{where}: key '{key}' = {shown}, expected {_expected_of(model, key)}") from None
        raise error(format_error(model, err, where)) from None


def _read_text(path: Path, error: type[ElclError]) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: missing") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror or exc}") from None


def parse_json_file(model: type[S], path: Path | str, error: type[ElclError] = ElclError) -> S:
    """Read and validate a JSON file holding one ``model`` object."""
    path = Path(path)
    text = _read_text(path, error)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return parse(model, obj, str(path), error=error)


def parse_jsonl_file(model: type[S], path: Path | str, context: dict | None = None) -> list[tuple[int, S]]:
    """Read and validate a JSON-lines file: (line number, object) per non-blank line."""
    path = Path(path)
    out: list[tuple[int, S]] = []
    for lineno, line in enumerate(_read_text(path, ElclError).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise ElclError(f"{path}:{lineno}: not valid JSON") from None
        out.append((lineno, parse(model, obj, f"{path}:{lineno}", context)))
    return out


def dump_json(record: _Schema) -> str:
    """``record`` as the indented, key-sorted JSON text elcl writes."""
    return json.dumps(record.dump(), indent=2, sort_keys=True) + "\n"


# Curvature files report problems as CheckpointError, like the rest of that format.
CURVATURE_ERROR: type[ElclError] = CheckpointError
