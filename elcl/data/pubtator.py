"""PubTator reader: the format of NCBI Disease, BC5CDR and MedMentions.

The reader is strict on purpose: a dropped or shifted mention silently changes every
number downstream, so any structural problem is a :class:`CorpusFormatError` naming
``FILE:LINE``.

Canonical concept ids (shared with :mod:`elcl.data.ontology`):

* MeSH: ``D012345`` / ``C012345`` (a ``MESH:`` prefix is stripped);
* OMIM: ``OMIM:123456`` (prefix kept, since bare numbers would be ambiguous);
* UMLS: ``UMLS:C0000000`` (prefix kept, as MedMentions writes it, so CUIs never
  clash with MeSH supplementary ``C`` ids);
* ``-1``: unlinkable (``concept_ids == ()``).  Inside a composite (BC5CDR has one
  ``D002544|-1``) the ``-1`` part is dropped: the mention stays linkable through its
  other parts and is still marked composite.

Composite ids are separated by ``|`` or ``+`` and become a tuple.  Corpora with other
id vocabularies (BioRED: NCBI Gene, Taxonomy, dbSNP, Cellosaurus) pass their own
:data:`IdParser` (:mod:`elcl.data.biored`).

Non-mention annotation lines are told apart by rule, not by a failed parse: a
tab-separated line whose second column is a relation type (letters and underscores,
never an offset) is a *relation* when it has 3-5 columns -- BC5CDR's
``PMID CID chemical disease`` (4) and BioRED's ``PMID type id1 id2 novelty`` (5, the
novelty ``Novel`` or ``No``).  Relations are kept in ``Document.relations`` (the
columns after the PMID) and never become mentions; any other line must be a mention
of at least 6 columns.
"""

from __future__ import annotations

import codecs
import gzip
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from elcl.data.types import Document, Mention
from elcl.errors import CorpusFormatError

_MESH = re.compile(r"^(?:MESH:)?([DC]\d+)$")
_OMIM = re.compile(r"^OMIM:(\d+)$")
_UMLS = re.compile(r"^UMLS:(C\d{7})$")
# Digits per namespace in real files: MeSH descriptors D + 6 or 9, supplementary C + 6 or 9,
# OMIM 6. Checked on corpus mentions only (a cut file can turn D004194 into D004).
_ID_SHAPE = {
    "D": re.compile(r"^D(\d{6}|\d{9})$"),
    "C": re.compile(r"^C(\d{6}|\d{9})$"),
    "OMIM": re.compile(r"^OMIM:\d{6}$"),
}
_TITLE = re.compile(r"^([^|\t]+)\|t\|(.*)$")
_ABSTRACT = re.compile(r"^([^|\t]+)\|a\|(.*)$")
_RELATION = re.compile(r"^[A-Za-z][A-Za-z_]*$")
ID_SEPARATORS = re.compile(r"[|+]")


def canonical_id(raw: str) -> str | None:
    """The canonical form of one concept id, or None when the format is unknown."""
    raw = raw.strip()
    m = _MESH.match(raw)
    if m:
        return m.group(1)
    if _OMIM.match(raw) or _UMLS.match(raw):
        return raw
    return None


def split_ids(raw: str) -> list[str]:
    """Split a possibly composite id field (``D1|D2``, ``D1+D2``) into its parts."""
    return [p.strip() for p in ID_SEPARATORS.split(raw.strip())]


IdParser = Callable[[str, str], "tuple[tuple[str, ...], bool] | None"]
"""(raw id column, semantic type) -> (canonical ids, unlinkable), or None when unknown."""

DEFAULT_ID_HELP = "D012345, C012345, MESH:..., OMIM:123456, UMLS:C0000000 or -1, composites joined by '|' or '+'"
_NOVELTY = ("Novel", "No")


def parse_ids(raw: str, semantic_type: str = "") -> tuple[tuple[str, ...], bool] | None:
    """(canonical ids, unlinkable) for an id column, or None when any part is unknown."""
    if raw.strip() == "-1":
        return (), True
    if not raw.strip():
        return None
    out: list[str] = []
    parts = split_ids(raw)
    for part in parts:
        if part == "-1" and len(parts) > 1:
            continue
        cid = canonical_id(part)
        if cid is None:
            return None
        if cid not in out:
            out.append(cid)
    return tuple(out), False


@dataclass(frozen=True)
class IdRules:
    """How a task's id column is read: its parser (None: :func:`parse_ids`), the formats an
    error lists, and whether MeSH/OMIM ids get their digit-count check."""

    parser: IdParser | None = None
    help: str = DEFAULT_ID_HELP
    check_shapes: bool = True


