"""Registry of linking tasks and their official splits.

A *task* is a corpus (files on disk) plus an optional filter on semantic types, so
``bc5cdr_disease`` and ``bc5cdr_chemical`` share the BC5CDR files.  Parsed corpora are
cached in-process because every trainer and evaluator reloads them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from pathlib import Path

from elcl.data.pubtator import parse_pubtator_file
from elcl.data.types import SPLITS, Corpus, Document
from elcl.errors import CorpusFormatError, ElclError


@dataclass(frozen=True)
class TaskSpec:
    """Where a task's files live and which mentions it keeps."""

    name: str
    corpus: str
    """Fetch name and directory under the data dir (e.g. ``bc5cdr``)."""
    split_files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per split: accepted file names (first found wins); empty for pmid-list corpora."""
    subdirs: tuple[str, ...] = ()
    """Directories (relative to the data dir) searched, in order."""
    semantic_types: tuple[str, ...] = ()
    """Keep only mentions of these types (empty: all)."""
    ontology_name: str = ""
    ontology_kind: str = "mentions"
    """What ``data.ontology: auto`` links against (see :func:`elcl.data.ontology.ontology_for_task`):
    medic, chemicals, medic+chemicals, genes, medic+chemicals+mentions, umls."""
    id_scheme: str = "mesh"
    """How the id column is read: ``mesh`` (MeSH/OMIM/UMLS) or ``biored`` (per entity type)."""


def _pubtator_split(train: str, dev: str, test: str) -> dict[str, tuple[str, ...]]:
    return {s: (f, f + ".gz") for s, f in zip(SPLITS, (train, dev, test))}


_MM_SPLIT_FILES = {
    "train": "corpus_pubtator_pmids_trng.txt",
    "dev": "corpus_pubtator_pmids_dev.txt",
    "test": "corpus_pubtator_pmids_test.txt",
}

TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in (
        TaskSpec(
            "ncbi_disease",
            "ncbi_disease",
            _pubtator_split("NCBItrainset_corpus.txt", "NCBIdevelopset_corpus.txt", "NCBItestset_corpus.txt"),
            ("ncbi_disease", "NCBI_disease", "."),
            (),
            "MEDIC",
            "medic",
        ),
        *(
            TaskSpec(
                name,
                "bc5cdr",
                _pubtator_split(
                    "CDR_TrainingSet.PubTator.txt", "CDR_DevelopmentSet.PubTator.txt", "CDR_TestSet.PubTator.txt"
                ),
                ("bc5cdr", "CDR_Data/CDR.Corpus.v010516", "."),
                types,
                onto,
                kind,
            )
            for name, types, onto, kind in (
                ("bc5cdr", (), "MEDIC + CTD chemicals or MeSH", "medic+chemicals"),
                ("bc5cdr_disease", ("Disease",), "MEDIC", "medic"),
                ("bc5cdr_chemical", ("Chemical",), "CTD chemicals or MeSH", "chemicals"),
            )
        ),
        *(
            TaskSpec(
                name,
                "biored",
                _pubtator_split("Train.PubTator", "Dev.PubTator", "Test.PubTator"),
                ("biored", "BioRED", "BIORED", "."),
                types,
                onto,
                kind,
                "biored",
            )
            for name, types, onto, kind in (
                (
                    "biored",
                    (),
                    "MEDIC + CTD chemicals or MeSH + training mentions of the other types",
                    "medic+chemicals+mentions",
                ),
                ("biored_disease", ("DiseaseOrPhenotypicFeature",), "MEDIC", "medic"),
                ("biored_chemical", ("ChemicalEntity",), "CTD chemicals or MeSH", "chemicals"),
                ("biored_gene", ("GeneOrGeneProduct",), "NCBI Gene (gene_info) or training mentions", "genes"),
            )
        ),
        TaskSpec(
            "medmentions_st21pv",
            "medmentions",
            {},
            ("medmentions_st21pv", "medmentions/st21pv/data", "medmentions/st21pv", "medmentions"),
            (),
            "UMLS",
            "umls",
        ),
        TaskSpec(
            "medmentions_full",
            "medmentions",
            {},
            ("medmentions_full", "medmentions/full/data", "medmentions/full", "medmentions"),
            (),
            "UMLS",
            "umls",
        ),
    )
}

# Where pmid split lists may sit for MedMentions (the official repository keeps them in full/data).
_MM_PMID_DIRS = ("medmentions/full/data", "medmentions_full", "medmentions")


def task_spec(name: str) -> TaskSpec:
    """The spec of a task; unknown names list the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise ElclError(f"unknown corpus/task {name!r}; known: {', '.join(TASKS)}") from None


