"""Everything a task needs before training: corpus, ontology, candidates, examples.

Preparation is deterministic and independent of the run's seed, so every method and
seed of an experiment sees exactly the same examples. A task comes out in two parts of
different types: an :class:`EvalTask` (ontology and dev/test examples, what evaluation
needs) and a :class:`TrainSplit` (the training examples). Only the no-old-data guard
(:mod:`elcl.continual.guard`) loads training splits and keeps them, so evaluation and
anything else holding an ``EvalTask`` cannot reach a task's training data. The shared
sources (corpus, ontology, fitted retriever) and the evaluation parts are cached per
process, because a sequential run visits each task several times.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

from elcl.candidates.prior import ConceptPrior, build_prior
from elcl.candidates.tfidf import TfidfCandidateGenerator, default_cache_dir
from elcl.config import CandidatesConfig, ExperimentConfig, ModelConfig, resolve_data_dir
from elcl.data.custom import load_task_corpus, task_ontology_of
from elcl.data.ontology import Ontology
from elcl.data.overlap import TrainRemoval, cross_task_removals
from elcl.data.types import Corpus, Document
from elcl.training.examples import ExampleStats, GoldIndex, LinkingExample, build_examples

if TYPE_CHECKING:
    from elcl.models.dense_candidates import MergedCandidateGenerator

EVAL_SPLITS = ("dev", "test")


@dataclass(frozen=True)
class EvalTask:
    """A task as evaluation sees it: no training examples and no corpus (which holds them)."""

    name: str
    ontology: Ontology
    examples: Mapping[str, list[LinkingExample]]
    stats: Mapping[str, ExampleStats] = field(default_factory=dict)

    def n_unlinkable(self, split: str) -> int:
        return self.stats[split].unlinkable if split in self.stats else 0


@dataclass(frozen=True)
class TrainSplit(Sequence[LinkingExample]):
    """A task's training examples with their preparation counts; handed out by the guard only."""

    task: str
    examples: tuple[LinkingExample, ...]
    stats: ExampleStats

    @overload
    def __getitem__(self, i: int) -> LinkingExample: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[LinkingExample]: ...
    def __getitem__(self, i: int | slice) -> LinkingExample | Sequence[LinkingExample]:
        return self.examples[i]

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[LinkingExample]:
        return iter(self.examples)


@dataclass(frozen=True)
class _Sources:
    corpus: Corpus
    ontology: Ontology
    generator: TfidfCandidateGenerator | MergedCandidateGenerator
    docs: dict[str, Document]
    gold_index: GoldIndex
    prior: ConceptPrior | None


_SOURCES: dict[tuple, _Sources] = {}
_EVAL: dict[tuple, EvalTask] = {}


def _subsample(items: list, n: int | None, salt: str) -> list:
    """A fixed (seed-independent) subset, so CPU-sized runs stay comparable across methods."""
    if n is None or len(items) <= n:
        return items
    idx = sorted(random.Random(f"elcl:{salt}").sample(range(len(items)), n))
    return [items[i] for i in idx]


