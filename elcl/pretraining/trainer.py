"""The self-alignment pass: metric learning of the encoder over an ontology's synonyms.

Reads top to bottom: a batch of names (two or more per concept) is embedded with the
pooling the linker uses, the multi-similarity (or InfoNCE) loss pulls each concept's
names together and pushes mined hard negatives apart, AdamW steps. Every
``checkpoint_every`` steps the weights, optimiser, scheduler and RNG state are written
(a new directory, then ``latest.json`` replaced atomically), so ``resume`` continues an
interrupted pass exactly as if it had not stopped. The result is a Hugging Face encoder
folder (``save_pretrained`` + tokenizer) that ``model.name`` accepts.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from elcl import __version__
from elcl.config import DEFAULT_ENCODER
from elcl.data.ontology import Ontology
from elcl.errors import CheckpointError, ConfigError, ElclError
from elcl.fileio import atomic_write_text
from elcl.models.embedding import embed_texts
from elcl.pretraining.losses import info_nce_loss, multi_similarity_loss
from elcl.pretraining.synonyms import SynonymBatcher, SynonymSets

FORMAT = "elcl-pretrain/1"


class PretrainConfig(BaseModel):
    """Options of a pass; every key is a flag of `elcl pretrain` (or a key of its --config)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    encoder: str = DEFAULT_ENCODER
    """Starting encoder: HF id or local path (default: the packaged MiniLM)."""
    pooling: Literal["mean", "cls"] = "mean"
    """Must match the linker's model.pooling (mean by default)."""
    max_length: int = Field(25, ge=4, le=512)
    batch_size: int = Field(64, ge=4)
    """Names per batch (= concepts per batch x names_per_concept)."""
    names_per_concept: int = Field(2, ge=2)
    steps: int | None = Field(None, ge=1)
    """Optimiser steps; when unset, ``epochs`` passes over the concepts with >= 2 names."""
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    grad_clip: float = Field(1.0, ge=0)
    loss: Literal["ms", "infonce"] = "ms"
    ms_alpha: float = Field(1.0, gt=0)
    ms_beta: float = Field(60.0, gt=0)
    ms_base: float = 0.5
    miner_margin: float | None = Field(0.2, ge=0)
    """Online hard-pair mining margin (SapBERT: 0.2); null keeps every pair."""
    temperature: float = Field(0.05, gt=0)
    """InfoNCE only."""
    seed: int = 13
    checkpoint_every: int = Field(100, ge=1)
    num_threads: int | None = Field(None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: Literal["none", "bf16"] = "none"
    """bf16 autocast of the encoder (the loss stays float32); fast on CPUs with AVX512-BF16 and on GPUs."""
    chunk_size: int = Field(32, ge=1)
    """Names per forward chunk, length-sorted so each chunk pads only to its own longest name
    (embeddings do not depend on the other sequences of a batch, so this is exact)."""

    def fingerprint(self, ontology_hash: str) -> str:
        """What a resumed pass must share with the interrupted one (not threads/device/checkpointing)."""
        keep = self.model_dump(exclude={"num_threads", "device", "checkpoint_every", "chunk_size"})
        return hashlib.sha256(json.dumps([keep, ontology_hash], sort_keys=True).encode()).hexdigest()[:16]


def config_from_options(options: dict) -> PretrainConfig:
    try:
        return PretrainConfig.model_validate(options)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"pretrain option '{key}': {first['msg']} (got {first.get('input')!r})") from None


