"""One cell in its own process: ``python -m elcl.sweep.worker CELL.json``.

A process per run keeps runs apart (threads, memory, a crash), lets the sweep stop one
with SIGTERM (the run is marked ``interrupted`` by the same code as ``elcl train``'s,
and keeps its finished steps), and lets Ray place it on any node. The cell file holds
the run's spec and resolved config; the run is started or resumed with
:func:`~elcl.continual.runner.run_sequence`, exactly as ``elcl train --resume`` does.
Exit codes: 0 done, 2 an elcl error (the last stderr line says it, ``error: ...``),
130/143 interrupted, 1 anything else (its traceback's last line names it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from elcl.sweep.cells import CellFile


def run_cell_file(path: Path) -> int:
    from elcl import interrupt
    from elcl.config import config_from_dict
    from elcl.continual.rundir import RunSpec
    from elcl.continual.runner import run_sequence
    from elcl.errors import ElclError
    from elcl.runtime import init_runtime, shutdown_runtime

    interrupt.reset()
    interrupt.install_sigterm_handler()
    try:
        cell = CellFile.model_validate(json.loads(path.read_text(encoding="utf-8")))
        s = cell.spec
        spec = RunSpec(s.experiment, s.method, s.lam, s.seed, tuple(s.order), s.order_index)
        cfg = config_from_dict(cell.config, str(path))
        rt = init_runtime(cfg.train.device, cfg.train.num_threads)
        run_sequence(spec, cfg, Path(cell.run_dir), rt, resume=True)
        shutdown_runtime(rt)
    except ElclError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print(interrupt.interrupted_message(), file=sys.stderr, flush=True)
        return interrupt.exit_code()
    return 0


if __name__ == "__main__":
    sys.exit(run_cell_file(Path(sys.argv[1])))
