"""The evaluation path before :mod:`elcl.training.predict` scored all sets at once.

Kept only as the reference of ``tests/test_fast_eval.py`` and ``scripts/bench_eval.py``
(nothing in elcl calls it): one call per (task, split), each embedding the distinct
texts of its own split (sorted by characters), then one small tensor product per
example; the cross-encoder re-tokenises its pairs at every call. Its scores are the
same logits as the fast path's up to floating-point rounding (batch shapes differ).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from elcl.models.linker import Linker, feature_logits
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample
from elcl.training.predict import EvalResult, ranking, set_result, widen

__all__ = ["reference_evaluate_examples", "reference_score_examples"]


@torch.no_grad()
def _embed_texts(model: Linker, cache: TokenCache, texts: list[str], batch_size: int) -> torch.Tensor:
    out = []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        ids, mask = cache.pad([texts[i] for i in idx])
        out.append((idx, widen(model.embed(ids.to(model.device), mask.to(model.device)))))
    dim = out[0][1].shape[1]
    result = torch.empty((len(texts), dim), dtype=out[0][1].dtype, device=model.device)
    for idx, vec in out:
        result[torch.tensor(idx, device=model.device)] = vec
    return result


@torch.no_grad()
def reference_score_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = 256
) -> list[torch.Tensor]:
    """Candidate scores per example, one split at a time."""
    model.eval()
    if not examples:
        return []
    if model.head is not None:
        scores: list[torch.Tensor] = []
        step = max(1, batch_size // 16)
        for s in range(0, len(examples), step):
            chunk = examples[s : s + step]
            logits = widen(model(collate(chunk, cache, cross=True).to(model.device))).cpu()
            scores.extend(logits[i, : len(e.cand_ids)] for i, e in enumerate(chunk))
        return scores
    queries = list(dict.fromkeys(e.query for e in examples))
    names = list(dict.fromkeys(n for e in examples for n in e.cand_names))
    qv = _embed_texts(model, cache, queries, batch_size)
    nv = _embed_texts(model, cache, names, batch_size)
    qpos = {t: i for i, t in enumerate(queries)}
    npos = {t: i for i, t in enumerate(names)}
    out = []
    for e in examples:
        c = nv[torch.tensor([npos[n] for n in e.cand_names], device=nv.device)]
        score = (c @ qv[qpos[e.query]] / model.cfg.temperature).cpu()
        sparse = torch.tensor(e.cand_scores) if model.cfg.sparse_weight else None
        prior = torch.tensor(e.cand_prior) if model.cfg.prior_weight and e.cand_prior else None
        score = score + feature_logits(model.cfg, sparse, prior, score.dtype)
        out.append(score)
    return out


def reference_evaluate_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = 256
) -> EvalResult:
    """Rank and score one split through :func:`reference_score_examples` and :func:`ranking`."""
    scores = reference_score_examples(model, examples, cache, batch_size)
    return set_result(examples, [s.tolist() for s in scores], [ranking(s) for s in scores])
