"""Ontologies: concept id -> names, plus the ids each concept is equivalent to.

Ids are canonicalised exactly like corpus ids (:func:`elcl.data.pubtator.canonical_id`)
so a gold ``OMIM:1234`` in NCBI Disease meets the MEDIC concept that lists it among its
AltDiseaseIDs.  Ids of other vocabularies (e.g. MEDIC's ``DO:DOID:...``) are kept as
written: they never match a gold id but are harmless.
"""

from __future__ import annotations

import functools
import gzip
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from elcl.data.concepts import Ontology
from elcl.data.pubtator import canonical_id, split_ids
from elcl.data.types import Corpus, Mention
from elcl.errors import CorpusFormatError, ElclError

_PREFIXED = re.compile(r"^[A-Za-z]+:\S*$")


def _canon(raw: str) -> str:
    """Canonical id where the format is known, else the stripped id itself."""
    raw = raw.strip()
    return canonical_id(raw) or raw


def _add(names: dict[str, list[str]], cid: str, name: str) -> None:
    name = name.strip()
    if not name:
        return
    cur = names.setdefault(cid, [])
    if name not in cur:
        cur.append(name)


def _text_lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    if not path.is_file():
        raise ElclError(f"{path}: ontology file not found")
    no = 0
    try:
        with opener(path, "rb") as fh:
            for no, raw in enumerate(fh, start=1):
                try:
                    yield no, raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise CorpusFormatError(path, no, "not valid UTF-8") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        # A cut download or a file that is not gzip at all: one line, not a traceback.
        raise CorpusFormatError(
            path, no + 1, f"truncated or not a gzip file ({exc.__class__.__name__}); fetch it again"
        ) from None
    except OSError as exc:
        raise CorpusFormatError(path, None, f"cannot read ontology file ({exc.strerror or exc})") from None


def _load_ctd(path: Path, kind: str, name_col: int, id_col: int, syn_col: int, alt_col: int | None) -> Ontology:
    names: dict[str, list[str]] = {}
    alts: dict[str, frozenset[str]] = {}
    for no, line in _text_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) <= max(name_col, id_col):
            raise CorpusFormatError(
                path,
                no,
                f"{kind} line has {len(cols)} tab-separated columns, expected at least {max(name_col, id_col) + 1}",
            )
        # Lenient on prefixed ids: MEDIC's root concept is 'MESH:C' ("Diseases").
        raw_id = cols[id_col].strip()
        cid = canonical_id(raw_id) or (raw_id if _PREFIXED.match(raw_id) else None)
        if cid is None or not cols[name_col].strip():
            raise CorpusFormatError(
                path,
                no,
                f"bad {kind} row: id {cols[id_col]!r} (expected MESH:D012345 or OMIM:123456) with name {cols[name_col]!r}",
            )
        if cid in names:
            raise CorpusFormatError(path, no, f"concept {cid} appears twice")
        _add(names, cid, cols[name_col])
        if len(cols) > syn_col:
            for syn in cols[syn_col].split("|"):
                _add(names, cid, syn)
        if alt_col is not None and len(cols) > alt_col and cols[alt_col].strip():
            alts[cid] = frozenset(_canon(a) for a in cols[alt_col].split("|") if a.strip())
    if not names:
        raise CorpusFormatError(path, None, f"no {kind} concepts found")
    return Ontology(names, alts, f"{kind} file {path}")


@functools.lru_cache(maxsize=8)
def _cached_file(kind: str, path: Path, mtime: float) -> Ontology:
    if kind == "medic":
        return _load_ctd(path, "MEDIC", 0, 1, 7, 2)
    if kind == "ctd_chemicals":
        return _load_ctd(path, "CTD chemicals", 0, 1, 7, None)
    if kind == "mrconso":
        return _load_mrconso(path)
    if kind == "gene_info":
        return _load_gene_info(path)
    return _load_dictionary(path)


def _cached(kind: str, path: Path | str) -> Ontology:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ElclError(f"{p}: ontology file not found")
    return _cached_file(kind, p, p.stat().st_mtime)


def load_medic(path: Path | str) -> Ontology:
    """MEDIC (CTD_diseases.tsv[.gz]): DiseaseName + Synonyms, AltDiseaseIDs (OMIM) as equivalents."""
    return _cached("medic", path)