def _find(data_dir: Path, subdirs: tuple[str, ...], names: tuple[str, ...], task: str, fetch_name: str) -> Path:
    for sub in subdirs:
        for n in names:
            p = data_dir / sub / n
            if p.is_file():
                return p
    expected = data_dir / subdirs[0] / names[0]
    raise ElclError(
        f"{task}: corpus file {expected} not found; run `elcl data fetch {fetch_name} --data-dir {data_dir}`"
    )


def _filter(docs: list[Document], types: tuple[str, ...]) -> tuple[Document, ...]:
    if not types:
        return tuple(docs)
    return tuple(replace(d, mentions=tuple(m for m in d.mentions if m.semantic_type in types)) for d in docs)


def _read_pmids(path: Path) -> list[str]:
    out = []
    for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if not line.isdigit():
            raise CorpusFormatError(path, no, f"expected one PMID per line, got {line!r}")
        out.append(line)
    return out


def _load_medmentions(
    spec: TaskSpec, data_dir: Path
) -> tuple[dict[str, tuple[Document, ...]], dict[str, tuple[str, ...]], dict[str, str]]:
    corpus_file = _find(
        data_dir, spec.subdirs, ("corpus_pubtator.txt.gz", "corpus_pubtator.txt"), spec.name, spec.corpus
    )
    result = parse_pubtator_file(corpus_file)
    by_id = {d.doc_id: d for d in result.documents}
    splits: dict[str, tuple[Document, ...]] = {}
    files = {"corpus": str(corpus_file)}
    for split, fname in _MM_SPLIT_FILES.items():
        pmid_file = _find(
            data_dir,
            (str(corpus_file.parent.relative_to(data_dir)),) + spec.subdirs + _MM_PMID_DIRS,
            (fname,),
            spec.name,
            spec.corpus,
        )
        files[split] = str(pmid_file)
        docs = []
        for pmid in _read_pmids(pmid_file):
            if pmid not in by_id:
                raise ElclError(f"{pmid_file}: PMID {pmid} is not in {corpus_file}")
            docs.append(by_id[pmid])
        splits[split] = _filter(docs, spec.semantic_types)
    warnings = {s: tuple(result.warnings) if s == "train" else () for s in SPLITS}
    return splits, warnings, files


def _id_rules(spec: TaskSpec) -> dict:
    if spec.id_scheme == "biored":
        from elcl.data.biored import ID_HELP, parse_biored_ids

        return {"id_parser": parse_biored_ids, "id_help": ID_HELP}
    return {}


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, data_dir: Path) -> Corpus:
    spec = task_spec(name)
    if spec.corpus == "medmentions":
        splits, warnings, files = _load_medmentions(spec, data_dir)
    else:
        splits, warnings, files = {}, {}, {}
        for split in SPLITS:
            path = _find(data_dir, spec.subdirs, spec.split_files[split], spec.name, spec.corpus)
            result = parse_pubtator_file(path, **_id_rules(spec))
            splits[split] = _filter(result.documents, spec.semantic_types)
            warnings[split] = tuple(result.warnings)
            files[split] = str(path)
    meta = {"data_dir": str(data_dir), **{f"file_{k}": v for k, v in files.items()}}
    return Corpus(name=name, splits=splits, ontology_name=spec.ontology_name, meta=meta, warnings=warnings)


def load_corpus(name: str, data_dir: Path | str) -> Corpus:
    """Load a task's official train/dev/test splits from ``data_dir`` (cached per process)."""
    task_spec(name)
    return _check_nonempty(_load_cached(name, Path(data_dir).expanduser().resolve()))


def builtin_task_files(name: str, data_dir: Path | str) -> dict[str, Path]:
    """The corpus files a built-in task reads, by role: ``train``/``dev``/``test`` (the
    pmid lists for MedMentions, with its ``corpus`` file)."""
    corpus = _load_cached(task_spec(name).name, Path(data_dir).expanduser().resolve())
    return {k.removeprefix("file_"): Path(v) for k, v in corpus.meta.items() if k.startswith("file_")}


def check_nonempty(corpus: Corpus) -> Corpus:
    return _check_nonempty(corpus)


def _check_nonempty(corpus: Corpus) -> Corpus:
    """An empty split trains on nothing or reports accuracy over n=0: refuse it, naming the file."""
    for split in SPLITS:
        where = corpus.meta.get(f"file_{split}") or corpus.meta.get("file_corpus") or corpus.meta.get("data_dir", "")
        if not corpus.documents(split):
            raise CorpusFormatError(
                where, None, f"{corpus.name}: the {split} split has no documents (empty or truncated file?)"
            )
        if not corpus.mentions(split):
            raise CorpusFormatError(
                where, None, f"{corpus.name}: the {split} split has no mentions of this task (empty or truncated file?)"
            )
    return corpus


def clear_cache() -> None:
    """Forget cached corpora (tests that rewrite files in place need this)."""
    _load_cached.cache_clear()
