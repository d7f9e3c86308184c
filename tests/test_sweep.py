"""`elcl sweep` on tiny models: the grid, first steps trained once, resume (after a
deadline, Ctrl-C and a killed worker), failures by name, λ by search, and Ray."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from synthetic import write_synthetic_corpora
from tiny_models import tiny_config, write_tiny_bert
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.config import load_config
from elcl.errors import ConfigError, ElclError
from elcl.sweep import cells as C
from elcl.sweep.backends import LocalBackend
from elcl.sweep.grid import expand_cells
from elcl.sweep.scheduler import initial_state, run_sweep
from elcl.sweep.spec import load_sweep

runner = CliRunner()
ONE_TASK = ["ncbi_disease"]
TWO_TASKS = ["ncbi_disease", "bc5cdr_disease"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sweep_inputs")
    return write_synthetic_corpora(root / "data"), write_tiny_bert(root / "tinybert")


def write(root: Path, name: str, tasks: list[str], inputs, sweep: dict, **sections) -> Path:
    sections.setdefault("curvature", {"max_examples": 8, "batch_size": 4})
    cfg = tiny_config(root, name, tasks, 13, inputs=inputs, **sections)
    cfg["train"] |= {"num_threads": 1}
    cfg["sweep"] = sweep
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def sweep_cli(*args: str):
    return runner.invoke(app, ["sweep", *args])


def test_the_grid_is_methods_by_lambda_by_seeds_by_orders_with_one_first_step_owner_per_block(tmp_path, inputs):
    path = write(
        tmp_path,
        "grid",
        TWO_TASKS,
        inputs,
        {"methods": ["joint", "naive", "ewc", "single"], "seeds": [1, 2]},
        orders=[TWO_TASKS, TWO_TASKS[::-1]],
        method={"name": "naive", "ewc": {"lambda_grid": [1, 10]}},
    )
    cfg, sweep = load_sweep(path)
    cells = expand_cells(cfg, sweep)
    names = sorted(c.name for c in cells)
    assert len(names) == 2 * 2 * (1 + 1 + 2 + 1)
    assert "ewc-lam10-o1-s2" in names and "joint-o0-s1" in names
    block = [c for c in cells if c.block == (1, 2)]
    # single trains the block's first step; naive and every λ of ewc adopt it; joint trains all at once
    assert {c.name: c.owner for c in block} == {
        "single-o1-s2": None,
        "naive-o1-s2": "single-o1-s2",
        "ewc-lam1-o1-s2": "single-o1-s2",
        "ewc-lam10-o1-s2": "single-o1-s2",
        "joint-o1-s2": None,
    }
    # each cell's config is the run `elcl train` would make (one seed, λ and order)
    ewc = next(c for c in cells if c.name == "ewc-lam10-o1-s2")
    assert ewc.config["tasks"] == TWO_TASKS[::-1] and ewc.config["seeds"] == [2]
    assert ewc.config["method"] == {"name": "ewc", "ewc": ewc.config["method"]["ewc"]}
    assert ewc.config["method"]["ewc"]["lambda"] == 10.0 and ewc.config["method"]["ewc"]["lambda_grid"] is None
    # --set narrows the grid; `elcl train` reads the same file, ignoring the sweep section
    cfg, sweep = load_sweep(path, ["sweep.orders=[1]", "sweep.methods=[naive]"])
    assert [c.name for c in expand_cells(cfg, sweep)] == ["naive-o1-s1", "naive-o1-s2"]
    assert load_config(path).name == "grid"


def test_an_unknown_grid_key_is_named_with_the_allowed_ones(tmp_path, inputs):
    path = write(tmp_path, "bad", ONE_TASK, inputs, {"method": ["naive"]})
    with pytest.raises(ConfigError, match=r"'sweep\.method': unknown grid key; allowed keys here: .*methods.*orders"):
        load_sweep(path)
    with pytest.raises(ConfigError, match=r"sweep\.orders': order 3 does not exist"):
        load_sweep(write(tmp_path, "bad_order", ONE_TASK, inputs, {"orders": [3]}))


def test_a_nan_metric_makes_a_done_run_a_failure(tmp_path, inputs):
    path = write(tmp_path, "nan", ONE_TASK, inputs, {"methods": ["naive"]})
    cfg, sweep = load_sweep(path)
    (cell,) = expand_cells(cfg, sweep)
    run = tmp_path / "exp" / cell.name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"status": "done", "steps_done": 1, "seed": 13}))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 0, "acc1": float("nan"), "acc5": 1.0}) + "\n")
    st = initial_state(tmp_path / "exp", cell, [], retry_failed=False)
    assert st.status == "failed" and "NaN run is a failure" in (st.error or "")


def test_a_sweep_trains_the_first_step_once_exports_and_a_second_call_skips_finished_runs(tmp_path, inputs):
    path = write(
        tmp_path, "share", ONE_TASK, inputs, {"methods": ["ewc", "naive"]}, method={"ewc": {"lambda_grid": [1, 10]}}
    )
    exp = tmp_path / "runs" / "share"
    res = sweep_cli(str(path), "-j", "2", "--export", str(tmp_path / "export"))
    assert res.exit_code == 0, res.output
    assert "3/3 done" in res.output
    for lam in (1, 10):  # from naive, or from a sibling that adopted it from naive
        log = (exp / f"ewc-lam{lam}-o0-s13" / "log.txt").read_text()
        assert "step 0 (ncbi_disease) adopted from" in log
    assert "adopted" not in (exp / "naive-o0-s13" / "log.txt").read_text()
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == [
        "ewc-lam1-o0-s13",
        "ewc-lam10-o0-s13",
        "naive-o0-s13",
    ]
    assert (tmp_path / "export" / "naive-o0-s13" / "correctness.json").is_file()

    again = sweep_cli(str(path), "-j", "2")
    assert again.exit_code == 0 and "3/3 done" in again.output
    assert "running" not in again.output
    assert all(C.read_record(exp, n).attempts == 1 for n in ("naive-o0-s13", "ewc-lam1-o0-s13"))

    status = sweep_cli("--status", str(exp))
    assert status.exit_code == 0 and "3/3 done" in status.output and "ewc-lam10-o0-s13" in status.output
    report = sweep_cli("--report", str(exp), "--out", str(tmp_path / "report"))
    assert report.exit_code == 0, report.output
    assert (tmp_path / "report" / "report.md").is_file()

    # the same directory under a config that changes the experiment is refused in one line
    other = sweep_cli(str(path), "--set", "train.lr=0.5")
    assert isinstance(other.exception, ElclError)
    assert "holds runs of another config" in str(other.exception) and "train.lr" in str(other.exception)


def test_a_failed_run_is_named_with_its_last_error_line_and_never_counted_done(tmp_path, inputs):
    path = write(tmp_path, "fail", ONE_TASK, inputs, {"methods": ["naive"]}, model={"name": str(tmp_path / "no_model")})
    res = sweep_cli(str(path))
    assert res.exit_code == 1
    assert "failed: naive-o0-s13:" in res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("failed: naive-o0-s13:"))
    assert "no_model" in line
    exp = tmp_path / "runs" / "fail"
    assert C.read_record(exp, "naive-o0-s13").status == "failed"
    # not retried unless asked; still a failure
    again = sweep_cli(str(path))
    assert again.exit_code == 1 and C.read_record(exp, "naive-o0-s13").attempts == 1


def test_ctrl_c_the_deadline_and_a_killed_worker_each_leave_a_run_that_the_next_sweep_finishes(tmp_path, inputs):
    # 60 epochs (about 2 s of training here; 3 took 0.1 s and could finish between run.json
    # appearing and the SIGTERM, leaving the run done instead of interrupted)
    path = write(tmp_path, "stop", TWO_TASKS, inputs, {"methods": ["naive"]}, train={"epochs": 60})
    cfg, sweep = load_sweep(path)
    exp = tmp_path / "runs" / "stop"
    cells = expand_cells(cfg, sweep)
    run = exp / "naive-o0-s13"

    # Ctrl-C once the run has started: the sweep stops its running cells, then propagates
    def interrupt(result):
        if result.states["naive-o0-s13"].status == "running":
            end = time.monotonic() + 60
            while not (run / "run.json").is_file() and time.monotonic() < end:
                time.sleep(0.1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(exp, cells, LocalBackend(), 1, on_change=interrupt)
    assert C.read_record(exp, "naive-o0-s13").status == "interrupted"
    assert json.loads((run / "run.json").read_text())["status"] == "interrupted"

    # the deadline: stopped the same way, reported as such
    result = run_sweep(exp, cells, LocalBackend(), 1, deadline=time.monotonic() + 1.0)
    assert result.deadline_hit and result.states["naive-o0-s13"].status == "interrupted"
    assert not (run / ".lock").exists()

    # a worker killed outright leaves its lock behind; the next sweep clears it (its pid is
    # gone on this host) and resumes the run
    be = LocalBackend()
    handle = be.start(C.write_cell_file(exp, cells[0]), C.log_file(exp, "naive-o0-s13"), 1, 0.0)
    end = time.monotonic() + 60
    while not (run / ".lock").is_file() and time.monotonic() < end:
        time.sleep(0.1)
    be.kill(handle)
    handle.join()
    assert (run / ".lock").is_file()
    done = run_sweep(exp, cells, LocalBackend(), 1)
    assert done.states["naive-o0-s13"].status == "done"
    assert json.loads((run / "run.json").read_text())["status"] == "done"


def test_the_search_picks_lambda_by_the_reports_dev_rule_and_resumes_its_study(tmp_path, inputs):
    pytest.importorskip("optuna")
    from elcl.evaluation.metrics import select_lambda
    from elcl.evaluation.report import dev_score

    sweep = {
        "methods": ["naive", "ewc"],
        "search": "optuna",
        "trials": 2,
        "log10_range": {"ewc": [0, 1]},
        "log10_step": 1,
    }
    path = write(tmp_path, "search", ONE_TASK, inputs, sweep, method={"ewc": {"lambda_grid": [1, 10]}})
    res = sweep_cli(str(path), "-j", "2")
    assert res.exit_code == 0, res.output
    exp = tmp_path / "runs" / "search"
    summary = json.loads((exp / ".sweep" / "search_summary.json").read_text())["ewc-o0"]
    # the space {1, 10} holds two λ: the budget tries both, each once
    assert sorted(t["lambda"] for t in summary["trials"]) == [1.0, 10.0]
    assert all(t["state"] == "complete" for t in summary["trials"])
    scores = {lam: [dev_score(exp / f"ewc-lam{lam:g}-o0-s13")] for lam in (1.0, 10.0)}
    assert summary["chosen_lambda"] == select_lambda(scores).chosen
    for lam in (1, 10):  # the trials did not train the first step again (naive did, once)
        assert "adopted from" in (exp / f"ewc-lam{lam}-o0-s13" / "log.txt").read_text()
    assert "adopted" not in (exp / "naive-o0-s13" / "log.txt").read_text()
    # a second call continues the study: the budget is spent, nothing runs
    again = sweep_cli(str(path), "-j", "2")
    assert again.exit_code == 0 and "running" not in again.output


def test_the_ray_backend_runs_the_same_cells(tmp_path, inputs):
    ray = pytest.importorskip("ray")
    path = write(tmp_path, "ray", ONE_TASK, inputs, {"methods": ["naive"]})
    try:
        res = sweep_cli(str(path), "--backend", "ray", "-j", "1")
    finally:
        ray.shutdown()
    assert res.exit_code == 0, res.output
    state = json.loads((tmp_path / "runs" / "ray" / "naive-o0-s13" / "run.json").read_text())
    assert state["status"] == "done"


def _fake_run(run: Path, cell, dev: list[float], done: bool) -> None:
    """A run directory as the runner leaves it: run.json and the dev rows of its steps."""
    s = cell.spec
    run.mkdir(parents=True, exist_ok=True)
    state = {
        "experiment": s.experiment, "method": s.method, "lambda": s.lam, "seed": s.seed, "order": list(s.order),
        "order_index": s.order_index, "status": "done" if done else "running", "steps_done": len(dev),
    }  # fmt: skip
    (run / "run.json").write_text(json.dumps(state))
    rows = [
        {
            "step": i,
            "trained_task": s.order[i],
            "eval_task": t,
            "split": "dev",
            "acc1": acc,
            "acc5": acc,
            "n": 10,
            "n_unlinkable": 0,
        }
        for i, acc in enumerate(dev)
        for t in s.order
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_trial_below_the_median_after_a_task_is_pruned_and_never_chosen(tmp_path, inputs):
    pytest.importorskip("optuna")
    from elcl.sweep.search import OptunaSearch

    tasks = ["ncbi_disease", "bc5cdr_disease", "bc5cdr_chemical"]
    sweep = {"methods": ["ewc"], "search": "optuna", "trials": 2, "log10_range": {"ewc": [0, 3]}, "log10_step": 1}
    cfg, section = load_sweep(
        write(tmp_path, "prune", tasks, inputs, sweep, method={"ewc": {"lambda_grid": [1, 1000]}})
    )
    exp = tmp_path / "exp"
    search = OptunaSearch(cfg, section, ["ewc"], exp, [])
    (first,) = search.propose(1)
    _fake_run(exp / first.name, first, [0.8, 0.9, 0.9], done=True)
    assert not search.progress(first, exp / first.name)
    search.finished(first, "done", exp / first.name)
    (second,) = search.propose(1)
    assert second.spec.lam != first.spec.lam
    _fake_run(exp / second.name, second, [0.8, 0.5], done=False)  # worse after the second task
    assert search.progress(second, exp / second.name)  # stop it now, before the third task
    search.finished(second, "pruned", exp / second.name)
    summary = search.summary()["ewc-o0"]
    assert {t["lambda"]: t["state"] for t in summary["trials"]} == {
        first.spec.lam: "complete",
        second.spec.lam: "pruned",
    }
    assert summary["chosen_lambda"] == first.spec.lam and summary["chosen_dev_score"] == pytest.approx(0.9)
    assert search.exhausted()
