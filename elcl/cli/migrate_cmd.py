"""`elcl migrate`: bring run directories written by an older elcl up to the current contracts."""

from __future__ import annotations

from pathlib import Path

import typer

from elcl.errors import ElclError


def migrate(
    path: Path = typer.Argument(..., help="A run directory or an experiment directory holding runs."),
) -> None:
    """Give legacy checkpoints (before elcl-checkpoint/1) their sha256 meta, after checking they are whole and finite."""
    from elcl.models.checkpoint import migrate_legacy_checkpoint

    if not path.is_dir():
        raise ElclError(f"{path}: not a directory")
    found = sorted(path.glob("steps/*/model.safetensors")) + sorted(path.glob("*/steps/*/model.safetensors"))
    if not found:
        raise ElclError(f"{path}: no checkpoints (steps/*/model.safetensors) under it")
    written = [p for p in found if migrate_legacy_checkpoint(p)]
    typer.echo(
        f"{path}: {len(found)} checkpoint(s), {len(written)} given a meta file, {len(found) - len(written)} already current"
    )


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
