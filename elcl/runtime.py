"""Where a run executes: device, and its place in a torchrun process group.

Under ``torchrun`` the usual environment variables (RANK, WORLD_SIZE, LOCAL_RANK) are
set; we then join a process group (NCCL on CUDA, gloo on CPU). Only rank 0 writes
files, every rank computes, and curvature statistics are all-reduced.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from elcl.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but no CUDA device is available; use 'auto' or 'cpu'")
        n_gpus = torch.cuda.device_count()
        if local_rank >= n_gpus:
            # Two ranks on one card would share it under NCCL (a hang) or ask for a card that is not there.
            raise ConfigError(
                f"LOCAL_RANK {local_rank} needs GPU {local_rank} but this machine has {n_gpus}: "
                f"start torchrun with --nproc_per_node {n_gpus} or set train.device: cpu"
            )
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_runtime(device: str = "auto", num_threads: int | None = None) -> Runtime:
    """Join the torchrun process group when launched by torchrun, else a single process."""
    if num_threads:
        torch.set_num_threads(num_threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
            dist.init_process_group(backend=backend)
    return Runtime(dev, rank, world)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


RNG_FILE = "rng_state.safetensors"


def save_rng_state(path: Path) -> None:
    """torch's generator states (CPU, and CUDA when present) at this point of a run, so a
    later process (``elcl update``) can continue with the dropout masks an uninterrupted
    run would have drawn next."""
    from safetensors.torch import save_file

    from elcl.fileio import atomic_path

    tensors = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["cuda"] = torch.cuda.get_rng_state()
    with atomic_path(Path(path), ".safetensors") as tmp:
        save_file(tensors, str(tmp))


def load_rng_state(path: Path) -> None:
    """Restore what :func:`save_rng_state` wrote (the CUDA state only where CUDA is used)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    torch.set_rng_state(tensors["cpu"])
    if "cuda" in tensors and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(tensors["cuda"])


def barrier(rt: Runtime) -> None:
    if rt.distributed:
        import torch.distributed as dist

        dist.barrier()


def shutdown_runtime(rt: Runtime, exit_process: bool = False) -> None:
    """Leave the process group cleanly after a successful run.

    Every rank waits at a barrier first: a rank that tears gloo down while another is
    still writing (rank 0 saves files after the last collective) makes the peer abort
    with "terminate called without an active exception". Not called on errors, where
    a barrier would hang; torchrun then stops the other ranks.

    ``exit_process`` (the CLI, under torchrun): then end the process at once with status
    0. The same abort was still seen about once in twenty runs at interpreter exit, where
    the DDP wrapper's reference to the destroyed group is finalised; every file is written
    and flushed by then, so nothing is lost by skipping the finalisers.
    """
    if not rt.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if exit_process:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
