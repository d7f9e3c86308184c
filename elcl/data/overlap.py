"""No document in two tasks: held-out documents of one task never train another.

BioRED shares dozens of abstracts with BC5CDR (train, dev and test) and a few with NCBI
Disease.  In a sequence (or a joint / replay run) that holds two of these corpora, an
abstract in one task's dev or test split that also sits in another task's training
split would let the model see that task's evaluation text (and often the same gold
concepts) while training: its dev/test accuracy, and every forgetting figure computed
from it, would be inflated.  The rule: every document id in any task's dev or test
split is removed from every *other* task's training split before training.  Tasks
that share a corpus (``bc5cdr_disease`` and ``bc5cdr_chemical``) share its official
split, so the rule never removes anything between them.

Pure functions over loaded corpora; the runner applies the result and records it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from elcl.data.types import Corpus

HELD_OUT = ("dev", "test")


@dataclass(frozen=True)
class TrainRemoval:
    """What the rule takes out of one task's training split."""

    task: str
    doc_ids: frozenset[str] = frozenset()
    """Training documents removed (their ids sit in another task's dev/test split)."""
    mentions: int = 0
    """Mentions of those documents (what the task's training data loses)."""
    by_task: dict[str, int] = field(default_factory=dict)
    """Other task -> how many of the removed documents are in its dev/test split."""

    @property
    def documents(self) -> int:
        return len(self.doc_ids)

    def to_json(self) -> dict:
        return {
            "documents": self.documents,
            "mentions": self.mentions,
            "by_task": dict(sorted(self.by_task.items())),
            "doc_ids": sorted(self.doc_ids),
        }

    def summary(self) -> str:
        if not self.doc_ids:
            return f"{self.task}: no training document is held out by another task"
        parts = ", ".join(f"{n} in {t} dev/test" for t, n in sorted(self.by_task.items()))
        return f"{self.task}: {self.documents} training documents ({self.mentions} mentions) removed: {parts}"


def held_out_ids(corpus: Corpus) -> frozenset[str]:
    """Ids of the documents of a corpus's dev and test splits."""
    return frozenset(d.doc_id for s in HELD_OUT for d in corpus.documents(s))


def cross_task_removals(corpora: Mapping[str, Corpus]) -> dict[str, TrainRemoval]:
    """Per task, the training documents that another task of ``corpora`` holds out.

    ``corpora`` maps task name -> its loaded corpus (every task of the sequence).
    """
    held = {t: held_out_ids(c) for t, c in corpora.items()}
    out: dict[str, TrainRemoval] = {}
    for task, corpus in corpora.items():
        removed: set[str] = set()
        mentions = 0
        by_task: dict[str, set[str]] = {}
        for doc in corpus.documents("train"):
            owners = [u for u in corpora if u != task and doc.doc_id in held[u]]
            if not owners:
                continue
            removed.add(doc.doc_id)
            mentions += len(doc.mentions)
            for u in owners:
                by_task.setdefault(u, set()).add(doc.doc_id)
        out[task] = TrainRemoval(task, frozenset(removed), mentions, {u: len(ids) for u, ids in by_task.items()})
    return out


def without_documents(corpus: Corpus, doc_ids: frozenset[str], split: str = "train") -> Corpus:
    """``corpus`` with the documents ``doc_ids`` taken out of ``split`` (others unchanged)."""
    from dataclasses import replace

    if not doc_ids:
        return corpus
    kept = tuple(d for d in corpus.documents(split) if d.doc_id not in doc_ids)
    return replace(corpus, splits={**corpus.splits, split: kept})