def load_ctd_chemicals(path: Path | str) -> Ontology:
    """CTD chemicals (CTD_chemicals.tsv[.gz]): ChemicalName + Synonyms."""
    return _cached("ctd_chemicals", path)


def _load_mrconso(path: Path) -> Ontology:
    names: dict[str, list[str]] = {}
    for no, line in _text_lines(path):
        if not line.strip():
            continue
        cols = line.split("|")
        if len(cols) < 15 or not cols[0].startswith("C"):
            raise CorpusFormatError(
                path,
                no,
                f"MRCONSO line has {len(cols)} '|'-separated columns or CUI {cols[0]!r}; expected >= 15 and C0000000",
            )
        if cols[1] != "ENG":
            continue
        cid = canonical_id(f"UMLS:{cols[0]}")
        if cid is None:
            raise CorpusFormatError(path, no, f"bad CUI {cols[0]!r}")
        _add(names, cid, cols[14])
    return Ontology(names, {}, f"UMLS MRCONSO file {path}")


def load_mrconso(path: Path | str) -> Ontology:
    """UMLS MRCONSO.RRF: English strings (col 14) per CUI (col 0), ids ``UMLS:C0000000``."""
    return _cached("mrconso", path)


def _load_dictionary(path: Path) -> Ontology:
    names: dict[str, list[str]] = {}
    for no, line in _text_lines(path):
        if not line.strip():
            continue
        if "||" not in line:
            raise CorpusFormatError(path, no, "expected 'ID||name'")
        raw_ids, name = line.split("||", 1)
        if not name.strip():
            raise CorpusFormatError(path, no, "empty name")
        for part in split_ids(raw_ids):
            cid = canonical_id(part)
            if cid is None:
                raise CorpusFormatError(path, no, f"unknown concept id format {part!r}")
            _add(names, cid, name)
    return Ontology(names, {}, f"dictionary file {path}")


def load_dictionary(path: Path | str) -> Ontology:
    """BioSyn-style ``ID||name`` lines; composite ids give the name to every part."""
    return _cached("dictionary", path)


def build_from_mentions(corpus: Corpus, splits: Iterable[str] = ("train",)) -> Ontology:
    """A dictionary of the gold mentions of ``splits`` (never pass ``test``: it leaks).

    Single-id mentions name their concept; composite mentions name each part only when
    their component texts (BC5CDR's 7th column) line up with the ids.  Names are ordered
    by frequency so the most common surface form is the preferred one.
    """
    splits = tuple(splits)
    if "test" in splits:
        raise ElclError("a mention dictionary must not be built from the test split")
    counts: dict[str, Counter[str]] = {}
    for split in splits:
        for m in corpus.mentions(split, linkable_only=True):
            pairs = (
                [(m.concept_ids[0], m.text)]
                if len(m.concept_ids) == 1
                else (list(zip(m.concept_ids, m.components)) if len(m.components) == len(m.concept_ids) else [])
            )
            for cid, text in pairs:
                if text.strip():
                    counts.setdefault(cid, Counter())[text.strip()] += 1
    names = {cid: [n for n, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))] for cid, c in counts.items()}
    return Ontology(names, {}, f"mentions of {corpus.name} {'+'.join(splits)}")


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def chemical_ontology(onto_dir: Path) -> Ontology | None:
    """CTD chemicals when present, else MeSH (tree-D descriptors + supplementary concepts),
    else None (the caller falls back to a dictionary of training mentions)."""
    from elcl.data.mesh import load_mesh_chemicals

    chem = _first(onto_dir / "CTD_chemicals.tsv.gz", onto_dir / "CTD_chemicals.tsv")
    if chem is not None:
        return load_ctd_chemicals(chem)
    return load_mesh_chemicals(onto_dir)


