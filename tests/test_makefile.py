"""The benchmark part targets of the Makefile, as `make -n` prints them: each is one
`elcl sweep` of the named methods on the given seeds and order, resumable, in its own
experiment folder."""

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
def test_a_part_sweeps_each_method_on_its_seeds_and_order(target, methods_var, config, experiment):
    lines = _dry_run(target, f"{methods_var}=naive kfac", "CPU_SEEDS=[53]", "CPU_ORDER=1", "RUNS=/tmp/r")
    cmd = lines[0]
    assert cmd[:5] == ["python", "-m", "elcl", "sweep", config]
    assert (
        " ".join(cmd[5:])
        == "--set sweep.methods=[naive,kfac] --set seeds=[53] --set sweep.orders=[1] --output-dir /tmp/r"
    )
    # the experiment directory the sweep writes (output dir / config name) is the one the report reads
    assert load_config(ROOT / config).name == experiment
    assert any(f"/tmp/r/{experiment}" in line for line in lines[1:])


def test_without_seeds_or_order_a_part_runs_the_whole_config():
    cmd = " ".join(_dry_run("reproduce-cpu-confirm", "RUNS=/tmp/r")[0])
    assert "seeds=" not in cmd and "sweep.orders" not in cmd
    assert "--set sweep.methods=[single,naive,kfac,ewc]" in cmd


def test_quick_is_one_sweep_then_its_report():
    lines = _dry_run("quick", "RUNS=/tmp/r", "SWEEP_ARGS=-j 2")
    assert lines[0] == [
        "python", "-m", "elcl", "sweep", "configs/quick.yaml", "--set", "sweep.methods=[single,naive,ewc,kfac]",
        "--output-dir", "/tmp/r", "-j", "2",
    ]  # fmt: skip
    assert lines[1][-3:] == ["/tmp/r/quick", "--out", "/tmp/r/quick/report"]


@pytest.mark.parametrize(("target", "config", "experiment"), [
    ("reproduce-bert-part", "configs/reproduce_bert.yaml", "reproduce_bert"),
    ("reproduce-cnn-part", "configs/reproduce_cnn.yaml", "reproduce_cnn"),
])  # fmt: skip
def test_a_gpu_part_fits_a_lease_and_exports_within_its_call(target, config, experiment):
    """A leased machine keeps nothing after the call: the part stops at its deadline,
    exports what finished under results/ and reports there; runs exported there already
    are not run again (so the same line continues the part)."""
    sweep, report = _dry_run(target, "PART=4", "RUNS=/tmp/r")
    text = " ".join(sweep)
    assert sweep[:5] == ["python", "-m", "elcl", "sweep", config]
    assert "--part 4 --deadline 8m" in text
    assert f"--set sweep.reuse=[results/{experiment}/runs]" in text
    assert f"--export results/{experiment}/runs" in text
    assert report[-3:] == [f"results/{experiment}/runs", "--out", f"results/{experiment}/report"]
    assert load_config(ROOT / config).name == experiment


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
