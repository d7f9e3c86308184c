"""Everything a task needs before training: corpus, ontology, candidates, examples.

Preparation is deterministic and independent of the run's seed, so every method and
seed of an experiment sees exactly the same examples; it is cached per process
because a sequential run visits each task several times (train, evaluate, Fisher).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from elcl.candidates.tfidf import TfidfCandidateGenerator, default_cache_dir
from elcl.config import ExperimentConfig, resolve_data_dir
from elcl.data.corpora import load_corpus
from elcl.data.ontology import Ontology, ontology_for_task
from elcl.data.types import Corpus
from elcl.training.examples import (
    ExampleStats,
    GoldIndex,
    LinkingExample,
    build_examples,
)


@dataclass
class TaskData:
    name: str
    corpus: Corpus
    ontology: Ontology
    examples: dict[str, list[LinkingExample]]
    stats: dict[str, ExampleStats] = field(default_factory=dict)

    def n_unlinkable(self, split: str) -> int:
        return self.stats[split].unlinkable if split in self.stats else 0


_CACHE: dict[tuple, TaskData] = {}


def _subsample(items: list, n: int | None, salt: str) -> list:
    """A fixed (seed-independent) subset, so CPU-sized runs stay comparable across methods."""
    if n is None or len(items) <= n:
        return items
    idx = sorted(random.Random(f"elcl:{salt}").sample(range(len(items)), n))
    return [items[i] for i in idx]


def _with_dense(sparse: TfidfCandidateGenerator, ontology: Ontology, cfg: ExperimentConfig):
    """TF-IDF merged with the encoder's nearest names (``candidates.dense``); embeddings cached on disk."""
    from elcl.candidates.dense import DenseCandidateGenerator, MergedCandidateGenerator

    encoder = cfg.candidates.dense_encoder or cfg.model.name
    if cfg.model.type != "bert" and cfg.candidates.dense_encoder is None:
        from elcl.errors import ConfigError

        raise ConfigError("candidates.dense: the CNN linker has no pretrained encoder to rank names with; set candidates.dense_encoder")
    dense = DenseCandidateGenerator(ontology, encoder, pooling=cfg.model.pooling, max_length=cfg.model.max_length, cache_dir=default_cache_dir())
    return MergedCandidateGenerator(sparse, dense, cfg.candidates.dense_k).fit()


def prepare_task(name: str, cfg: ExperimentConfig, splits: tuple[str, ...] = ("train", "dev", "test")) -> TaskData:
    data_dir = resolve_data_dir(cfg.data.data_dir)
    key = (
        name, str(Path(data_dir).resolve()), cfg.data.model_dump_json(), cfg.candidates.model_dump_json(),
        cfg.model.context_window, cfg.train.max_train_mentions, cfg.train.max_eval_mentions, splits,
    )
    if key in _CACHE:
        return _CACHE[key]
    corpus = load_corpus(name, data_dir)
    ontology = ontology_for_task(name, data_dir, corpus, mode=cfg.data.ontology, dictionary_splits=tuple(cfg.data.dictionary_splits))
    generator = TfidfCandidateGenerator(
        ontology, (cfg.candidates.ngram_min, cfg.candidates.ngram_max), cfg.candidates.analyzer, cache_dir=default_cache_dir()
    ).fit()
    if cfg.candidates.dense:
        generator = _with_dense(generator, ontology, cfg)
    docs = {d.doc_id: d for s in corpus.splits.values() for d in s}
    gold_index = GoldIndex(ontology)
    examples: dict[str, list[LinkingExample]] = {}
    stats: dict[str, ExampleStats] = {}
    for split in splits:
        mentions = corpus.mentions(split)
        limit = cfg.train.max_train_mentions if split == "train" else cfg.train.max_eval_mentions
        mentions = _subsample(mentions, limit, f"{name}:{split}")
        exs, st = build_examples(
            mentions, docs, generator, ontology, cfg.candidates.k, training=(split == "train"),
            context_window=cfg.model.context_window, task=name, gold_index=gold_index,
        )
        examples[split], stats[split] = exs, st
    data = TaskData(name, corpus, ontology, examples, stats)
    _CACHE[key] = data
    return data


