"""A task defined by the user: their corpus files, their ontology, their id rules.

Built-in tasks are names (``elcl.data.corpora.TASKS``). A *custom* task is one entry
of this schema, written in a config's ``tasks:`` list or in a YAML file of its own
(``read_task_spec``: what ``elcl update --task SPEC`` and ``elcl data stats`` take)::

    name: clinic_2026q3
    files: {train: q3/train.pubtator, dev: q3/dev.pubtator, test: q3/test.pubtator}
    format: pubtator          # or bigbio_kb (BigBio KB schema, .json array or .jsonl)
    types: [Disease]          # optional: keep only mentions of these types
    ontology: {file: vocab/terms.tsv, format: tsv}   # or obo, medic, mesh; optional

Relative paths are resolved against the directory of the YAML file that holds them
(a config's or a task file's), so a run's ``config.yaml`` holds absolute paths and
works from any working directory. A run pins the sha256 of every file it read
(``sha256``): a later resume, ``elcl link`` or ``elcl evaluate`` of that run refuses
files whose content has changed instead of silently linking against other data.

The schema and the hashing live here (data layer, no I/O beyond reading the files);
loading the corpus and ontology is :mod:`elcl.data.custom`.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from elcl.errors import ConfigError, ElclError
from elcl.fileio import read_yaml_file

TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
"""A task name is a directory-name part of a run (``step_0_<task>``): no '/', no spaces."""
DEFAULT_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.:-]*"
"""One concept id of a custom vocabulary when the task gives no ``id_pattern``: letters,
digits and ``_ . : -`` (``HP:0000118``, ``MONDO:0005148``, ``T042``); ``|`` and ``+``
join the parts of a composite id, as in the built-in corpora."""
MAX_TASK_FILE_BYTES = 1 << 20
TaskFormat = Literal["pubtator", "bigbio_kb"]
OntologyFormat = Literal["tsv", "obo", "medic", "mesh"]
HASH_ROLES = ("train", "dev", "test", "corpus", "ontology", "ontology_supplementary")
"""Keys of :func:`task_data_hashes` (those of files a task has; ``corpus``: MedMentions'
one corpus file, whose splits are pmid lists)."""


def builtin_task_names() -> tuple[str, ...]:
    """The built-in task names (``elcl.data.corpora.TASKS``), imported when asked: the schema
    itself depends on nothing else of elcl, so the config layer can hold it."""
    from elcl.data.corpora import TASKS

    return tuple(TASKS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskFiles(_Strict):
    """The corpus files of the three splits. ``train`` and ``test`` are required (a task
    that cannot be scored is no task); without ``dev`` a fixed, seed-independent share of
    the training documents (``dev_fraction``) is held out as dev, chosen by document id."""

    train: Path
    dev: Path | None = None
    test: Path

    @field_validator("train", "dev", "test")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        # Still relative here (an entry given with --set): taken from the working directory.
        return _abs(v)


class TaskOntology(_Strict):
    """What the task links against.

    * ``tsv``: ``id<TAB>name[<TAB>synonym|synonym...]``; an optional header line whose
      first column is ``id``; ``#`` lines and blank lines skipped; an id may take several
      rows (one per synonym: their names are merged).
    * ``obo``: OBO 1.2/1.4 (HPO, MONDO, DOID) read with ``obonet``: ``name`` and
      ``synonym`` lines are the names, ``alt_id`` maps to the term, obsolete terms are
      dropped (and counted), a term id given twice is an error.
    * ``medic``: CTD's ``CTD_diseases.tsv[.gz]`` (as the built-in disease tasks).
    * ``mesh``: a MeSH descriptors file (``mesh_descriptors_YYYY.tsv[.gz]`` or NLM's
      ``descYYYY.xml[.gz]``), optionally restricted to ``trees`` (``[D]``: chemicals) and
      merged with a ``supplementary`` concepts file.
    """

    file: Path
    format: OntologyFormat
    supplementary: Path | None = None
    """mesh only: a supplementary concept records file (``C...`` ids) merged in."""
    trees: list[str] | None = None
    """mesh only: keep descriptors under these tree-number prefixes."""

    @field_validator("file", "supplementary")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        return _abs(v)

    @model_validator(mode="after")
    def _mesh_only(self) -> TaskOntology:
        if self.format != "mesh" and (self.supplementary is not None or self.trees is not None):
            raise ValueError("ontology.supplementary and ontology.trees apply to format mesh only")
        return self


class CustomTaskConfig(_Strict):
    """One user-defined task (see the module docstring)."""

    name: str
    files: TaskFiles
    format: TaskFormat = "pubtator"
    types: list[str] | None = None
    """Keep only mentions of these semantic types (None: all)."""
    ontology: TaskOntology | None = None
    """None: the task links against a dictionary of its training mentions."""
    id_pattern: str | None = None
    """A regular expression one corpus concept id must match in full. Default: the
    MeSH/OMIM/UMLS rules of the built-in corpora when the ontology is medic or mesh,
    else :data:`DEFAULT_ID_PATTERN`."""
    id_prefix: str | None = None
    """Added to every id (corpus and ontology) that does not start with it: a corpus that
    writes ``0000118`` meets an ontology that writes ``HP:0000118`` with ``id_prefix: 'HP:'``."""
    dev_fraction: float = Field(0.1, gt=0, lt=1)
    """Share of training documents held out as dev when ``files.dev`` is absent."""
    sha256: dict[str, str] | None = None
    """Pinned content hashes (``task_data_hashes``), written by a run into its config.yaml."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not TASK_NAME.match(v):
            raise ValueError("expected a plain task name: letters, digits, '_', '.', '-' (at most 100 characters)")
        if v in builtin_task_names():
            raise ValueError(f"{v!r} is a built-in task; give a custom task its own name")
        return v

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or not all(t.strip() for t in v)):
            raise ValueError("expected a non-empty list of semantic types (or leave types out)")
        return v

    @field_validator("id_pattern")
    @classmethod
    def _pattern(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc})") from None
        return v

    @field_validator("sha256")
    @classmethod
    def _hashes(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None:
            for role, digest in v.items():
                if role not in HASH_ROLES or not re.fullmatch(r"[0-9a-f]{64}", digest):
                    raise ValueError(f"{role}: expected one of {', '.join(HASH_ROLES)} -> a sha256 hex digest")
        return v

    def split_files(self) -> dict[str, Path]:
        """The split files given (dev may be absent)."""
        return {s: p for s in ("train", "dev", "test") if (p := getattr(self.files, s)) is not None}

    def data_files(self) -> dict[str, Path]:
        """Every file the task reads, by its :data:`HASH_ROLES` key."""
        out = dict(self.split_files())
        if self.ontology is not None:
            out["ontology"] = self.ontology.file
            if self.ontology.supplementary is not None:
                out["ontology_supplementary"] = self.ontology.supplementary
        return out

    def pinned(self) -> CustomTaskConfig:
        """This task with the sha256 of its files as they are now (what a run records)."""
        return self.model_copy(update={"sha256": task_data_hashes(self)})

    def to_dict(self) -> dict[str, Any]:
        """The JSON/YAML form a config holds (absolute paths, null fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)


TaskRef = str | CustomTaskConfig
"""What every task-taking function accepts: a built-in task name or a custom task."""


def _abs(p: Path | None) -> Path | None:
    return None if p is None else Path(p).expanduser().absolute()


def task_name(task: TaskRef) -> str:
    return task if isinstance(task, str) else task.name


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's bytes as stored (a ``.gz`` file is hashed compressed)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        raise ElclError(f"{path}: file not found") from None
    except OSError as exc:
        raise ElclError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return h.hexdigest()


def task_data_hashes(task: TaskRef, data_dir: Path | str | None = None) -> dict[str, str]:
    """sha256 of every file a task reads, by role: the data lineage of a linker.

    A custom task: ``train``, ``dev`` (when given), ``test``, ``ontology`` and
    ``ontology_supplementary`` (those it has). A built-in task: its split files under
    ``data_dir`` (default ``$ELCL_DATA_DIR``; MedMentions adds ``corpus``) and
    ``ontology:<file name>`` for each ontology file ``data.ontology: auto`` reads there."""
    if isinstance(task, CustomTaskConfig):
        return {role: file_sha256(p) for role, p in task.data_files().items()}
    from elcl.data.corpora import builtin_task_files
    from elcl.data.ontology import auto_ontology_files

    if data_dir is None:
        import os

        env = os.environ.get("ELCL_DATA_DIR")
        if not env:
            raise ElclError(
                f"{task}: a built-in task's data hashes need its data directory (data_dir or $ELCL_DATA_DIR)"
            )
        data_dir = env
    files = builtin_task_files(task, data_dir)
    for p in auto_ontology_files(task, data_dir):
        files[f"ontology:{p.name}"] = p
    return {role: file_sha256(p) for role, p in files.items()}


def check_pinned(task: CustomTaskConfig) -> None:
    """Refuse files whose content differs from the hashes a run pinned (one line naming the file)."""
    if not task.sha256:
        return
    files = task.data_files()
    for role, digest in task.sha256.items():
        path = files.get(role)
        if path is None:
            raise ElclError(f"task {task.name}: the run read a {role} file that the task no longer names")
        now = file_sha256(path)
        if now != digest:
            raise ElclError(
                f"{path}: content changed since the run read it (task {task.name} {role}: sha256 {digest[:12]}…, "
                f"now {now[:12]}…); restore the file or train a new run"
            )


def _resolve(value: Any, base: Path) -> Any:
    if isinstance(value, str) and value.strip():
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (base / p))
    return value


def resolve_entry_paths(entry: dict[str, Any], base_dir: Path) -> dict[str, Any]:
    """A raw task entry with its relative file paths made relative to ``base_dir``."""
    out = dict(entry)
    files = out.get("files")
    if isinstance(files, dict):
        out["files"] = {k: _resolve(v, base_dir) for k, v in files.items()}
    onto = out.get("ontology")
    if isinstance(onto, dict):
        out["ontology"] = {k: (_resolve(v, base_dir) if k in ("file", "supplementary") else v) for k, v in onto.items()}
    return out


def is_task_file(spec: str) -> bool:
    """Whether a task argument names a YAML task file rather than a built-in task."""
    return spec.strip().lower().endswith((".yaml", ".yml"))


def resolve_tasks_list(tasks: Any, base_dir: Path) -> Any:
    """A config file's raw ``tasks:`` list with entries' paths and task-file names made
    relative to the config's directory (the file's own rule; used per file of ``extends:``)."""
    if not isinstance(tasks, list):
        return tasks
    out: list[Any] = []
    for t in tasks:
        if isinstance(t, dict):
            out.append(resolve_entry_paths(t, base_dir))
        elif isinstance(t, str) and is_task_file(t):
            out.append(_resolve(t, base_dir))
        else:
            out.append(t)
    return out


def custom_task_from_dict(raw: Any, source: str) -> CustomTaskConfig:
    """Validate one raw task entry; errors name ``source`` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a task entry (a mapping with name, files, format, ...)")
    try:
        return CustomTaskConfig.model_validate(raw)
    except ValidationError as err:
        e = err.errors()[0]
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "literal_error":
            msg = f"invalid value {e.get('input')!r}; {msg}"
        return_key = f"task key {key!r}: " if key else ""
        raise ConfigError(f"{source}: {return_key}{msg}") from None


def read_task_spec(spec: str, base_dir: Path | None = None) -> TaskRef:
    """A built-in task name, or the custom task of a YAML file holding one task entry.

    ``base_dir`` resolves a relative YAML path (default: the working directory); the
    entry's own relative file paths resolve against the YAML file's directory."""
    names = builtin_task_names()
    spec = spec.strip()
    if spec in names:
        return spec
    if not is_task_file(spec):
        raise ConfigError(
            f"unknown corpus/task {spec!r}; known: {', '.join(names)}; or a task file (.yaml) holding one task entry"
        )
    path = Path(spec).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    raw = read_yaml_file(path, "task file", MAX_TASK_FILE_BYTES, encoding="utf-8-sig")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected one task entry (a mapping with name, files, format, ...)")
    return custom_task_from_dict(resolve_entry_paths(raw, path.parent.absolute()), str(path))


def open_bytes(path: Path):
    """A binary handle of a plain or ``.gz`` file."""
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")
