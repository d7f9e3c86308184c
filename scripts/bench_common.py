"""Shared helpers of the benchmark scripts: models, synthetic linker batches, timing."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

from elcl.config import ModelConfig
from elcl.hardware import cpu_info
from elcl.models.linker import Linker, LinkerBatch


def build_linker(model: str, device: str = "cpu") -> Linker:
    """``model``: 'minilm' (the packaged MiniLM), 'cnn', or a local HF path / id."""
    if model in ("minilm", "default"):
        cfg = ModelConfig()
    elif model == "cnn":
        cfg = ModelConfig(type="cnn")
    else:
        cfg = ModelConfig(name=model)
    torch.manual_seed(0)
    return Linker(cfg).to(device)


def synthetic_batch(
    model: Linker, batch: int, cands: int, tokens: int, seed: int, per_example: bool = True, device: str = "cpu"
) -> LinkerBatch:
    """``batch`` examples with one mention and ``cands`` candidate sequences each (``tokens`` long,
    a few shorter ones so masking is exercised). ``per_example``: one candidate sequence per
    (example, candidate) with owners, as curvature collection uses."""
    g = torch.Generator().manual_seed(seed)
    vocab = len(model.tokenizer)
    lo = 1000 if vocab > 2000 else 5

    def seqs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.randint(lo, vocab, (n, tokens), generator=g)
        lengths = torch.randint(max(2, tokens // 2), tokens + 1, (n,), generator=g)
        mask = (torch.arange(tokens)[None] < lengths[:, None]).long()
        ids = ids * mask
        return ids, mask

    m_ids, m_mask = seqs(batch)
    c_ids, c_mask = seqs(batch * cands)
    index = torch.arange(batch * cands).view(batch, cands)
    valid = torch.ones(batch, cands, dtype=torch.bool)
    labels = torch.zeros(batch, cands, dtype=torch.bool)
    labels[torch.arange(batch), torch.randint(0, cands, (batch,), generator=g)] = True
    owner = torch.arange(batch).repeat_interleave(cands) if per_example else None
    b = LinkerBatch(
        m_ids, m_mask, c_ids, c_mask, index, valid, labels, torch.arange(batch) if per_example else None, owner
    )
    return b.to(device)


def timeit(fn: Callable[[], object], repeat: int, warmup: int = 1, device: str = "cpu") -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return out


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    cpu = cpu_info()
    info["cpu_capability"] = cpu.capability
    info["cpu_native_bf16"] = cpu.native_bf16
    return info


def print_cpu(device: str = "cpu") -> None:
    """First line of every benchmark: bfloat16 timings mean nothing without it (nor GPU ones without the card)."""
    gpu = f", GPU {torch.cuda.get_device_name(torch.device(device))}" if torch.device(device).type == "cuda" else ""
    print(
        f"running on: {cpu_info().describe()}, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}",
        flush=True,
    )


def table(head: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in head]] + [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {p}")


def count_ops(fn: Callable[[], object]) -> int:
    """Non-view aten operators dispatched by one call of ``fn`` (below autograd): on a GPU
    about one kernel launch each, so it shows the launch overhead a CPU timing cannot
    (views such as reshape, slice and unbind launch nothing and are not counted)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not getattr(func, "is_view", False):
                _Count.n += 1
            return func(*args, **(kwargs or {}))

    with _Count():
        fn()
    return _Count.n
