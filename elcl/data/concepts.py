"""The ontology record: concept id -> names, the ids each concept is equivalent to, and
the one rule that says whether a predicted concept is right for a mention's gold ids.

Its own module, below every reader that builds one (``elcl/data/ontology.py`` for CTD,
MRCONSO and dictionaries, ``elcl/data/mesh.py`` for MeSH), so the readers never import
each other to name the type: ``ontology.py`` picks a task's ontology and may call the
MeSH reader, never the other way round.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Ontology:
    """Concept id -> names (first = preferred) and alternative ids."""

    names: dict[str, list[str]]
    alt_ids: dict[str, frozenset[str]] = field(default_factory=dict)
    source: str = ""
    _alias: dict[str, set[str]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        for cid, alts in self.alt_ids.items():
            for a in alts:
                self._alias.setdefault(a, set()).add(cid)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, concept_id: object) -> bool:
        return concept_id in self.names or concept_id in self._alias

    def concept_ids(self) -> list[str]:
        return list(self.names)

    def equivalent_ids(self, concept_id: str) -> frozenset[str]:
        """The id itself, its alt ids, and (when it is an alt id) its primary concepts' ids."""
        out = {concept_id, *self.alt_ids.get(concept_id, ())}
        for primary in self._alias.get(concept_id, ()):
            out.add(primary)
            out.update(self.alt_ids.get(primary, ()))
        return frozenset(out)

    def concepts_by_id(self) -> dict[str, list[str]]:
        """Any id -> the concepts (in ontology order) whose equivalent ids hold it: the
        concepts :meth:`matches` accepts for a mention annotated with that id."""
        out: dict[str, list[str]] = {}
        for cid in self.names:
            for eid in self.equivalent_ids(cid):
                out.setdefault(eid, []).append(cid)
        return out

    def matches(self, concept_id: str, gold_ids: Iterable[str]) -> bool:
        """Whether predicting ``concept_id`` is right for a mention annotated ``gold_ids``.

        Right when the concept or one of its equivalent ids (its alt ids; the primaries of an
        alt id) is a gold id. Two concepts that merely share an alt id are different concepts:
        the one scoring rule of linker accuracy, TF-IDF's top-1 and recall@k alike."""
        return not self.equivalent_ids(concept_id).isdisjoint(gold_ids)

    def num_names(self) -> int:
        return sum(len(v) for v in self.names.values())

    def content_hash(self) -> str:
        """sha256 over sorted ids, names and alt ids: the key of derived caches."""
        h = hashlib.sha256()
        for cid in sorted(self.names):
            h.update(cid.encode())
            h.update(b"\x00")
            h.update("\x01".join(self.names[cid]).encode())
            h.update(b"\x00")
            h.update("\x01".join(sorted(self.alt_ids.get(cid, ()))).encode())
            h.update(b"\x02")
        return h.hexdigest()

    def merged(self, other: Ontology) -> Ontology:
        """Union of two ontologies (names of shared ids are concatenated)."""
        names = {k: list(v) for k, v in self.names.items()}
        for k, v in other.names.items():
            cur = names.setdefault(k, [])
            cur.extend(n for n in v if n not in cur)
        alts = dict(self.alt_ids)
        for cid, ids in other.alt_ids.items():
            alts[cid] = alts.get(cid, frozenset()) | ids
        return Ontology(names, alts, f"{self.source} + {other.source}")
