"""Collate linking examples into padded token tensors.

Texts are tokenised once and cached, since the same candidate names recur across
thousands of mentions. In training batches, identical texts are encoded once
(``share=True``); curvature collection needs one sequence per (example, text) so the
hooks can attribute every position to exactly one example (``share=False``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from elcl.models.linker import LinkerBatch
from elcl.training.examples import LinkingExample


def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[len(seqs), width]`` right-padded with ``pad_id``, and their attention mask:
    the one padding rule of training batches and of the evaluation plan's batches."""
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


class TokenCache:
    def __init__(self, tokenizer, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = int(getattr(tokenizer, "pad_token_id", 0) or 0)
        self._cache: dict[str, list[int]] = {}
        self._pairs: dict[tuple[str, str], list[int]] = {}

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            enc = self.tokenizer(list(missing), truncation=True, max_length=self.max_length, padding=False)
            for t, ids in zip(missing, enc["input_ids"]):
                self._cache[t] = list(ids)
        return [self._cache[t] for t in texts]

    def pair_ids(self, pairs: Sequence[tuple[str, str]]) -> list[list[int]]:
        """Token ids of (mention, name) pairs, tokenised as :meth:`pad_pairs` does, once each."""
        missing = [p for p in dict.fromkeys(pairs) if p not in self._pairs]
        if missing:
            enc = self.tokenizer(
                [a for a, _ in missing], [b for _, b in missing], truncation=True, max_length=self.max_length
            )
            for p, ids in zip(missing, enc["input_ids"]):
                self._pairs[p] = list(ids)
        return [self._pairs[p] for p in pairs]

    def pad(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = self.ids(texts)
        return pad_sequences(seqs, self.pad_id, max(len(s) for s in seqs))

    def pad_pairs(self, first: Sequence[str], second: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.tokenizer(
            list(first), list(second), truncation=True, max_length=self.max_length, padding=True, return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"]


def collate(
    examples: Sequence[LinkingExample], cache: TokenCache, share: bool = True, cross: bool = False
) -> LinkerBatch:
    b = len(examples)
    k = max(len(e.cand_ids) for e in examples)
    valid = torch.zeros((b, k), dtype=torch.bool)
    labels = torch.zeros((b, k), dtype=torch.bool)
    sparse = torch.zeros((b, k), dtype=torch.float32)
    prior = torch.zeros((b, k), dtype=torch.float32)
    for i, e in enumerate(examples):
        valid[i, : len(e.cand_ids)] = True
        sparse[i, : len(e.cand_scores)] = torch.tensor(e.cand_scores, dtype=torch.float32)
        prior[i, : len(e.cand_prior)] = torch.tensor(e.cand_prior, dtype=torch.float32)
        labels[i, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.bool)
    if cross:
        firsts, seconds = [], []
        for e in examples:
            names = list(e.cand_names) + [""] * (k - len(e.cand_names))
            firsts.extend([e.query] * k)
            seconds.extend(names)
        ids, mask = cache.pad_pairs(firsts, seconds)
        owner = torch.arange(b).repeat_interleave(k)
        index = torch.arange(b * k).view(b, k)
        return LinkerBatch(ids, mask, ids[:0], mask[:0], index, valid, labels, owner, None, sparse, prior)
    m_ids, m_mask = cache.pad([e.query for e in examples])
    if share:
        texts: dict[str, int] = {}
        index = torch.zeros((b, k), dtype=torch.long)
        for i, e in enumerate(examples):
            for j, name in enumerate(e.cand_names):
                index[i, j] = texts.setdefault(name, len(texts))
        c_ids, c_mask = cache.pad(list(texts))
        return LinkerBatch(m_ids, m_mask, c_ids, c_mask, index, valid, labels, None, None, sparse, prior)
    names = []
    name_owner: list[int] = []
    index = torch.zeros((b, k), dtype=torch.long)
    for i, e in enumerate(examples):
        for j, name in enumerate(e.cand_names):
            index[i, j] = len(names)
            names.append(name)
            name_owner.append(i)
    c_ids, c_mask = cache.pad(names)
    return LinkerBatch(
        m_ids,
        m_mask,
        c_ids,
        c_mask,
        index,
        valid,
        labels,
        torch.arange(b),
        torch.tensor(name_owner, dtype=torch.long),
        sparse,
        prior,
    )