@dataclass
class ParseResult:
    """Documents of one file plus non-fatal findings (genuine offset mismatches)."""

    documents: list[Document]
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    doc_id: str
    title: str
    title_line: int
    abstract: str | None = None
    mentions: list[Mention] = field(default_factory=list)
    relations: list[tuple[str, ...]] = field(default_factory=list)

    def close(self, path: Path) -> Document:
        if self.abstract is None:
            raise CorpusFormatError(
                path,
                self.title_line,
                f"truncated document {self.doc_id}: title without an abstract line '{self.doc_id}|a|...'",
            )
        return Document(self.doc_id, self.title, self.abstract, tuple(self.mentions), tuple(self.relations))


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, decoded line) with the line of any non-UTF-8 bytes reported."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = b"\n"
            no = 0
            for no, raw in enumerate(fh, start=1):
                if no == 1 and raw.startswith(codecs.BOM_UTF8):
                    # Editors on Windows write one; it is no part of the first PMID.
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise CorpusFormatError(
                        path, no, f"not valid UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})"
                    ) from None
                yield no, text.rstrip("\r\n")
            if not raw.endswith(b"\n"):
                # Every official file ends with a newline: a file cut mid-line (mid-abstract,
                # inside the last id) would otherwise lose or shorten its last mention silently.
                raise CorpusFormatError(
                    path, no, "the file ends inside this line (no newline at the end): truncated file?"
                )
    except (OSError, EOFError, zlib.error) as exc:
        if isinstance(exc, FileNotFoundError):
            raise CorpusFormatError(path, None, "file not found") from None
        raise CorpusFormatError(path, None, f"cannot read file ({exc})") from None


def _parse_mention(
    path: Path,
    no: int,
    cols: list[str],
    text: str,
    strict: bool,
    warnings: list[str],
    id_parser: IdParser | None = None,
    id_help: str = DEFAULT_ID_HELP,
    ids_optional: bool = False,
    check_shapes: bool = True,
) -> Mention:
    if ids_optional and len(cols) in (4, 5):
        cols = cols + [""] * (6 - len(cols))
    if len(cols) < 6:
        raise CorpusFormatError(
            path,
            no,
            f"mention line has {len(cols)} tab-separated columns, expected at least 6 (PMID start end text type ids)",
        )
    pmid, s_start, s_end, mtext, stype, raw_ids = cols[:6]
    try:
        start, end = int(s_start), int(s_end)
    except ValueError:
        raise CorpusFormatError(path, no, f"offsets {s_start!r} {s_end!r} are not integers") from None
    if not 0 <= start <= end <= len(text):
        raise CorpusFormatError(path, no, f"offsets {start}-{end} outside document {pmid} of length {len(text)}")
    span = text[start:end]
    if span != mtext:
        msg = f"offsets {start}-{end} give {span!r} but the mention text is {mtext!r}"
        if strict or not span.strip() or span.strip() != mtext.strip():
            raise CorpusFormatError(path, no, msg)
        # Whitespace-only difference (NCBI train has one, with trailing spaces): keep the span.
        warnings.append(f"{path}:{no}: {msg}")
        mtext = span
    if ids_optional and not raw_ids.strip():
        # A mention to be linked: no gold ids, but not marked unlinkable either.
        return Mention(doc_id=pmid, start=start, end=end, text=mtext, semantic_type=stype, concept_ids=())
    parsed = (id_parser or parse_ids)(raw_ids, stype)
    if parsed is None:
        raise CorpusFormatError(
            path, no, f"unknown concept id format {raw_ids!r} for type {stype!r} (expected {id_help})"
        )
    ids, unlinkable = parsed
    for cid in ids if check_shapes else ():
        # MeSH and OMIM ids only (BioRED's Cellosaurus:CVCL_... also starts with 'C').
        shape = _ID_SHAPE.get(cid.split(":", 1)[0] if ":" in cid else cid[0])
        if shape is not None and not shape.match(cid):
            raise CorpusFormatError(
                path,
                no,
                f"concept id {cid!r} has the wrong number of digits (MeSH D/C + 6 or 9 digits, OMIM: + 6): truncated or mistyped id?",
            )
    # A custom vocabulary's separators are its parser's business ('|' sits inside BioRED's variant ids).
    composite = len(split_ids(raw_ids)) > 1 if id_parser is None else len(ids) > 1
    components = tuple(cols[6].split("|")) if len(cols) > 6 and cols[6] else ()
    return Mention(
        doc_id=pmid,
        start=start,
        end=end,
        text=mtext,
        semantic_type=stype,
        concept_ids=ids,
        unlinkable=unlinkable,
        composite=composite,
        components=components,
    )


