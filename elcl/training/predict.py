"""Rank each mention's candidates with a trained linker and score accuracy@1/@5.

The one prediction path: `elcl train` (evaluation after each step), `elcl evaluate`'s
numbers and `elcl link` all go through :func:`evaluate_examples`, so a mention linked
by `elcl link` gets exactly the ranking the trainer's evaluation gave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from elcl.models.linker import Linker, feature_logits
from elcl.schemas import PredictionRow
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample


@dataclass
class EvalResult:
    acc1: float
    acc5: float
    n: int
    predictions: list[dict]


@torch.no_grad()
def _embed_texts(
    model: Linker, cache: TokenCache, texts: list[str], batch_size: int, desc: str = "embed"
) -> torch.Tensor:
    out = []
    # Sorting by length keeps padding (wasted compute) small.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for s in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=None):
        idx = order[s : s + batch_size]
        ids, mask = cache.pad([texts[i] for i in idx])
        out.append((idx, model.embed(ids.to(model.device), mask.to(model.device)).float()))
    dim = out[0][1].shape[1]
    result = torch.empty((len(texts), dim), device=model.device)
    for idx, vec in out:
        result[torch.tensor(idx, device=model.device)] = vec
    return result


@torch.no_grad()
def score_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = 256
) -> list[torch.Tensor]:
    """Candidate scores per example (bi-encoder: every distinct text is embedded once)."""
    model.eval()
    if not examples:
        return []
    if model.head is not None:
        scores: list[torch.Tensor] = []
        for s in tqdm(range(0, len(examples), max(1, batch_size // 16)), desc="score", leave=False, disable=None):
            chunk = examples[s : s + max(1, batch_size // 16)]
            logits = model(collate(chunk, cache, cross=True).to(model.device)).float().cpu()
            scores.extend(logits[i, : len(e.cand_ids)] for i, e in enumerate(chunk))
        return scores
    queries = list(dict.fromkeys(e.query for e in examples))
    names = list(dict.fromkeys(n for e in examples for n in e.cand_names))
    qv = _embed_texts(model, cache, queries, batch_size, "embed mentions")
    nv = _embed_texts(model, cache, names, batch_size, "embed names")
    qpos = {t: i for i, t in enumerate(queries)}
    npos = {t: i for i, t in enumerate(names)}
    out = []
    for e in examples:
        c = nv[torch.tensor([npos[n] for n in e.cand_names], device=nv.device)]
        score = (c @ qv[qpos[e.query]] / model.cfg.temperature).cpu()
        # tensors only for the terms the linker uses: this loop runs once per evaluated mention
        sparse = torch.tensor(e.cand_scores) if model.cfg.sparse_weight else None
        prior = torch.tensor(e.cand_prior) if model.cfg.prior_weight and e.cand_prior else None
        score = score + feature_logits(model.cfg, sparse, prior, score.dtype)
        out.append(score)
    return out


def ranking(scores: torch.Tensor) -> list[int]:
    """Candidate positions, best first; equal scores keep candidate order.

    The one tie rule of elcl: training-time evaluation, `elcl link` and rescoring of
    stored predictions (scripts/prior_sweep.py) all rank through it, so a tie is broken
    the same way wherever a score is turned into a prediction.
    """
    return torch.argsort(scores, descending=True, stable=True).tolist()


def evaluate_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = 256
) -> EvalResult:
    """Rank every example's candidates; accuracy over the examples whose mention has gold ids.

    Evaluation examples all have gold ids; `elcl link` also ranks mentions without them
    (``gold`` empty, ``correct`` None), which then count in no accuracy.
    """
    scores = score_examples(model, examples, cache, batch_size)
    hits1 = hits5 = n = 0
    preds = []
    for e, s in zip(examples, scores):
        order = ranking(s)
        top = [e.labels[i] for i in order]
        m = e.mention
        correct = None
        if m.linkable:
            n += 1
            correct = bool(top[:1] and top[0])
            hits1 += int(correct)
            hits5 += int(any(top[:5]))
        preds.append(
            PredictionRow(
                doc_id=m.doc_id,
                start=m.start,
                end=m.end,
                mention=m.text,
                gold=list(m.concept_ids),
                predicted=[(e.cand_ids[i], round(float(s[i]), 5)) for i in order],
                correct=correct,
            ).dump()
        )
    return EvalResult(hits1 / n if n else 0.0, hits5 / n if n else 0.0, n, preds)
