"""Where a cell's worker process runs: a local process pool, or Ray.

Both start the same worker (``python -m elcl.sweep.worker CELL.json``) and stop it the
same way (SIGTERM: the run marks itself ``interrupted`` and keeps its finished steps).
The scheduler asks a backend only to start, poll and stop; it never waits on one.

* ``local``: a process per cell on this machine (forked from a server that imported
  torch once); nothing to install.
* ``ray``: a Ray task per cell that runs the worker. ``ray.init()`` starts a local Ray
  on one machine; with ``--ray-address`` (or ``RAY_ADDRESS``) the same tasks go to a
  cluster, each reserving ``--gpus-per-run`` of a GPU (fractions share one card) and
  ``train.num_threads`` CPUs. The experiment directory must then be on a filesystem every
  node sees (the scheduler reads the runs' progress there).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Protocol

from elcl.errors import ElclError

INTERRUPTED_RC = 130
MISSING_RAY = "the ray backend needs Ray: pip install 'elcl[sweep]' (or use --backend local)"


def worker_command(cell_file: Path) -> list[str]:
    return [sys.executable, "-m", "elcl.sweep.worker", str(cell_file)]


def worker_env() -> dict[str, str]:
    """This process's environment, with this elcl first on the path (a worktree or an
    uninstalled checkout runs its own code in the workers too)."""
    import elcl

    env = dict(os.environ)
    root = str(Path(elcl.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Backend(Protocol):
    name: str

    def start(self, cell_file: Path, log: Path, cpus: int, gpus: float) -> Any: ...

    def poll(self, handle: Any) -> int | None:
        """The worker's exit code once it ended, else None."""
        ...

    def stop(self, handle: Any) -> None:
        """Ask the worker to stop (SIGTERM); it ends ``interrupted``."""
        ...

    def kill(self, handle: Any) -> None:
        """End a worker that did not stop in time."""
        ...

    def close(self) -> None: ...


def _forked_worker(cell_file: str, log: str) -> None:
    """A local worker, forked from the server that has already imported torch: the
    output goes to the cell's log, and the process gets a session of its own so that
    Ctrl-C at the terminal reaches the sweep only (which stops its workers itself)."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from elcl.sweep.worker import run_cell_file

    code = run_cell_file(Path(cell_file))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_PRELOAD = ["elcl.continual.runner", "elcl.sweep.worker"]


class LocalBackend:
    """A process per cell on this machine, forked from a multiprocessing forkserver that
    imported elcl, torch and transformers once (a fresh interpreter per run would spend
    seconds on imports each); concurrency is the scheduler's ``--max-parallel``."""

    name = "local"

    def __init__(self) -> None:
        import multiprocessing as mp

        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(_PRELOAD)

    def start(self, cell_file: Path, log: Path, cpus: int, gpus: float) -> Any:
        proc = self.ctx.Process(target=_forked_worker, args=(str(cell_file), str(log)), daemon=False)
        proc.start()
        return proc

    def poll(self, handle: Any) -> int | None:
        rc = handle.exitcode
        if rc is None:
            return None
        return INTERRUPTED_RC if rc == -signal.SIGTERM else (128 - rc if rc < 0 else rc)

    def stop(self, handle: Any) -> None:
        if handle.exitcode is None:
            os.kill(handle.pid, signal.SIGTERM)

    def kill(self, handle: Any) -> None:
        if handle.exitcode is None:
            handle.kill()

    def close(self) -> None:
        pass


def _ray_worker(cell_file: str, log: str, env: dict[str, str]) -> int:
    """The body of a Ray task: the worker process, stopped with SIGTERM on cancel."""
    run_env = {**env, **{k: v for k, v in os.environ.items() if k == "CUDA_VISIBLE_DEVICES"}}
    with open(log, "a", encoding="utf-8") as fh:
        proc = subprocess.Popen(worker_command(Path(cell_file)), stdout=fh, stderr=subprocess.STDOUT, env=run_env)
        try:
            return proc.wait()
        except KeyboardInterrupt:  # ray.cancel
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
            return INTERRUPTED_RC


class RayBackend:
    """A Ray task per cell (``num_cpus`` = the run's threads, ``num_gpus`` = ``--gpus-per-run``)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ElclError(MISSING_RAY) from None
        self.ray = ray
        if not ray.is_initialized():
            address = address or os.environ.get("RAY_ADDRESS")
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus  # GPUs: as many as Ray finds
            ray.init(**kwargs)
        self._task = ray.remote(max_retries=0)(_ray_worker)

    def start(self, cell_file: Path, log: Path, cpus: int, gpus: float) -> Any:
        opts: dict[str, Any] = {"num_cpus": cpus}
        if gpus:
            opts["num_gpus"] = gpus
        return self._task.options(**opts).remote(str(cell_file), str(log), worker_env())

    def poll(self, handle: Any) -> int | None:
        ready, _ = self.ray.wait([handle], timeout=0)
        if not ready:
            return None
        try:
            return int(self.ray.get(handle))
        except self.ray.exceptions.TaskCancelledError:
            return INTERRUPTED_RC
        except self.ray.exceptions.RayError:
            return 1

    def stop(self, handle: Any) -> None:
        self.ray.cancel(handle, force=False)

    def kill(self, handle: Any) -> None:
        self.ray.cancel(handle, force=True)

    def close(self) -> None:
        pass


def make_backend(name: str, address: str | None = None, max_parallel: int | None = None) -> Backend:
    if name == "local":
        return LocalBackend()
    if name == "ray":
        return RayBackend(address, num_cpus=max_parallel)
    raise ElclError(f"--backend {name!r}: expected local or ray")
