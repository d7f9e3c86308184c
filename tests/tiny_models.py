"""Tiny locally built encoders so model tests run offline in seconds."""

from __future__ import annotations

import string
from pathlib import Path


def write_tiny_bert(directory: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A 2-layer BERT with a character-level WordPiece vocabulary, saved like a hub model."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + [f"##{c}" for c in chars] + list("-,.()'/+[]")
    )
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(directory)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    BertModel(cfg).save_pretrained(directory)
    return directory
