"""The linker: scores each mention against its k candidate names.

A bi-encoder embeds mention and names with one shared text encoder and scores them by
cosine (or dot) / temperature; a cross-encoder reads "mention [SEP] name" pairs and
scores them with a linear head. Both return logits ``[B, K]`` so training, evaluation
and curvature collection treat them alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from elcl.config import ModelConfig
from elcl.models.encoders import CharTokenizer, CNNTextEncoder, TransformerTextEncoder, load_tokenizer
from elcl.models.sequence_context import sequence_context


@dataclass
class LinkerBatch:
    """Token ids of one batch. ``*_owner`` maps each sequence to its example row."""

    mention_ids: torch.Tensor  # [B, Tm]  (cross-encoder: pair ids [B*K, T])
    mention_mask: torch.Tensor
    cand_ids: torch.Tensor  # [S, Tc]  unique or per-example candidate sequences
    cand_mask: torch.Tensor
    cand_index: torch.Tensor  # [B, K]  row of cand_ids for candidate k of example b
    cand_valid: torch.Tensor  # [B, K]  bool, False for padding candidates
    labels: torch.Tensor  # [B, K]  bool, True where the candidate is correct
    mention_owner: torch.Tensor | None = None  # [B]
    cand_owner: torch.Tensor | None = None  # [S], None when sequences are shared
    cand_sparse: torch.Tensor | None = None  # [B, K]  the retriever's TF-IDF score of each candidate
    cand_prior: torch.Tensor | None = None  # [B, K]  log(1 + training-annotation count) of each candidate

    def to(self, device: torch.device | str) -> LinkerBatch:
        moved = {
            k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()
        }
        return LinkerBatch(**moved)

    def pin_memory(self) -> LinkerBatch:
        """Page-locked copies, so ``to(cuda)`` with ``non_blocking`` really overlaps."""
        pinned = {
            k: (v.pin_memory() if isinstance(v, torch.Tensor) and v.device.type == "cpu" else v)
            for k, v in self.__dict__.items()
        }
        return LinkerBatch(**pinned)

    @property
    def first_label(self) -> torch.Tensor:
        """Index of the first correct candidate (the empirical-Fisher label)."""
        return self.labels.float().argmax(dim=1)


_ADDED_LATER = {"prior_weight": 0.0}
"""Model settings newer than checkpoints already written: left out of the hash at their
default, so those checkpoints (and their curvature files) still match their configuration."""


def model_config_hash(cfg: ModelConfig, vocab_size: int) -> str:
    """Identity of an architecture: checkpoints and curvature files must match it."""
    model = cfg.model_dump(mode="json")
    for key, default in _ADDED_LATER.items():
        if model.get(key) == default:
            del model[key]
    payload = json.dumps({"model": model, "vocab_size": vocab_size}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def feature_logits(
    cfg: ModelConfig, sparse: torch.Tensor | None, prior: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | float:
    """The fixed-weight terms every candidate's logit gets besides the encoder's score:
    ``sparse_weight`` × TF-IDF score + ``prior_weight`` × log(1 + training count).

    Training, curvature and evaluation all add them through here, so a linker ranks the
    same way wherever it scores (no extra parameter for the curvature to see)."""
    out: torch.Tensor | float = 0.0
    if cfg.sparse_weight and sparse is not None:
        out = out + cfg.sparse_weight * sparse.to(dtype)
    if cfg.prior_weight and prior is not None:
        out = out + cfg.prior_weight * prior.to(dtype)
    return out


class Linker(nn.Module):
    """Bi-encoder or cross-encoder linker over a BERT-family or CNN text encoder."""

    def __init__(self, cfg: ModelConfig, tokenizer=None) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.type == "cnn" and cfg.mode == "cross":
            from elcl.errors import ConfigError

            raise ConfigError("model.mode: 'cross' needs model.type 'bert'; the CNN linker is a bi-encoder")
        if tokenizer is None:
            tokenizer = CharTokenizer() if (cfg.type == "cnn" and cfg.cnn.vocab == "char") else load_tokenizer(cfg.name)
        self.tokenizer = tokenizer
        if cfg.type == "bert":
            self.encoder: nn.Module = TransformerTextEncoder(cfg.name, cfg.pooling)
        else:
            pad = getattr(tokenizer, "pad_token_id", 0) or 0
            self.encoder = CNNTextEncoder(len(tokenizer), cfg.cnn, pad_id=pad)
            if cfg.cnn.init_from:
                load_encoder_weights(self.encoder, cfg.cnn.init_from)
        self.head = nn.Linear(self.encoder.dim, 1) if cfg.mode == "cross" else None
        self.config_hash = model_config_hash(cfg, len(tokenizer))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def freeze_embeddings(self) -> None:
        """Stop training every embedding table of the encoder. Parameters with
        ``requires_grad=False`` are left out by the optimiser and by the curvature
        collector, hence by every penalty."""
        for module in self.encoder.modules():
            if isinstance(module, nn.Embedding):
                module.requires_grad_(False)

    def embed(self, ids: torch.Tensor, mask: torch.Tensor, owner: torch.Tensor | None = None) -> torch.Tensor:
        with sequence_context(token_mask=mask.bool(), example_index=owner):
            vec = self.encoder(ids, mask)
        if self.cfg.scorer == "cosine":
            vec = F.normalize(vec, dim=-1)
        return vec

    def pair_logits(self, ids: torch.Tensor, mask: torch.Tensor, owner: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-encoder: ``[S, T]`` "mention [SEP] name" pairs -> ``[S]`` logits (before the fixed-weight terms)."""
        if self.head is None:
            raise TypeError("pair_logits needs a cross-encoder (model.mode: cross)")
        with sequence_context(token_mask=mask.bool(), example_index=owner):
            pooled = self.encoder(ids, mask)
        return self.head(pooled).squeeze(-1)

    def score_vectors(self, mention_vec: torch.Tensor, cand_vec: torch.Tensor) -> torch.Tensor:
        """``[B, d] x [B, K, d] -> [B, K]`` logits."""
        return torch.einsum("bd,bkd->bk", mention_vec, cand_vec) / self.cfg.temperature

    def forward(self, batch: LinkerBatch) -> torch.Tensor:
        if self.head is not None:
            logits = self.pair_logits(batch.mention_ids, batch.mention_mask, batch.mention_owner)
            logits = logits.view(batch.cand_index.shape)
        else:
            m = self.embed(batch.mention_ids, batch.mention_mask, batch.mention_owner)
            c = self.embed(batch.cand_ids, batch.cand_mask, batch.cand_owner)
            logits = self.score_vectors(m, c[batch.cand_index])
        logits = logits + feature_logits(self.cfg, batch.cand_sparse, batch.cand_prior, logits.dtype)
        return logits.masked_fill(~batch.cand_valid, torch.finfo(logits.dtype).min / 4)


