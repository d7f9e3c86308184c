"""BigBio KB schema reader (JSON array or JSON Lines): documents for custom tasks.

A BigBio KB document holds ``passages`` (``type``, ``text`` pieces, ``offsets`` in
document coordinates) and ``entities`` (``type``, ``text`` pieces, ``offsets``,
``normalized``: ``[{db_name, db_id}]``). elcl's documents are PubTator-shaped (a title,
one separator character, the rest), so the first passage is the title and every later
passage must start after it; any passage or entity whose offsets do not give its text
is an error, as in PubTator files.

Concept ids: ``db_id`` when it already carries a prefix (``MESH:D012345``,
``HP:0000118``), else ``db_name:db_id``; an entity with no ``normalized`` entry, or
``db_id`` ``-1``, is unlinkable. Several entries make a composite mention. The id
string then goes through the task's id rules (:mod:`elcl.data.custom`), as a PubTator
id column would.

Every error names ``FILE:LINE``: the line of the JSON Lines record, or the line where
the document's object starts in a JSON array.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from elcl.data.pubtator import DEFAULT_ID_HELP, IdParser, ParseResult, parse_ids
from elcl.data.task_config import open_bytes
from elcl.data.types import Document, Mention
from elcl.errors import CorpusFormatError


def _read_text(path: Path) -> str:
    try:
        with open_bytes(path) as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CorpusFormatError(path, None, "file not found") from None
    except (OSError, EOFError) as exc:
        raise CorpusFormatError(path, None, f"cannot read file ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusFormatError(path, line, "not valid UTF-8") from None


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, parsed JSON value) of each document record."""
    text = _read_text(path)
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    if name.endswith(".jsonl"):
        for no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusFormatError(path, no, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        return
    dec = json.JSONDecoder()

    def line_of(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip(0)
    if pos >= len(text) or text[pos] != "[":
        raise CorpusFormatError(
            path, line_of(pos), "expected a JSON array of BigBio KB documents (or a .jsonl file, one per line)"
        )
    pos = skip(pos + 1)
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        try:
            value, end = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise CorpusFormatError(path, exc.lineno, f"not valid JSON ({exc.msg})") from None
        yield line_of(pos), value
        pos = skip(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            if skip(pos + 1) < len(text):
                raise CorpusFormatError(path, line_of(skip(pos + 1)), "text after the end of the JSON array")
            return
        raise CorpusFormatError(path, line_of(pos), "expected ',' or ']' after a document (truncated file?)")


def _spans(path: Path, no: int, what: str, obj: dict) -> list[tuple[int, int, str]]:
    """(start, end, text) pieces of a passage or entity, each checked: length and types."""
    texts, offsets = obj.get("text"), obj.get("offsets")
    if not isinstance(texts, list) or not isinstance(offsets, list) or not offsets:
        raise CorpusFormatError(path, no, f"{what}: expected 'text' (a list of strings) and 'offsets' ([[start, end]])")
    if len(texts) != len(offsets):
        raise CorpusFormatError(path, no, f"{what}: {len(texts)} text piece(s) but {len(offsets)} offset pair(s)")
    out = []
    for t, o in zip(texts, offsets):
        if (
            not isinstance(t, str)
            or not isinstance(o, list)
            or len(o) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in o)
        ):
            raise CorpusFormatError(path, no, f"{what}: offsets {o!r} are not a pair of integers with a text string")
        start, end = o
        if not 0 <= start <= end:
            raise CorpusFormatError(path, no, f"{what}: offsets {start}-{end} are not an increasing pair")
        out.append((start, end, t))
    return out


def _document_text(path: Path, no: int, doc_id: str, passages: Any) -> tuple[str, str]:
    """(title, rest) laid out as the passages' offsets say."""
    if not isinstance(passages, list) or not passages:
        raise CorpusFormatError(
            path, no, f"document {doc_id} has no passages: no title (the first passage is the title)"
        )
    pieces: list[tuple[int, int, str, int]] = []
    for i, p in enumerate(passages):
        if not isinstance(p, dict):
            raise CorpusFormatError(path, no, f"document {doc_id} passage {i}: expected an object")
        if i > 0 and p.get("type") == "title":
            raise CorpusFormatError(path, no, f"document {doc_id}: passage {i} is a title; the title must come first")
        for start, end, t in _spans(path, no, f"document {doc_id} passage {i}", p):
            if end - start != len(t):
                raise CorpusFormatError(
                    path,
                    no,
                    f"document {doc_id} passage {i}: offsets {start}-{end} span {end - start} characters "
                    f"but its text has {len(t)}",
                )
            pieces.append((start, end, t, i))
    title = [pc for pc in pieces if pc[3] == 0]
    if min(st for st, _, _, _ in title) != 0:
        raise CorpusFormatError(path, no, f"document {doc_id}: the first passage (the title) does not start at 0")
    pieces.sort()
    chars = [" "] * max(e for _, e, _, _ in pieces)
    last = 0
    for start, end, t, i in pieces:
        if start < last:
            raise CorpusFormatError(path, no, f"document {doc_id} passage {i}: offsets {start}-{end} overlap another")
        chars[start:end] = t
        last = end
    full = "".join(chars)
    title_end = max(e for _, e, _, _ in title)
    rest = [st for st, _, _, i in pieces if i != 0]
    if rest and min(rest) <= title_end:
        raise CorpusFormatError(
            path,
            no,
            f"document {doc_id}: passage 1 starts at {min(rest)}, right after (or inside) the title ending at "
            f"{title_end}; one separator character is expected between title and text (as PubTator writes them)",
        )
    return full[:title_end], full[title_end + 1 :]


def _concept_ids(path: Path, no: int, what: str, normalized: Any) -> str:
    """The id column a PubTator line would carry for these normalisations."""
    if normalized is None or normalized == []:
        return "-1"
    if not isinstance(normalized, list):
        raise CorpusFormatError(path, no, f"{what}: 'normalized' must be a list of {{db_name, db_id}}")
    parts = []
    for n in normalized:
        if not isinstance(n, dict) or not isinstance(n.get("db_id"), (str, int)) or isinstance(n.get("db_id"), bool):
            raise CorpusFormatError(path, no, f"{what}: normalized entry {n!r} has no db_id")
        db_id = str(n["db_id"]).strip()
        db_name = str(n.get("db_name") or "").strip()
        parts.append(db_id if (":" in db_id or not db_name or db_id == "-1") else f"{db_name}:{db_id}")
    return "|".join(parts)


def _document(path: Path, no: int, rec: Any, id_parser: IdParser | None, id_help: str) -> Document:
    if not isinstance(rec, dict):
        raise CorpusFormatError(path, no, "expected a BigBio KB document (a JSON object)")
    raw_id = rec.get("document_id", rec.get("id"))
    if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool) or not str(raw_id).strip():
        raise CorpusFormatError(path, no, "document without 'document_id'")
    doc_id = str(raw_id).strip()
    title, abstract = _document_text(path, no, doc_id, rec.get("passages"))
    text = f"{title} {abstract}"
    entities = rec.get("entities", [])
    if not isinstance(entities, list):
        raise CorpusFormatError(path, no, f"document {doc_id}: 'entities' must be a list")
    mentions = []
    for j, e in enumerate(entities):
        what = f"document {doc_id} entity {e.get('id', j) if isinstance(e, dict) else j}"
        if not isinstance(e, dict):
            raise CorpusFormatError(path, no, f"{what}: expected an object")
        spans = _spans(path, no, what, e)
        for start, end, t in spans:
            if end > len(text):
                raise CorpusFormatError(
                    path, no, f"{what}: offsets {start}-{end} outside document {doc_id} of length {len(text)}"
                )
            if text[start:end] != t:
                raise CorpusFormatError(
                    path, no, f"{what}: offsets {start}-{end} give {text[start:end]!r} but its text is {t!r}"
                )
        stype = str(e.get("type") or "")
        raw_ids = _concept_ids(path, no, what, e.get("normalized"))
        parsed = (id_parser or parse_ids)(raw_ids, stype)
        if parsed is None:
            raise CorpusFormatError(
                path, no, f"{what}: unknown concept id format {raw_ids!r} for type {stype!r} (expected {id_help})"
            )
        ids, unlinkable = parsed
        mentions.append(
            Mention(
                doc_id=doc_id,
                start=spans[0][0],
                end=spans[-1][1],
                text=" ".join(t for _, _, t in spans),
                semantic_type=stype,
                concept_ids=ids,
                unlinkable=unlinkable,
                composite=len(ids) > 1,
            )
        )
    mentions.sort(key=lambda m: (m.start, m.end))
    return Document(doc_id, title, abstract, tuple(mentions))


def parse_bigbio_file(
    path: str | Path, id_parser: IdParser | None = None, id_help: str = DEFAULT_ID_HELP
) -> ParseResult:
    """Documents of a BigBio KB ``.json`` (array) or ``.jsonl`` file, optionally gzipped.

    ``id_parser`` reads the joined ids as a PubTator id column is read (default: the
    MeSH/OMIM/UMLS rules); a repeated document id is a warning, as in PubTator files."""
    path = Path(path)
    docs: list[Document] = []
    warnings: list[str] = []
    seen: set[str] = set()
    for no, rec in _records(path):
        doc = _document(path, no, rec, id_parser, id_help)
        if doc.doc_id in seen:
            warnings.append(f"{path}:{no}: document {doc.doc_id} appears more than once")
        seen.add(doc.doc_id)
        docs.append(doc)
    return ParseResult(docs, warnings)
