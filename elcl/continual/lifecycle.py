"""What surrounds one run: its lock, the checks before it starts, and its end state.

A run directory is written by one process at a time (:class:`~elcl.continual.lock.RunLock`).
Before anything is trained: a plain rerun over an existing run is refused (it would
restart at step 0 and append duplicate rows), and ``--resume`` is refused when it would
change a key that defines the experiment (the directory, run.json and the reports would
still describe the old one). A diverged run ends ``failed`` with the reason in run.json,
an interrupted one ``interrupted``; neither is ever ``done``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from elcl.config import RESUME_SAFE_KEYS, experiment_diff, load_run_config, short_repr
from elcl.continual.lock import RunLock
from elcl.continual.rundir import RunDir, RunSpec
from elcl.errors import ConfigError, DivergedError, ElclError
from elcl.fileio import remove_stale_temps
from elcl.interrupt import interrupt_note
from elcl.runtime import Runtime


def _get(d: dict, dotted: str) -> Any:
    cur: Any = d
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def check_existing(rd: RunDir, cfg_dict: dict, resume: bool) -> None:
    """Refuse to restart over an existing run, or to resume it with another experiment."""
    if not rd.run_json.is_file():
        return
    state = rd.read_state()
    status, done = state.get("status"), state.get("steps_done")
    if not resume:
        what = "a finished run" if status == "done" else f"an unfinished run (status '{status}', {done} step(s) done)"
        raise ElclError(
            f"{rd.path}: {what} is already there; pass --resume {rd.path} to continue it, or choose another name or output_dir"
        )
    cfg_file = rd.path / "config.yaml"
    if not cfg_file.is_file():
        raise ElclError(f"{cfg_file}: not found; cannot check that --resume continues the same experiment")
    # The stored config read like any run's (size and alias guards, older layouts upgraded).
    stored = load_run_config(rd.path).to_dict()
    changed = experiment_diff(stored, cfg_dict)
    if changed:
        parts = ", ".join(
            f"{k} ({short_repr(_get(stored, k), 30)} -> {short_repr(_get(cfg_dict, k), 30)})" for k in changed[:5]
        )
        more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        raise ConfigError(
            f"{cfg_file}: --resume cannot change {parts}{more}: these define the experiment; "
            f"only {', '.join(RESUME_SAFE_KEYS)} may differ on resume (start a new run under another name instead)"
        )


KEPT_ON_STOP = ("train_documents_removed", "lambda_t", "environments")


def _mark(rd: RunDir, spec: RunSpec, status: str, reason: str | None = None) -> None:
    if not rd.run_json.is_file():
        return
    try:
        state = rd.read_state()
        steps_done = int(state.get("steps_done", 0))
    except (ElclError, ValueError, TypeError):
        state, steps_done = {}, 0
    # Facts the runner stored about the run survive a failed or interrupted run: its data,
    # the λ_t of the finished steps (a resume reads them back) and where it computed.
    kept = {k: state[k] for k in KEPT_ON_STOP if k in state}
    rd.write_state(spec, status, steps_done, {**kept, **({"reason": reason} if reason else {})} or None)


def kept_note(rd: RunDir) -> str:
    """What an interrupted run keeps, and the command that continues it."""
    try:
        state = rd.read_state()
        done, order = int(state.get("steps_done", 0)), list(state.get("order", []))
    except (ElclError, ValueError, TypeError):
        return f"{rd.path} holds no finished step; start it again (nothing to resume)"
    kept = f"keeps {done} finished step(s) ({', '.join(order[:done])})" if done else "has no finished step yet"
    return f"{rd.path} {kept}, status 'interrupted'; resume with: elcl train --resume {rd.path}"


@contextmanager
def guarded_run(rd: RunDir, spec: RunSpec, cfg_dict: dict, rt: Runtime, resume: bool) -> Iterator[None]:
    """Hold the run's lock for the block; record how it ended unless it finished."""
    lock = RunLock(rd.path) if rt.is_main else None
    if lock is not None:
        lock.acquire()
    try:
        if rt.is_main:
            check_existing(rd, cfg_dict, resume)
            remove_stale_temps(rd.path)
        with interrupt_note(lambda: kept_note(rd)):
            try:
                yield
            except DivergedError as exc:
                if rt.is_main:
                    _mark(rd, spec, "failed", str(exc))
                lr = _get(cfg_dict, "train.lr")
                raise DivergedError(
                    f"{rd.path}: {exc}; run.json marked 'failed' (finished steps kept); "
                    f"start a new run with a lower train.lr (was {lr}) or check the task's data"
                ) from None
            except KeyboardInterrupt:
                if rt.is_main:
                    _mark(rd, spec, "interrupted")
                raise
    finally:
        if lock is not None:
            lock.release()
