"""Does this device compute bfloat16 natively? ``auto`` precision settings ask here.

CUDA answers through ``torch.cuda.is_bf16_supported()``. On a CPU, bfloat16 matrix
products are fast only with AVX512-BF16 or AMX (``avx512_bf16`` / ``amx_bf16`` in
``/proc/cpuinfo``); elsewhere torch emulates them. Measured on an AMD EPYC with AVX2 only
(``torch.backends.cpu.get_cpu_capability()`` = ``AVX2``, torch 2.13, issue 12): a
1536×1536 by 1536×385 product took 1.22 s in bfloat16 against 0.047 s in float32 (26×),
and an autocast ``nn.Linear`` was 7× slower than float32.

The CPU probe is injectable: set ``ELCL_CPU_CAPABILITY`` (e.g. ``AVX2``) and
``ELCL_CPU_FLAGS`` (space-separated, e.g. ``avx2 fma``) to simulate another CPU.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
EMULATED_SLOWDOWN = "training about 7x and bfloat16 K-FAC penalty products up to 26x slower than float32"


@dataclass(frozen=True)
class CpuInfo:
    capability: str
    """torch's vector ISA level: DEFAULT, AVX2, AVX512, ..."""
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return any(f in self.flags for f in NATIVE_BF16_FLAGS)

    def describe(self) -> str:
        found = [f for f in NATIVE_BF16_FLAGS if f in self.flags]
        bf16 = f"native bfloat16 ({', '.join(found)})" if found else "no native bfloat16 (emulated)"
        return f"CPU capability {self.capability}, {bf16}"


def _proc_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_info() -> CpuInfo:
    """This CPU, or the one ``ELCL_CPU_CAPABILITY`` / ``ELCL_CPU_FLAGS`` describe."""
    cap = os.environ.get("ELCL_CPU_CAPABILITY") or torch.backends.cpu.get_cpu_capability()
    env_flags = os.environ.get("ELCL_CPU_FLAGS")
    flags = frozenset(env_flags.split()) if env_flags is not None else _proc_flags()
    return CpuInfo(cap, flags)


def bf16_native(device: torch.device | str | None = None) -> bool:
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cpu_info().native_bf16


def resolve_amp(amp: str, device: torch.device | str | None = None) -> str:
    """``train.amp: auto`` → ``bf16`` where the device computes it natively, else ``none``."""
    if amp == "auto":
        return "bf16" if bf16_native(device) else "none"
    return amp


def autocast_for(device: torch.device, amp: str) -> AbstractContextManager[Any]:
    """The autocast context of ``train.amp`` on ``device`` (a no-op for ``none``)."""
    amp = resolve_amp(amp, device)
    if amp == "none":
        return nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def precision_warning(cfg: Any, device: torch.device | str | None = None) -> str | None:
    """One line when the config asks explicitly for bfloat16 on a device that emulates it."""
    if bf16_native(device):
        return None
    asked = []
    if cfg.train.amp == "bf16":
        asked.append("train.amp: bf16")
    if getattr(cfg.method.settings, "penalty_dtype", None) == "bfloat16":  # the K-FAC methods' setting
        asked.append(f"method.{cfg.method.name}.penalty_dtype: bfloat16")
    if not asked:
        return None
    dev = torch.device(device) if device is not None else torch.device("cpu")
    where = cpu_info().describe() if dev.type == "cpu" else f"{dev} without bfloat16 support"
    off = " and ".join(a.replace("bf16", "none").replace("bfloat16", "auto") for a in asked)
    return (
        f"warning: {' and '.join(asked)} on {where}: expect {EMULATED_SLOWDOWN}; "
        f"set {off} (or train.amp: auto) to turn it off"
    )
