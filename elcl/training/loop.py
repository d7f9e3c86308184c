"""One task's worth of gradient steps, optionally with a curvature penalty.

GPU friendliness: no host synchronisation per step (losses are summed on the device
and read every 50 steps; gradient clipping and penalties stay on the device); batches
are pinned and copied with ``non_blocking`` on CUDA; ``amp: bf16`` autocasts on CPU
and CUDA alike (``fp16`` adds a GradScaler on CUDA).

The penalty is added as a gradient after the task loss's backward pass (its closed
form, ``penalty.add_grad_``) unless ``fast_grad`` is off, in which case it joins the
loss and autograd differentiates it; both give the same update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from elcl.config import TrainConfig
from elcl.errors import DivergedError, ElclError
from elcl.hardware import autocast_for
from elcl.models.linker import Linker, multi_positive_loss
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with the fused (one kernel for all tensors) update where this torch has it."""
    try:
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)


class StepResult(NamedTuple):
    """What one step reports, as device tensors (read on the host only at log time)."""

    loss: torch.Tensor
    penalty: torch.Tensor | None
    grad_norm: torch.Tensor
    """Total gradient norm before clipping (task loss + penalty)."""


def _total_grad_norm(model: torch.nn.Module) -> torch.Tensor:
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def train_step(
    model: Linker,
    batch,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    *,
    penalty=None,
    fast_grad: bool = True,
    forward_model: torch.nn.Module | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> StepResult:
    """One optimiser step on a device batch: forward under ``cfg.amp``, task loss, the
    penalty (closed-form gradient, or through autograd when ``fast_grad`` is off),
    clipping, update. Returns the detached loss, penalty value and gradient norm, still
    on the device (no host sync). The benchmarks time this very function."""
    device = model.device
    with autocast_for(device, cfg.amp):
        logits = (forward_model or model)(batch)
    loss = multi_positive_loss(logits.float(), batch.labels)
    pen_value = None
    if penalty is not None and not fast_grad:
        pen_value = penalty.value(model)
        loss = loss + pen_value
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if penalty is not None and fast_grad:
        pen_value = penalty.add_grad_(model)
    if cfg.grad_clip > 0:
        # returns a device tensor; no .item(), no error_if_nonfinite: no host sync
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.grad_clip, foreach=device.type == "cuda" or None
        )
    else:
        grad_norm = _total_grad_norm(model)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return StepResult(loss.detach(), None if pen_value is None else pen_value.detach(), grad_norm.detach())


def train_steps(
    model: Linker,
    examples: Sequence[LinkingExample],
    cache: TokenCache,
    cfg: TrainConfig,
    *,
    seed: int,
    param_groups: list[dict] | None = None,
    penalty=None,
    fast_grad: bool = True,
    desc: str = "train",
    on_step: Callable[[dict], None] | None = None,
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[dict]:
    """Train on ``examples`` for ``cfg.epochs`` epochs; returns the logged losses.

    ``shard=(rank, world)`` gives each distributed process its slice of every epoch's
    permutation; ``wrap`` wraps the model (DistributedDataParallel) for the forward pass.
    """
    examples = [e for e in examples if e.has_gold]
    if not examples:
        raise ElclError(
            f"{desc}: no training example has its gold concept among its candidates; nothing to train on (empty or unlinkable training split?)"
        )
    device = model.device
    model.train()
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    for g in groups:
        g.setdefault("lr", cfg.lr)
    opt = make_optimizer(groups, cfg)
    per_epoch = math.ceil(len(examples) / (cfg.batch_size * shard[1]))
    total = max(1, math.ceil(per_epoch * cfg.epochs))
    warmup = int(total * cfg.warmup_ratio)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    gen = torch.Generator().manual_seed(seed)
    forward_model = wrap(model) if wrap else model
    scaler = torch.amp.GradScaler(device.type) if (cfg.amp == "fp16" and device.type == "cuda") else None
    log: list[dict] = []
    running = torch.zeros((), device=device)
    running_pen = torch.zeros((), device=device)
    running_norm = torch.zeros((), device=device)
    step = 0
    # Step of the first non-finite loss, tracked on the device (no per-step host sync) and
    # read where the loss is read anyway: a diverged run stops there with its step named.
    first_bad = torch.full((), -1, dtype=torch.long, device=device)
    bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    while step < total:
        order = torch.randperm(len(examples), generator=gen).tolist()
        order = order[shard[0] :: shard[1]]
        for start in range(0, len(order), cfg.batch_size):
            if step >= total:
                break
            batch = collate(
                [examples[i] for i in order[start : start + cfg.batch_size]],
                cache,
                share=True,
                cross=model.head is not None,
            )
            if device.type == "cuda":
                batch = batch.pin_memory()  # async host-to-device copy (non_blocking in LinkerBatch.to)
            batch = batch.to(device)
            loss, pen_value, grad_norm = train_step(
                model, batch, opt, cfg, penalty=penalty, fast_grad=fast_grad, forward_model=forward_model, scaler=scaler
            )
            sched.step()
            running += loss
            running_norm += grad_norm
            if pen_value is not None:
                running_pen += pen_value
            bad = ~torch.isfinite(loss) if pen_value is None else ~(torch.isfinite(loss) & torch.isfinite(pen_value))
            first_bad = torch.where(bad & (first_bad < 0), step + 1, first_bad)
            step += 1
            bar.update(1)
            if step % 50 == 0 or step == total:
                if int(first_bad) >= 0:
                    bar.close()
                    bad_step = int(first_bad)
                    raise DivergedError(f"{desc}: the loss became non-finite at step {bad_step} of {total}")
                n = 50 if step % 50 == 0 else step % 50
                entry = {
                    "step": step,
                    "loss": float(running) / n,
                    "penalty": float(running_pen) / n,
                    "lr": sched.get_last_lr()[0],
                    "grad_norm": float(running_norm) / n,
                }
                running.zero_()
                running_pen.zero_()
                running_norm.zero_()
                log.append(entry)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
                if on_step:
                    on_step(entry)
    bar.close()
    model.eval()
    bad_params = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad_params:
        raise DivergedError(
            f"{desc}: parameter {bad_params[0]} is non-finite after step {total} ({len(bad_params)} parameter(s) affected)"
        )
    return log
