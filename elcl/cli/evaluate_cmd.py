"""`elcl evaluate PATH...`: accuracy tables of single runs, or the forgetting report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from elcl.errors import ElclError
from elcl.evaluation.summary import run_head

if TYPE_CHECKING:
    from rich.console import JustifyMethod


def _default_out(path: Path) -> Path:
    from elcl.evaluation.runs import is_run_dir

    path = path.parent if path.is_file() else path
    return (path.parent if is_run_dir(path) else path) / "report"


def _print_run_tables(runs, as_json: bool) -> None:
    if as_json:
        payload = [
            {
                **run_head(r),
                "steps_done": r.steps_done,
                "rows": [
                    {
                        "step": m.step,
                        "trained_task": m.trained_task,
                        "eval_task": m.eval_task,
                        "split": m.split,
                        "acc1": m.acc1,
                        "acc5": m.acc5,
                        "n": m.n,
                        "n_unlinkable": m.n_unlinkable,
                        "tfidf_acc1": m.tfidf_acc1,
                    }
                    for m in r.rows
                ],
            }
            for r in runs
        ]
        typer.echo(json.dumps(payload, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    from elcl.evaluation.runs import lam_label

    console = Console(width=100)
    for r in runs:
        lam = lam_label(r.lam)
        table = Table(
            title=f"{r.path}  [{r.method}, λ={lam}, seed {r.seed}, {r.status}]",
            title_justify="left",
        )
        columns: tuple[tuple[str, JustifyMethod], ...] = (
            ("step", "right"),
            ("trained", "left"),
            ("eval task", "left"),
            ("split", "left"),
            ("acc@1", "right"),
            ("acc@5", "right"),
            ("tf-idf@1", "right"),
            ("n", "right"),
            ("unlinkable", "right"),
        )
        for col, just in columns:
            table.add_column(col, justify=just, no_wrap=True)
        for m in r.rows:
            table.add_row(
                str(m.step),
                m.trained_task,
                m.eval_task,
                m.split,
                f"{m.acc1:.4f}",
                f"{m.acc5:.4f}",
                "-" if m.tfidf_acc1 is None else f"{m.tfidf_acc1:.4f}",
                str(m.n),
                str(m.n_unlinkable),
            )
        console.print(table)


def evaluate(
    paths: list[Path] = typer.Argument(
        ..., help="Run directories (with run.json) or experiment directories.", show_default=False
    ),
    out: Path | None = typer.Option(None, "--out", help="Report directory (default: <experiment>/report/)."),
    split: str = typer.Option("test", "--split", help="Split for accuracies: test or dev."),
    include_partial: bool = typer.Option(False, "--include-partial", help="Also use runs whose status is not 'done'."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    bootstrap: int = typer.Option(2000, "--bootstrap", help="Bootstrap resamples for the 95% intervals (fixed seed)."),
    resample: str = typer.Option(
        "mentions",
        "--resample",
        help="What the intervals resample: mentions ((seed, order) cells and, where the runs kept "
        "prediction files, test mentions), cells (cells only: the seed-to-seed part of the width) "
        "or mentions-only (test mentions, cells held fixed: the part a larger evaluation sample shrinks).",
    ),
    export: Path | None = typer.Option(
        None,
        "--export",
        help="Also copy each compared run's small files (run.json, config.yaml, metrics.jsonl, "
        "compact per-mention correctness) here, e.g. results/<experiment>/runs; evaluate reads them back.",
    ),
) -> None:
    """Per-run accuracy tables, or a forgetting report over an experiment.

    One run directory (or several of one method) prints acc@1/acc@5 per step and task.
    An experiment directory, or runs of several methods, gives the forgetting report:
    Markdown table on stdout (drawn by rich on a terminal), and report.md, summary.csv,
    comparison.csv, frontier.csv, summary.json, accuracy_matrices.json and PNG plots in
    --out. Only runs whose experiment-defining config agrees are compared; the others
    are listed with the keys that differ.
    """
    from elcl.evaluation import render
    from elcl.evaluation.report import build_report, check_options, write_report
    from elcl.evaluation.runs import discover_runs

    check_options(split, resample)  # before anything is read, for the per-run tables too
    runs, warnings, any_experiment = discover_runs(paths, include_partial=include_partial)
    methods = {r.method for r in runs}
    if not any_experiment and len(methods) <= 1 and out is None:
        for w in warnings:
            typer.echo(f"warning: {w}", err=True)
        if not runs:
            raise ElclError("no usable run under " + ", ".join(str(p) for p in paths))
        _print_run_tables(runs, as_json)
        return

    if out is None and len(paths) > 1:
        # the default <experiment>/report/ of the first path would silently replace that
        # experiment's own report with one over other runs as well
        raise ElclError(
            f"{len(paths)} paths: pass --out DIR for their joint report "
            f"(the default {_default_out(Path(paths[0]))} belongs to {paths[0]} alone)"
        )
    report = build_report(paths, split=split, include_partial=include_partial, n_boot=bootstrap, resample=resample)
    for w in report.left_out:
        typer.echo(f"warning: {w}", err=True)
    for w in report.unpaired:
        typer.echo(f"warning: {w}", err=True)
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    for n in report.notes:
        typer.echo(f"note: {n}", err=True)
    out_dir = out if out is not None else _default_out(Path(paths[0]))
    if export is not None:
        from elcl.evaluation.export import export_experiment

        if len(paths) != 1 or not Path(paths[0]).is_dir():
            raise ElclError("--export takes one experiment directory")
        done = export_experiment([r.path for r in runs], Path(paths[0]), export)
        typer.echo(f"exported {len(done)} run(s) to {export}", err=True)
    written = write_report(report, out_dir)
    if as_json:
        typer.echo(json.dumps(render.summary_dict(report), indent=2, allow_nan=False, ensure_ascii=False))
    elif sys.stdout.isatty():
        from elcl.evaluation.render import print_terminal

        print_terminal(report)
    else:
        typer.echo(render.stdout_markdown(report))
    typer.echo(f"wrote {len(written)} file(s) to {out_dir}", err=True)


def register(app: typer.Typer) -> None:
    """Add the `evaluate` command to the `elcl` app."""
    app.command("evaluate")(evaluate)
