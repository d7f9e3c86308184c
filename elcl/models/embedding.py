"""Pooled embeddings of many short texts with a Hugging Face encoder.

Texts are tokenised once, sorted by length and encoded in chunks padded only to each
chunk's longest text: a sequence's embedding does not depend on the other sequences of
its chunk, so this is exact and cheaper than padding every text to the longest one
(ontology names are short, with a long tail). Results come back in input order, float32.
Gradients flow when the caller has them enabled (the pretraining pass) and not under
``torch.inference_mode`` (dense candidate indexes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from elcl.models.encoders import masked_mean


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    return hidden[:, 0] if pooling == "cls" else masked_mean(hidden, mask)


def embed_texts(
    model: torch.nn.Module,
    tokenizer,
    texts: list[str],
    *,
    max_length: int,
    pooling: str = "mean",
    chunk_size: int = 32,
    amp: str = "none",
    normalize: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    from elcl.hardware import autocast_for

    device = torch.device(device)
    if not texts:
        return torch.zeros(0, int(getattr(model, "config").hidden_size), device=device)  # noqa: B009 - HF config, untyped
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(texts)), key=lambda i: (len(ids[i]), i))
    pad = tokenizer.pad_token_id or 0
    parts = []
    for lo in range(0, len(order), chunk_size):
        rows = [ids[i] for i in order[lo : lo + chunk_size]]
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
        with autocast_for(device, amp):
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        vec = pool(hidden.float(), mask, pooling)
        parts.append(F.normalize(vec, dim=-1) if normalize else vec)
    emb = torch.cat(parts)
    inverse = torch.empty(len(order), dtype=torch.long, device=device)
    inverse[torch.tensor(order, device=device)] = torch.arange(len(order), device=device)
    return emb[inverse]
