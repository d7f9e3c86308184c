"""Link mentions of new text with a trained linker, through the evaluation code path.

Candidates come from the TF-IDF index over the source's ontology with its candidate
settings, examples are built by :func:`~elcl.training.examples.build_examples` and
ranked by :func:`~elcl.training.predict.evaluate_examples` — the functions the trainer
evaluates with — so on a corpus split the accuracy equals what `elcl evaluate` reports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from elcl.data.types import Document
from elcl.fileio import atomic_write_text
from elcl.linking.inputs import LinkInput
from elcl.linking.source import LinkerSource
from elcl.training.batching import TokenCache
from elcl.training.examples import GoldIndex, build_examples
from elcl.training.predict import EvalResult, evaluate_examples
from elcl.training.tasks import retriever


@dataclass
class LinkResult:
    rows: list[dict]
    """One per input mention, in input order: mention, ids, names, scores (top-k), gold."""
    evaluation: EvalResult
    n_unlinkable: int
    """Mentions marked unlinkable (-1): linked, but in no accuracy (as in evaluation)."""

    @property
    def n_gold(self) -> int:
        return self.evaluation.n

    @property
    def acc1(self) -> float:
        return self.evaluation.acc1

    @property
    def acc5(self) -> float:
        return self.evaluation.acc5


def link_input(source: LinkerSource, inp: LinkInput, top_k: int = 5, batch_size: int = 256) -> LinkResult:
    ontology = source.ontology
    generator = retriever(ontology, source.candidates, source.model.cfg)
    docs = {d.doc_id: d for d in inp.documents}
    examples, stats = build_examples(
        inp.mentions,
        docs,
        generator,
        ontology,
        source.candidates.k,
        training=False,
        context_window=source.context_window,
        task=source.task,
        gold_index=GoldIndex(ontology),
        keep_unlabelled=True,
        abbreviations=source.candidates.abbreviations,
        prior=source.prior,
    )
    cache = TokenCache(source.model.tokenizer, source.max_length)
    res = evaluate_examples(source.model, examples, cache, batch_size)
    rows = []
    with_offsets = inp.kind != "text"
    for pred in res.predictions:
        top = pred["predicted"][:top_k]
        row: dict = {}
        if with_offsets:
            row.update(doc_id=pred["doc_id"], start=pred["start"], end=pred["end"])
        row.update(
            mention=pred["mention"],
            ids=[c for c, _ in top],
            names=[ontology.names[c][0] if ontology.names.get(c) else c for c, _ in top],
            scores=[s for _, s in top],
        )
        if pred["gold"]:
            row.update(gold=pred["gold"], correct=pred["correct"])
        rows.append(row)
    n_unlinkable = sum(1 for m in inp.mentions if m.unlinkable)
    return LinkResult(rows, res, n_unlinkable)


def write_jsonl(rows: list[dict], out: IO[str] | Path) -> None:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if isinstance(out, Path):
        atomic_write_text(out, text)
    else:
        out.write(text)


def pubtator_text(documents: list[Document], rows: list[dict]) -> str:
    """The input documents with each mention's id column set to its top-1 prediction."""
    predicted = {(r["doc_id"], r["start"], r["end"]): (r["ids"][0] if r["ids"] else "-1") for r in rows}
    out = []
    for d in documents:
        lines = [f"{d.doc_id}|t|{d.title}", f"{d.doc_id}|a|{d.abstract}"]
        for m in d.mentions:
            cid = predicted.get((m.doc_id, m.start, m.end), "-1")
            lines.append("\t".join([m.doc_id, str(m.start), str(m.end), m.text, m.semantic_type, cid]))
        lines.extend("\t".join([d.doc_id, *rel]) for rel in d.relations)
        out.append("\n".join(lines) + "\n\n")
    return "".join(out)
