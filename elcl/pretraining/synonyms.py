"""Synonym sets of an ontology and the batches the self-alignment pass trains on.

A batch is ``batch_size / names_per_concept`` concepts, each with ``names_per_concept``
of its distinct names, so every name has in-batch positives. Batches are a pure
function of (seed, step): concepts are visited in a seeded permutation per epoch and
names drawn with a generator seeded by (seed, epoch, concept), so a resumed pass sees
exactly the batches an uninterrupted one would, with no sampler state to save.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from elcl.data.ontology import Ontology
from elcl.errors import ElclError


@dataclass(frozen=True)
class SynonymSets:
    """Concepts with at least two distinct (lower-cased) names; every name gets an id."""

    concept_ids: list[str]
    names: list[list[int]]  # per concept: ids into ``texts``
    texts: list[str]

    @classmethod
    def from_ontology(cls, ontology: Ontology, min_names: int = 2) -> SynonymSets:
        text_id: dict[str, int] = {}
        texts: list[str] = []
        concept_ids: list[str] = []
        names: list[list[int]] = []
        for cid, raw in ontology.names.items():
            ids: list[int] = []
            for name in raw:
                key = " ".join(name.lower().split())
                if not key:
                    continue
                i = text_id.get(key)
                if i is None:
                    i = text_id[key] = len(texts)
                    texts.append(key)
                if i not in ids:
                    ids.append(i)
            if len(ids) >= min_names:
                concept_ids.append(cid)
                names.append(ids)
        if not concept_ids:
            raise ElclError(
                f"ontology ({ontology.source}) has no concept with {min_names} or more distinct names: nothing to align"
            )
        return cls(concept_ids, names, texts)

    def __len__(self) -> int:
        return len(self.concept_ids)

    @property
    def num_names(self) -> int:
        return sum(len(n) for n in self.names)


@dataclass(frozen=True)
class Batch:
    texts: list[str]
    labels: list[int]  # concept index per text
    name_ids: list[int]  # text id per text (same string under two concepts is no negative)


class SynonymBatcher:
    """Deterministic batches: ``batch(step)`` depends only on (seed, step)."""

    def __init__(self, sets: SynonymSets, batch_size: int, names_per_concept: int = 2, seed: int = 13) -> None:
        if names_per_concept < 2:
            raise ElclError("pretrain names_per_concept must be >= 2 (in-batch positives need two names of a concept)")
        if batch_size < 2 * names_per_concept or batch_size % names_per_concept:
            raise ElclError(
                f"pretrain batch_size {batch_size}: expected a multiple of names_per_concept={names_per_concept}, at least two concepts' worth"
            )
        self.sets = sets
        self.per = names_per_concept
        self.concepts_per_batch = min(batch_size // names_per_concept, len(sets))
        if self.concepts_per_batch < 2:
            raise ElclError(
                f"ontology has {len(sets)} concept(s) with two or more names: a batch needs at least two concepts"
            )
        self.seed = seed
        self.steps_per_epoch = len(sets) // self.concepts_per_batch
        self._order_epoch = -1
        self._order: list[int] = []

    def _epoch_order(self, epoch: int) -> list[int]:
        if epoch != self._order_epoch:
            order = list(range(len(self.sets)))
            random.Random(f"elcl-pretrain:{self.seed}:{epoch}").shuffle(order)
            self._order, self._order_epoch = order, epoch
        return self._order

    def batch(self, step: int) -> Batch:
        epoch, within = divmod(step, self.steps_per_epoch)
        order = self._epoch_order(epoch)
        lo = within * self.concepts_per_batch
        texts: list[str] = []
        labels: list[int] = []
        name_ids: list[int] = []
        for c in order[lo : lo + self.concepts_per_batch]:
            pool = self.sets.names[c]
            rng = random.Random(f"elcl-pretrain:{self.seed}:{epoch}:{c}")
            picks = (
                rng.sample(pool, self.per)
                if len(pool) >= self.per
                else [*pool, *rng.choices(pool, k=self.per - len(pool))]
            )
            for i in picks:
                texts.append(self.sets.texts[i])
                labels.append(c)
                name_ids.append(i)
        return Batch(texts, labels, name_ids)
