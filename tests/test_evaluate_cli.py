"""`elcl evaluate` through typer's CliRunner on synthetic run directories."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.errors import ElclError

ORDER = ["A", "B", "C"]
runner = CliRunner()


def write_run(root, name, method, lam, seed, R, status="done"):
    d = Path(root) / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(
        json.dumps(
            {
                "experiment": "cli",
                "method": method,
                "lambda": lam,
                "seed": seed,
                "order": ORDER,
                "order_index": 0,
                "status": status,
                "steps_done": len(R),
            }
        )
    )
    lines = []
    for i, row in enumerate(R):
        trained = "joint" if method == "joint" else ORDER[i]
        for split in ("test", "dev"):
            for j, task in enumerate(ORDER):
                lines.append(
                    json.dumps(
                        {
                            "step": i,
                            "trained_task": trained,
                            "eval_task": task,
                            "split": split,
                            "acc1": row[j],
                            "acc5": min(1.0, row[j] + 0.05),
                            "n": 50,
                            "n_unlinkable": 2,
                        }
                    )
                )
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def make_exp(tmp_path) -> Path:
    exp = tmp_path / "exp"
    write_run(exp, "single", "single", None, 0, [[0.8, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.1, 0.9]])
    write_run(exp, "naive", "naive", None, 0, [[0.8, 0.1, 0.1], [0.5, 0.7, 0.1], [0.4, 0.5, 0.9]])
    write_run(exp, "kfac", "kfac", 10.0, 0, [[0.8, 0.1, 0.1], [0.7, 0.7, 0.1], [0.7, 0.6, 0.9]])
    write_run(exp, "ewc_partial", "ewc", 1.0, 0, [[0.8, 0.1, 0.1]], status="running")
    return exp


def test_single_run_prints_accuracy_table(tmp_path):
    d = write_run(tmp_path, "one", "single", None, 3, [[0.8125, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.1, 0.9]])
    res = runner.invoke(app, ["evaluate", str(d)])
    assert res.exit_code == 0, res.output
    assert "0.8125" in res.stdout and "acc@1" in res.stdout and "acc@5" in res.stdout
    assert not (tmp_path / "report").exists()
    res = runner.invoke(app, ["evaluate", str(d), "--json"])
    data = json.loads(res.stdout)
    assert data[0]["seed"] == 3 and len(data[0]["rows"]) == 18


def test_experiment_report(tmp_path):
    exp = make_exp(tmp_path)
    res = runner.invoke(app, ["evaluate", str(exp)])
    assert res.exit_code == 0, res.output
    # kfac forgets A by 0.1 and B by 0.1, naive by 0.4 and 0.2: 1 - 0.1 / 0.3
    kfac = next(line for line in res.stdout.splitlines() if line.startswith("| kfac |"))
    assert "66.7" in kfac and "| 10 |" in kfac
    assert "λ selection" in res.stdout
    assert "ewc_partial" in res.stderr and "skipped" in res.stderr
    out = exp / "report"
    for name in (
        "report.md",
        "summary.csv",
        "summary.json",
        "accuracy_matrices.json",
        "heatmap_kfac.png",
        "forgetting_reduction.png",
    ):
        assert (out / name).stat().st_size > 0


def test_several_run_dirs_out_and_json(tmp_path):
    exp = make_exp(tmp_path)
    out = tmp_path / "rep"
    res = runner.invoke(
        app, ["evaluate", str(exp / "naive"), str(exp / "kfac"), str(exp / "single"), "--out", str(out), "--json"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["n_runs"] == 3
    assert (out / "summary.json").is_file()


def test_include_partial(tmp_path):
    exp = make_exp(tmp_path)
    res = runner.invoke(app, ["evaluate", str(exp), "--include-partial", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert "| ewc |" in res.stdout


def test_resample_mentions_only_from_the_command_line(tmp_path):
    exp = make_exp(tmp_path)
    res = runner.invoke(app, ["evaluate", str(exp), "--resample", "mentions-only", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["comparison"]["resampling"].startswith("test mentions only")
    assert any(n.startswith("--resample mentions-only") for n in summary["notes"])


def test_errors_are_elcl_errors(tmp_path):
    d = write_run(tmp_path / "exp", "bad", "naive", None, 0, [[0.5, 0.5, 0.5]])
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write("{oops\n")
    res = runner.invoke(app, ["evaluate", str(d)])
    assert res.exit_code != 0
    assert isinstance(res.exception, ElclError)
    assert str(res.exception).endswith("metrics.jsonl:7: not valid JSON")
    res = runner.invoke(app, ["evaluate", str(tmp_path / "missing")])
    assert isinstance(res.exception, ElclError)
    res = runner.invoke(app, ["evaluate", str(d), "--split", "train"])
    assert isinstance(res.exception, ElclError) and "--split" in str(res.exception)
    res = runner.invoke(app, ["evaluate", str(d), "--resample", "seeds", "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, ElclError) and "--resample: 'seeds'" in str(res.exception)
    assert not (tmp_path / "r").exists()


def test_several_paths_need_out_and_leave_existing_reports_alone(tmp_path):
    exp = make_exp(tmp_path)
    assert runner.invoke(app, ["evaluate", str(exp)]).exit_code == 0
    before = (exp / "report" / "report.md").read_text()
    other = tmp_path / "other"
    write_run(other, "naive2", "naive", None, 1, [[0.8, 0.1, 0.1], [0.6, 0.7, 0.1], [0.5, 0.5, 0.9]])
    res = runner.invoke(app, ["evaluate", str(exp), str(other)])
    assert isinstance(res.exception, ElclError)
    assert "pass --out DIR" in str(res.exception) and str(exp / "report") in str(res.exception)
    assert (exp / "report" / "report.md").read_text() == before
    # runs of several methods inside one experiment: their subset would replace its report too
    res = runner.invoke(app, ["evaluate", str(exp / "naive"), str(exp / "kfac")])
    assert isinstance(res.exception, ElclError) and (exp / "report" / "report.md").read_text() == before
