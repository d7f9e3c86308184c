"""`elcl fisher`: curvature statistics of a trained checkpoint, and their sizes."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from elcl.errors import ElclError


def fisher(
    run: Path = typer.Option(..., "--run", help="Run directory written by `elcl train`."),
    task: str = typer.Option(..., "--task", help="Task whose training data (and checkpoint) to use."),
    approx: str | None = typer.Option(
        None,
        "--approx",
        help="kfac | diag | both (default: the run's curvature config, else what its method needs: diag for EWC, kfac for K-FAC and methods without a penalty).",
    ),
    kind: str | None = typer.Option(None, "--kind", help="empirical | sampled."),
    n_samples: int | None = typer.Option(None, "--n-samples", help="Label draws per example for the sampled Fisher."),
    variant: str | None = typer.Option(None, "--variant", help="expand | reduce (weight sharing over positions)."),
    max_examples: int | None = typer.Option(None, "--max-examples", help="Use at most this many training examples."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default RUN/curvature/TASK)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing statistics in the output directory."),
    stats: bool = typer.Option(
        False, "--stats", help="Print per-layer and total factor sizes next to parameter counts."
    ),
) -> None:
    """Compute (or inspect, with --stats on existing files) diagonal Fisher / K-FAC factors."""
    from elcl.config import load_run_config
    from elcl.continual.guard import TrainDataGuard
    from elcl.continual.lock import RunLock
    from elcl.continual.methods import get as get_method
    from elcl.continual.rundir import RunDir
    from elcl.continual.runner import build_linker, compute_curvature
    from elcl.curvature.stats import factor_size_table, format_size_table
    from elcl.curvature.storage import DTYPES, save_curvature
    from elcl.models.checkpoint import load_checkpoint
    from elcl.runtime import init_runtime, shutdown_runtime
    from elcl.training.batching import TokenCache

    rd = RunDir(run)
    state = rd.read_state()
    order = list(state["order"])
    if task not in order:
        raise ElclError(f"--task {task!r}: not a task of this run; its order is {', '.join(order)}")
    overrides = [
        f"curvature.{k}={v}"
        for k, v in (
            ("approx", approx),
            ("kind", kind),
            ("n_samples", n_samples),
            ("variant", variant),
            ("max_examples", max_examples),
        )
        if v is not None
    ]
    cfg = load_run_config(run, overrides)
    target = out or rd.curvature(task)
    rt = init_runtime(cfg.train.device, cfg.train.num_threads)
    model = build_linker(cfg, rt)
    existing = (target / "meta.json").is_file()
    if existing and not force:
        if not stats:
            raise ElclError(
                f"{target}: statistics already exist; pass --force to recompute or --out DIR to write elsewhere"
            )
        typer.echo(format_size_table(factor_size_table(target, model)))
        shutdown_runtime(rt, exit_process=True)
        return
    method = get_method(str(state["method"]))
    step = next(i for i, st in enumerate(method.steps(order)) if task in st.tasks)
    trained = method.steps(order)[step].label
    ckpt = rd.existing_checkpoint(step, trained)
    load_checkpoint(model, ckpt)
    # what the run's own penalty reads (diag for EWC, kfac for K-FAC), unless asked;
    # K-FAC for methods that need none
    which = cfg.curvature.approx if cfg.curvature.approx not in ("auto", "none") else method.curvature
    which = "kfac" if which == "none" else which
    guard = TrainDataGuard.for_config(cfg, str(state.get("method", "")))
    guard.begin(task)
    examples = guard.train_examples(task)
    # Writing into the run directory (no --out) takes its lock, as `elcl train` does: a
    # training process resuming the run would otherwise read half-replaced statistics.
    lock = RunLock(rd.path) if rt.is_main and target.resolve().is_relative_to(rd.path.resolve()) else nullcontext()
    with lock:
        result = compute_curvature(
            model,
            examples,
            TokenCache(model.tokenizer, cfg.model.max_length),
            cfg,
            which,
            int(state["seed"]) + step,
            rt,
        )
        if rt.is_main:
            save_curvature(result, target, model.config_hash, dtype=DTYPES[cfg.curvature.dtype])
            typer.echo(
                f"wrote {target} ({which}, {cfg.curvature.kind}, {cfg.curvature.variant}, {result.n_examples} examples)"
            )
            if stats:
                typer.echo(format_size_table(factor_size_table(target, model)))
    shutdown_runtime(rt, exit_process=True)


def register(app: typer.Typer) -> None:
    app.command("fisher")(fisher)
