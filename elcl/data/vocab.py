"""A user's own vocabulary as an :class:`~elcl.data.ontology.Ontology`: TSV or OBO.

TSV (the simplest thing a team can export from a terminology table)::

    id<TAB>name[<TAB>synonym|synonym|...]

An optional header line whose first column is ``id``; blank lines and ``#`` lines are
skipped. An id may take several rows (one row per synonym is a common export): their
names are merged, the first row's name staying the preferred one.

OBO (HPO, MONDO, DOID, ...) is read by ``obonet``, not by a parser of ours. A term's
``name`` and ``synonym`` texts are its names and its ``alt_id`` ids map to it; obsolete
terms are dropped and counted, and an obsolete term's id maps to its ``replaced_by``
term (a corpus annotated before the replacement still meets it). A term id defined
twice is an error naming both lines: the two stanzas cannot both be right.

``canon`` makes an id canonical as the task's corpus ids are (``id_prefix``), so gold
ids and ontology ids meet.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from elcl.data.ontology import Ontology
from elcl.data.task_config import open_bytes
from elcl.errors import CorpusFormatError, ElclError

Canon = Callable[[str], str]
_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"')
_ID_LINE = re.compile(r"^id:\s*(\S+)")


@dataclass(frozen=True)
class VocabularyCounts:
    """What reading a vocabulary file kept and dropped (reported by `elcl data stats`)."""

    concepts: int
    names: int
    obsolete_dropped: int = 0
    rows_merged: int = 0


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise ElclError(f"{path}: ontology file not found")
    try:
        with open_bytes(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise CorpusFormatError(path, None, f"cannot read ontology file ({exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusFormatError(path, data[: exc.start].count(b"\n") + 1, "not valid UTF-8") from None
    return list(enumerate(text.splitlines(), start=1))


def _add(names: dict[str, list[str]], cid: str, name: str) -> None:
    name = name.strip()
    if name:
        cur = names.setdefault(cid, [])
        if name not in cur:
            cur.append(name)


def load_tsv_vocabulary(path: Path | str, canon: Canon = str.strip) -> tuple[Ontology, VocabularyCounts]:
    """The concepts of an ``id<TAB>name[<TAB>synonyms]`` file (see the module docstring)."""
    path = Path(path)
    names: dict[str, list[str]] = {}
    merged = 0
    first = True
    for no, line in _lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if first:
            first = False
            if cols[0].strip().lower() == "id":
                continue
        if len(cols) < 2 or len(cols) > 3:
            raise CorpusFormatError(
                path, no, f"{len(cols)} tab-separated column(s); expected id<TAB>name[<TAB>synonym|synonym...]"
            )
        raw_id, name = cols[0].strip(), cols[1].strip()
        if not raw_id or any(c.isspace() for c in raw_id):
            raise CorpusFormatError(path, no, f"concept id {cols[0]!r}: expected a non-empty id without spaces")
        if not name:
            raise CorpusFormatError(path, no, f"concept {raw_id} has an empty name")
        cid = canon(raw_id)
        if cid in names:
            merged += 1
        _add(names, cid, name)
        if len(cols) == 3:
            for syn in cols[2].split("|"):
                _add(names, cid, syn)
    if not names:
        raise CorpusFormatError(path, None, "no concepts found (expected id<TAB>name lines)")
    onto = Ontology(names, {}, f"TSV vocabulary {path}")
    return onto, VocabularyCounts(len(names), onto.num_names(), 0, merged)


def _duplicate_terms(path: Path) -> None:
    """A [Term] id given twice, named with both lines (obonet would merge them silently)."""
    seen: dict[str, int] = {}
    stanza = ""
    for no, line in _lines(path):
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            stanza = s
            continue
        m = _ID_LINE.match(s)
        if m and stanza == "[Term]":
            tid = m.group(1)
            if tid in seen:
                raise CorpusFormatError(path, no, f"term {tid} is defined twice (first at line {seen[tid]})")
            seen[tid] = no


def load_obo_vocabulary(path: Path | str, canon: Canon = str.strip) -> tuple[Ontology, VocabularyCounts]:
    """The live terms of an OBO file (see the module docstring)."""
    import obonet

    path = Path(path)
    if not path.is_file():
        raise ElclError(f"{path}: ontology file not found")
    _duplicate_terms(path)
    try:
        graph = obonet.read_obo(str(path), ignore_obsolete=False)
    except Exception as exc:  # obonet raises ValueError / KeyError / OSError on broken files
        raise CorpusFormatError(path, None, f"not a readable OBO file ({exc.__class__.__name__}: {exc})") from None
    names: dict[str, list[str]] = {}
    alts: dict[str, set[str]] = {}
    obsolete = 0
    replaced: list[tuple[str, str]] = []
    for tid, data in graph.nodes(data=True):
        cid = canon(str(tid))
        if str(data.get("is_obsolete", "false")).lower() == "true":
            obsolete += 1
            for target in data.get("replaced_by", []) or []:
                replaced.append((cid, canon(str(target))))
            continue
        if "name" in data:
            _add(names, cid, str(data["name"]))
        for syn in data.get("synonym", []) or []:
            m = _QUOTED.match(str(syn))
            if m:
                _add(names, cid, m.group(1).replace('\\"', '"'))
        if cid in names:
            alts[cid] = {canon(str(a)) for a in data.get("alt_id", []) or []}
    for old, new in replaced:
        if new in names:
            alts.setdefault(new, set()).add(old)
    if not names:
        raise CorpusFormatError(path, None, "no named, non-obsolete [Term] found")
    source = f"OBO file {path}" + (f" ({obsolete} obsolete terms dropped)" if obsolete else "")
    onto = Ontology(names, {k: frozenset(v) for k, v in alts.items() if v}, source)
    return onto, VocabularyCounts(len(names), onto.num_names(), obsolete, 0)
