"""What `elcl link` reads: PubTator documents, a TSV of spans beside the documents'
text, or plain mention strings, all turned into the corpus records the rest of elcl
uses (:class:`~elcl.data.types.Document`, :class:`~elcl.data.types.Mention`).

Gold ids are optional everywhere; where they are given (PubTator's id column, the
TSV's fifth column) `elcl link` also reports accuracy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from elcl.data.pubtator import IdRules, _lines, parse_ids, parse_pubtator_file
from elcl.data.types import Document, Mention
from elcl.errors import CorpusFormatError, ElclError

FORMATS = ("auto", "pubtator", "tsv", "text")


@dataclass
class LinkInput:
    """Documents (none for plain strings) and the mentions to link, in input order."""

    documents: list[Document]
    mentions: list[Mention]
    kind: str

    @property
    def has_documents(self) -> bool:
        return bool(self.documents)


def resolve_format(path: str, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ElclError(f"--format: {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    if path == "-":
        return "text"
    return "tsv" if path.lower().endswith((".tsv", ".tsv.gz")) else "pubtator"


BUILTIN_RULES = IdRules()
"""The MeSH/OMIM/UMLS id rules of the built-in corpora."""


def _parse(path: Path, rules: IdRules) -> list[Document]:
    return parse_pubtator_file(
        path, id_parser=rules.parser, id_help=rules.help, ids_optional=True, check_shapes=rules.check_shapes
    ).documents


def read_pubtator_input(path: Path, rules: IdRules = BUILTIN_RULES) -> LinkInput:
    """A PubTator file's documents and mentions, ids read by the linked task's ``rules``."""
    docs = _parse(path, rules)
    return LinkInput(docs, [m for d in docs for m in d.mentions], "pubtator")


def _looks_like_pubtator(path: Path) -> bool:
    for _, line in _lines(path):
        if line.strip():
            return "|t|" in line.split("\t", 1)[0]
    return False


def read_documents(path: Path, rules: IdRules = BUILTIN_RULES) -> dict[str, Document]:
    """Document texts for a span TSV: a PubTator file, or lines ``doc_id<TAB>text``."""
    if _looks_like_pubtator(path):
        return {d.doc_id: d for d in _parse(path, rules)}
    docs: dict[str, Document] = {}
    for no, line in _lines(path):
        if not line.strip():
            continue
        if "\t" not in line:
            raise CorpusFormatError(path, no, "expected 'doc_id<TAB>text' (or a PubTator file)")
        doc_id, text = line.split("\t", 1)
        if doc_id in docs:
            raise CorpusFormatError(path, no, f"document {doc_id} given twice")
        # Offsets count from the start of the text; Document.text is "title abstract".
        docs[doc_id] = Document(doc_id, text, "", ())
    return docs


def read_span_tsv(path: Path, docs_path: Path | None, rules: IdRules = BUILTIN_RULES) -> LinkInput:
    """Spans ``doc_id, start, end, text[, ids]`` checked against the documents' text."""
    if docs_path is None:
        raise ElclError(
            f"{path}: a span TSV needs the documents' text: pass --docs FILE (doc_id<TAB>text lines, or PubTator)"
        )
    docs = read_documents(docs_path, rules)
    mentions: dict[str, list[Mention]] = {}
    order: list[Mention] = []
    for no, line in _lines(path):
        if not line.strip():
            continue
        cols = line.split("\t")
        if no == 1 and cols[:3] == ["doc_id", "start", "end"]:
            continue  # header
        if len(cols) < 4:
            raise CorpusFormatError(
                path, no, f"{len(cols)} tab-separated columns, expected doc_id, start, end, text[, ids]"
            )
        doc_id, s_start, s_end, text = cols[:4]
        doc = docs.get(doc_id)
        if doc is None:
            raise CorpusFormatError(path, no, f"document {doc_id!r} is not in {docs_path}")
        try:
            start, end = int(s_start), int(s_end)
        except ValueError:
            raise CorpusFormatError(path, no, f"offsets {s_start!r} {s_end!r} are not integers") from None
        full = doc.text
        if not 0 <= start < end <= len(full):
            raise CorpusFormatError(path, no, f"offsets {start}-{end} outside document {doc_id} of length {len(full)}")
        if full[start:end] != text:
            raise CorpusFormatError(
                path, no, f"offsets {start}-{end} give {full[start:end]!r} but the span text is {text!r}"
            )
        ids: tuple[str, ...] = ()
        unlinkable = False
        if len(cols) > 4 and cols[4].strip():
            parsed = (rules.parser or parse_ids)(cols[4], "")
            if parsed is None:
                raise CorpusFormatError(path, no, f"unknown concept id format {cols[4]!r} (expected {rules.help})")
            ids, unlinkable = parsed
        m = Mention(doc_id, start, end, text, "", ids, unlinkable=unlinkable)
        mentions.setdefault(doc_id, []).append(m)
        order.append(m)
    used = [d for d in docs.values() if d.doc_id in mentions]
    from dataclasses import replace

    return LinkInput([replace(d, mentions=tuple(mentions[d.doc_id])) for d in used], order, "tsv")


def read_text_lines(lines: Iterable[str]) -> LinkInput:
    """One mention string a line (blank lines skipped): no document, no offsets."""
    mentions = []
    for no, line in enumerate(lines, 1):
        text = line.rstrip("\r\n").strip()
        if text:
            mentions.append(Mention(f"line{no}", 0, len(text), text, "", ()))
    return LinkInput([], mentions, "text")


def read_input(path: str, fmt: str = "auto", docs: Path | None = None, rules: IdRules = BUILTIN_RULES) -> LinkInput:
    """Dispatch on ``--format`` (auto: ``-`` = text on stdin, ``*.tsv`` = spans, else PubTator);
    gold ids are read by the linked task's ``rules`` (a custom vocabulary's ids).

    An input without a single mention is an error: linking nothing and exiting 0 would
    hide the wrong file, an empty pipe or a PubTator file without its annotation lines."""
    return _nonempty(_read_input(path, fmt, docs, rules), path)


def _read_input(path: str, fmt: str, docs: Path | None, rules: IdRules) -> LinkInput:
    kind = resolve_format(path, fmt)
    if kind == "text":
        if path == "-":
            return read_text_lines(sys.stdin)
        p = Path(path)
        if not p.is_file():
            raise ElclError(f"{p}: input file not found")
        return read_text_lines(line for _, line in _lines(p))
    p = Path(path)
    if path == "-" or not p.is_file():
        raise ElclError(f"{path}: input file not found ({kind} input is read from a file)")
    if kind == "tsv":
        return read_span_tsv(p, docs, rules)
    return read_pubtator_input(p, rules)


def _nonempty(inp: LinkInput, path: str) -> LinkInput:
    if inp.mentions:
        return inp
    where = "stdin" if path == "-" else path
    if inp.documents:
        raise ElclError(
            f"{where}: {len(inp.documents)} document(s) but no mention to link: elcl links given mention spans "
            "(PubTator annotation lines, span TSV rows); it does not find them"
        )
    expected = {"text": "mention strings, one per line", "tsv": "span TSV rows"}.get(
        inp.kind, "PubTator documents with annotation lines"
    )
    raise ElclError(f"{where}: empty input, no mention to link (expected {expected})")