def load_encoder_weights(encoder: nn.Module, path: str) -> None:
    """Initialise an encoder from saved weights: a linker checkpoint or a bare encoder file.

    Linker checkpoints name the encoder's tensors ``encoder.*``; a bare encoder file
    names them as the module does. Shapes must match the configured encoder.
    """
    from pathlib import Path

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from elcl.errors import CheckpointError

    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"model.cnn.init_from: {p} not found")
    try:
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file ({str(exc).splitlines()[0]})") from None
    if any(k.startswith("encoder.") for k in tensors):
        tensors = {k[len("encoder.") :]: v for k, v in tensors.items() if k.startswith("encoder.")}
    own = encoder.state_dict()
    bad = [k for k, v in tensors.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in tensors]
    if bad or missing:
        raise CheckpointError(
            f"{p}: weights do not fit the configured CNN encoder (missing {missing[:3]}, shape mismatch {bad[:3]})"
        )
    encoder.load_state_dict({k: tensors[k] for k in own})


def multi_positive_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """−log of the probability mass on correct candidates (composites/alt ids have several)."""
    pos = logits.masked_fill(~labels, torch.finfo(logits.dtype).min / 4)
    loss = torch.logsumexp(logits, dim=1) - torch.logsumexp(pos, dim=1)
    return loss.mean() if reduction == "mean" else loss.sum()


def linker_logits_fn(model: Linker, batch: LinkerBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The (logits, label) pair the curvature collector expects."""
    batch = batch.to(model.device)
    return model(batch), batch.first_label
