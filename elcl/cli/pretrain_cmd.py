"""`elcl pretrain`: ontology self-alignment pass of the encoder (SapBERT-style)."""

from __future__ import annotations

from pathlib import Path

import typer

from elcl.errors import ElclError


def pretrain(
    ontology: str = typer.Option(
        ..., "--ontology", help="medic, mesh (from <data dir>/ontologies) or a TSV file of id<TAB>name lines."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        help="Encoder folder to write (HF save_pretrained + tokenizer + pretrain.json); use it as model.name.",
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="YAML file of pretrain options (the keys below; flags override it)."
    ),
    set_: list[str] = typer.Option([], "--set", help="Override an option, e.g. --set miner_margin=null (repeatable)."),
    encoder: str | None = typer.Option(
        None, "--encoder", help="Starting encoder (HF id or path; default: packaged MiniLM)."
    ),
    steps: int | None = typer.Option(
        None, "--steps", help="Optimiser steps (default: --epochs over the concepts with >= 2 names)."
    ),
    epochs: float | None = typer.Option(
        None, "--epochs", help="Passes over the synonym sets when --steps is not given (default 1)."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Names per batch (default 64; two per concept)."),
    lr: float | None = typer.Option(None, "--lr", help="AdamW learning rate (default 2e-5)."),
    max_length: int | None = typer.Option(None, "--max-length", help="Tokens per name (default 25)."),
    loss: str | None = typer.Option(
        None, "--loss", help="ms (multi-similarity with hard-pair mining, default) or infonce."
    ),
    seed: int | None = typer.Option(None, "--seed", help="Seed of sampling, dropout and init (default 13)."),
    amp: str | None = typer.Option(None, "--amp", help="none (default) or bf16 autocast."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", help="Steps between resumable checkpoints (default 100)."
    ),
    num_threads: int | None = typer.Option(None, "--num-threads", help="torch CPU threads."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted pass in --out from its last checkpoint."
    ),
    keep_checkpoints: bool = typer.Option(
        False, "--keep-checkpoints", help="Keep the last checkpoint after finishing."
    ),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="Root holding ontologies/ (default: $ELCL_DATA_DIR, ../shared/corpora, data/)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Pull together every name of each ontology concept before any corpus is seen.

    Reads only the ontology (never a corpus mention), so the encoder it writes is fair
    to use before any task of a continual sequence.
    """
    import yaml

    from elcl.config import apply_overrides, resolve_data_dir
    from elcl.interrupt import interrupt_note
    from elcl.pretraining.sources import load_pretraining_ontology
    from elcl.pretraining.trainer import config_from_options
    from elcl.pretraining.trainer import pretrain as run_pass

    options: dict = {}
    if config is not None:
        if not config.is_file():
            raise ElclError(f"{config}: config file not found")
        try:
            options = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ElclError(f"{config}: not a valid YAML file ({exc.__class__.__name__})") from None
        if not isinstance(options, dict):
            raise ElclError(f"{config}: expected a mapping of pretrain options")
        options = dict(options.get("pretrain", options))
    flags = {
        "encoder": encoder,
        "steps": steps,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "max_length": max_length,
        "loss": loss,
        "seed": seed,
        "amp": amp,
        "checkpoint_every": checkpoint_every,
        "num_threads": num_threads,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    cfg = config_from_options(apply_overrides(options, set_))
    onto = load_pretraining_ontology(ontology, resolve_data_dir(str(data_dir) if data_dir else None))
    with interrupt_note(lambda: _resume_note(out)):
        result = run_pass(cfg, onto, out, resume=resume, progress=progress, keep_checkpoints=keep_checkpoints)
    tail = result.losses[-10:]
    typer.echo(
        f"{out}: {result.steps_done} steps over {onto.source} in {result.seconds:.0f}s; "
        f"mean loss of the last {len(tail)} steps {sum(tail) / max(1, len(tail)):.4f}; use it as model.name={out}"
    )


def _resume_note(out: Path) -> str:
    """What a Ctrl-C leaves: the last checkpoint's step, and the flag that continues from it."""
    import json

    pointer = out / "checkpoints" / "latest.json"
    try:
        step = json.loads(pointer.read_text())["step"]
    except (OSError, ValueError, KeyError):
        return f"{out}: no checkpoint written yet; rerun the same command to start again"
    return f"{out} keeps its checkpoint at step {step}; continue with the same command plus --resume"


def register(app: typer.Typer) -> None:
    app.command(name="pretrain")(pretrain)
