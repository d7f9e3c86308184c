"""How often a task's training annotations chose each concept: a prior for the linker.

Close concepts of one ontology ("Cirrhosis" the fibrosis term and "Liver Cirrhosis";
MEDIC's "complement component 9 deficiency" and the OMIM id a corpus annotates) often
share a name, so a linker that reads only strings ties or guesses between them, while a
corpus's annotators chose one of them consistently. ``model.prior_weight`` adds
``w · log(1 + n(c))`` to candidate ``c``'s logit, where ``n(c)`` counts the training
mentions for which predicting ``c`` is right (the one scoring rule,
:meth:`Ontology.matches`), the commonness prior of entity linking.

A training mention's own document is left out of its count (``n`` minus what that
document contributed): otherwise every training mention would see its gold concept
counted at least once because of itself, the prior would look more reliable in
training than on new documents, and a concept seen in one training abstract only would
be favoured in training and not at test time.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from elcl.data.ontology import Ontology
from elcl.data.types import Mention


class PriorRecord(BaseModel):
    """The prior as an export stores it (``elcl_linker.json`` → ``concept_prior``)."""

    model_config = ConfigDict(extra="forbid")
    source: str = ""
    mentions: int = Field(ge=0)
    counts: dict[str, int]


@dataclass(frozen=True)
class ConceptPrior:
    """Training-annotation counts per concept id, with each document's own share."""

    counts: Mapping[str, int]
    by_doc: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    mentions: int = 0
    source: str = ""

    def count(self, concept_id: str, doc_id: str | None = None) -> int:
        """Training mentions ``concept_id`` is right for, outside document ``doc_id``."""
        n = self.counts.get(concept_id, 0)
        if doc_id is not None:
            n -= self.by_doc.get(doc_id, {}).get(concept_id, 0)
        return n

    def feature(self, concept_ids: Iterable[str], doc_id: str | None = None) -> tuple[float, ...]:
        """``log(1 + n)`` per candidate: the value ``model.prior_weight`` multiplies."""
        return tuple(math.log1p(self.count(c, doc_id)) for c in concept_ids)

    def record(self) -> PriorRecord:
        return PriorRecord(source=self.source, mentions=self.mentions, counts=dict(self.counts))

    @classmethod
    def from_record(cls, rec: PriorRecord) -> ConceptPrior:
        """An export's prior: totals only (new documents are never training documents)."""
        return cls(dict(rec.counts), {}, rec.mentions, rec.source)


def build_prior(mentions: Iterable[Mention], ontology: Ontology, source: str = "") -> ConceptPrior:
    """Count, for every concept of ``ontology``, the linkable ``mentions`` it is right for.

    A mention counts once per concept however many of its gold ids that concept matches;
    a composite mention counts for each of its parts' concepts."""
    owners = ontology.concepts_by_id()
    total: Counter[str] = Counter()
    by_doc: dict[str, Counter[str]] = {}
    n = 0
    for m in mentions:
        if not m.linkable:
            continue
        n += 1
        hit = {c for g in m.concept_ids for c in owners.get(g, ())}
        total.update(hit)
        by_doc.setdefault(m.doc_id, Counter()).update(hit)
    return ConceptPrior(dict(total), {d: dict(c) for d, c in by_doc.items()}, n, source)
