"""Plain data records shared by every stage of the pipeline.

They are frozen dataclasses so that a corpus, once loaded and checked, cannot be
mutated by a later stage (e.g. a trainer adding a gold candidate).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Mention:
    """One gold mention span and its normalised concept ids.

    ``concept_ids`` is a tuple because composite mentions ("breast and ovarian
    cancer") carry several ids; a prediction is correct when it hits any of them.
    An unlinkable mention (BC5CDR ``-1``) has ``concept_ids == ()`` and
    ``unlinkable`` set, so it is counted but excluded from linking evaluation.
    """

    doc_id: str
    start: int
    end: int
    text: str
    semantic_type: str
    concept_ids: tuple[str, ...]
    unlinkable: bool = False
    composite: bool = False
    components: tuple[str, ...] = ()
    """BC5CDR's 7th column: the individual texts of a composite mention (may be empty)."""

    @property
    def linkable(self) -> bool:
        return not self.unlinkable and len(self.concept_ids) > 0


@dataclass(frozen=True)
class Document:
    """A PubTator abstract: title + abstract text and its mentions."""

    doc_id: str
    title: str
    abstract: str
    mentions: tuple[Mention, ...]
    relations: tuple[tuple[str, ...], ...] = ()

    @property
    def text(self) -> str:
        # PubTator offsets count title, one space, then the abstract.
        return f"{self.title} {self.abstract}"


@dataclass(frozen=True)
class Corpus:
    """A named task with its official splits (``train``/``dev``/``test``)."""

    name: str
    splits: dict[str, tuple[Document, ...]]
    ontology_name: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per split: non-fatal findings of the parser (e.g. offset/text mismatches)."""

    def documents(self, split: str) -> tuple[Document, ...]:
        return self.splits.get(split, ())

    def mentions(self, split: str, linkable_only: bool = False) -> list[Mention]:
        out = [m for d in self.documents(split) for m in d.mentions]
        if linkable_only:
            out = [m for m in out if m.linkable]
        return out
