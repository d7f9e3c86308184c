"""`elcl prune`: remove the checkpoints and curvature finished runs no longer need."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import typer


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def prune(
    paths: list[Path] = typer.Argument(..., help="Run directories or experiment directories holding runs."),
    keep: str = typer.Option(
        "final", "--keep", help="Checkpoints to keep: final (the last step's, for link/export), all, or none."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print what would be removed; remove nothing."),
) -> None:
    """Free disk: finished runs lose their curvature statistics and all checkpoints but the kept ones.

    Reports (elcl evaluate) need neither; unfinished runs are left whole so they can resume.
    """
    from elcl.continual.prune import Keep
    from elcl.continual.prune import prune as prune_runs

    # every run is planned (and --keep checked against Keep's values) before anything is removed
    plans = prune_runs(paths, cast(Keep, keep), dry_run)
    verb = "would free" if dry_run else "freed"
    for p in plans:
        if p.skipped is not None:
            typer.echo(f"{p.run}: left as it is: {p.skipped}")
        elif p.empty:
            typer.echo(f"{p.run}: nothing to remove")
        else:
            steps = ",".join(str(i) for i, _ in p.steps) or "none"
            typer.echo(
                f"{p.run}: checkpoints of step(s) {steps}, curvature of {len(p.curvature)} task(s): {verb} {_gb(p.nbytes)}"
            )
    done = [p for p in plans if p.skipped is None]
    typer.echo(
        f"{len(done)} of {len(plans)} run(s) {'checked' if dry_run else 'pruned'}, "
        f"{verb} {_gb(sum(p.nbytes for p in done))}"
    )


def register(app: typer.Typer) -> None:
    app.command("prune")(prune)
