"""Rank each mention's candidates with a trained linker and score accuracy@1/@5.

The one prediction path: `elcl train` (evaluation after each step), `elcl evaluate`'s
numbers and `elcl link` all go through :func:`evaluate_sets` (:func:`evaluate_examples`
is its one-set form), so a mention linked by `elcl link` gets exactly the ranking the
trainer's evaluation gave it.

One pass scores every set at once: the bi-encoder embeds each distinct text of all sets
(mentions and candidate names alike) once, in token-length-sorted batches, and the
candidate scores are one gather and one batched dot product over a ``[N, K]`` table; the
cross-encoder reads each distinct (mention, name) pair once. What does not depend on the
weights (texts, batches, indices, feature terms) is an :class:`~elcl.training.eval_plan.EvalPlan`,
built once per run. The logits are those of ``model(collate(...))``, the training
forward, to floating-point rounding (``tests/test_fast_eval.py`` holds them to it, ties
included); :mod:`elcl.training.predict_reference` keeps the per-split, per-example path
this replaced, for tests and ``scripts/bench_eval.py``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from elcl.models.linker import Linker, feature_logits
from elcl.training.batching import TokenCache
from elcl.training.eval_plan import DEFAULT_BATCH_SIZE, EvalPlan, cached_plan
from elcl.training.examples import LinkingExample

__all__ = [
    "EvalResult",
    "evaluate_examples",
    "evaluate_plan",
    "evaluate_sets",
    "ranking",
    "score_examples",
    "score_plan",
]

_SCORE_CHUNK = 4096
"""Examples per gather + dot product: bounds the ``[chunk, K, d]`` candidate block."""


@dataclass
class EvalResult:
    acc1: float
    acc5: float
    n: int
    predictions: list[dict]


def widen(vec: torch.Tensor) -> torch.Tensor:
    """Scores are computed in float32 (float64 models keep float64): a bf16 or fp16
    encoder output is widened first, as evaluation always did."""
    return vec if vec.dtype in (torch.float32, torch.float64) else vec.float()


def _encode_rows(model: Linker, plan: EvalPlan) -> torch.Tensor:
    """The encoder's output for every row of the plan's table: ``[R, d]`` embeddings
    (bi-encoder) or ``[R]`` pair logits (cross-encoder)."""
    dev = model.device
    table: torch.Tensor | None = None
    for b in plan.batches:
        ids, mask = b.ids.to(dev, non_blocking=True), b.mask.to(dev, non_blocking=True)
        out = widen(model.pair_logits(ids, mask) if plan.cross else model.embed(ids, mask))
        if table is None:
            table = torch.empty((plan.n_rows, *out.shape[1:]), dtype=out.dtype, device=dev)
        table[b.rows.to(dev)] = out
    if table is None:  # no sequences: no examples
        return torch.empty((0,), device=dev)
    return table


@torch.inference_mode()
def score_plan(model: Linker, plan: EvalPlan) -> torch.Tensor:
    """``[N, K]`` candidate logits of every example of the plan, on the CPU; ``-inf``
    where an example has fewer than K candidates."""
    model.eval()
    if plan.cross != (model.head is not None):
        raise ValueError("the plan was built for the other linker mode (bi- vs cross-encoder)")
    n, k = plan.cand_row.shape
    if n == 0 or k == 0:
        return torch.empty((n, k))
    table = _encode_rows(model, plan)
    dev = table.device
    parts = []
    for s in range(0, n, _SCORE_CHUNK):
        rows = plan.cand_row[s : s + _SCORE_CHUNK].to(dev)
        if plan.cross:
            logits = table[rows]
        else:
            logits = model.score_vectors(table[plan.query_row[s : s + _SCORE_CHUNK].to(dev)], table[rows])
        sparse = plan.sparse[s : s + _SCORE_CHUNK].to(dev)
        prior = plan.prior[s : s + _SCORE_CHUNK].to(dev)
        logits = logits + feature_logits(model.cfg, sparse, prior, logits.dtype)
        parts.append(logits.cpu())
    scores = torch.cat(parts)
    return scores.masked_fill(~plan.valid, float("-inf"))


def ranking(scores: torch.Tensor) -> list[int]:
    """Candidate positions, best first; equal scores keep candidate order.

    The one tie rule of elcl: training-time evaluation, `elcl link` and rescoring of
    stored predictions (scripts/prior_sweep.py) all rank through it, so a tie is broken
    the same way wherever a score is turned into a prediction.
    """
    return torch.argsort(scores, descending=True, stable=True).tolist()


def set_result(examples: Sequence[LinkingExample], scores: list[list[float]], orders: list[list[int]]) -> EvalResult:
    """Accuracies and prediction rows (:class:`~elcl.schemas.PredictionRow` as dumped) of one set,
    from each example's candidate scores and ranking (the reference path of the tests builds its
    rows here too, so only the scores and rankings of the two paths can differ)."""
    hits1 = hits5 = n = 0
    preds = []
    for e, s, order in zip(examples, scores, orders):
        order = order[: len(e.cand_ids)]  # padding candidates (-inf) rank last
        top = [e.labels[i] for i in order]
        m = e.mention
        correct = None
        if m.linkable:
            n += 1
            correct = bool(top[:1] and top[0])
            hits1 += int(correct)
            hits5 += int(any(top[:5]))
        preds.append(
            {
                "doc_id": m.doc_id,
                "start": m.start,
                "end": m.end,
                "mention": m.text,
                "gold": list(m.concept_ids),
                "predicted": [[e.cand_ids[i], round(s[i], 5)] for i in order],
                "correct": correct,
            }
        )
    return EvalResult(hits1 / n if n else 0.0, hits5 / n if n else 0.0, n, preds)


def evaluate_plan(model: Linker, plan: EvalPlan) -> dict[Hashable, EvalResult]:
    """Rank every example of the plan; one :class:`EvalResult` per set key.

    Accuracy counts the examples whose mention has gold ids: evaluation examples all
    have them; `elcl link` also ranks mentions without them (``gold`` empty, ``correct``
    None), which then count in no accuracy.
    """
    scores = score_plan(model, plan)
    # one stable sort of the whole table is the per-row sort of `ranking`: same tie rule
    if scores.numel():
        orders = torch.argsort(scores, dim=1, descending=True, stable=True).tolist()
        values = scores.tolist()
    else:  # no candidates anywhere: every mention ranks nothing
        orders = values = [[] for _ in plan.examples]
    out = {}
    for key in plan.keys:
        a, b = plan.bounds[key]
        out[key] = set_result(plan.examples[a:b], values[a:b], orders[a:b])
    return out


def evaluate_sets(
    model: Linker,
    sets: Mapping[Any, Sequence[LinkingExample]],
    cache: TokenCache,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict[Hashable, EvalResult]:
    """:func:`evaluate_plan` over ``sets`` (key -> examples), the plan reused while the
    same example sequences come back with the same cache (every step of a run)."""
    plan = cached_plan(sets, cache, cross=model.head is not None, batch_size=batch_size)
    return evaluate_plan(model, plan)


def evaluate_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = DEFAULT_BATCH_SIZE
) -> EvalResult:
    """One set: :func:`evaluate_sets` of ``{0: examples}``."""
    return evaluate_sets(model, {0: examples}, cache, batch_size)[0]


def score_examples(
    model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, batch_size: int = DEFAULT_BATCH_SIZE
) -> list[torch.Tensor]:
    """Candidate scores per example (one tensor of its candidates' logits each)."""
    if not examples:
        return []
    plan = cached_plan({0: examples}, cache, cross=model.head is not None, batch_size=batch_size)
    scores = score_plan(model, plan)
    return [scores[i, : len(e.cand_ids)] for i, e in enumerate(examples)]
