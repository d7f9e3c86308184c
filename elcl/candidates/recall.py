"""Recall@k of candidate lists: the ceiling any re-ranking linker can reach."""

from __future__ import annotations

from collections.abc import Sequence

from elcl.candidates.tfidf import Candidate
from elcl.data.ontology import Ontology
from elcl.data.types import Mention
from elcl.errors import ElclError


def hit_rank(mention: Mention, candidates: Sequence[Candidate], ontology: Ontology) -> int | None:
    """0-based rank of the first candidate the linker would be scored right for, else None."""
    gold = frozenset(mention.concept_ids)
    for i, c in enumerate(candidates):
        if ontology.matches(c.concept_id, gold):
            return i
    return None


def recall_at_k(
    mentions: Sequence[Mention],
    candidates: Sequence[Sequence[Candidate]],
    ontology: Ontology,
    ks: Sequence[int] = (1, 5, 20, 64),
) -> dict[int, float]:
    """Fraction of linkable mentions whose gold concept is among the top-k candidates.

    ``candidates[i]`` belongs to ``mentions[i]``; unlinkable mentions are skipped.
    """
    if len(mentions) != len(candidates):
        raise ElclError(f"recall_at_k: {len(mentions)} mentions but {len(candidates)} candidate lists")
    ranks = [hit_rank(m, c, ontology) for m, c in zip(mentions, candidates) if m.linkable]
    if not ranks:
        return {k: 0.0 for k in ks}
    return {k: sum(1 for r in ranks if r is not None and r < k) / len(ranks) for k in ks}
