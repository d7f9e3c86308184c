"""`train.freeze_embeddings`: the embedding tables stay at their loaded values through a
penalised sequence, carry no curvature, and everything else still trains."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from tiny_models import tiny_config

from elcl.config import config_from_dict
from elcl.continual.runner import build_linker, run_experiment
from elcl.runtime import Runtime


def _trained(tmp_path: Path, freeze: bool) -> tuple[dict, dict, Path]:
    base = tiny_config(
        tmp_path,
        f"f{int(freeze)}",
        ["ncbi_disease", "bc5cdr_chemical"],
        3,
        curvature={"max_examples": 16, "batch_size": 8},
    )
    base["train"] = base["train"] | {"freeze_embeddings": freeze}
    cfg = config_from_dict(base | {"method": {"name": "kfac", "kfac": {"lambda": 1.0}}})
    rt = Runtime(torch.device("cpu"))
    initial = {k: v.clone() for k, v in build_linker(cfg, rt).state_dict().items()}
    run_experiment(cfg, rt)
    (run,) = [d for d in (tmp_path / "runs" / cfg.name).iterdir() if (d / "run.json").is_file()]
    final = load_file(str(run / "steps" / "1_bc5cdr_chemical" / "model.safetensors"))
    return initial, final, run


def _curvature_names(run: Path) -> set[str]:
    names: set[str] = set()
    for f in (run / "curvature").rglob("*.safetensors"):
        names |= set(load_file(str(f)))
    return names


def test_frozen_embeddings_stay_and_carry_no_curvature(tmp_path: Path) -> None:
    initial, final, run = _trained(tmp_path, freeze=True)
    emb = [k for k in initial if "embeddings" in k and k.endswith(".weight") and "LayerNorm" not in k]
    assert emb and all(torch.equal(final[k], initial[k]) for k in emb)
    moved = [k for k in initial if k not in emb and not torch.equal(final[k], initial[k])]
    assert any("encoder.layer" in k for k in moved)  # the rest of the encoder still learns
    names = _curvature_names(run)
    assert names and not any("_embeddings" in n for n in names)
    assert "parameters frozen (the embedding tables)" in (run / "log.txt").read_text()


def test_free_embeddings_do_move(tmp_path: Path) -> None:
    # the same run without the setting: what the frozen run keeps fixed does change
    initial, final, run = _trained(tmp_path, freeze=False)
    word = next(k for k in initial if k.endswith("word_embeddings.weight"))
    assert not torch.equal(final[word], initial[word])
    assert any("position_embeddings" in n for n in _curvature_names(run))