def ontology_for_task(
    task_name: str,
    data_dir: Path | str,
    corpus: Corpus | None = None,
    mode: str = "auto",
    dictionary_splits: Iterable[str] = ("train",),
) -> Ontology:
    """The ontology a task links against; ``.source`` records which one was used.

    auto, by the task's ``ontology_kind``: MEDIC for disease tasks; for chemical tasks
    CTD chemicals, else MeSH (tree-D descriptors + supplementary concepts,
    :mod:`elcl.data.mesh`); NCBI Gene (``gene_info``) for BioRED genes; UMLS MRCONSO for
    MedMentions; each when its file exists under ``data_dir/ontologies``, else a
    dictionary of ``dictionary_splits`` mentions (MEDIC is required for disease tasks).
    Whole corpora merge these; BioRED's types without an ontology file (species,
    variants, cell lines) always come from its training mentions.
    """
    from elcl.data.corpora import load_corpus, task_spec

    spec = task_spec(task_name)
    if mode not in ("auto", "mentions", "auto+mentions"):
        raise ElclError(f"ontology mode {mode!r}: expected 'auto', 'mentions' or 'auto+mentions'")
    if mode == "auto+mentions":
        # The ontology file plus the corpus's own training synonyms (BioSyn-style): the
        # annotation conventions of a corpus ("toxicity" -> drug side effects) are only
        # learnable from its training mentions.
        base = ontology_for_task(task_name, data_dir, corpus, "auto", dictionary_splits)
        if base.source.startswith("mentions"):
            return base
        full = corpus if corpus is not None else load_corpus(task_name, Path(data_dir))
        return base.merged(build_from_mentions(full, tuple(dictionary_splits)))
    data_dir = Path(data_dir)
    splits = tuple(dictionary_splits)

    def mentions() -> Ontology:
        return build_from_mentions(corpus if corpus is not None else load_corpus(task_name, data_dir), splits)

    if mode == "mentions":
        return mentions()
    onto_dir = data_dir / "ontologies"
    medic = _first(onto_dir / "CTD_diseases.tsv.gz", onto_dir / "CTD_diseases.tsv")
    kind = spec.ontology_kind

    def need_medic() -> Path:
        if medic is None:
            raise ElclError(
                f"{task_name}: MEDIC not found at {onto_dir / 'CTD_diseases.tsv.gz'}; run `elcl data fetch medic --data-dir {data_dir}` or use ontology mode 'mentions'"
            )
        return medic

    def mentions_of(keep: Callable[[str], bool]) -> Ontology:
        """Training-mention dictionary of only the entity types ``keep`` accepts."""
        full = corpus if corpus is not None else load_corpus(task_name, data_dir)
        return build_from_mentions(_only_types(full, keep), splits)

    if kind == "medic":
        return load_medic(need_medic())
    if kind == "chemicals":
        chemicals = chemical_ontology(onto_dir)
        return chemicals if chemicals is not None else mentions()
    if kind == "genes":
        genes = _first(*(onto_dir / n for n in GENE_INFO_NAMES))
        return load_gene_info(genes) if genes is not None else mentions()
    if kind in ("medic+chemicals", "medic+chemicals+mentions"):
        if medic is None:
            return mentions()
        chem_types = CHEMICAL_TYPES
        chemicals = chemical_ontology(onto_dir)
        base = (
            load_medic(medic).merged(chemicals)
            if chemicals is not None
            else load_medic(medic).merged(mentions_of(lambda t: t in chem_types))
        )
        if kind == "medic+chemicals":
            return base
        # BioRED's other types (genes, species, variants, cell lines) have no ontology file here.
        return base.merged(mentions_of(lambda t: t not in chem_types and t not in DISEASE_TYPES))
    if kind == "umls":
        mrconso = _first(onto_dir / "MRCONSO.RRF", onto_dir / "MRCONSO.RRF.gz", data_dir / "umls" / "MRCONSO.RRF")
        return load_mrconso(mrconso) if mrconso is not None else mentions()
    return mentions()


def auto_ontology_files(task_name: str, data_dir: Path | str) -> list[Path]:
    """The ontology files ``ontology_for_task(..., mode="auto")`` reads for a built-in task
    (none when it falls back to a dictionary of training mentions): for data hashes."""
    from elcl.data.corpora import task_spec
    from elcl.data.mesh import find_mesh_files

    onto_dir = Path(data_dir) / "ontologies"
    kind = task_spec(task_name).ontology_kind
    medic = _first(onto_dir / "CTD_diseases.tsv.gz", onto_dir / "CTD_diseases.tsv")
    chem = _first(onto_dir / "CTD_chemicals.tsv.gz", onto_dir / "CTD_chemicals.tsv")
    if chem is not None:
        chemicals = [chem]
    else:
        desc, supp = find_mesh_files(onto_dir)
        chemicals = [p for p in (desc, supp) if p is not None] if desc is not None else []
    out: list[Path | None] = []
    if kind == "medic":
        out = [medic]
    elif kind == "chemicals":
        out = list(chemicals)
    elif kind in ("medic+chemicals", "medic+chemicals+mentions"):
        out = [medic, *chemicals] if medic is not None else []
    elif kind == "genes":
        out = [_first(*(onto_dir / n for n in GENE_INFO_NAMES))]
    elif kind == "umls":
        out = [_first(onto_dir / "MRCONSO.RRF", onto_dir / "MRCONSO.RRF.gz", Path(data_dir) / "umls" / "MRCONSO.RRF")]
    return [p for p in out if p is not None]


