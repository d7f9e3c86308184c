"""Linker checkpoints: safetensors only (no pickle), with the contract of curvature files.

A checkpoint is two files in its step directory (format ``elcl-checkpoint/1``):

``model.safetensors``: the state dict; its safetensors metadata repeats the model hash.
``model.meta.json``: ``format``, ``file``, ``model_config_hash``, ``sha256`` (of the
tensor file's bytes), ``n_tensors``, ``elcl_version``.

Both are written atomically, tensors first, then meta; loading checks the meta, the
checksum, the architecture hash, and that every floating-point tensor is finite (a
diverged model is never loaded as a starting point or evaluated).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from elcl import __version__
from elcl.errors import CheckpointError
from elcl.fileio import atomic_path, atomic_write_text, sha256_file
from elcl.models.linker import Linker

FORMAT = "elcl-checkpoint/1"


def meta_path(path: str | os.PathLike[str]) -> Path:
    """The meta file of a checkpoint: ``model.safetensors`` -> ``model.meta.json``."""
    p = Path(path)
    return p.with_name(p.name.split(".")[0] + ".meta.json")


def _tensors(model: Linker) -> dict[str, torch.Tensor]:
    # Clone + contiguous so tied or strided views never reach safetensors.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_checkpoint(model: Linker, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    tensors = _tensors(model)
    with atomic_path(path, ".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"model_config_hash": model.config_hash, "elcl_version": __version__})
        digest = sha256_file(tmp)
    meta = {
        "format": FORMAT,
        "file": path.name,
        "model_config_hash": model.config_hash,
        "sha256": digest,
        "n_tensors": len(tensors),
        "elcl_version": __version__,
    }
    atomic_write_text(meta_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def verify_checkpoint(path: str | os.PathLike[str], expected_model_config_hash: str | None = None) -> dict:
    """Check a checkpoint's meta and checksum without loading it; returns the meta."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    mpath = meta_path(path)
    if not mpath.is_file():
        raise CheckpointError(
            f"{mpath}: checkpoint metadata not found (checkpoints carry a sha256 since {FORMAT}); "
            f"a run written by an older elcl is brought up to date with: elcl migrate {path.parent.parent.parent}"
        )
    try:
        meta = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{mpath}: not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"{mpath}: expected a {FORMAT} object with 'sha256' and 'model_config_hash'")
    digest = sha256_file(path)
    if digest != meta["sha256"]:
        raise CheckpointError(
            f"{path}: sha256 {digest[:12]}… does not match {mpath.name} ({meta['sha256'][:12]}…); the file is corrupt or was changed"
        )
    if expected_model_config_hash is not None and meta.get("model_config_hash") != expected_model_config_hash:
        raise CheckpointError(
            f"{path}: checkpoint was written for model configuration {meta.get('model_config_hash') or 'unknown'}, "
            f"but the configured model is {expected_model_config_hash}; use the run's own config.yaml"
        )
    return meta


def migrate_legacy_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Give a checkpoint written before ``elcl-checkpoint/1`` its meta file.

    Such a file carries its model hash only in the safetensors header. It gets a meta
    (sha256 of its bytes as they are now) only if it reads back whole and every tensor
    is finite, so a corrupt or diverged legacy checkpoint stays refused. Returns whether
    a meta was written; a checkpoint that has one is left alone.
    """
    path = Path(path)
    if meta_path(path).is_file():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({str(exc).splitlines()[0]})") from None
    model_hash = header.get("model_config_hash")
    if not model_hash:
        raise CheckpointError(
            f"{path}: no model_config_hash in its safetensors header; not a checkpoint written by elcl"
        )
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the model diverged, it cannot be migrated"
            )
    meta = {
        "format": FORMAT,
        "file": path.name,
        "model_config_hash": model_hash,
        "sha256": sha256_file(path),
        "n_tensors": len(tensors),
        "elcl_version": header.get("elcl_version", "unknown"),
        "migrated_by": __version__,
    }
    atomic_write_text(meta_path(path), json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return True


def load_checkpoint(model: Linker, path: str | os.PathLike[str]) -> Linker:
    """Load weights into ``model``; refuse corrupt, foreign or non-finite checkpoints."""
    path = Path(path)
    verify_checkpoint(path, model.config_hash)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({str(exc).splitlines()[0]})") from None
    for name, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(
                f"{path}: tensor {name!r} holds NaN or infinite values; the model diverged, it cannot be loaded"
            )
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: parameters do not match the model (missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    return model
