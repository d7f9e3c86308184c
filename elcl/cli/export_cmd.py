"""`elcl export RUN --out DIR`: a linker folder that loads without elcl."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run: Path = typer.Argument(..., help="Run directory (with run.json).", show_default=False),
    out: Path = typer.Option(..., "--out", help="New folder to write (must not exist).", show_default=False),
    step: int | None = typer.Option(None, "--step", help="Step of the run (default: its last finished step)."),
    task: str | None = typer.Option(
        None, "--task", help="Whose ontology goes with it (default: the step's trained task)."
    ),
) -> None:
    """Export a finished step: HF encoder (or ResCNN safetensors), head, ontology, model card,
    and what `elcl update` needs later (lineage, consolidated curvature and its anchor)."""
    from elcl.continual.model_card import render_card
    from elcl.continual.versions import run_extras
    from elcl.errors import ElclError
    from elcl.linking.source import open_source
    from elcl.models.export import export_linker

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ElclError(f"{out}: already exists; export into a new folder (nothing was written)")
    src = open_source(run, step=step, task=task, device="cpu")
    rs = src.run
    if rs is None:
        raise ElclError(f"{run}: already an export folder; export from a run directory")
    info = {
        "task": src.task,
        "run": {k: rs.state.get(k) for k in ("experiment", "method", "lambda", "seed", "order")}
        | {"step": rs.step, "trained_task": rs.trained_task},
        "metrics": rs.metrics,
    }
    definition = rs.cfg.task_ref(src.task)
    if not isinstance(definition, str):
        # A custom task: what reads its ids (`elcl link` inputs with gold ids) travels along.
        info["task_definition"] = definition.to_dict()
    card = render_card(
        rs.cfg, rs.state, rs.step, rs.trained_task, src.task, rs.metrics, src.ontology.source, len(src.ontology)
    )
    extra = run_extras(rs.path, rs.state, rs.cfg, rs.step, rs.metrics, src.model)
    export_linker(src.model, src.candidates, src.ontology, out, info, card, src.prior, extra=extra)
    typer.echo(f"exported {rs.path} step {rs.step} ({rs.trained_task}) with the {src.task} ontology to {out}", err=True)


def register(app: typer.Typer) -> None:
    """Add the `export` command to the `elcl` app."""
    app.command("export")(export)
