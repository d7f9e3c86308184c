"""MeSH as an ontology: descriptors (``D...`` ids) and supplementary concepts (``C...``).

Two input forms, either of any MeSH release:

* tab-separated, gzip or plain (the files in ``../shared/corpora/ontologies``):
  ``mesh_descriptors_YYYY.tsv.gz`` with DescriptorUI, PreferredName, TreeNumbers and
  Synonyms (the last two ``|``-joined), and ``mesh_supplementary_YYYY.tsv.gz`` with
  SupplementaryUI and Name, one row per name;
* NLM's official XML (``descYYYY.xml`` / ``suppYYYY.xml``, optionally gzipped), read
  as a stream with ``iterparse`` so the 300 MB supplementary file never sits in memory
  as a tree.

Chemical tasks keep the descriptors of tree D (Chemicals and Drugs) plus every
supplementary concept: that is what CTD's chemical vocabulary is built from, and it
holds the ids BC5CDR and BioRED annotate chemicals with.
"""

from __future__ import annotations

import functools
import gzip
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from pathlib import Path

from elcl.errors import CorpusFormatError, ElclError

_DESC_ID = re.compile(r"^D(\d{6}|\d{9})$")
_SUPP_ID = re.compile(r"^C(\d{6}|\d{9})$")
_DESC_HEADER = ("DescriptorUI", "PreferredName", "TreeNumbers", "Synonyms")
_SUPP_HEADER = ("SupplementaryUI", "Name")
CHEMICAL_TREES = ("D",)
"""MeSH tree letters of chemicals and drugs."""

