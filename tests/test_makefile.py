"""The benchmark part targets of the Makefile, as `make -n` prints them: each runs the
named methods on the given seeds and order, resumably, in its own experiment folder."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from elcl.config import load_config

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

TARGETS = [
    ("reproduce-cpu", "CPU_METHODS", "configs/reproduce_cpu.yaml", "reproduce_cpu"),
    ("reproduce-cpu-context", "CTX_METHODS", "configs/reproduce_cpu_context.yaml", "context"),
    ("reproduce-cpu-confirm", "CONFIRM_METHODS", "configs/reproduce_cpu_confirm.yaml", "confirm"),
]


def _dry_run(*args: str) -> list[list[str]]:
    out = subprocess.run(
        ["make", "-n", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [shlex.split(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(("target", "methods_var", "config", "experiment"), TARGETS)
def test_a_part_trains_each_method_on_its_seeds_and_order(target, methods_var, config, experiment):
    lines = _dry_run(target, f"{methods_var}=naive kfac", "CPU_SEEDS=[53]", "CPU_ORDER=1", "RUNS=/tmp/r")
    loop = lines[0]
    assert loop[:5] == ["for", "m", "in", "naive", "kfac;"]
    cmd = " ".join(loop)
    assert f"--config {config} --set method.name=$m --set seeds=[53] --order 1" in cmd
    assert f"--output-dir /tmp/r --resume /tmp/r/{experiment}" in cmd
    # the config the target names is the experiment it resumes
    assert load_config(ROOT / config).name == experiment


def test_without_seeds_or_order_a_part_runs_the_whole_config():
    cmd = " ".join(_dry_run("reproduce-cpu-confirm", "RUNS=/tmp/r")[0])
    assert "seeds=" not in cmd and "--order" not in cmd
    assert "for m in single naive kfac ewc;" in cmd


@pytest.mark.parametrize(
    ("target", "experiment", "results"),
    [
        ("reproduce-cpu-confirm", "confirm", "reproduce_cpu_confirm"),
        ("reproduce-cpu-context", "context", "reproduce_cpu_context"),
        ("reproduce-cpu-report", "reproduce_cpu", "reproduce_cpu"),
    ],
)
def test_a_part_exports_under_results_and_the_report_there_covers_every_exported_part(target, experiment, results):
    """The committed report is written from results/X/runs (the parts exported from every
    machine so far), never from this machine's runs alone, which would replace it with a
    report of one part."""
    lines = [line for line in _dry_run(target, "RUNS=/tmp/r") if "evaluate" in line]
    assert lines[0][-5:] == [
        f"/tmp/r/{experiment}",
        "--out",
        f"/tmp/r/{experiment}/report",
        "--export",
        f"results/{results}/runs",
    ]
    assert lines[1][-3:] == [f"results/{results}/runs", "--out", f"results/{results}/report"]


def test_the_confirmatory_part_prunes_after_its_report():
    lines = _dry_run("reproduce-cpu-confirm", "RUNS=/tmp/r", "CONFIRM_PRUNE=final")
    assert lines[-1][-3:] == ["/tmp/r/confirm", "--keep", "final"]