def task_ontology(name: str, cfg: ExperimentConfig) -> tuple[Corpus, Ontology]:
    """The task's corpus and the ontology its linker links against (as the trainer built it)."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    task = cfg.task_ref(name)
    corpus = load_task_corpus(task, data_dir)
    ontology = task_ontology_of(
        task, data_dir, corpus, mode=cfg.data.ontology, dictionary_splits=tuple(cfg.data.dictionary_splits)
    )
    return corpus, ontology


def task_prior(name: str, corpus: Corpus, ontology: Ontology, cfg: ExperimentConfig) -> ConceptPrior | None:
    """The task's concept prior, counted over every mention of its training splits (the
    data the linker learns from, as for the mention dictionary); None when the linker has
    no ``model.prior_weight``."""
    if not cfg.model.prior_weight:
        return None
    return annotation_prior(name, corpus, ontology, cfg.data.train_splits)


def annotation_prior(name: str, corpus: Corpus, ontology: Ontology, splits: Sequence[str]) -> ConceptPrior:
    """Concept counts over every mention of ``splits`` (whatever ``model.prior_weight`` is)."""
    mentions = [m for split in splits for m in corpus.mentions(split)]
    return build_prior(mentions, ontology, f"{name} {'+'.join(splits)} annotations")


def candidate_generator(ontology: Ontology, cfg: CandidatesConfig) -> TfidfCandidateGenerator:
    """The fitted TF-IDF index of the configured kind (from the on-disk cache when there)."""
    return TfidfCandidateGenerator(
        ontology, (cfg.ngram_min, cfg.ngram_max), cfg.analyzer, cache_dir=default_cache_dir()
    ).fit()


def retriever(
    ontology: Ontology, candidates: CandidatesConfig, model: ModelConfig
) -> TfidfCandidateGenerator | MergedCandidateGenerator:
    """The candidate generator a linker trained with these settings ranks: TF-IDF, merged with
    the encoder's nearest names when ``candidates.dense`` (embeddings cached on disk).

    Training, evaluation and `elcl link` all take their candidates from here, so a trained
    linker re-ranks the same candidate lists wherever it is used."""
    sparse = candidate_generator(ontology, candidates)
    if not candidates.dense:
        return sparse
    from elcl.models.dense_candidates import DenseCandidateGenerator, MergedCandidateGenerator

    encoder = candidates.dense_encoder or model.name
    if model.type != "bert" and candidates.dense_encoder is None:
        from elcl.errors import ConfigError

        raise ConfigError(
            "candidates.dense: the CNN linker has no pretrained encoder to rank names with; set candidates.dense_encoder"
        )
    dense = DenseCandidateGenerator(
        ontology, encoder, pooling=model.pooling, max_length=model.max_length, cache_dir=default_cache_dir()
    )
    return MergedCandidateGenerator(sparse, dense, candidates.dense_k).fit()


def _key(name: str, cfg: ExperimentConfig) -> tuple:
    data_dir = resolve_data_dir(cfg.data.data_dir)
    task = cfg.task_ref(name)
    return (
        name,
        task if isinstance(task, str) else task.model_dump_json(),
        str(Path(data_dir).resolve()),
        cfg.data.model_dump_json(),
        cfg.candidates.model_dump_json(),
        cfg.model.context_window,
        cfg.model.prior_weight > 0,
        cfg.train.max_train_mentions,
        cfg.train.max_eval_mentions,
    )


def _sources(name: str, cfg: ExperimentConfig) -> _Sources:
    key = _key(name, cfg)
    if key not in _SOURCES:
        corpus, ontology = task_ontology(name, cfg)
        generator = retriever(ontology, cfg.candidates, cfg.model)
        docs = {d.doc_id: d for s in corpus.splits.values() for d in s}
        prior = task_prior(name, corpus, ontology, cfg)
        _SOURCES[key] = _Sources(corpus, ontology, generator, docs, GoldIndex(ontology), prior)
    return _SOURCES[key]


def _split_examples(name: str, cfg: ExperimentConfig, split: str) -> tuple[list[LinkingExample], ExampleStats]:
    src = _sources(name, cfg)
    limit = cfg.train.max_train_mentions if split == "train" else cfg.train.max_eval_mentions
    parts = list(cfg.data.train_splits) if split == "train" else [split]
    pool = [m for part in parts for m in src.corpus.mentions(part)]
    mentions = _subsample(pool, limit, f"{name}:{'+'.join(parts)}")
    return build_examples(
        mentions,
        src.docs,
        src.generator,
        src.ontology,
        cfg.candidates.k,
        training=(split == "train"),
        context_window=cfg.model.context_window,
        task=name,
        gold_index=src.gold_index,
        abbreviations=cfg.candidates.abbreviations,
        prior=src.prior,
    )


def prepare_eval_task(name: str, cfg: ExperimentConfig) -> EvalTask:
    """The task's ontology and dev/test examples (cached)."""
    key = _key(name, cfg)
    if key not in _EVAL:
        parts = {split: _split_examples(name, cfg, split) for split in EVAL_SPLITS}
        _EVAL[key] = EvalTask(
            name,
            _sources(name, cfg).ontology,
            {s: exs for s, (exs, _) in parts.items()},
            {s: st for s, (_, st) in parts.items()},
        )
    return _EVAL[key]


def load_train_split(name: str, cfg: ExperimentConfig, removal: TrainRemoval | None = None) -> TrainSplit:
    """The task's training examples, built afresh: the guard's loader, which keeps them (not cached here).

    ``removal``: the documents another task of the sequence holds out (dev/test), left out."""
    examples, stats = _split_examples(name, cfg, "train")
    if removal is not None and removal.doc_ids:
        examples = [e for e in examples if e.mention.doc_id not in removal.doc_ids]
    return TrainSplit(name, tuple(examples), stats)


def sequence_train_removals(tasks: list[str] | tuple[str, ...], cfg: ExperimentConfig) -> dict[str, TrainRemoval]:
    """Per task of a sequence, the training documents another task holds out (dev/test)."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    return cross_task_removals({t: load_task_corpus(cfg.task_ref(t), data_dir) for t in dict.fromkeys(tasks)})
