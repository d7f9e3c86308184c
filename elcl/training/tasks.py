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
from elcl.data.overlap import TrainRemoval, cross_task_removals
from elcl.data.types import Corpus
from elcl.training.examples import ExampleStats, GoldIndex, LinkingExample, build_examples


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




def sequence_train_removals(tasks: list[str] | tuple[str, ...], cfg: ExperimentConfig) -> dict[str, TrainRemoval]:
    """Per task of a sequence, the training documents another task holds out (dev/test)."""
    data_dir = resolve_data_dir(cfg.data.data_dir)
    return cross_task_removals({t: load_corpus(t, data_dir) for t in dict.fromkeys(tasks)})


def train_examples(name: str, cfg: ExperimentConfig, removal: TrainRemoval | None = None) -> list[LinkingExample]:
    """A task's training examples without the documents ``removal`` takes out."""
    examples = prepare_task(name, cfg).examples["train"]
    if removal is None or not removal.doc_ids:
        return examples
    return [e for e in examples if e.mention.doc_id not in removal.doc_ids]
