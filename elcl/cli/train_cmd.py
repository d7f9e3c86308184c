"""`elcl train`: run every (order, λ, seed) of a config, or resume a run."""

from __future__ import annotations

from pathlib import Path

import typer

from elcl.errors import ElclError


def train(
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML experiment config (see configs/)."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key, e.g. --set train.epochs=2 (repeatable)."),
    resume: Path | None = typer.Option(
        None, "--resume", help="Resume a run directory (or an experiment directory) at its first unfinished task."
    ),
    output_dir: Path | None = typer.Option(
        None, "--output-dir", "-o", help="Parent directory of runs (default: output_dir of the config)."
    ),
    order: list[int] = typer.Option(
        [], "--order", help="Run only this task order (index into the config's orders; repeatable): a part of the grid."
    ),
) -> None:
    """Train a linker on a task sequence with the configured method; writes run directories."""
    from elcl.config import load_config, load_run_config
    from elcl.continual.rundir import RunDir, RunSpec
    from elcl.continual.runner import run_experiment, run_sequence
    from elcl.runtime import init_runtime, shutdown_runtime

    if resume is not None and (resume / "run.json").is_file():
        cfg = load_run_config(resume, set_)
        state = RunDir(resume).read_state()
        spec = RunSpec(
            state["experiment"],
            state["method"],
            state.get("lambda"),
            int(state["seed"]),
            tuple(state["order"]),
            int(state["order_index"]),
        )
        rt = init_runtime(cfg.train.device, cfg.train.num_threads)
        _warn_precision(cfg, rt)
        run_sequence(spec, cfg, resume, rt, resume=True)
        paths = [resume]
    else:
        if config is None:
            if resume is not None:
                raise ElclError(f"{resume}: no run.json here; to resume a whole experiment pass --config too")
            raise ElclError("missing --config FILE (e.g. --config configs/single_ncbi_disease_bert.yaml)")
        cfg = load_config(config, set_)
        if output_dir is not None:
            cfg.output_dir = str(output_dir)
        rt = init_runtime(cfg.train.device, cfg.train.num_threads)
        _warn_precision(cfg, rt)
        exp_dir = resume if resume is not None else None
        paths = run_experiment(cfg, rt, resume=resume is not None, exp_dir=exp_dir, orders=order)
    if rt.is_main:
        _print_summary(paths)
    shutdown_runtime(rt, exit_process=True)


def _warn_precision(cfg, rt) -> None:
    from elcl.hardware import precision_warning

    warning = precision_warning(cfg, rt.device)
    if warning and rt.is_main:
        typer.echo(warning, err=True)


def _print_summary(paths: list[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    from elcl.continual.methods import get as get_method
    from elcl.continual.rundir import RunDir, read_jsonl

    table = Table(title="final accuracy@1 (test)")
    table.add_column("run")
    table.add_column("task")
    table.add_column("acc@1", justify="right")
    table.add_column("acc@5", justify="right")
    for p in paths:
        rows = [r for r in read_jsonl(Path(p) / "metrics.jsonl") if r["split"] == "test"]
        if not rows:
            continue
        last = max(r["step"] for r in rows)
        single = get_method(str(RunDir(Path(p)).read_state().get("method"))).per_task_model
        final = (
            [r for r in rows if r["trained_task"] == r["eval_task"]]
            if single
            else [r for r in rows if r["step"] == last]
        )
        for r in final:
            table.add_row(str(p), r["eval_task"], f"{r['acc1']:.4f}", f"{r['acc5']:.4f}")
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
