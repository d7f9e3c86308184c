"""`elcl prune`: finished runs lose curvature and unkept checkpoints, reports do not change."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from console import run_main
from tiny_models import write_tiny_config
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.continual.prune import plan_prune
from elcl.schemas import PruneRecord, parse_json_file

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An EWC experiment (two steps, curvature of both tasks), to be copied per test."""
    root = tmp_path_factory.mktemp("prune")
    path = write_tiny_config(
        root,
        "exp",
        ["ncbi_disease", "bc5cdr_disease"],
        7,
        method={"name": "ewc", "ewc": {"lambda": 1.0}},
        curvature={"max_examples": 8, "batch_size": 4},
    )
    res = runner.invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    return root


def _copy(trained: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A private copy of the experiment (its config keeps pointing at the shared data)."""
    exp = tmp_path / "exp"
    shutil.copytree(trained / "runs" / "exp", exp)
    return exp, exp / "ewc-lam1-o0-s7"


def _files(path: Path) -> dict[str, int]:
    return {str(f.relative_to(path)): f.stat().st_size for f in sorted(path.rglob("*")) if f.is_file()}


def _json_lines(output: str) -> list[dict]:
    return [json.loads(x) for x in output.splitlines() if x.startswith("{")]


def test_prune_keeps_the_report_and_the_final_step(trained, tmp_path, monkeypatch):
    exp, run = _copy(trained, tmp_path)
    monkeypatch.setenv("ELCL_DATA_DIR", str(trained / "data"))
    report_before = runner.invoke(app, ["evaluate", str(exp)])
    assert report_before.exit_code == 0, report_before.output
    before = _files(run)
    assert any(k.startswith("curvature/ncbi_disease/") for k in before)
    linked_before = runner.invoke(app, ["link", str(run), "--input", "-"], input="breast cancer\n")
    assert linked_before.exit_code == 0, linked_before.output

    res = runner.invoke(app, ["prune", str(exp)])
    assert res.exit_code == 0, res.output
    after = _files(run)
    gone = set(before) - set(after)
    assert gone == {k for k in before if k.startswith(("curvature/", "steps/0_"))}
    assert not (run / "curvature").exists() or not any((run / "curvature").iterdir())
    assert (run / "steps" / "1_bc5cdr_disease" / "model.safetensors").is_file()
    record = parse_json_file(PruneRecord, run / "pruned.json")
    assert record.removed_steps == [0] and record.removed_curvature == ["bc5cdr_disease", "ncbi_disease"]
    assert record.bytes_freed == sum(before[k] for k in gone)
    assert "1 of 1 run(s) pruned" in res.output

    # what reports read is untouched; the kept step still links, identically
    assert runner.invoke(app, ["evaluate", str(exp)]).output == report_before.output
    linked_after = runner.invoke(app, ["link", str(run), "--input", "-"], input="breast cancer\n")
    assert _json_lines(linked_after.output) == _json_lines(linked_before.output) != []

    # pruning again removes nothing more and keeps the record
    again = runner.invoke(app, ["prune", str(run)])
    assert again.exit_code == 0 and "nothing to remove" in again.output
    assert parse_json_file(PruneRecord, run / "pruned.json") == record


def test_a_pruned_step_is_refused_in_one_line(trained, tmp_path, capsys, monkeypatch):
    exp, run = _copy(trained, tmp_path)
    monkeypatch.setenv("ELCL_DATA_DIR", str(trained / "data"))
    assert runner.invoke(app, ["prune", str(exp)]).exit_code == 0
    mentions = tmp_path / "mentions.txt"
    mentions.write_text("breast cancer\n")
    for args in (
        ["link", str(run), "--step", "0", "--input", str(mentions), "--format", "text"],
        ["export", str(run), "--step", "0", "--out", str(tmp_path / "exported")],
    ):
        code, err = run_main(args, capsys, monkeypatch)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "removed by `elcl prune`" in err and "0_ncbi_disease" in err
    assert not (tmp_path / "exported").exists()


def test_keep_none_all_and_dry_run(trained, tmp_path):
    exp, run = _copy(trained, tmp_path)
    before = _files(run)
    dry = runner.invoke(app, ["prune", str(exp), "--keep", "none", "--dry-run"])
    assert dry.exit_code == 0 and "would free" in dry.output
    assert _files(run) == before

    keep_all = plan_prune(run, "all")
    assert keep_all.steps == () and {t for t, _ in keep_all.curvature} == {"ncbi_disease", "bc5cdr_disease"}

    res = runner.invoke(app, ["prune", str(run), "--keep", "none"])
    assert res.exit_code == 0, res.output
    assert not any(k.startswith(("steps/", "curvature/")) for k in _files(run))
    assert parse_json_file(PruneRecord, run / "pruned.json").removed_steps == [0, 1]


def test_unfinished_and_locked_runs_are_left_whole(trained, tmp_path):
    exp, run = _copy(trained, tmp_path)
    state = json.loads((run / "run.json").read_text())
    other = exp / "ewc-lam1-o0-s8"
    shutil.copytree(run, other)
    (other / "run.json").write_text(json.dumps(state | {"seed": 8, "status": "interrupted", "steps_done": 1}))
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": "here", "started": "now"}))
    before = {p.name: _files(p) for p in (run, other)}

    res = runner.invoke(app, ["prune", str(exp)])
    assert res.exit_code == 0, res.output
    assert "status 'interrupted' (1 step(s) done)" in res.output
    assert "0 of 2 run(s) pruned" in res.output
    assert {p.name: _files(p) for p in (run, other)} == before


def test_bad_input_one_line_nothing_removed(trained, tmp_path, capsys, monkeypatch):
    exp, run = _copy(trained, tmp_path)
    before = _files(run)
    for args, needle in (
        (["prune", str(exp), "--keep", "last"], "--keep last: expected one of final, all, none"),
        (["prune", str(tmp_path / "missing")], "not a directory"),
        (["prune", str(tmp_path)], "no run directories"),
    ):
        code, err = run_main(args, capsys, monkeypatch)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert _files(run) == before


def test_a_pruned_first_step_is_trained_again_not_adopted(trained, tmp_path, monkeypatch):
    exp, run = _copy(trained, tmp_path)
    monkeypatch.setenv("ELCL_DATA_DIR", str(trained / "data"))
    cfg = yaml.safe_load((trained / "exp.yaml").read_text())
    cfg["output_dir"] = str(tmp_path)
    cfg["method"] = {"name": "naive"}
    path = tmp_path / "naive.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert runner.invoke(app, ["prune", str(exp)]).exit_code == 0
    res = runner.invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    log = (exp / "naive-o0-s7" / "log.txt").read_text()
    assert "adopted from" not in log
