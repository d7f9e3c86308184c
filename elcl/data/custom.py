"""Custom tasks loaded: their corpus and ontology, with every check built-in tasks get.

:func:`load_task_corpus` and :func:`task_ontology_of` take any task (a built-in name or
a :class:`~elcl.data.task_config.CustomTaskConfig`) and are what the training layer, the
runner and the data commands call.

Checks on a custom corpus, beyond the readers' own (offsets against the text, id
formats, structure; each ``FILE:LINE``): its pinned hashes (a run's), a document in two
splits of the task (it would be scored on what it trained on), and the built-in rule
that every split has documents and mentions. Gold ids absent from the ontology are
counted (:func:`elcl.data.ontology.gold_coverage`) and reported by `elcl data stats`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from elcl.data.bigbio import parse_bigbio_file
from elcl.data.corpora import check_nonempty, load_corpus
from elcl.data.ontology import Ontology, build_from_mentions, load_medic, ontology_for_task
from elcl.data.pubtator import (
    DEFAULT_ID_HELP,
    IdParser,
    IdRules,
    ParseResult,
    canonical_id,
    parse_pubtator_file,
    split_ids,
)
from elcl.data.task_config import DEFAULT_ID_PATTERN, CustomTaskConfig, TaskRef, check_pinned
from elcl.data.types import SPLITS, Corpus, Document
from elcl.errors import CorpusFormatError, ElclError

_CORPORA: dict[tuple, Corpus] = {}
_ONTOLOGIES: dict[tuple, Ontology] = {}


def uses_mesh_ids(task: CustomTaskConfig) -> bool:
    """The built-in MeSH/OMIM/UMLS id rules apply: a medic or mesh ontology and no id_pattern."""
    return task.id_pattern is None and task.ontology is not None and task.ontology.format in ("medic", "mesh")


def canonicaliser(task: CustomTaskConfig):
    """One id as the task writes it -> its canonical form (None: not an id of the task)."""
    prefix = task.id_prefix
    pattern = None if uses_mesh_ids(task) else re.compile(task.id_pattern or DEFAULT_ID_PATTERN)

    def canon(raw: str) -> str | None:
        part = raw.strip()
        if prefix and part and not part.startswith(prefix):
            part = prefix + part
        if pattern is None:
            return canonical_id(part)
        return part if pattern.fullmatch(part) else None

    return canon


def id_rules(task: CustomTaskConfig) -> tuple[IdParser | None, str]:
    """The task's id column parser and the formats its error message lists."""
    if uses_mesh_ids(task) and task.id_prefix is None:
        return None, DEFAULT_ID_HELP
    canon = canonicaliser(task)
    what = "MeSH/OMIM/UMLS ids" if uses_mesh_ids(task) else f"ids matching {task.id_pattern or DEFAULT_ID_PATTERN!r}"
    prefix = f" (prefix {task.id_prefix!r} added where missing)" if task.id_prefix else ""
    help_ = f"{what}{prefix} or -1, composites joined by '|' or '+'"

    def parse(raw: str, semantic_type: str) -> tuple[tuple[str, ...], bool] | None:
        raw = raw.strip()
        if raw == "-1":
            return (), True
        if not raw:
            return None
        parts = split_ids(raw)
        out: list[str] = []
        for part in parts:
            if part == "-1" and len(parts) > 1:
                continue
            cid = canon(part)
            if cid is None:
                return None
            if cid not in out:
                out.append(cid)
        return tuple(out), False

    return parse, help_


def task_id_rules(task: TaskRef) -> IdRules:
    """How any task's id column is read (for corpus files and for `elcl link` inputs)."""
    if isinstance(task, CustomTaskConfig):
        parser, help_ = id_rules(task)
        return IdRules(parser, help_, uses_mesh_ids(task))
    from elcl.data.corpora import task_spec

    if task_spec(task).id_scheme == "biored":
        from elcl.data.biored import ID_HELP, parse_biored_ids

        return IdRules(parse_biored_ids, ID_HELP)
    return IdRules()


def _read_split(task: CustomTaskConfig, path: Path) -> ParseResult:
    parser, help_ = id_rules(task)
    if task.format == "bigbio_kb":
        return parse_bigbio_file(path, parser, help_)
    return parse_pubtator_file(path, id_parser=parser, id_help=help_, check_shapes=uses_mesh_ids(task))


def _filter(docs: Iterable[Document], types: list[str] | None) -> tuple[Document, ...]:
    if not types:
        return tuple(docs)
    keep = set(types)
    return tuple(replace(d, mentions=tuple(m for m in d.mentions if m.semantic_type in keep)) for d in docs)


def held_out_for_dev(doc_ids: Iterable[str], fraction: float, task: str) -> frozenset[str]:
    """The training documents a task without a dev file holds out as dev: each id's
    sha256 decides, so the choice is fixed whatever the seed, order or machine (at least one)."""
    ids = list(dict.fromkeys(doc_ids))

    def score(d: str) -> float:
        return int.from_bytes(hashlib.sha256(f"elcl-dev:{task}:{d}".encode()).digest()[:8], "big") / 2**64

    chosen = {d for d in ids if score(d) < fraction}
    if not chosen and len(ids) > 1:
        chosen = {min(ids, key=score)}
    if len(chosen) >= len(ids):
        chosen = set(sorted(chosen, key=score)[: len(ids) - 1])
    return frozenset(chosen)


