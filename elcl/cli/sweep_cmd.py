"""`elcl sweep CONFIG`: every cell of a config's grid on a process pool or Ray;
`elcl sweep --status DIR` and `elcl sweep --report DIR`."""

from __future__ import annotations

import re
import time
from pathlib import Path

import typer

from elcl.errors import ElclError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``8m``, ``1.5h`` -> seconds."""
    m = _DURATION.match(text)
    if not m:
        raise ElclError(f"--deadline {text!r}: expected a duration such as 90s, 8m or 1.5h")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def sweep(
    config: Path | None = typer.Argument(None, help="YAML experiment config (its grid, and its sweep: section)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a config key, e.g. --set sweep.search=optuna (repeatable)."
    ),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="Parent of the experiment directory."),
    backend: str = typer.Option("local", "--backend", help="local (a process per run) or ray."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster to join (default: $RAY_ADDRESS, else a local Ray)."
    ),
    max_parallel: int | None = typer.Option(
        None, "--max-parallel", "-j", min=1, help="Runs at a time (default: CPUs / train.num_threads)."
    ),
    gpus_per_run: float = typer.Option(
        0.0, "--gpus-per-run", min=0.0, help="Share of a GPU each run reserves (ray; 0.25: four runs a card)."
    ),
    deadline: str | None = typer.Option(
        None, "--deadline", help="Stop running cells (interrupted, resumable) after this long, e.g. 8m."
    ),
    part: int | None = typer.Option(None, "--part", min=0, help="Run only the N-th (order, seed) block of the grid."),
    export: Path | None = typer.Option(
        None, "--export", help="Copy finished runs' small files here at the end (as elcl evaluate --export)."
    ),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Run failed cells again (default: report them)."),
    status: Path | None = typer.Option(
        None, "--status", help="Show the state of the sweep in this experiment directory."
    ),
    report: Path | None = typer.Option(
        None, "--report", help="Write the report of this experiment directory's finished runs."
    ),
    out: Path | None = typer.Option(None, "--out", help="With --report: the report directory (default DIR/report)."),
) -> None:
    """Run every cell of a config's grid (seeds x orders x methods x λ), resumably.

    A second call of the same command continues where the first stopped; finished runs
    are skipped, failed ones are reported by name with their last error line (exit 1).
    """
    if status is not None:
        return _status(status)
    if report is not None:
        return _report(report, out, export)
    if config is None:
        raise ElclError("missing CONFIG (e.g. elcl sweep configs/quick.yaml), or --status DIR / --report DIR")
    _run(
        config, set_, output_dir, backend, ray_address, max_parallel, gpus_per_run, deadline, part, export, retry_failed
    )


def _run(
    config, set_, output_dir, backend, ray_address, max_parallel, gpus_per_run, deadline, part, export, retry_failed
) -> None:
    import os

    from elcl.config import resolve_data_dir
    from elcl.continual.methods import PENALTY_METHODS
    from elcl.data.custom import load_task_corpus
    from elcl.interrupt import interrupt_note
    from elcl.sweep.backends import make_backend
    from elcl.sweep.grid import blocks, expand_cells
    from elcl.sweep.progress import Display
    from elcl.sweep.scheduler import run_sweep
    from elcl.sweep.spec import load_sweep

    limit = parse_duration(deadline) if deadline is not None else None
    cfg, section = load_sweep(config, set_)
    exp = Path(output_dir if output_dir is not None else cfg.output_dir) / cfg.name
    searched = (
        [m for m in (section.methods or [cfg.method.name]) if m in PENALTY_METHODS]
        if section.search == "optuna"
        else []
    )
    cells = expand_cells(cfg, section, searched)
    if part is not None:
        if searched:
            raise ElclError("--part and sweep.search: optuna do not combine (a study spans its blocks); drop one")
        all_blocks = blocks(cells)
        if part >= len(all_blocks):
            raise ElclError(
                f"--part {part}: the grid has {len(all_blocks)} (order, seed) block(s), parts 0..{len(all_blocks) - 1}"
            )
        cells = [c for c in cells if c.block == all_blocks[part]]
    data_dir = resolve_data_dir(cfg.data.data_dir)
    for task in dict.fromkeys(t for order in cfg.task_orders() for t in order):
        load_task_corpus(cfg.task_ref(task), data_dir)  # a missing corpus fails now, not in every worker
    threads = cfg.train.num_threads or 1
    parallel = max_parallel or max(1, (os.cpu_count() or 1) // threads)
    search = None
    if searched:
        from elcl.sweep.search import OptunaSearch

        search = OptunaSearch(cfg, section, searched, exp, cells)
    reuse = [Path(p) for p in section.reuse]
    be = make_backend(backend, ray_address, parallel)
    display = Display(title=f"{exp} ({be.name}, {parallel} at a time)")
    start = time.monotonic()
    note = f"the sweep's running cells are marked interrupted; run the same elcl sweep again to resume {exp}"
    try:
        with interrupt_note(lambda: note):
            result = run_sweep(
                exp,
                cells,
                be,
                parallel,
                gpus_per_run,
                deadline=start + limit if limit is not None else None,
                reuse=reuse,
                retry_failed=retry_failed,
                search=search,
                on_change=display,
            )
    finally:
        if display.live is not None:
            display.live.stop()
        if search is not None:  # what the studies found so far, even after Ctrl-C
            search.write_summary(None)
    display.close(result)
    if search is not None:
        search.write_summary(result)
        typer.echo(search.summary_markdown(result))
    if export is not None:
        _export(exp, [s.cell.name for s in result.states.values() if s.status == "done"], export)
    for st in result.failed():
        typer.echo(f"failed: {st.cell.name}: {st.error}", err=True)
    left = len(result.states) - result.count("done", "reused", "failed", "pruned")
    if result.deadline_hit:
        typer.echo(
            f"deadline {deadline} reached after {time.monotonic() - start:.0f}s: {left} cell(s) left "
            f"(interrupted ones resume); run the same command again to continue",
            err=True,
        )
    if result.failed():
        raise typer.Exit(1)


def _export(exp: Path, names: list[str], dest: Path) -> None:
    from elcl.evaluation.export import export_experiment

    done = export_experiment([exp / n for n in names], exp, dest)
    typer.echo(f"exported {len(done)} finished run(s) to {dest}", err=True)


def _status(exp: Path) -> None:
    from rich.console import Console

    from elcl.sweep.progress import states_on_disk, table

    if not exp.is_dir():
        raise ElclError(f"--status {exp}: no such directory")
    states = states_on_disk(exp)
    if not states:
        raise ElclError(
            f"--status {exp}: no sweep here (no {exp}/.sweep/*.cell.json); start one with elcl sweep CONFIG"
        )
    Console().print(table(states, str(exp)))


def _report(exp: Path, out: Path | None, export: Path | None) -> None:
    from elcl.cli.evaluate_cmd import evaluate

    evaluate(
        paths=[exp],
        out=out if out is not None else exp / "report",
        split="test",
        include_partial=False,
        as_json=False,
        bootstrap=2000,
        resample="mentions",
        export=export,
    )


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
