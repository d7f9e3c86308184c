"""Training-loop device hygiene on CPU: bf16 autocast, pinned batches, no per-step host syncs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_models import write_tiny_bert

from elcl.config import ModelConfig, TrainConfig
from elcl.data.types import Mention
from elcl.models.linker import Linker
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample
from elcl.training.loop import autocast_for, train_steps

NAMES = ["heart attack", "lung cancer", "breast cancer", "diabetes"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tinybert_amp"))


def exs() -> list[LinkingExample]:
    out = []
    for i, q in enumerate(["heart infarct", "lung tumour", "breast tumor", "diabetic"]):
        m = Mention("d", 0, len(q), q, "Disease", (f"C{i}",))
        out.append(
            LinkingExample(
                m, q, tuple(f"C{j}" for j in range(4)), tuple(NAMES), (0.0,) * 4, tuple(j == i for j in range(4))
            )
        )
    return out


def test_bf16_autocast_trains_on_cpu(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    cache = TokenCache(model.tokenizer, 16)
    with autocast_for(torch.device("cpu"), "bf16"):
        logits = model(collate(exs(), cache))
    assert logits.dtype == torch.bfloat16
    log = train_steps(model, exs() * 4, cache, TrainConfig(epochs=2, batch_size=4, lr=1e-3, amp="bf16"), seed=0)
    assert log and all(math.isfinite(e["loss"]) for e in log)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay float32


def test_no_host_sync_per_step(tiny_bert: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Losses are read (float()/item()) only at log points, not every step."""
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    cache = TokenCache(model.tokenizer, 16)
    calls = {"n": 0}
    orig_float, orig_item = torch.Tensor.__float__, torch.Tensor.item

    def counting_float(self):
        calls["n"] += 1
        return orig_float(self)

    def counting_item(self):
        calls["n"] += 1
        return orig_item(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counting_float)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    steps = 12
    log = train_steps(model, exs() * 12, cache, TrainConfig(epochs=1, batch_size=4, lr=1e-3, grad_clip=1.0), seed=0)
    monkeypatch.undo()
    assert len(log) == 1 and log[0]["step"] == steps
    assert calls["n"] <= 4, f"{calls['n']} host reads in {steps} steps"


def test_batch_pin_memory_roundtrip(tiny_bert: Path) -> None:
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    b = collate(exs(), TokenCache(model.tokenizer, 16))
    if not torch.cuda.is_available():
        pytest.skip("pinning needs a CUDA runtime")
    p = b.pin_memory()
    assert p.mention_ids.is_pinned() and torch.equal(p.mention_ids, b.mention_ids)
