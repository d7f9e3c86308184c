"""build_report / write_report on a synthetic experiment following the run-dir format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from elcl.errors import ElclError
from elcl.evaluation.report import build_report, write_report
from elcl.evaluation.runs import discover_runs, load_run

ORDER = ["A", "B", "C"]
SINGLE = {0: [0.80, 0.70, 0.90], 1: [0.82, 0.72, 0.88]}


def write_run(root, name, method, lam, seed, R, *, order=ORDER, dev_offset=0.0, status="done",
              experiment="exp"):
    """Write run.json + metrics.jsonl exactly as the trainer does (R[step][task])."""
    d = Path(root) / name
    d.mkdir(parents=True)
    (d / "run.json").write_text(json.dumps({
        "experiment": experiment, "method": method, "lambda": lam, "seed": seed,
        "order": list(order), "order_index": 0, "status": status, "steps_done": len(R),
    }))
    lines = []
    for i, row in enumerate(R):
        trained = "joint" if method == "joint" else order[i]
        for split, off in (("test", 0.0), ("dev", dev_offset)):
            for j, task in enumerate(order):
                acc = round(row[j] + off, 6)
                lines.append(json.dumps({
                    "step": i, "trained_task": trained, "eval_task": task, "split": split,
                    "acc1": acc, "acc5": min(1.0, round(acc + 0.05, 6)), "n": 100,
                    "n_unlinkable": 3,
                }))
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return d


def seq(seed, fA, fB, mid=0.5):
    """Sequential matrix: diagonal = single baseline of `seed`, last row = finals."""
    sA, sB, sC = SINGLE[seed]
    return [[sA, 0.1, 0.1], [mid, sB, 0.1], [fA, fB, sC]]


def make_experiment(root: Path) -> Path:
    exp = Path(root) / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s,
                  [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
        # naive: forgets A by 0.40 and B by 0.20
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20))
        # ewc λ=1: forgetting 0.30 / 0.15 -> reduction 25%; best on dev
        write_run(exp, f"ewc1_s{s}", "ewc", 1.0, s, seq(s, sA - 0.30, sB - 0.15),
                  dev_offset=0.08)
        # kfac λ=100: forgetting 0.08 / 0.08 -> reduction 80% / 60% = 70%
        write_run(exp, f"kfac_s{s}", "kfac", 100.0, s, seq(s, sA - 0.08, sB - 0.08))
    # ewc λ=10: seed 0 -> 50%, seed 1 -> (70% + 50%)/2 = 60%
    write_run(exp, "ewc10_s0", "ewc", 10.0, 0, seq(0, 0.80 - 0.20, 0.70 - 0.10))
    write_run(exp, "ewc10_s1", "ewc", 10.0, 1, seq(1, 0.82 - 0.12, 0.72 - 0.10))
    # joint, one seed: forgetting 0.02 / 0.01 -> 95%
    write_run(exp, "joint_s0", "joint", None, 0, [[0.78, 0.69, 0.89]])
    # an unfinished run: skipped with a warning
    write_run(exp, "kfac_s2", "kfac", 100.0, 2, [[0.1, 0.1, 0.1]], status="running")
    return exp


def _row(md: str, start: str) -> list[str]:
    for line in md.splitlines():
        if line.startswith(start):
            return [c.strip() for c in line.strip().strip("|").split("|")]
    raise AssertionError(f"no row starting with {start!r} in\n{md}")


def test_build_report_numbers(tmp_path):
    rep = build_report([make_experiment(tmp_path)])
    assert len(rep.runs) == 11
    assert any("kfac_s2" in w and "running" in w for w in rep.warnings)
    main = rep.main_table_markdown()
    header = _row(main, "| method")
    assert header[:4] == ["method", "λ", "avg acc@1 (%)", "avg acc@5 (%)"]
    col = {h: i for i, h in enumerate(header)}
    naive = _row(main, "| naive |")
    assert naive[col["forgetting A (pp)"]] == "40.0 ± 0.0"
    assert naive[col["forgetting B (pp)"]] == "20.0 ± 0.0"
    assert naive[col["avg acc@1 (%)"]] == "60.3 ± 0.5"
    assert naive[col["n runs"]] == "2"
    ewc = _row(main, "| ewc |")  # λ chosen on dev: λ=1 although λ=10 is better on test
    assert ewc[col["λ"]] == "1"
    assert ewc[col["forgetting reduction (%)"]] == "25.0 ± 0.0"
    kfac = _row(main, "| kfac |")
    assert kfac[col["forgetting reduction (%)"]] == "70.0 ± 0.0"
    assert kfac[col["n runs"]] == "2"
    joint = _row(main, "| joint |")
    assert joint[col["forgetting reduction (%)"]] == "95.0"  # one run: no std
    assert joint[col["BWT (pp)"]] == "n/a"
    assert joint[col["n runs"]] == "1"
    # BWT of naive: ((0.4 - 0.8) + (0.5 - 0.7)) / 2 = -0.3 for both seeds
    assert naive[col["BWT (pp)"]] == "-30.0 ± 0.0"
    alll = rep.all_lambda_markdown()
    assert _row(alll, "| ewc | 10 |")[col["forgetting reduction (%)"]] == "55.0 ± 7.1"
    g = {(g.method, g.lam): g for g in rep.groups}
    assert g[("ewc", 10.0)].scalars["forgetting_reduction"][0] == pytest.approx(0.55)
    assert g[("ewc", 1.0)].chosen and not g[("ewc", 10.0)].chosen
    choice = rep.selections[("ewc", tuple(ORDER))]
    assert choice.chosen == 1.0
    # dev: λ=1 (0.65 + 0.6567)/2 + 0.08 = 0.7333; λ=10 (0.70 + 0.7333)/2 = 0.7167
    assert choice.scores[1.0] == pytest.approx(0.73333, abs=1e-4)
    assert choice.scores[10.0] == pytest.approx(0.71667, abs=1e-4)
    assert (g[("ewc", 10.0)].scalars["avg_final_acc1"][0]
            > g[("ewc", 1.0)].scalars["avg_final_acc1"][0])
    # forgetting vs best earlier: naive A = max(0.8, 0.5) - 0.4
    assert g[("naive", None)].tasks["forgetting_best"]["A"][0] == pytest.approx(0.40)
    assert "λ selection" in rep.stdout_markdown()


def test_seed_matching_of_single_baseline(tmp_path):
    exp = make_experiment(tmp_path)
    # a seed without its own single run is compared to the mean single baseline
    write_run(exp, "naive_s5", "naive", None, 5, [[0.8, 0.1, 0.1], [0.5, 0.7, 0.1],
                                                   [0.41, 0.51, 0.89]])
    rep = build_report([exp])
    rs = next(r for r in rep.runs if r.run.seed == 5)
    assert rs.single_from.startswith("mean of 2")
    assert rs.single[0] == pytest.approx(0.81)
    assert rs.forgetting_single[0] == pytest.approx(0.40)
    rs0 = next(r for r in rep.runs if r.run.seed == 0 and r.run.method == "naive")
    assert rs0.single_from == "seed 0"


def test_skipped_tasks_noted(tmp_path):
    exp = tmp_path / "exp"
    write_run(exp, "single", "single", None, 0, [[0.8, 0.1, 0.1], [0.1, 0.7, 0.1],
                                                   [0.1, 0.1, 0.9]])
    # naive does not forget B (improves on it): B leaves the reduction
    write_run(exp, "naive", "naive", None, 0, seq(0, 0.4, 0.75))
    write_run(exp, "kfac", "kfac", 1.0, 0, seq(0, 0.7, 0.7))
    rep = build_report([exp])
    kfac = next(g for g in rep.groups if g.method == "kfac")
    assert kfac.scalars["forgetting_reduction"][0] == pytest.approx(0.75)
    assert any("kfac" in n and "B" in n and "left out" in n for n in rep.notes)


def test_write_report_files(tmp_path):
    exp = make_experiment(tmp_path)
    rep = build_report([exp])
    out = tmp_path / "out"
    written = write_report(rep, out)
    names = {p.name for p in written}
    for name in ("report.md", "summary.csv", "summary.json", "accuracy_matrices.json",
                 "heatmap_naive.png", "heatmap_ewc.png", "heatmap_kfac.png",
                 "heatmap_joint.png", "heatmap_single.png", "forgetting_reduction.png",
                 "acc_vs_lambda_ewc.png"):
        assert name in names
        assert (out / name).stat().st_size > 0
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    md = (out / "report.md").read_text()
    assert "70.0 ± 0.0" in md and "## Warnings" in md
    summary = json.loads((out / "summary.json").read_text())
    kfac = next(g for g in summary["groups"] if g["method"] == "kfac")
    assert kfac["metrics"]["forgetting_reduction"]["mean"] == pytest.approx(0.70)
    assert kfac["n_runs"] == 2 and kfac["seeds"] == [0, 1]
    joint = next(g for g in summary["groups"] if g["method"] == "joint")
    assert joint["metrics"]["forgetting_reduction"]["std"] is None
    sel = next(s for s in summary["lambda_selection"] if s["method"] == "ewc")
    assert sel["chosen_lambda"] == 1.0
    import pandas as pd

    df = pd.read_csv(out / "summary.csv")
    row = df[(df.method == "ewc") & (df["lambda"] == 10.0)].iloc[0]
    assert row["forgetting_reduction_mean"] == pytest.approx(0.55)
    assert row["forgetting_single[A]_mean"] == pytest.approx(0.16)
    assert not bool(row["chosen"])
    mats = json.loads((out / "accuracy_matrices.json").read_text())
    naive0 = next(r for r in mats["runs"] if r["method"] == "naive" and r["seed"] == 0)
    assert naive0["trained"] == ORDER
    assert naive0["acc1"][2] == pytest.approx([0.40, 0.50, 0.90])
    grp = next(g for g in mats["groups"] if g["method"] == "joint")
    assert grp["trained"] == ["joint"] and grp["acc1_std"] == [[None, None, None]]


def test_include_partial(tmp_path):
    exp = make_experiment(tmp_path)
    rep = build_report([exp], include_partial=True)
    assert len(rep.runs) == 12
    assert any("included" in w for w in rep.warnings)


def test_two_orders_get_separate_groups(tmp_path):
    exp = make_experiment(tmp_path)
    write_run(exp, "naive_rev", "naive", None, 0, [[0.9, 0.1, 0.1], [0.5, 0.7, 0.1],
                                                    [0.6, 0.4, 0.8]], order=["C", "B", "A"])
    rep = build_report([exp])
    assert len(rep.orders) == 2
    assert "order" in _row(rep.main_table_markdown(), "| method")
    names = {p.name for p in write_report(rep, tmp_path / "o2")}
    assert "heatmap_naive_C-B-A.png" in names and "heatmap_naive_A-B-C.png" in names


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "metrics.jsonl:2: not valid JSON"),
        ('{"step": 0}', "metrics.jsonl:2: missing key 'trained_task'"),
        ('{"step": 0, "trained_task": "A", "eval_task": "Z", "split": "test", "acc1": 0.5,'
         ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}', "metrics.jsonl:2: eval_task 'Z'"),
        ('{"step": 0, "trained_task": "A", "eval_task": "A", "split": "test", "acc1": 50,'
         ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}', "metrics.jsonl:2: key 'acc1'"),
        ('{"step": 1, "trained_task": "A", "eval_task": "A", "split": "test", "acc1": 0.5,'
         ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}', "metrics.jsonl:2: trained_task 'A' at step 1"),
    ],
)
def test_invalid_metrics_line(tmp_path, line, message):
    d = write_run(tmp_path, "r", "naive", None, 0, [[0.5, 0.5, 0.5]])
    first = (d / "metrics.jsonl").read_text().splitlines()[0]
    (d / "metrics.jsonl").write_text(first + "\n" + line + "\n")
    with pytest.raises(ElclError) as exc:
        load_run(d)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_invalid_run_json(tmp_path):
    d = write_run(tmp_path, "r", "naive", None, 0, [[0.5, 0.5, 0.5]])
    meta = json.loads((d / "run.json").read_text())
    meta["method"] = "sgd"
    (d / "run.json").write_text(json.dumps(meta))
    with pytest.raises(ElclError, match=r"run.json: key 'method' = 'sgd'"):
        load_run(d)
    (d / "run.json").write_text("{")
    with pytest.raises(ElclError, match=r"run.json:1: not valid JSON"):
        load_run(d)
    (d / "metrics.jsonl").unlink()
    (d / "run.json").write_text(json.dumps(meta | {"method": "naive"}))
    with pytest.raises(ElclError, match=r"metrics.jsonl: missing"):
        load_run(d)


def test_not_a_run_or_experiment(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ElclError, match="neither a run directory"):
        discover_runs([tmp_path / "empty"])
    with pytest.raises(ElclError, match="no such file"):
        discover_runs([tmp_path / "nope"])


def test_resumed_run_last_row_wins(tmp_path):
    d = write_run(tmp_path, "r", "naive", None, 0, [[0.5, 0.5, 0.5]])
    text = (d / "metrics.jsonl").read_text()
    row = json.loads(text.splitlines()[0]) | {"acc1": 0.9}
    (d / "metrics.jsonl").write_text(text + json.dumps(row) + "\n")
    run = load_run(d)
    assert [r.acc1 for r in run.rows if r.split == "test" and r.eval_task == "A"] == [0.9]
    assert not math.isnan(run.rows[0].acc1)
