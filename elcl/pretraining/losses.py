"""Metric-learning losses over one batch of names labelled by concept.

Every batch holds at least two names per concept, so each name has in-batch positives;
the other concepts' names are its negatives. Pairs whose two names are the same string
under different concepts (an ontology listing one name for two concepts) count as
neither: the encoder cannot separate them and should not be pushed to.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_masks(labels: torch.Tensor, name_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean ``[N, N]`` masks of positive pairs (same concept, not the diagonal) and negatives."""
    same = labels.unsqueeze(0) == labels.unsqueeze(1)
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    pos = same & ~eye
    neg = ~same
    if name_ids is not None:
        neg = neg & ~(name_ids.unsqueeze(0) == name_ids.unsqueeze(1))
    return pos, neg


def mine_hard_pairs(
    sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Online hard-pair mining: the pairs of every triplet (a, p, n) with s(a,n) > s(a,p) − margin.

    This is SapBERT's miner (pytorch-metric-learning ``TripletMarginMiner(margin,
    type_of_triplets="all")`` on cosine similarity, its triplets then split into pairs),
    written per anchor: a positive is kept when some negative comes within ``margin`` of
    it, a negative when it comes within ``margin`` of the anchor's weakest positive.
    """
    big = torch.finfo(sim.dtype).max
    hardest_neg = sim.masked_fill(~neg, -big).amax(dim=1, keepdim=True)
    weakest_pos = sim.masked_fill(~pos, big).amin(dim=1, keepdim=True)
    hard_pos = pos & (sim < hardest_neg + margin)
    hard_neg = neg & (sim > weakest_pos - margin)
    return hard_pos, hard_neg


def multi_similarity_loss(
    emb: torch.Tensor,
    labels: torch.Tensor,
    name_ids: torch.Tensor | None = None,
    alpha: float = 1.0,
    beta: float = 60.0,
    base: float = 0.5,
    margin: float | None = 0.2,
) -> torch.Tensor:
    """Multi-similarity loss (Wang et al. 2019) on cosine similarities, as SapBERT trains.

    Per anchor: ``1/α log(1 + Σ_p exp(−α (s_ap − base))) + 1/β log(1 + Σ_n exp(β (s_an − base)))``
    over the mined pairs, averaged over anchors that keep at least one pair (a batch with
    no hard pair left gives 0 with a gradient graph, so the step is a no-op).
    """
    x = F.normalize(emb, dim=-1)
    sim = x @ x.T
    pos, neg = pair_masks(labels, name_ids)
    if margin is not None:
        with torch.no_grad():
            pos, neg = mine_hard_pairs(sim.detach(), pos, neg, margin)
    zeros = torch.zeros_like(sim[:, :1])
    pos_term = (
        torch.logsumexp(torch.cat([zeros, (-alpha * (sim - base)).masked_fill(~pos, float("-inf"))], dim=1), dim=1)
        / alpha
    )
    neg_term = (
        torch.logsumexp(torch.cat([zeros, (beta * (sim - base)).masked_fill(~neg, float("-inf"))], dim=1), dim=1) / beta
    )
    active = pos.any(dim=1) | neg.any(dim=1)
    if not bool(active.any()):
        return (sim * 0).sum()
    return (pos_term + neg_term)[active].mean()


def info_nce_loss(
    emb: torch.Tensor, labels: torch.Tensor, name_ids: torch.Tensor | None = None, temperature: float = 0.05
) -> torch.Tensor:
    """Multi-positive InfoNCE: −log of the softmax mass on an anchor's in-batch synonyms.

    The softmax over every other name of the batch weights the hardest negatives most,
    which is its in-batch hard-negative mining.
    """
    x = F.normalize(emb, dim=-1)
    logits = (x @ x.T) / temperature
    pos, neg = pair_masks(labels, name_ids)
    minus = float("-inf")
    denom = torch.logsumexp(logits.masked_fill(~(pos | neg), minus), dim=1)
    numer = torch.logsumexp(logits.masked_fill(~pos, minus), dim=1)
    active = pos.any(dim=1)
    return (denom - numer)[active].mean()
