"""The run-file schemas: writer → reader round trips and one-line errors through the CLI."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from elcl.cli.app import main
from elcl.continual.rundir import RunDir, RunSpec, write_jsonl
from elcl.curvature.collect import CurvatureStats
from elcl.curvature.storage import read_meta, save_curvature
from elcl.errors import CheckpointError, ElclError
from elcl.evaluation.runs import load_run, read_correctness
from elcl.schemas import MetricRow, PredictionRow, RunRecord, parse


def _row(step, trained, task, split="test", **kw):
    return MetricRow(
        step=step, trained_task=trained, eval_task=task, split=split, acc1=0.5, acc5=0.75, n=4, n_unlinkable=0, **kw
    )


def _write_run(path, order=("A", "B"), **state):
    rd = RunDir(path)
    rd.write_state(RunSpec("exp", "kfac", 10.0, 3, tuple(order), 1), "done", 2, extra=state)
    rows = [_row(i, t, e, tfidf_acc1=0.25) for i, t in enumerate(order) for e in order]
    write_jsonl(rd.metrics, [r.dump() for r in rows])
    return rd, rows


def test_run_dir_round_trip(tmp_path):
    rd, rows = _write_run(tmp_path / "r", wall_s=12.5)
    run = load_run(rd.path)
    assert (run.method, run.lam, run.seed, run.order, run.order_index) == ("kfac", 10.0, 3, ("A", "B"), 1)
    assert run.status == "done" and run.steps_done == 2
    assert run.rows == sorted(rows, key=lambda r: (r.step, r.split, r.eval_task))
    # keys a newer writer adds are kept, so this reader does not reject its files
    assert json.loads(rd.run_json.read_text())["wall_s"] == 12.5
    record = parse(RunRecord, json.loads(rd.run_json.read_text()), "run.json")
    assert record.dump()["lambda"] == 10.0 and record.model_extra == {"wall_s": 12.5}


def test_old_metric_rows_without_tfidf_load(tmp_path):
    rd, rows = _write_run(tmp_path / "r")
    old = [{k: v for k, v in r.dump().items() if k != "tfidf_acc1"} for r in rows]
    write_jsonl(rd.metrics, old)
    assert all(r.tfidf_acc1 is None for r in load_run(rd.path).rows)


def test_prediction_rows_round_trip(tmp_path):
    preds = [
        PredictionRow(
            doc_id="d",
            start=i,
            end=i + 2,
            mention="x",
            gold=["C1"],
            predicted=[("C1" if i % 2 else "C2", 0.5), ("C3", 0.1)],
            correct=bool(i % 2),
        )
        for i in range(5)
    ]
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [p.dump() for p in preds])
    keys, correct = read_correctness(path)
    assert keys == [("d", i, i + 2) for i in range(5)]
    assert correct.tolist() == [0, 1, 0, 1, 0]
    assert read_correctness(tmp_path / "missing.jsonl") is None


def test_curvature_meta_round_trip_and_bad_value(tmp_path):
    stats = CurvatureStats(
        meta={"approx": "diag", "kind": "empirical", "variant": "expand", "n_examples": 7, "n_samples": 1}
    )
    stats.diag["w"] = torch.ones(3)
    stats.anchors["w"] = torch.zeros(3)
    d = save_curvature(stats, tmp_path / "c", "hash")
    meta = read_meta(d)
    assert meta["n_examples"] == 7 and meta["format"] == "elcl-curvature/1"
    raw = json.loads((d / "meta.json").read_text())
    (d / "meta.json").write_text(json.dumps(raw | {"n_examples": "abc"}))
    with pytest.raises(CheckpointError) as exc:
        read_meta(d)
    assert str(exc.value) == (f"{d / 'meta.json'}: key 'n_examples' = 'abc', expected a non-negative integer")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: {k: v for k, v in s.items() if k != "seed"}, "run.json: missing key 'seed' (expected an integer)"),
        (lambda s: s | {"seed": "13"}, "run.json: key 'seed' = '13', expected an integer"),
        (lambda s: s | {"status": "finished"}, "run.json: key 'status' = 'finished', expected one of running|done"),
        (lambda s: s | {"lambda": -1}, "run.json: key 'lambda' = -1, expected a non-negative number"),
    ],
)
def test_bad_run_json_is_one_line_exit_2(tmp_path, monkeypatch, capsys, edit, message):
    rd, _ = _write_run(tmp_path / "r")
    rd.run_json.write_text(json.dumps(edit(json.loads(rd.run_json.read_text()))))
    monkeypatch.setattr(sys, "argv", ["elcl", "evaluate", str(rd.path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_bad_metric_value_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    rd, rows = _write_run(tmp_path / "r")
    lines = [r.dump() for r in rows]
    lines[2]["n"] = "abc"
    write_jsonl(rd.metrics, lines)
    monkeypatch.setattr(sys, "argv", ["elcl", "evaluate", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {rd.metrics}:3: key 'n' = 'abc', expected a non-negative integer\n"


def test_schema_rejects_what_the_old_checks_rejected():
    good = _row(0, "A", "A").dump()
    ctx = {"order": ("A", "B"), "method": "naive"}
    for bad, what in (
        ({"acc1": 1.5}, "key 'acc1' = 1.5, expected a number in [0, 1]"),
        ({"acc1": True}, "key 'acc1' = True"),
        ({"split": "train"}, "key 'split' = 'train', expected dev|test"),
        ({"eval_task": "Z"}, "eval_task 'Z' is not in the run's order"),
        ({"step": 2, "trained_task": "B"}, "step 2 but the order has only 2 task(s)"),
    ):
        with pytest.raises(ElclError, match=None) as exc:
            parse(MetricRow, good | bad, "m.jsonl:1", ctx)
        assert what in str(exc.value)
    assert parse(MetricRow, good | {"acc1": float("nan")}, "m", ctx).acc1 != 0.5
