"""Tiny locally built encoders, and an experiment config on them, so model and training
tests run offline in seconds."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from synthetic import write_synthetic_corpora


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


def tiny_config(
    root: Path, name: str, tasks: list[str], seed: int, inputs: tuple[Path, Path] | None = None, **sections: Any
) -> dict[str, Any]:
    """A config (as a dict) that trains in seconds on the CPU: synthetic corpora and a tiny
    BERT written under ``root`` (or ``inputs``: (data, model) written once for a module's
    tests), runs under ``root / "runs"``, 4 candidates per mention, one epoch. ``sections``
    are merged into the config's own sections (``train={"log_to": [...]}`` keeps the other
    train keys) or added (``method=...``, ``curvature=...``)."""
    data, model = inputs or (write_synthetic_corpora(root / "data"), write_tiny_bert(root / "tinybert"))
    cfg: dict[str, Any] = {
        "name": name,
        "output_dir": str(root / "runs"),
        "tasks": tasks,
        "seeds": [seed],
        "data": {"data_dir": str(data), "ontology": "mentions"},
        "candidates": {"k": 4},
        "model": {"name": str(model), "max_length": 12},
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
    }
    for key, value in sections.items():
        cfg[key] = cfg[key] | value if isinstance(cfg.get(key), dict) else value
    return cfg


def write_tiny_config(root: Path, name: str, tasks: list[str], seed: int, **sections: Any) -> Path:
    """:func:`tiny_config` written as ``root/<name>.yaml``; returns the file."""
    import yaml

    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tiny_config(root, name, tasks, seed, **sections)))
    return path
