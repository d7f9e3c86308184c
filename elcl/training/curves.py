"""Training curves a person can watch: where the loop's periodic losses and each step's
accuracies are written (``train.log_to``).

``jsonl`` (default) appends the loss entries to ``train_log.jsonl``; ``tensorboard``
writes TensorBoard event files under ``<run>/tensorboard/`` via
``torch.utils.tensorboard`` (needs the optional ``tensorboard`` package) with tags

* ``train/<task>/loss``, ``train/<task>/penalty``, ``train/<task>/lr``,
  ``train/<task>/grad_norm`` — means over the last 50 optimiser steps (the loop's log
  interval), x = optimiser step within that task;
* ``dev_acc1/<task>`` and ``test_acc1/<task>`` — accuracy@1 of every task of the
  sequence after each step, x = step of the sequence (0 = after the first task), so an
  earlier task's curve falling is forgetting as it happens.

``metrics.jsonl`` (the run record that `elcl evaluate` reads) is written either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from elcl.errors import ConfigError
from elcl.fileio import append_jsonl

TRAIN_SCALARS = ("loss", "penalty", "lr", "grad_norm")
MISSING_TENSORBOARD = (
    "train.log_to: 'tensorboard' needs the tensorboard package; install it with "
    "`pip install 'elcl[tensorboard]'` (or `pip install tensorboard`), or drop it from train.log_to"
)


def summary_writer_class():
    """``torch.utils.tensorboard.SummaryWriter``, or a one-line ConfigError without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(MISSING_TENSORBOARD) from None
    return SummaryWriter


class Curves:
    """The sinks named in ``train.log_to`` for one run directory."""

    def __init__(self, log_to: Sequence[str], run_path: Path) -> None:
        self.run_path = Path(run_path)
        self.jsonl = "jsonl" in log_to
        self.writer = None
        if "tensorboard" in log_to:
            self.writer = summary_writer_class()(log_dir=str(self.run_path / "tensorboard"))

    def train_entry(self, task: str, entry: dict) -> None:
        """One loss entry (``step``, ``loss``, ``penalty``, ``lr``, ``grad_norm``), live."""
        if self.writer is not None:
            for key in TRAIN_SCALARS:
                if key in entry:
                    self.writer.add_scalar(f"train/{task}/{key}", float(entry[key]), int(entry["step"]))

    def train_log(self, task: str, entries: Sequence[dict]) -> None:
        """A finished task's entries into train_log.jsonl."""
        if self.jsonl:
            append_jsonl(self.run_path / "train_log.jsonl", [{"task": task, **e} for e in entries])

    def evaluation(self, rows: Sequence[dict]) -> None:
        """Metric rows of one step of the sequence (as appended to metrics.jsonl)."""
        if self.writer is None:
            return
        for r in rows:
            self.writer.add_scalar(f"{r['split']}_acc1/{r['eval_task']}", float(r["acc1"]), int(r["step"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