# Newest release first: the year in the file name decides.
_DESC_PATTERNS = ("mesh_descriptors_*.tsv.gz", "mesh_descriptors_*.tsv", "desc*.xml.gz", "desc*.xml")
_SUPP_PATTERNS = ("mesh_supplementary_*.tsv.gz", "mesh_supplementary_*.tsv", "supp*.xml.gz", "supp*.xml")
_YEAR = re.compile(r"(\d{4})")


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _rows(path: Path, n_cols: int, header: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, columns) of a MeSH TSV; a truncated gzip is reported at the line it stops."""
    if not path.is_file():
        raise ElclError(f"{path}: ontology file not found")
    no = 0
    try:
        with _open(path) as fh:
            for no, raw in enumerate(fh, start=1):
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    raise CorpusFormatError(path, no, "not valid UTF-8") from None
                if not line.strip():
                    continue
                cols = line.split("\t")
                if no == 1 and tuple(c.strip() for c in cols) == header:
                    continue
                if len(cols) != n_cols:
                    raise CorpusFormatError(
                        path,
                        no,
                        f"MeSH row has {len(cols)} tab-separated columns, expected {n_cols} ({', '.join(header)})",
                    )
                yield no, cols
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorpusFormatError(
            path, no + 1, f"compressed stream ends early or is corrupt ({exc}); the file is truncated, fetch it again"
        ) from None


def _add(names: dict[str, list[str]], cid: str, name: str) -> None:
    name = name.strip()
    if name and name not in names.setdefault(cid, []):
        names[cid].append(name)


def _keep(trees: list[str], prefixes: tuple[str, ...] | None) -> bool:
    return prefixes is None or any(t.startswith(p) for t in trees for p in prefixes)


def _descriptors_tsv(path: Path, prefixes: tuple[str, ...] | None) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    seen: set[str] = set()
    for no, (ui, preferred, trees, synonyms) in _rows(path, 4, _DESC_HEADER):
        ui = ui.strip()
        if not _DESC_ID.match(ui):
            raise CorpusFormatError(
                path, no, f"descriptor id {ui!r}: expected D followed by 6 or 9 digits (e.g. D000001)"
            )
        if not preferred.strip():
            raise CorpusFormatError(path, no, f"descriptor {ui} has an empty PreferredName")
        if ui in seen:
            raise CorpusFormatError(path, no, f"descriptor {ui} appears twice")
        seen.add(ui)
        if not _keep([t.strip() for t in trees.split("|") if t.strip()], prefixes):
            continue
        _add(names, ui, preferred)
        for syn in synonyms.split("|"):
            _add(names, ui, syn)
    return names


def _supplementary_tsv(path: Path) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for no, (ui, name) in _rows(path, 2, _SUPP_HEADER):
        ui = ui.strip()
        if not _SUPP_ID.match(ui):
            raise CorpusFormatError(
                path, no, f"supplementary concept id {ui!r}: expected C followed by 6 or 9 digits (e.g. C000002)"
            )
        if not name.strip():
            raise CorpusFormatError(path, no, f"supplementary concept {ui} has an empty Name")
        _add(names, ui, name)
    return names


def _xml_records(path: Path, record_tag: str) -> Iterator[tuple[int, ET.Element]]:
    """Each ``record_tag`` element of an official MeSH XML file, cleared after use."""
    if not path.is_file():
        raise ElclError(f"{path}: ontology file not found")
    count = 0
    try:
        with _open(path) as fh:
            for _event, elem in ET.iterparse(fh, events=("end",)):
                if elem.tag == record_tag:
                    count += 1
                    yield count, elem
                    elem.clear()
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise CorpusFormatError(path, line, f"not well-formed MeSH XML ({exc})") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise CorpusFormatError(
            path, None, f"compressed stream ends early or is corrupt ({exc}) after {count} records; fetch it again"
        ) from None


def _xml_names(elem: ET.Element, main_name: str | None) -> list[str]:
    out = [main_name] if main_name else []
    for s in elem.iterfind("ConceptList/Concept/TermList/Term/String"):
        if s.text and s.text not in out:
            out.append(s.text)
    return out


def _descriptors_xml(path: Path, prefixes: tuple[str, ...] | None) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for i, rec in _xml_records(path, "DescriptorRecord"):
        ui = (rec.findtext("DescriptorUI") or "").strip()
        if not _DESC_ID.match(ui):
            raise CorpusFormatError(
                path, None, f"DescriptorRecord #{i}: DescriptorUI {ui!r}, expected D followed by 6 or 9 digits"
            )
        trees = [t.text.strip() for t in rec.iterfind("TreeNumberList/TreeNumber") if t.text]
        if _keep(trees, prefixes):
            for n in _xml_names(rec, rec.findtext("DescriptorName/String")):
                _add(names, ui, n)
    return names


def _supplementary_xml(path: Path) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for i, rec in _xml_records(path, "SupplementalRecord"):
        ui = (rec.findtext("SupplementalRecordUI") or "").strip()
        if not _SUPP_ID.match(ui):
            raise CorpusFormatError(
                path,
                None,
                f"SupplementalRecord #{i}: SupplementalRecordUI {ui!r}, expected C followed by 6 or 9 digits",
            )
        for n in _xml_names(rec, rec.findtext("SupplementalRecordName/String")):
            _add(names, ui, n)
    return names


def _is_xml(path: Path) -> bool:
    return path.name.endswith((".xml", ".xml.gz"))


@functools.lru_cache(maxsize=8)
def _cached(kind: str, path: Path, mtime: float, prefixes: tuple[str, ...] | None) -> dict[str, list[str]]:
    if kind == "descriptors":
        return _descriptors_xml(path, prefixes) if _is_xml(path) else _descriptors_tsv(path, prefixes)
    return _supplementary_xml(path) if _is_xml(path) else _supplementary_tsv(path)


def _load(kind: str, path: Path | str, prefixes: tuple[str, ...] | None = None) -> dict[str, list[str]]:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ElclError(f"{p}: ontology file not found")
    names = _cached(kind, p, p.stat().st_mtime, prefixes)
    if not names:
        what = f"descriptors of tree(s) {', '.join(prefixes)}" if prefixes else "concepts"
        raise CorpusFormatError(p, None, f"no MeSH {what} found")
    return names


def load_mesh_descriptors(path: Path | str, trees: tuple[str, ...] | None = None):
    """Descriptors (preferred name + entry terms); ``trees`` keeps only those under these
    tree-number prefixes (``("D",)``: chemicals and drugs). TSV or official XML."""
    from elcl.data.concepts import Ontology

    names = _load("descriptors", path, tuple(trees) if trees else None)
    scope = f" (trees {','.join(trees)})" if trees else ""
    return Ontology({k: list(v) for k, v in names.items()}, {}, f"MeSH descriptors file {Path(path)}{scope}")


def load_mesh_supplementary(path: Path | str):
    """Supplementary concept records (``C...``): every name of each. TSV or official XML."""
    from elcl.data.concepts import Ontology

    names = _load("supplementary", path)
    return Ontology({k: list(v) for k, v in names.items()}, {}, f"MeSH supplementary file {Path(path)}")


def _newest(onto_dir: Path, patterns: tuple[str, ...]) -> Path | None:
    found: list[tuple[int, int, str, Path]] = []
    for rank, pat in enumerate(patterns):
        for p in onto_dir.glob(pat):
            if p.is_file():
                m = _YEAR.search(p.name)
                found.append((-(int(m.group(1)) if m else 0), rank, p.name, p))
    return min(found)[3] if found else None


def find_mesh_files(onto_dir: Path) -> tuple[Path | None, Path | None]:
    """(descriptors, supplementary) files under ``onto_dir``: the newest release of each,
    TSV preferred over XML within a year."""
    onto_dir = Path(onto_dir)
    if not onto_dir.is_dir():
        return None, None
    return _newest(onto_dir, _DESC_PATTERNS), _newest(onto_dir, _SUPP_PATTERNS)


def load_mesh_chemicals(onto_dir: Path | str):
    """Tree-D descriptors plus supplementary concepts, or None when no descriptor file is there.

    The supplementary file is optional (without it the ``C`` ids of BC5CDR stay unknown,
    and that is counted where the gold ids are checked against the ontology)."""
    desc, supp = find_mesh_files(Path(onto_dir))
    if desc is None:
        return None
    onto = load_mesh_descriptors(desc, CHEMICAL_TREES)
    if supp is not None:
        onto = onto.merged(load_mesh_supplementary(supp))
    return onto
