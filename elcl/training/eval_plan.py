"""What evaluation needs besides the model, built once and reused at every step.

Which texts a bi-encoder must embed (or which (mention, name) pairs a cross-encoder must
read), their padded token batches, and where each example's mention and candidates sit
in that table do not depend on the weights: an evaluation pass over several tasks and
splits is one plan, the union of their distinct texts (a candidate name shared by two
tasks' dictionaries, or a mention that is also a dictionary name, is one row), built once
per run and scored after every step by :func:`elcl.training.predict.evaluate_sets`.

Batches hold texts of equal or near-equal token length (sorted by token count, not by
characters), so little of each batch is padding; a batch holds at most ``batch_size``
sequences and ``max_tokens`` padded tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from elcl.training.batching import TokenCache, pad_sequences
from elcl.training.examples import LinkingExample

__all__ = ["EvalPlan", "TextBatch", "build_plan", "cached_plan"]

DEFAULT_BATCH_SIZE = 512
"""Sequences per inference batch (no gradients or optimiser state: larger than training's)."""
DEFAULT_MAX_TOKENS = 16384
"""Padded tokens per inference batch: bounds the activations of a batch of long texts."""


@dataclass(frozen=True)
class TextBatch:
    rows: torch.Tensor
    """[S] rows of the plan's text (or pair) table these sequences fill."""
    ids: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class EvalPlan:
    """Every example of several evaluation sets, as index tensors into one table of sequences."""

    keys: tuple[Hashable, ...]
    bounds: Mapping[Hashable, tuple[int, int]]
    """Set key -> [start, end) of its examples in ``examples``."""
    examples: tuple[LinkingExample, ...]
    cross: bool
    n_rows: int
    """Distinct texts (bi-encoder) or distinct (mention, name) pairs (cross-encoder)."""
    batches: tuple[TextBatch, ...]
    query_row: torch.Tensor
    """[N] table row of each example's mention text (bi-encoder; empty for cross)."""
    cand_row: torch.Tensor
    """[N, K] table row of each candidate (its name, or its pair); 0 where padding."""
    valid: torch.Tensor
    """[N, K] bool, False for padding candidates (examples with fewer than K)."""
    sparse: torch.Tensor
    """[N, K] float32 TF-IDF score of each candidate (as :func:`collate` builds it)."""
    prior: torch.Tensor
    """[N, K] float32 log(1 + training count) of each candidate (0 where none)."""

    @property
    def n_examples(self) -> int:
        return len(self.examples)

    @property
    def n_tokens(self) -> int:
        """Padded tokens the encoder reads per pass (what a pass costs)."""
        return sum(int(b.ids.numel()) for b in self.batches)


def _batches(seqs: Sequence[Sequence[int]], pad_id: int, batch_size: int, max_tokens: int) -> tuple[TextBatch, ...]:
    """Padded batches of ``seqs`` sorted by token count (ties: table order)."""
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = []
    s = 0
    while s < len(order):
        e = s + 1
        # ascending lengths: the width of a batch is the length of its last sequence
        while e < len(order) and e - s < batch_size and (e - s + 1) * len(seqs[order[e]]) <= max_tokens:
            e += 1
        idx = order[s:e]
        ids, mask = pad_sequences([seqs[i] for i in idx], pad_id, max(1, len(seqs[idx[-1]])))
        out.append(TextBatch(torch.tensor(idx, dtype=torch.long), ids, mask))
        s = e
    return tuple(out)


def build_plan(
    sets: Mapping[Any, Sequence[LinkingExample]],
    cache: TokenCache,
    cross: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> EvalPlan:
    """The plan of ``sets`` (key -> examples), in key order then example order."""
    examples: list[LinkingExample] = []
    bounds: dict[Hashable, tuple[int, int]] = {}
    for key, exs in sets.items():
        bounds[key] = (len(examples), len(examples) + len(exs))
        examples.extend(exs)
    n = len(examples)
    k = max((len(e.cand_ids) for e in examples), default=0)
    cand_row = torch.zeros((n, k), dtype=torch.long)
    valid = torch.zeros((n, k), dtype=torch.bool)
    sparse = torch.zeros((n, k), dtype=torch.float32)
    prior = torch.zeros((n, k), dtype=torch.float32)
    query_row = torch.zeros((0 if cross else n,), dtype=torch.long)
    table: dict = {}
    for i, e in enumerate(examples):
        c = len(e.cand_ids)
        valid[i, :c] = True
        if e.cand_scores:
            sparse[i, : len(e.cand_scores)] = torch.tensor(e.cand_scores, dtype=torch.float32)
        if e.cand_prior:
            prior[i, : len(e.cand_prior)] = torch.tensor(e.cand_prior, dtype=torch.float32)
        if cross:
            rows = [table.setdefault((e.query, name), len(table)) for name in e.cand_names]
        else:
            query_row[i] = table.setdefault(e.query, len(table))
            rows = [table.setdefault(name, len(table)) for name in e.cand_names]
        cand_row[i, : len(rows)] = torch.tensor(rows, dtype=torch.long)
    entries = list(table)
    seqs = cache.pair_ids(entries) if cross else cache.ids(entries)
    return EvalPlan(
        keys=tuple(sets),
        bounds=bounds,
        examples=tuple(examples),
        cross=cross,
        n_rows=len(entries),
        batches=_batches(seqs, cache.pad_id, batch_size, max_tokens),
        query_row=query_row,
        cand_row=cand_row,
        valid=valid,
        sparse=sparse,
        prior=prior,
    )


_PLANS: dict[tuple, tuple[EvalPlan, tuple]] = {}
_MAX_PLANS = 4


def cached_plan(
    sets: Mapping[Any, Sequence[LinkingExample]],
    cache: TokenCache,
    cross: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> EvalPlan:
    """:func:`build_plan`, reused while the same example sequences (the same objects, as
    :func:`elcl.training.tasks.prepare_eval_task` caches them) are scored with the same
    token cache: the runner's evaluation after every step of a run builds its plan once."""
    key = (
        id(cache),
        cross,
        batch_size,
        max_tokens,
        tuple((k, id(exs), len(exs)) for k, exs in sets.items()),
    )
    hit = _PLANS.get(key)
    if hit is not None:
        return hit[0]
    plan = build_plan(sets, cache, cross, batch_size, max_tokens)
    if len(_PLANS) >= _MAX_PLANS:
        _PLANS.pop(next(iter(_PLANS)))
    # the sequences and the cache are kept alive with the plan, so their ids stay theirs
    _PLANS[key] = (plan, (cache, *sets.values()))
    return plan
