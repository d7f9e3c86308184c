"""Trainer → report: files the trainer writes are read back through the same schemas,
and its prediction files line up for the mention-level bootstrap."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import tiny_config

from elcl.config import config_from_dict
from elcl.continual.runner import run_experiment
from elcl.evaluation.report import build_report
from elcl.runtime import Runtime


def test_report_over_trained_runs(tmp_path: Path) -> None:
    base = tiny_config(
        tmp_path, "t", ["ncbi_disease", "bc5cdr_chemical"], 3, curvature={"max_examples": 16, "batch_size": 8}
    )
    exp = tmp_path / "runs"
    for method, settings in (("single", {}), ("naive", {}), ("kfac", {"kfac": {"lambda_grid": [1.0, 100.0]}})):
        cfg = config_from_dict(base | {"method": {"name": method, **settings}})
        run_experiment(cfg, Runtime(torch.device("cpu")))
    rep = build_report([exp / "t"], n_boot=200)
    assert len(rep.runs) == 4 and not rep.left_out and not rep.unpaired
    c = rep.comparison
    assert c is not None and c.n_cells == 1
    assert "test mentions (one draw per task" in c.resampling
    (kfac,) = c.arms
    assert kfac.n_cells == 1 and kfac.lam in ("1", "100")
    assert {p.lam for p in rep.frontier if p.method == "kfac"} == {1.0, 100.0}
    # every group's accuracy interval resamples the test mentions (the synthetic tasks are
    # learned perfectly, so here the intervals have no width)
    assert not any("resample seeds only" in n for n in rep.notes)
    assert all(
        g.acc_interval is not None and g.acc_interval.lo <= g.acc_interval.point <= g.acc_interval.hi
        for g in rep.groups
    )

    # Exported (small files + compact correctness, no predictions or checkpoints), the
    # experiment gives the same report, mention bootstrap included.
    from typer.testing import CliRunner

    from elcl.cli.app import app

    out = tmp_path / "results" / "t"
    first = CliRunner().invoke(
        app, ["evaluate", str(exp / "t"), "--out", str(tmp_path / "r1"), "--bootstrap", "200", "--export", str(out)]
    )
    assert first.exit_code == 0, first.output
    assert not list(out.rglob("*.safetensors")) and not list(out.rglob("predictions"))
    # each run keeps its log: the record of what ran, and what scripts/metrics_from_logs.py reads
    assert all((d / "log.txt").is_file() for d in out.iterdir())
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for p in (exp / "t").iterdir() if (p / "run.json").is_file()
    )
    again = CliRunner().invoke(app, ["evaluate", str(out), "--out", str(tmp_path / "r2"), "--bootstrap", "200"])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "r1" / "report.md").read_text() == (tmp_path / "r2" / "report.md").read_text()
    assert "test mentions (one draw per task" in build_report([out], n_boot=200).comparison.resampling
