"""`elcl update MODEL --task T --method M --out NEW`: the next version of an exported linker."""

from __future__ import annotations

from pathlib import Path

import typer


def update(
    model: Path = typer.Argument(..., help="Export folder (from `elcl export` or `elcl update`).", show_default=False),
    task: str = typer.Option(
        ..., "--task", help="The new task: a built-in task name, or a YAML file of one task entry.", show_default=False
    ),
    method: str = typer.Option(
        ..., "--method", help="online_kfac, kfac, online_ewc, ewc or naive (lr_control too).", show_default=False
    ),
    out: Path = typer.Option(
        ..., "--out", help="New folder for the next version (must not exist).", show_default=False
    ),
    lam: float | None = typer.Option(None, "--lambda", help="Penalty strength λ (default: the lineage's)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a training setting of the lineage, e.g. --set train.epochs=1 (repeatable)."
    ),
    eval_: list[str] = typer.Option(
        [],
        "--eval",
        help="A held-out set scored before and after: TASK[:SPLIT] (ncbi_disease:test) or a task YAML file (an audit set; repeatable).",
    ),
) -> None:
    """Train an exported linker on a new task with its stored curvature as the penalty,
    without the earlier tasks' training data; write the next version (lineage appended)."""
    from elcl.continual.update import EvalSet, update_config, update_linker
    from elcl.continual.versions import read_lineage
    from elcl.data.task_config import read_task_spec, task_name
    from elcl.errors import ElclError
    from elcl.runtime import init_runtime

    evals = [EvalSet.parse(e) for e in eval_]
    if out.exists():
        raise ElclError(f"{out}: already exists; write the new version to a new folder (nothing was written)")
    ref = read_task_spec(task)
    lineage = read_lineage(model)
    cfg = update_config(lineage, ref, method, lam, set_, str(model / "lineage.json"), [e.ref for e in evals if e.ref])
    rt = init_runtime(cfg.train.device, cfg.train.num_threads)
    res = update_linker(
        model, ref, method, out, lam=lam, overrides=set_, evals=evals, rt=rt, log=lambda m: typer.echo(m, err=True)
    )
    task = task_name(ref)
    v = res.lineage.current
    for e in evals:
        b, a = res.before[e.label], res.after[e.label]
        typer.echo(f"{e.label}: acc@1 {b.acc1:.4f} -> {a.acc1:.4f} (n={a.n})")
    own = [m for m in v.metrics if m.task == task]
    for m in own:
        typer.echo(f"{m.task}:{m.split} (new task): acc@1 {m.acc1:.4f} (n={m.n})")
    curv = f"{res.curvature_bytes} curvature bytes" if res.curvature_bytes is not None else "no curvature"
    typer.echo(f"wrote {out}: version {v.version} (parent {v.parent}), {curv}", err=True)


def register(app: typer.Typer) -> None:
    """Add the `update` command to the `elcl` app."""
    app.command("update")(update)
