"""Turn gold mentions into linking examples: mention text, k candidates, labels.

Training examples always contain a correct candidate (the gold concept is swapped in
for the last candidate when the retriever missed it), otherwise the softmax loss has
nothing to push up. Evaluation examples keep the retriever's candidates untouched, so
a retrieval miss counts as an error, as it would for a user.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from elcl.candidates.abbrev import AbbreviationStyle, expand_mention, find_abbreviations
from elcl.candidates.prior import ConceptPrior
from elcl.data.types import Document, Mention


@dataclass(frozen=True)
class LinkingExample:
    mention: Mention
    query: str  # the text the encoder reads for the mention (mention, maybe with context)
    cand_ids: tuple[str, ...]
    cand_names: tuple[str, ...]
    cand_scores: tuple[float, ...]
    labels: tuple[bool, ...]
    task: str = ""
    cand_prior: tuple[float, ...] = ()
    """``log(1 + n)`` per candidate, n = training mentions of the task it is right for
    (:mod:`elcl.candidates.prior`); empty when the task has no prior."""

    @property
    def has_gold(self) -> bool:
        return any(self.labels)


@dataclass
class ExampleStats:
    total: int = 0
    unlinkable: int = 0
    gold_inserted: int = 0
    gold_not_in_ontology: int = 0


def _trigrams(text: str) -> set[str]:
    t = f"  {text.lower()} "
    return {t[i : i + 3] for i in range(len(t) - 2)}


def best_name(mention: str, names: Sequence[str]) -> str:
    """The synonym closest to the mention by character-trigram Jaccard (cheap, deterministic)."""
    q = _trigrams(mention)
    return max(names, key=lambda n: (len(q & _trigrams(n)) / max(1, len(q | _trigrams(n))), -len(n)))


def with_context(doc: Document | None, mention: Mention, window: int, surface: str | None = None) -> str:
    """Mention text, optionally wrapped in ``window`` words of abstract context each side."""
    surface = surface or mention.text
    if window <= 0 or doc is None:
        return surface
    text = doc.text
    left = text[: mention.start].split()[-window:]
    right = text[mention.end :].split()[:window]
    return " ".join([*left, "[", surface, "]", *right])


def _expanded_queries(
    mentions: Sequence[Mention], docs: dict[str, Document], style: AbbreviationStyle = "initials"
) -> list[str]:
    """Mention texts with abbreviations defined in their abstract expanded ("DMD" -> long form)."""
    cache: dict[str, dict[str, str]] = {}
    out = []
    for m in mentions:
        doc = docs.get(m.doc_id)
        if doc is None:
            out.append(m.text)
            continue
        if m.doc_id not in cache:
            cache[m.doc_id] = find_abbreviations(doc.text, style)
        out.append(expand_mention(m, cache[m.doc_id]))
    return out


class GoldIndex:
    """Maps any id (primary or alternative) to the ontology concept that carries it."""

    def __init__(self, ontology) -> None:
        self.ontology = ontology
        self._owner = {eid: cids[0] for eid, cids in ontology.concepts_by_id().items()}

    def concept_for(self, gold_ids: Iterable[str]) -> str | None:
        for g in gold_ids:
            if g in self._owner:
                return self._owner[g]
        return None

    def is_correct(self, concept_id: str, gold_ids: frozenset[str]) -> bool:
        return self.ontology.matches(concept_id, gold_ids)


def build_examples(
    mentions: Sequence[Mention],
    docs: dict[str, Document],
    generator,
    ontology,
    k: int,
    training: bool,
    context_window: int = 0,
    task: str = "",
    gold_index: GoldIndex | None = None,
    keep_unlabelled: bool = False,
    abbreviations: AbbreviationStyle = "initials",
    prior: ConceptPrior | None = None,
) -> tuple[list[LinkingExample], ExampleStats]:
    """Retrieve candidates for every linkable mention and label them.

    ``keep_unlabelled`` (`elcl link`) also keeps mentions without gold ids, every label
    False, so new text is ranked the same way as evaluation mentions. ``prior``: each
    candidate's training-annotation count outside the mention's own document.
    """
    stats = ExampleStats(total=len(mentions))
    linkable = [m for m in mentions if m.linkable or keep_unlabelled]
    stats.unlinkable = sum(1 for m in mentions if not m.linkable)
    gold_index = gold_index or GoldIndex(ontology)
    queries = _expanded_queries(linkable, docs, abbreviations)
    retrieved = generator.top_k(queries, k) if linkable else []
    out: list[LinkingExample] = []
    for m, q, cands in zip(linkable, queries, retrieved):
        gold = frozenset(m.concept_ids)
        ids = [c.concept_id for c in cands]
        names = [c.name for c in cands]
        scores = [float(c.score) for c in cands]
        labels = [gold_index.is_correct(c, gold) for c in ids]
        if training and not any(labels):
            concept = gold_index.concept_for(m.concept_ids)
            if concept is None:
                stats.gold_not_in_ontology += 1
                continue
            name = best_name(m.text, ontology.names[concept])
            if len(ids) >= k:
                ids, names, scores, labels = ids[:-1], names[:-1], scores[:-1], labels[:-1]
            ids.append(concept)
            names.append(name)
            scores.append(float(generator.pair_scores([q], [name])[0]))
            labels.append(True)
            stats.gold_inserted += 1
        query = with_context(docs.get(m.doc_id), m, context_window, q)
        cand_prior = prior.feature(ids, m.doc_id) if prior is not None else ()
        out.append(LinkingExample(m, query, tuple(ids), tuple(names), tuple(scores), tuple(labels), task, cand_prior))
    return out, stats