def _cache_key(task: CustomTaskConfig) -> tuple:
    stats: list[tuple[str, int | None, int | None]] = []
    for p in task.data_files().values():
        try:
            st = p.stat()
            stats.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            stats.append((str(p), None, None))
    return (task.model_dump_json(exclude={"sha256"}), tuple(stats))


def load_custom_corpus(task: CustomTaskConfig) -> Corpus:
    """A custom task's splits, checked (cached per process while its files are unchanged)."""
    check_pinned(task)
    key = _cache_key(task)
    if key not in _CORPORA:
        _CORPORA[key] = _load(task)
    return _CORPORA[key]


def _load(task: CustomTaskConfig) -> Corpus:
    files = task.split_files()
    splits: dict[str, tuple[Document, ...]] = {}
    warnings: dict[str, tuple[str, ...]] = {}
    for split, path in files.items():
        result = _read_split(task, path)
        splits[split] = _filter(result.documents, task.types)
        warnings[split] = tuple(result.warnings)
    meta = {f"file_{s}": str(p) for s, p in files.items()}
    if "dev" not in files:
        if len({d.doc_id for d in splits["train"]}) < 2:
            raise CorpusFormatError(
                files["train"],
                None,
                f"task {task.name} has no files.dev and too few training documents to hold a dev share out of; "
                "give files.dev",
            )
        dev_ids = held_out_for_dev((d.doc_id for d in splits["train"]), task.dev_fraction, task.name)
        splits["dev"] = tuple(d for d in splits["train"] if d.doc_id in dev_ids)
        splits["train"] = tuple(d for d in splits["train"] if d.doc_id not in dev_ids)
        warnings["dev"] = ()
        meta["file_dev"] = f"{files['train']} (held-out share)"
        meta["dev"] = f"{len(dev_ids)} training documents held out (dev_fraction {task.dev_fraction}, by document id)"
    splits = {s: splits[s] for s in SPLITS}
    seen: dict[str, str] = {}
    for split in SPLITS:
        for d in splits[split]:
            other = seen.get(d.doc_id)
            if other is not None and other != split:
                where = files.get(split, files["train"])
                raise CorpusFormatError(
                    where,
                    None,
                    f"task {task.name}: document {d.doc_id} is in both {other} and {split}: "
                    "a document scored on what it was trained on inflates every figure",
                )
            seen[d.doc_id] = split
    onto = task.ontology
    onto_name = f"{onto.format} {onto.file}" if onto is not None else "training mentions"
    return check_nonempty(Corpus(task.name, splits, onto_name, meta, warnings))


def _custom_file_ontology(task: CustomTaskConfig) -> Ontology | None:
    o = task.ontology
    if o is None:
        return None
    key = _cache_key(task)
    if key in _ONTOLOGIES:
        return _ONTOLOGIES[key]
    check_pinned(task)
    if o.format == "medic":
        onto = load_medic(o.file)
    elif o.format == "mesh":
        from elcl.data.mesh import load_mesh_descriptors, load_mesh_supplementary

        onto = load_mesh_descriptors(o.file, tuple(o.trees) if o.trees else None)
        if o.supplementary is not None:
            onto = onto.merged(load_mesh_supplementary(o.supplementary))
    else:
        from elcl.data.vocab import load_obo_vocabulary, load_tsv_vocabulary

        base = canonicaliser(task)

        def canon(raw: str) -> str:
            # Ontology ids are taken as written (with the prefix rule): a vocabulary may hold
            # ids the corpus pattern does not (imports of other ontologies), harmlessly.
            prefix = task.id_prefix
            part = raw.strip()
            if prefix and not part.startswith(prefix):
                part = prefix + part
            return base(part) or part

        loader = load_obo_vocabulary if o.format == "obo" else load_tsv_vocabulary
        onto, _ = loader(o.file, canon)
    _ONTOLOGIES[key] = onto
    return onto


def load_task_corpus(task: TaskRef, data_dir: Path | str | None) -> Corpus:
    """Any task's corpus: a built-in one's official files under ``data_dir``, or a custom one's."""
    if isinstance(task, CustomTaskConfig):
        return load_custom_corpus(task)
    if data_dir is None:
        raise ElclError(f"{task}: a built-in task needs its data directory")
    return load_corpus(task, data_dir)


def task_ontology_of(
    task: TaskRef,
    data_dir: Path | str | None,
    corpus: Corpus | None = None,
    mode: str = "auto",
    dictionary_splits: Iterable[str] = ("train",),
) -> Ontology:
    """Any task's ontology, as ``data.ontology`` says: ``auto`` (a custom task: its
    ontology file, else a dictionary of training mentions), ``mentions`` or
    ``auto+mentions`` (the file plus the training mentions' names)."""
    if not isinstance(task, CustomTaskConfig):
        if data_dir is None:
            raise ElclError(f"{task}: a built-in task needs its data directory")
        return ontology_for_task(task, data_dir, corpus, mode=mode, dictionary_splits=dictionary_splits)
    if mode not in ("auto", "mentions", "auto+mentions"):
        raise ElclError(f"ontology mode {mode!r}: expected 'auto', 'mentions' or 'auto+mentions'")
    splits = tuple(dictionary_splits)
    full = corpus if corpus is not None else load_custom_corpus(task)
    if mode == "mentions":
        return build_from_mentions(full, splits)
    onto = _custom_file_ontology(task)
    if onto is None:
        return build_from_mentions(full, splits)
    if mode == "auto+mentions":
        return onto.merged(build_from_mentions(full, splits))
    return onto


def clear_custom_cache() -> None:
    """Forget cached custom corpora and ontologies."""
    _CORPORA.clear()
    _ONTOLOGIES.clear()
