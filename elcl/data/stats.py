"""Corpus statistics: the numbers to compare against each corpus's published counts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from elcl.data.types import SPLITS, Corpus


def split_stats(corpus: Corpus, split: str) -> dict[str, Any]:
    """Documents, mentions, distinct concepts, unlinkable and composite counts of one split."""
    mentions = corpus.mentions(split)
    concepts = {c for m in mentions for c in m.concept_ids}
    return {
        "documents": len(corpus.documents(split)),
        "mentions": len(mentions),
        "concepts": len(concepts),
        "unlinkable": sum(1 for m in mentions if m.unlinkable),
        "composite": sum(1 for m in mentions if m.composite),
        "warnings": len(corpus.warnings.get(split, ())),
        # Mentions per entity type (BioRED has six; the whole-corpus counts are their sum).
        "types": dict(sorted(Counter(m.semantic_type for m in mentions).items())),
    }


def corpus_stats(corpus: Corpus) -> dict[str, dict[str, Any]]:
    return {split: split_stats(corpus, split) for split in SPLITS if split in corpus.splits}
