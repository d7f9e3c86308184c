"""Where and with what a run computed: recorded in ``run.json`` at every start.

A number is trusted when it can be traced to the code and the machine that made it. A
run resumed on another machine, after an upgrade, or on a CPU with another vector ISA
(float32 kernels differ between AVX2 and AVX512, so the same seed follows a slightly
different path) is one record per start, with the step it started at. Nothing here
decides anything; it is read by people and by ``elcl evaluate``'s provenance line.
"""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

import elcl
from elcl.hardware import cpu_info


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    ).stdout.strip()


@lru_cache(maxsize=1)
def source_commit() -> str | None:
    """The git commit of the elcl source tree, ``+dirty`` with uncommitted changes to
    tracked files; None for an installed wheel or without git."""
    root = Path(elcl.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = _git(root, "rev-parse", "--short=12", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def environment(device: torch.device, from_step: int, world: int = 1) -> dict[str, Any]:
    """This process's code, libraries and hardware, for a run (re)starting at ``from_step``."""
    cpu = cpu_info()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "from_step": from_step,
        "elcl": elcl.__version__,
        "commit": source_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device.type,
        "gpu": gpu,
        "processes": world,
        "threads": torch.get_num_threads(),
        "cpu_capability": cpu.capability,
        "native_bf16": cpu.native_bf16,
    }


def describe(env: dict[str, Any]) -> str:
    """One log line."""
    where = env["gpu"] or f"CPU ({env['cpu_capability']}, {'native' if env['native_bf16'] else 'emulated'} bfloat16)"
    code = f"elcl {env['elcl']}" + (f" ({env['commit']})" if env.get("commit") else "")
    return (
        f"environment from step {env['from_step']}: {code}, torch {env['torch']}, python {env['python']}, "
        f"{where}, {env['processes']} process(es) × {env['threads']} thread(s)"
    )


def machine_label(env: dict[str, Any]) -> str:
    """What a report counts runs by: the hardware and torch (not the commit, which changes
    with every session's edits and does not change what the same code computes)."""
    where = env.get("gpu") or f"CPU {env.get('cpu_capability')}"
    return f"{where}, torch {env.get('torch')}"


def machine_counts(runs_environments: list[list[dict[str, Any]] | None]) -> dict[str, int]:
    """Runs per machine label, most first; a run resumed elsewhere counts under its labels
    joined by " then ", and a run without a record (older elcl) under "not recorded"."""
    counts: dict[str, int] = {}
    for envs in runs_environments:
        labels: list[str] = []
        for env in envs or []:
            label = machine_label(env)
            if not labels or labels[-1] != label:
                labels.append(label)
        key = " then ".join(labels) if labels else "not recorded (older elcl)"
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
