"""Linker checkpoints: safetensors only (no pickle), tagged with the architecture hash."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from elcl import __version__
from elcl.errors import CheckpointError
from elcl.fileio import atomic_path
from elcl.models.linker import Linker


def _tensors(model: Linker) -> dict[str, torch.Tensor]:
    # Clone + contiguous so tied or strided views never reach safetensors.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(model: Linker, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    with atomic_path(path, ".safetensors") as tmp:
        save_file(_tensors(model), str(tmp), metadata={"model_config_hash": model.config_hash, "elcl_version": __version__})
    return path


def load_checkpoint(model: Linker, path: str | os.PathLike[str]) -> Linker:
    """Load weights into ``model``; refuse files of another architecture or corrupt ones."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({str(exc).splitlines()[0]})") from None
    found = meta.get("model_config_hash")
    if found != model.config_hash:
        raise CheckpointError(
            f"{path}: checkpoint was written for model configuration {found or 'unknown'}, "
            f"but the configured model is {model.config_hash}; use the run's own config.yaml"
        )
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameters do not match the model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})")
    return model