@dataclass
class PretrainResult:
    out: Path
    steps_done: int
    total_steps: int
    finished: bool
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _schedule(total: int, warmup_ratio: float):
    warm = math.ceil(total * warmup_ratio)

    def factor(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def _save_checkpoint(
    out: Path, step: int, model, opt, sched, losses: list[float], fingerprint: str, seconds: float
) -> None:
    from safetensors.torch import save_file

    ckdir = out / "checkpoints"
    target = ckdir / f"step-{step:08d}"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(target / "encoder.safetensors"))
    torch.save(
        {
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        target / "optim.pt",
    )
    atomic_write_text(
        target / "state.json",
        json.dumps({"step": step, "fingerprint": fingerprint, "losses": losses, "seconds": seconds}),
    )
    # The pointer is replaced last: a crash above leaves the previous checkpoint current.
    atomic_write_text(ckdir / "latest.json", json.dumps({"step": step, "dir": target.name, "fingerprint": fingerprint}))
    for old in ckdir.glob("step-*"):
        if old.name != target.name:
            shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(out: Path, model, opt, sched, fingerprint: str) -> tuple[int, list[float], float]:
    from safetensors.torch import load_file

    pointer = out / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return 0, [], 0.0
    try:
        latest = json.loads(pointer.read_text())
        target = out / "checkpoints" / latest["dir"]
        state = json.loads((target / "state.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{pointer}: unreadable pretraining checkpoint ({exc})") from None
    if state.get("fingerprint") != fingerprint:
        raise CheckpointError(
            f"{target}: checkpoint of another pass (options or ontology differ); use a new --out or the same options"
        )
    model.load_state_dict(load_file(str(target / "encoder.safetensors")))
    extra = torch.load(target / "optim.pt", weights_only=True)
    opt.load_state_dict(extra["optimizer"])
    sched.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    if extra.get("cuda_rng") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(extra["cuda_rng"])
    return int(state["step"]), [float(x) for x in state["losses"]], float(state.get("seconds", 0.0))


def _save_encoder(out: Path, model, tokenizer, meta: dict) -> None:
    """save_pretrained into a scratch folder, then move each file in with os.replace."""
    scratch = out / ".final-tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    model.save_pretrained(scratch)
    tokenizer.save_pretrained(scratch)
    for f in scratch.iterdir():
        os.replace(f, out / f.name)
    scratch.rmdir()
    atomic_write_text(out / "pretrain.json", json.dumps(meta, indent=2))


def pretrain(
    cfg: PretrainConfig,
    ontology: Ontology,
    out: Path | str,
    *,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    keep_checkpoints: bool = False,
) -> PretrainResult:
    """Run (or resume) a pass over ``ontology``; ``stop_after`` steps simulates an interruption."""
    from tqdm.auto import tqdm
    from transformers import AutoModel

    from elcl.models.encoders import load_tokenizer, resolve_model_path
    from elcl.runtime import pick_device, seed_everything

    out = Path(out)
    if (out / "pretrain.json").is_file() and not (out / "checkpoints" / "latest.json").is_file():
        raise ElclError(f"{out}: already holds a finished pass (pretrain.json); choose another --out")
    if not resume and (out / "checkpoints" / "latest.json").is_file():
        raise ElclError(f"{out}: holds an interrupted pass; continue it with --resume or choose another --out")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = pick_device(cfg.device)
    seed_everything(cfg.seed)
    sets = SynonymSets.from_ontology(ontology, min_names=2)
    batcher = SynonymBatcher(sets, cfg.batch_size, cfg.names_per_concept, cfg.seed)
    total = cfg.steps or max(1, math.ceil(cfg.epochs * batcher.steps_per_epoch))
    tokenizer = load_tokenizer(cfg.encoder)
    path = resolve_model_path(cfg.encoder)
    try:
        model = AutoModel.from_pretrained(path).to(device)
    except (OSError, ValueError) as exc:
        raise ElclError(f"--encoder: cannot load {cfg.encoder!r} ({path}): {str(exc).splitlines()[0]}") from None
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, cfg.warmup_ratio))
    onto_hash = ontology.content_hash()
    fingerprint = cfg.fingerprint(onto_hash)
    out.mkdir(parents=True, exist_ok=True)
    start, losses, seconds = _load_checkpoint(out, model, opt, sched, fingerprint) if resume else (0, [], 0.0)
    model.train()
    bar = tqdm(total=total, initial=start, desc="pretrain", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    step = start
    for step in range(start, total):
        batch = batcher.batch(step)
        emb = embed_texts(
            model,
            tokenizer,
            batch.texts,
            max_length=cfg.max_length,
            pooling=cfg.pooling,
            chunk_size=cfg.chunk_size,
            amp=cfg.amp,
            device=device,
        )
        labels = torch.tensor(batch.labels, device=device)
        name_ids = torch.tensor(batch.name_ids, device=device)
        if cfg.loss == "ms":
            loss = multi_similarity_loss(
                emb, labels, name_ids, cfg.ms_alpha, cfg.ms_beta, cfg.ms_base, cfg.miner_margin
            )
        else:
            loss = info_nce_loss(emb, labels, name_ids, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        if (step + 1) % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.4f}")
        done = step + 1
        if done % cfg.checkpoint_every == 0 or done == total or (stop_after is not None and done - start >= stop_after):
            _save_checkpoint(out, done, model, opt, sched, losses, fingerprint, seconds + time.perf_counter() - t0)
        if stop_after is not None and done - start >= stop_after and done < total:
            bar.close()
            return PretrainResult(out, done, total, False, losses, seconds + time.perf_counter() - t0)
    bar.close()
    seconds += time.perf_counter() - t0
    meta = {
        "format": FORMAT,
        "elcl_version": __version__,
        "ontology": ontology.source,
        "ontology_hash": onto_hash,
        "concepts_aligned": len(sets),
        "names": sets.num_names,
        "steps": total,
        "steps_per_epoch": batcher.steps_per_epoch,
        "epochs_done": round(total / batcher.steps_per_epoch, 3),
        "seconds": round(seconds, 1),
        "config": cfg.model_dump(),
        "losses": losses,
        "fingerprint": fingerprint,
    }
    _save_encoder(out, model.cpu(), tokenizer, meta)
    if not keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return PretrainResult(out, total, total, True, losses, seconds)