CHEMICAL_TYPES = ("Chemical", "ChemicalEntity")
DISEASE_TYPES = (
    "Disease",
    "DiseaseOrPhenotypicFeature",
    "SpecificDisease",
    "DiseaseClass",
    "Modifier",
    "CompositeMention",
)
GENE_INFO_NAMES = (
    "gene_info.gz",
    "gene_info",
    "Homo_sapiens.gene_info.gz",
    "Homo_sapiens.gene_info",
    "All_Data.gene_info.gz",
)


def _only_types(corpus: Corpus, keep: Callable[[str], bool]) -> Corpus:
    from dataclasses import replace

    return replace(
        corpus,
        splits={
            s: tuple(replace(d, mentions=tuple(m for m in d.mentions if keep(m.semantic_type))) for d in docs)
            for s, docs in corpus.splits.items()
        },
    )


def _load_gene_info(path: Path) -> Ontology:
    names: dict[str, list[str]] = {}
    for no, line in _text_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 9:
            raise CorpusFormatError(
                path,
                no,
                f"gene_info line has {len(cols)} tab-separated columns, expected at least 9 (tax_id GeneID Symbol LocusTag Synonyms dbXrefs chromosome map_location description ...)",
            )
        if not cols[1].strip().isdigit():
            raise CorpusFormatError(path, no, f"GeneID {cols[1]!r} is not a number")
        cid = f"NCBIGene:{cols[1].strip()}"
        # Symbol, synonyms, official symbol and full name, description, other designations.
        fields = [
            cols[2],
            *cols[4].split("|"),
            *(cols[i] for i in (10, 11) if len(cols) > i),
            cols[8],
            *(cols[13].split("|") if len(cols) > 13 else ()),
        ]
        for name in fields:
            if name.strip() and name.strip() != "-":
                _add(names, cid, name)
    if not names:
        raise CorpusFormatError(path, None, "no genes found")
    return Ontology(names, {}, f"NCBI Gene file {path}")


def load_gene_info(path: Path | str) -> Ontology:
    """NCBI Gene ``gene_info[.gz]`` (all organisms or one, e.g. Homo_sapiens.gene_info.gz): ids ``NCBIGene:<GeneID>``."""
    return _cached("gene_info", path)


@dataclass(frozen=True)
class GoldCoverage:
    """How many linkable mentions have a gold id the ontology knows.

    Retired ids (BC5CDR annotates with 2015 MeSH; our MeSH copies are other years) and
    ids outside the ontology's scope cannot be predicted by any linker; they are counted
    so the reader sees the ceiling, never dropped silently."""

    linkable: int
    absent: int
    """Linkable mentions none of whose gold ids (or their equivalents) is in the ontology."""
    absent_ids: tuple[tuple[str, int], ...]
    """The missing ids with their mention counts, most frequent first."""

    def summary(self, top: int = 5) -> str:
        ids = ", ".join(f"{i} ({n})" for i, n in self.absent_ids[:top])
        more = f", {len(self.absent_ids) - top} more ids" if len(self.absent_ids) > top else ""
        return f"{self.absent}/{self.linkable} linkable mentions have gold ids absent from the ontology" + (
            f": {ids}{more}" if ids else ""
        )


def gold_coverage(mentions: Iterable[Mention], ontology: Ontology) -> GoldCoverage:
    """Count linkable mentions whose gold concept is not in ``ontology``."""
    linkable = absent = 0
    missing: Counter[str] = Counter()
    for m in mentions:
        if not m.linkable:
            continue
        linkable += 1
        if not any(g in ontology for g in m.concept_ids):
            absent += 1
            missing.update(m.concept_ids)
    return GoldCoverage(linkable, absent, tuple(sorted(missing.items(), key=lambda kv: (-kv[1], kv[0]))))