def parse_pubtator_file(
    path: str | Path,
    strict_offsets: bool = False,
    id_parser: IdParser | None = None,
    id_help: str = DEFAULT_ID_HELP,
    ids_optional: bool = False,
    check_shapes: bool = True,
) -> ParseResult:
    """Parse one PubTator file (plain or ``.gz``).

    An offset/text mismatch is an error, except one that differs only in surrounding
    whitespace (NCBI Disease train has one): that is recorded in ``warnings`` and the
    mention keeps the span's text; ``strict_offsets`` makes it an error too.  A
    repeated PMID is also only a warning (NCBI Disease train repeats 8528200, and the
    official 593-document count includes both copies).  Structural problems always raise.
    ``ids_optional`` accepts mention lines without an id column (or with an empty one),
    as in documents given to `elcl link` for linking.
    ``id_parser`` (with ``id_help``, the expected formats for its error message) replaces
    the MeSH/OMIM/UMLS id rules for corpora of other vocabularies; ``check_shapes``
    False leaves out the digit-count check of MeSH/OMIM ids (a custom vocabulary's
    ``C42`` is not a cut MeSH id). A UTF-8 byte-order mark opening the file is skipped.
    """
    path = Path(path)
    docs: list[Document] = []
    warnings: list[str] = []
    seen: set[str] = set()
    cur: _Pending | None = None

    def finish() -> None:
        nonlocal cur
        if cur is not None:
            docs.append(cur.close(path))
            cur = None

    for no, line in _lines(path):
        if not line.strip():
            finish()
            continue
        if "\t" not in line:
            m = _TITLE.match(line)
            if m:
                finish()
                doc_id = m.group(1)
                if doc_id in seen:
                    # NCBI Disease train holds PMID 8528200 twice; the official counts include both.
                    warnings.append(f"{path}:{no}: document {doc_id} appears more than once")
                seen.add(doc_id)
                cur = _Pending(doc_id, m.group(2), no)
                continue
            m = _ABSTRACT.match(line)
            if m:
                if cur is None or cur.doc_id != m.group(1):
                    raise CorpusFormatError(
                        path, no, f"abstract of {m.group(1)} without its title line '{m.group(1)}|t|...' just before"
                    )
                if cur.abstract is not None:
                    raise CorpusFormatError(path, no, f"second abstract line for document {cur.doc_id}")
                if cur.mentions:
                    raise CorpusFormatError(path, no, f"abstract of {cur.doc_id} after its mentions")
                cur.abstract = m.group(2)
                continue
            raise CorpusFormatError(
                path, no, "expected 'PMID|t|title', 'PMID|a|abstract', a tab-separated annotation line or a blank line"
            )
        cols = line.split("\t")
        pmid = cols[0]
        if cur is None:
            raise CorpusFormatError(
                path, no, f"annotation line for {pmid} outside a document (no 'PMID|t|' title line before it)"
            )
        if cur.abstract is None:
            raise CorpusFormatError(
                path, no, f"truncated document {cur.doc_id}: annotation line before the abstract line"
            )
        if pmid != cur.doc_id:
            raise CorpusFormatError(
                path,
                no,
                f"annotation for {pmid} inside document {cur.doc_id} (missing blank line or truncated document?)",
            )
        if len(cols) in (3, 4, 5) and _RELATION.match(cols[1]):
            if len(cols) == 5 and cols[4].strip() not in _NOVELTY:
                raise CorpusFormatError(
                    path,
                    no,
                    f"relation line has novelty {cols[4]!r}; expected 'Novel' or 'No' (PMID type id1 id2 novelty)",
                )
            cur.relations.append(tuple(c.strip() for c in cols[1:]))
            continue
        text = f"{cur.title} {cur.abstract}"
        cur.mentions.append(
            _parse_mention(
                path, no, cols, text, strict_offsets, warnings, id_parser, id_help, ids_optional, check_shapes
            )
        )
    finish()
    return ParseResult(docs, warnings)


def parse_pubtator(path: str | Path) -> list[Document]:
    """Parse a PubTator file (see :func:`parse_pubtator_file`; its warnings are dropped here)."""
    return parse_pubtator_file(path).documents
