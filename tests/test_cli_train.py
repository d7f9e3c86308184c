"""`elcl train`, `elcl fisher`, `elcl evaluate` through Typer's runner, and their errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import write_tiny_config
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.errors import CheckpointError, ConfigError, ElclError

runner = CliRunner()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    return write_tiny_config(
        root,
        "cli",
        ["ncbi_disease", "bc5cdr_disease"],
        5,
        method={"name": "kfac", "kfac": {"lambda": 1.0}},
        curvature={"max_examples": 8, "batch_size": 4},
    )


def test_train_fisher_evaluate_round_trip(config_file: Path) -> None:
    result = runner.invoke(app, ["train", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    run = config_file.parent / "runs" / "cli" / "kfac-lam1-o0-s5"
    assert json.loads((run / "run.json").read_text())["status"] == "done"

    # Existing statistics are never overwritten silently; --stats shows their sizes.
    refused = runner.invoke(app, ["fisher", "--run", str(run), "--task", "ncbi_disease"])
    assert isinstance(refused.exception, ElclError) and "already exist" in str(refused.exception)
    sizes = runner.invoke(app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--stats"])
    assert sizes.exit_code == 0 and "TOTAL" in sizes.output and "kfac" in sizes.output

    out = config_file.parent / "diag_stats"
    diag = runner.invoke(
        app,
        [
            "fisher",
            "--run",
            str(run),
            "--task",
            "ncbi_disease",
            "--approx",
            "diag",
            "--kind",
            "sampled",
            "--out",
            str(out),
            "--stats",
        ],
    )
    assert diag.exit_code == 0, diag.output
    meta = json.loads((out / "meta.json").read_text())
    assert meta["approximation"] == "diag" and meta["fisher_kind"] == "sampled"

    shown = runner.invoke(app, ["evaluate", str(run)])
    assert shown.exit_code == 0 and "acc@1" in shown.output and "bc5cdr_disease" in shown.output


def test_fisher_force_recomputes_what_the_method_needs(config_file: Path, tmp_path: Path) -> None:
    """--force on an EWC run writes the diagonal Fisher its penalty reads (not K-FAC)."""
    res = runner.invoke(
        app, ["train", "--config", str(config_file), "--set", "method.name=ewc", "--output-dir", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    run = tmp_path / "cli" / "ewc-lam1-o0-s5"
    res = runner.invoke(app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads((run / "curvature" / "ncbi_disease" / "meta.json").read_text())["approximation"] == "diag"


def test_fisher_refuses_unknown_task_and_corrupt_checkpoint(config_file: Path) -> None:
    run = config_file.parent / "runs" / "cli" / "kfac-lam1-o0-s5"
    if not run.exists():
        pytest.skip("depends on the round-trip test")
    bad = runner.invoke(app, ["fisher", "--run", str(run), "--task", "medmentions_full"])
    assert isinstance(bad.exception, ElclError) and "not a task of this run" in str(bad.exception)
    ckpt = run / "steps" / "0_ncbi_disease" / "model.safetensors"
    original = ckpt.read_bytes()
    try:
        ckpt.write_bytes(original[:100])
        res = runner.invoke(
            app,
            ["fisher", "--run", str(run), "--task", "ncbi_disease", "--out", str(config_file.parent / "x"), "--force"],
        )
        assert isinstance(res.exception, CheckpointError) and "model.safetensors" in str(res.exception)
    finally:
        ckpt.write_bytes(original)


def test_train_config_errors(config_file: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["train", "--config", str(config_file), "--set", "method.lamda=3"])
    assert isinstance(res.exception, ConfigError) and "method.lamda" in str(res.exception)
    res = runner.invoke(app, ["train"])
    assert isinstance(res.exception, ElclError) and "--config" in str(res.exception)
    res = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert isinstance(res.exception, ElclError) and "no run.json" in str(res.exception)


def test_console_script_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {type: rnn}\n")
    proc = subprocess.run([sys.executable, "-m", "elcl", "train", "--config", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: {bad}: config key 'model.type': invalid value 'rnn'; Input should be 'bert' or 'cnn'"]


def test_seeded_runs_repeat_exactly(config_file: Path, tmp_path: Path) -> None:
    outs = []
    for i in range(2):
        res = runner.invoke(
            app,
            [
                "train",
                "--config",
                str(config_file),
                "--set",
                "method.name=naive",
                "--output-dir",
                str(tmp_path / f"r{i}"),
            ],
        )
        assert res.exit_code == 0, res.output
        outs.append((tmp_path / f"r{i}" / "cli" / "naive-o0-s5" / "metrics.jsonl").read_text())
    assert outs[0] == outs[1]


def test_train_runs_one_order_as_a_part(config_file: Path, tmp_path: Path) -> None:
    """`--order 1` runs only the second order's runs, under the index the whole grid gives them."""
    two_orders = [
        "--set",
        "orders=[[ncbi_disease, bc5cdr_disease], [bc5cdr_disease, ncbi_disease]]",
        "--set",
        "method.name=naive",
        "--output-dir",
        str(tmp_path),
    ]
    result = runner.invoke(app, ["train", "--config", str(config_file), *two_orders, "--order", "1"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == ["naive-o1-s5"]
    state = json.loads((tmp_path / "cli" / "naive-o1-s5" / "run.json").read_text())
    assert state["order"] == ["bc5cdr_disease", "ncbi_disease"] and state["order_index"] == 1
    bad = runner.invoke(app, ["train", "--config", str(config_file), *two_orders, "--order", "2"])
    assert isinstance(bad.exception, ElclError) and "indices 0..1" in str(bad.exception)
