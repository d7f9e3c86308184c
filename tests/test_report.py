"""build_report / write_report on a synthetic experiment following the run-dir format."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from elcl.config import config_from_dict
from elcl.continual.rundir import RunDir, RunSpec, write_jsonl
from elcl.errors import ElclError
from elcl.evaluation import render
from elcl.evaluation.report import build_report, write_report
from elcl.evaluation.runs import discover_runs, load_run
from elcl.schemas import MetricRow, PredictionRow

ORDER = ["A", "B", "C"]
SINGLE = {0: [0.80, 0.70, 0.90], 1: [0.82, 0.72, 0.88]}


def write_run(
    root,
    name,
    method,
    lam,
    seed,
    R,
    *,
    order=ORDER,
    dev_offset=0.0,
    status="done",
    experiment="exp",
    n=100,
    predictions=False,
    config=None,
    splits=("test", "dev"),
):
    """Write a run directory through the trainer's own schemas (R[step][task]).

    With ``predictions`` every acc@1 is rounded to k/n and a prediction file with k
    correct mentions (a fixed per-task subset, so runs share mentions) is written for it;
    ``config`` (a dict of overrides) writes a config.yaml resolved like the trainer's;
    ``splits`` are the evaluated splits (``train.eval_splits``).
    """
    d = Path(root) / name
    d.mkdir(parents=True)
    rd = RunDir(d)
    spec = RunSpec(experiment, method, lam, seed, tuple(order), 0)
    rd.write_state(spec, status, len(R))
    if config is not None:
        # validated with a real task name (the config knows its tasks), then given the
        # fixture's made-up order
        cfg = config_from_dict(
            {"name": experiment, "tasks": ["ncbi_disease"], "seeds": [seed], "method": {"name": method}} | config
        )
        rd.write_config(cfg.to_dict() | {"tasks": list(order)})
    rows = []
    for i, row in enumerate(R):
        trained = "joint" if method == "joint" else order[i]
        for split, off in ((s, dev_offset if s == "dev" else 0.0) for s in splits):
            for j, task in enumerate(order):
                acc = round(row[j] + off, 6)
                if predictions and split == "test":
                    k = round(acc * n)
                    acc = k / n
                    write_predictions(rd.predictions(i, trained, task, split), task, k, n)
                rows.append(
                    MetricRow(
                        step=i,
                        trained_task=trained,
                        eval_task=task,
                        split=split,
                        acc1=acc,
                        acc5=min(1.0, round(acc + 0.05, 6)),
                        n=n,
                        n_unlinkable=3,
                    ).dump()
                )
    write_jsonl(rd.metrics, rows)
    return d


def write_predictions(path, task, k, n):
    """n mentions of ``task``, the first k of a fixed per-task permutation correct."""
    perm = np.random.default_rng(sum(map(ord, task))).permutation(n)
    correct = np.zeros(n, dtype=bool)
    correct[perm[:k]] = True
    write_jsonl(
        path,
        [
            PredictionRow(
                doc_id=f"{task}-{m // 10}",
                start=m,
                end=m + 3,
                mention=f"m{m}",
                gold=[f"C{m}"],
                predicted=[(f"C{m}" if correct[m] else "C-other", 1.0)],
                correct=bool(correct[m]),
            ).dump()
            for m in range(n)
        ],
    )


def seq(seed, fA, fB, mid=0.5):
    """Sequential matrix: diagonal = single baseline of `seed`, last row = finals."""
    sA, sB, sC = SINGLE[seed]
    return [[sA, 0.1, 0.1], [mid, sB, 0.1], [fA, fB, sC]]


def make_experiment(root: Path) -> Path:
    exp = Path(root) / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
        # naive: forgets A by 0.40 and B by 0.20
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20))
        # ewc λ=1: forgetting 0.30 / 0.15 -> reduction 25%; best on dev
        write_run(exp, f"ewc1_s{s}", "ewc", 1.0, s, seq(s, sA - 0.30, sB - 0.15), dev_offset=0.08)
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
    main = render.main_table_markdown(rep)
    header = _row(main, "| method")
    assert header[:5] == ["method", "λ", "avg acc@1 (%)", "avg acc@1 95% CI", "avg acc@5 (%)"]
    col = {h: i for i, h in enumerate(header)}
    naive = _row(main, "| naive |")
    assert naive[col["forgetting A (pp)"]] == "40.0 ± 0.0"
    assert naive[col["forgetting B (pp)"]] == "20.0 ± 0.0"
    assert naive[col["avg acc@1 (%)"]] == "60.3 ± 0.5"
    # no prediction files here: seeds alone are resampled, so with two seeds the interval
    # runs from one seed's average to the other's
    naive_avgs = sorted(rs.avg_final_acc1 for rs in rep.runs if rs.run.method == "naive")
    assert naive[col["avg acc@1 95% CI"]] == f"[{naive_avgs[0] * 100:.1f}, {naive_avgs[-1] * 100:.1f}]"
    assert any("avg acc@1 intervals resample seeds only" in n for n in rep.notes)
    assert naive[col["n runs"]] == "2"
    ewc = _row(main, "| ewc |")  # λ chosen on dev: λ=1 although λ=10 is better on test
    assert ewc[col["λ"]] == "1"
    # ratio of means: 1 - mean(0.30, 0.15) / mean(0.40, 0.20); both seeds equal -> no width
    assert ewc[col["forgetting reduction (%)"]] == "25.0"
    kfac = _row(main, "| kfac |")
    # 1 - mean(0.08, 0.08) / mean(0.40, 0.20) (the old mean of per-task ratios gave 70.0)
    assert kfac[col["forgetting reduction (%)"]] == "73.3"
    assert kfac[col["n runs"]] == "2"
    joint = _row(main, "| joint |")
    assert joint[col["forgetting reduction (%)"]] == "95.0"  # one run: no std
    assert joint[col["BWT (pp)"]] == "n/a"
    assert joint[col["n runs"]] == "1"
    # BWT of naive: ((0.4 - 0.8) + (0.5 - 0.7)) / 2 = -0.3 for both seeds
    assert naive[col["BWT (pp)"]] == "-30.0 ± 0.0"
    alll = render.all_lambda_markdown(rep)
    # seed 0 forgets 0.15 on average, seed 1 0.11: 1 - 0.13 / 0.30; resampling the two
    # seeds gives 1 - 0.15/0.30 and 1 - 0.11/0.30 at the ends of the interval
    assert _row(alll, "| ewc | 10 |")[col["forgetting reduction (%)"]] == "56.7 [50.0, 63.3]"
    g = {(g.method, g.lam): g for g in rep.groups}
    assert g[("ewc", 10.0)].reduction.point == pytest.approx(1 - 0.13 / 0.30)
    assert g[("ewc", 10.0)].n_paired == 2
    assert g[("ewc", 1.0)].chosen and not g[("ewc", 10.0)].chosen
    choice = rep.selections[("ewc", tuple(ORDER))]
    assert choice.chosen == 1.0
    # dev: λ=1 (0.65 + 0.6567)/2 + 0.08 = 0.7333; λ=10 (0.70 + 0.7333)/2 = 0.7167
    assert choice.scores[1.0] == pytest.approx(0.73333, abs=1e-4)
    assert choice.scores[10.0] == pytest.approx(0.71667, abs=1e-4)
    assert g[("ewc", 10.0)].scalars["avg_final_acc1"][0] > g[("ewc", 1.0)].scalars["avg_final_acc1"][0]
    # forgetting vs best earlier: naive A = max(0.8, 0.5) - 0.4
    assert g[("naive", None)].tasks["forgetting_best"]["A"][0] == pytest.approx(0.40)
    assert "λ selection" in render.stdout_markdown(rep)


def test_the_baseline_is_the_method_whose_class_says_so(tmp_path, monkeypatch):
    """Reductions are measured against the class with ``baseline = True``, not 'naive'."""
    from elcl.continual.methods import get

    exp = make_experiment(tmp_path)
    monkeypatch.setattr(get("naive"), "baseline", False)
    monkeypatch.setattr(get("kfac"), "baseline", True)
    monkeypatch.setattr(get("online_kfac"), "baseline", False)  # else inherited from kfac
    rep = build_report([exp])
    main = render.main_table_markdown(rep)
    col = {h: i for i, h in enumerate(_row(main, "| method"))}
    assert _row(main, "| kfac |")[col["forgetting reduction (%)"]] == "ref."
    # naive against kfac: 1 - mean(0.40, 0.20) / mean(0.08, 0.08)
    assert _row(main, "| naive |")[col["forgetting reduction (%)"]] == "-275.0"
    assert rep.comparison.baseline == "kfac"
    assert [a.method for a in rep.comparison.arms] == ["naive", "ewc", "joint"]
    assert "forgetting reduction vs kfac" in render.report_markdown(rep)
    assert "vs naive" not in render.report_markdown(rep)


def test_forgetting_is_measured_from_the_reference_class(tmp_path, monkeypatch):
    """The runs forgetting is measured from are those of ``forgetting_reference = True``."""
    from elcl.continual.methods import get

    exp = make_experiment(tmp_path)
    monkeypatch.setattr(get("single"), "forgetting_reference", False)
    monkeypatch.setattr(get("joint"), "forgetting_reference", True)
    rep = build_report([exp])
    assert rep.comparison.reference == "joint"
    g = {g.method: g for g in rep.groups}
    # joint (seed 0 only) is now the reference: single is paired and scored like any method
    assert g["joint"].reduction is None
    assert g["single"].reduction is not None and g["single"].n_paired == 1
    # seed 1 has a single run but no joint run: its baseline is the mean of the joint runs
    naive1 = next(rs for rs in rep.runs if rs.run.method == "naive" and rs.run.seed == 1)
    assert naive1.single_from.startswith("mean of 1")


def test_seed_matching_of_single_baseline(tmp_path):
    exp = make_experiment(tmp_path)
    # a seed without its own single run is compared to the mean single baseline
    write_run(exp, "naive_s5", "naive", None, 5, [[0.8, 0.1, 0.1], [0.5, 0.7, 0.1], [0.41, 0.51, 0.89]])
    rep = build_report([exp])
    rs = next(r for r in rep.runs if r.run.seed == 5)
    assert rs.single_from.startswith("mean of 2")
    assert rs.single[0] == pytest.approx(0.81)
    assert rs.forgetting_single[0] == pytest.approx(0.40)
    rs0 = next(r for r in rep.runs if r.run.seed == 0 and r.run.method == "naive")
    assert rs0.single_from == "seed 0"


def test_tasks_and_seeds_without_naive_forgetting_count(tmp_path):
    """Ratio of means: a task (or seed) where naive does not forget stays in the mean."""
    exp = tmp_path / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
    # seed 0: naive improves on B (forgetting -0.05); seed 1: naive forgets nothing at all
    write_run(exp, "naive0", "naive", None, 0, seq(0, 0.40, 0.75))
    write_run(exp, "naive1", "naive", None, 1, seq(1, 0.82, 0.72))
    write_run(exp, "kfac0", "kfac", 1.0, 0, seq(0, 0.70, 0.70))
    write_run(exp, "kfac1", "kfac", 1.0, 1, seq(1, 0.80, 0.72))
    rep = build_report([exp])
    kfac = next(g for g in rep.groups if g.method == "kfac")
    f_kfac = np.mean([0.10, 0.00, 0.02, 0.00])
    f_naive = np.mean([0.40, -0.05, 0.00, 0.00])
    assert kfac.reduction.point == pytest.approx(1 - f_kfac / f_naive)
    assert kfac.n_paired == 2
    assert not any("left out" in n for n in rep.notes)


def test_write_report_files(tmp_path):
    exp = make_experiment(tmp_path)
    rep = build_report([exp])
    out = tmp_path / "out"
    written = write_report(rep, out)
    names = {p.name for p in written}
    for name in (
        "report.md",
        "summary.csv",
        "summary.json",
        "accuracy_matrices.json",
        "heatmap_naive.png",
        "heatmap_ewc.png",
        "heatmap_kfac.png",
        "heatmap_joint.png",
        "heatmap_single.png",
        "forgetting_reduction.png",
        "acc_vs_lambda_ewc.png",
    ):
        assert name in names
        assert (out / name).stat().st_size > 0
    for p in written:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    md = (out / "report.md").read_text()
    assert "| kfac | 100 |" in md and "73.3" in md and "## Warnings" in md
    summary = json.loads((out / "summary.json").read_text())
    kfac = next(g for g in summary["groups"] if g["method"] == "kfac")
    assert kfac["forgetting_reduction"]["point"] == pytest.approx(1 - 0.08 / 0.30)
    assert kfac["n_runs"] == 2 and kfac["seeds"] == [0, 1]
    joint = next(g for g in summary["groups"] if g["method"] == "joint")
    red = joint["forgetting_reduction"]  # one seed, no prediction files: nothing to resample
    assert red["point"] == pytest.approx(0.95) and red["lo"] == red["hi"] == red["point"]
    sel = next(s for s in summary["lambda_selection"] if s["method"] == "ewc")
    assert sel["chosen_lambda"] == 1.0
    import pandas as pd

    df = pd.read_csv(out / "summary.csv")
    row = df[(df.method == "ewc") & (df["lambda"] == 10.0)].iloc[0]
    assert row["forgetting_reduction"] == pytest.approx(1 - 0.13 / 0.30)
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


def test_a_run_stopped_before_its_first_step_is_skipped_not_fatal(tmp_path):
    """SIGTERM before step 0 leaves run.json 'interrupted' and no metrics file: the report
    of the experiment still builds (it once stopped with 'metrics.jsonl: missing')."""
    exp = make_experiment(tmp_path)
    write_run(exp, "kfac_s3", "kfac", 100.0, 3, [], status="interrupted")
    (exp / "kfac_s3" / "metrics.jsonl").unlink(missing_ok=True)  # what such a run leaves
    for partial in (False, True):
        rep = build_report([exp], include_partial=partial)
        assert not any(r.run.path.name == "kfac_s3" for r in rep.runs)
        assert any("kfac_s3" in w and "skipped" in w for w in rep.warnings)


def test_two_orders_get_separate_groups(tmp_path):
    exp = make_experiment(tmp_path)
    write_run(
        exp, "naive_rev", "naive", None, 0, [[0.9, 0.1, 0.1], [0.5, 0.7, 0.1], [0.6, 0.4, 0.8]], order=["C", "B", "A"]
    )
    rep = build_report([exp])
    assert len(rep.orders) == 2
    assert "order" in _row(render.main_table_markdown(rep), "| method")
    names = {p.name for p in write_report(rep, tmp_path / "o2")}
    assert "heatmap_naive_C-B-A.png" in names and "heatmap_naive_A-B-C.png" in names


@pytest.mark.parametrize(
    "line, message",
    [
        ("{not json", "metrics.jsonl:2: not valid JSON"),
        ('{"step": 0}', "metrics.jsonl:2: missing key 'trained_task'"),
        (
            (
                '{"step": 0, "trained_task": "A", "eval_task": "Z", "split": "test", "acc1": 0.5,'
                ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}'
            ),
            "metrics.jsonl:2: eval_task 'Z'",
        ),
        (
            (
                '{"step": 0, "trained_task": "A", "eval_task": "A", "split": "test", "acc1": 50,'
                ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}'
            ),
            "metrics.jsonl:2: key 'acc1'",
        ),
        (
            (
                '{"step": 1, "trained_task": "A", "eval_task": "A", "split": "test", "acc1": 0.5,'
                ' "acc5": 0.6, "n": 1, "n_unlinkable": 0}'
            ),
            "metrics.jsonl:2: trained_task 'A' at step 1",
        ),
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


def test_unpaired_runs_are_reported_not_paired(tmp_path):
    exp = make_experiment(tmp_path)
    # seed 5 has no single run; seed 7 has neither naive nor single
    write_run(exp, "naive_s5", "naive", None, 5, seq(0, 0.41, 0.51))
    write_run(exp, "kfac_s7", "kfac", 100.0, 7, seq(0, 0.79, 0.69))
    rep = build_report([exp])
    assert any("naive_s5" in u and "no single run with seed 5" in u for u in rep.unpaired)
    assert any("kfac_s7" in u and "no single and no naive" in u for u in rep.unpaired)
    kfac = next(g for g in rep.groups if g.method == "kfac")
    assert kfac.n_runs == 3 and kfac.n_paired == 2
    assert kfac.reduction.point == pytest.approx(1 - 0.08 / 0.30)
    assert rep.comparison.n_cells == 2
    assert "## Unpaired runs" in render.report_markdown(rep)


def test_frontier_points_and_matched_plasticity(tmp_path):
    rep = build_report([make_experiment(tmp_path)])
    pts = {(p.method, p.lam): p for p in rep.frontier}
    assert ("single", None) not in pts
    assert pts[("ewc", 1.0)].forgetting == pytest.approx(0.225)
    assert pts[("ewc", 10.0)].forgetting == pytest.approx(0.13)
    assert pts[("ewc", 10.0)].newest_acc == pytest.approx(0.89)
    assert pts[("kfac", 100.0)].forgetting == pytest.approx(0.08)
    assert pts[("naive", None)].forgetting == pytest.approx(0.30)
    assert pts[("joint", None)].forgetting == pytest.approx(0.015)
    assert pts[("joint", None)].n_runs == 1
    (m,) = rep.matched
    # both penalty methods sit at newest-task acc 0.89; ewc's two λ average there
    assert (m.a, m.b) == ("kfac", "ewc") and m.at == pytest.approx([0.89])
    assert m.mean_diff == pytest.approx(0.08 - (0.225 + 0.13) / 2)
    assert "kfac forgets less than ewc" in render.report_markdown(rep)


def _one_seed_with_predictions(exp: Path, ewc: bool = True) -> None:
    """single, naive, (ewc,) kfac on seed 0 with prediction files over 200 mentions."""
    sA, sB, sC = SINGLE[0]
    kw = {"predictions": True, "n": 200}
    write_run(exp, "single", "single", None, 0, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]], **kw)
    write_run(exp, "naive", "naive", None, 0, seq(0, sA - 0.40, sB - 0.20), **kw)
    if ewc:
        write_run(exp, "ewc", "ewc", 1.0, 0, seq(0, sA - 0.30, sB - 0.15), **kw)
    write_run(exp, "kfac", "kfac", 1.0, 0, seq(0, sA - 0.05, sB - 0.05), **kw)


def test_mention_level_bootstrap_and_verdicts(tmp_path):
    exp = tmp_path / "exp"
    _one_seed_with_predictions(exp)
    rep = build_report([exp], n_boot=500)
    c = rep.comparison
    assert "test mentions" in c.resampling and c.n_boot == 500
    kfac = next(a for a in c.arms if a.method == "kfac")
    assert kfac.reduction.point == pytest.approx(1 - 0.05 / 0.30)
    assert kfac.reduction.lo < kfac.reduction.point < kfac.reduction.hi  # one seed, still wide
    (d,) = c.diffs
    assert (d.a, d.b) == ("kfac", "ewc")
    assert d.forgetting.point == pytest.approx(0.05 - 0.225)
    assert d.forgetting.hi < 0 and d.forgetting.excludes_zero
    md = render.report_markdown(rep)
    assert "kfac − ewc mean forgetting: -17.5 points" in md and "excludes 0" in md
    written = {p.name for p in write_report(rep, tmp_path / "out")}
    assert {"comparison.csv", "frontier.csv", "frontier.png"} <= written
    import pandas as pd

    comp = pd.read_csv(tmp_path / "out" / "comparison.csv")
    row = comp[comp["kind"] == "difference"].iloc[0]
    assert row["method"] == "kfac - ewc" and row["mean_forgetting_hi"] < 0
    # the same seed gives the same interval
    again = build_report([exp], n_boot=500).comparison.diffs[0].forgetting
    assert again == d.forgetting


def _kfac_reduction_by_mode(tmp_path: Path, mode: str):
    """One seed with prediction files, reported with the default resampling and with
    ``mode``: K-FAC's reduction under each, and the ``mode`` report."""
    exp = tmp_path / "exp"
    _one_seed_with_predictions(exp, ewc=False)
    default = build_report([exp], n_boot=300)
    other = build_report([exp], n_boot=300, resample=mode)
    pick = [next(a for a in r.comparison.arms if a.method == "kfac").reduction for r in (default, other)]
    return pick[0], pick[1], other


def test_resample_cells_drops_the_mention_part_of_the_width(tmp_path):
    wide, narrow, cells = _kfac_reduction_by_mode(tmp_path, "cells")
    # one cell: resampling it changes nothing, so without the mentions the interval collapses
    assert narrow.point == pytest.approx(wide.point)
    assert wide.hi - wide.lo > 0.05 and narrow.hi - narrow.lo == pytest.approx(0.0)
    assert "test mentions not resampled (--resample cells)" in cells.comparison.resampling
    assert any(n.startswith("--resample cells") for n in cells.notes)
    assert not any("resample seeds only" in n for n in cells.notes)
    with pytest.raises(ElclError, match="--resample: 'seeds' is not one of mentions, cells"):
        build_report([tmp_path / "exp"], resample="seeds")


def test_resample_mentions_only_holds_the_cells_fixed(tmp_path):
    """One cell: mentions-only and the default agree (resampling one cell changes nothing);
    without prediction files mentions-only has no interval and says so."""
    kb, ko, only = _kfac_reduction_by_mode(tmp_path, "mentions-only")
    assert (ko.point, ko.lo, ko.hi) == pytest.approx((kb.point, kb.lo, kb.hi))
    assert only.comparison.resampling.startswith("test mentions only")
    assert any(n.startswith("--resample mentions-only") for n in only.notes)
    # two seeds, no prediction files: the cells part alone would have width, mentions have none
    rep = build_report([make_experiment(tmp_path / "two")], resample="mentions-only")
    g = next(g for g in rep.groups if g.method == "ewc" and g.lam == 10.0)
    assert g.reduction.point == pytest.approx(1 - 0.13 / 0.30)
    assert math.isnan(g.reduction.lo) and math.isnan(g.reduction.hi)
    assert "no interval where prediction files are missing" in rep.comparison.resampling
    assert any("avg acc@1 intervals resample nothing (no interval)" in n for n in rep.notes)


def test_prediction_files_that_disagree_fall_back_to_seeds(tmp_path):
    exp = tmp_path / "exp"
    kw = {"predictions": True, "n": 100}
    write_run(exp, "single", "single", None, 0, [[0.8, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.1, 0.9]], **kw)
    write_run(exp, "naive", "naive", None, 0, seq(0, 0.4, 0.5), **kw)
    d = write_run(exp, "kfac", "kfac", 1.0, 0, seq(0, 0.7, 0.6), **kw)
    (d / "predictions" / "2_C" / "A.test.jsonl").unlink()
    rep = build_report([exp], n_boot=200)
    assert "test mentions not resampled" in rep.comparison.resampling
    assert "A.test.jsonl" in rep.comparison.resampling


def test_only_comparable_runs_are_grouped(tmp_path):
    exp = tmp_path / "exp"
    cfg = {"train": {"max_eval_mentions": 800}, "model": {"type": "cnn"}}
    write_run(exp, "single", "single", None, 0, [[0.8, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.1, 0.9]], config=cfg)
    write_run(exp, "naive", "naive", None, 0, seq(0, 0.4, 0.5), config=cfg)
    # the method's own settings may differ ...
    write_run(
        exp,
        "kfac",
        "kfac",
        1.0,
        0,
        seq(0, 0.7, 0.6),
        config=cfg | {"method": {"name": "kfac", "kfac": {"lambda": 1.0, "penalty_dtype": "float32"}}},
    )
    # ... the evaluation subset may not
    write_run(
        exp,
        "ewc400",
        "ewc",
        1.0,
        0,
        seq(0, 0.6, 0.6),
        config={"train": {"max_eval_mentions": 400}, "model": {"type": "cnn"}},
    )
    rep = build_report([exp])
    assert {rs.run.method for rs in rep.runs} == {"single", "naive", "kfac"}
    (msg,) = rep.left_out
    assert "ewc400: left out" in msg and "train.max_eval_mentions = 400" in msg
    assert "(compared runs: 800)" in msg
    assert "## Runs left out" in render.report_markdown(rep)


def test_lambda_rule_runs_are_their_own_points(tmp_path):
    exp = make_experiment(tmp_path)
    for s in (0, 1):
        sA, sB, _ = SINGLE[s]
        write_run(exp, f"kfac_auto_s{s}", "kfac", "auto", s, seq(s, sA - 0.20, sB - 0.10))
    rep = build_report([exp])
    auto = next(g for g in rep.groups if g.lam == "auto")
    assert auto.shown and not auto.chosen
    assert auto.reduction.point == pytest.approx(0.5)
    assert rep.selections[("kfac", tuple(ORDER))].chosen == 100.0
    assert "| kfac | auto |" in render.main_table_markdown(rep)
    assert any(p.lam == "auto" for p in rep.frontier)
    assert any(a.method == "kfac" and a.lam == "auto" for a in rep.comparison.arms)
    assert "heatmap_kfac_lamauto.png" in {p.name for p in write_report(rep, tmp_path / "o")}


def test_a_key_an_older_elcl_did_not_write_takes_its_default(tmp_path):
    """A run written before `candidates.dense` existed is comparable with one that has its default,
    and still not with one that sets it."""
    exp = tmp_path / "exp"
    old = {"train": {"max_eval_mentions": 800}, "model": {"type": "cnn"}}
    new = {**old, "candidates": {"dense": False, "dense_k": None}}
    write_run(exp, "single", "single", None, 0, [[0.8, 0.1, 0.1], [0.1, 0.7, 0.1], [0.1, 0.1, 0.9]], config=old)
    write_run(exp, "naive", "naive", None, 0, seq(0, 0.4, 0.5), config=old)
    write_run(exp, "kfac", "kfac", 1.0, 0, seq(0, 0.7, 0.6), config=new)
    write_run(exp, "ewc_dense", "ewc", 1.0, 0, seq(0, 0.6, 0.6), config={**old, "candidates": {"dense": True}})
    rep = build_report([exp])
    assert {rs.run.method for rs in rep.runs} == {"single", "naive", "kfac"}
    (msg,) = rep.left_out
    assert "ewc_dense: left out" in msg and "candidates.dense = True" in msg


def test_evaluate_shows_one_run_with_a_lambda_rule(tmp_path: Path) -> None:
    """A run of `lambda: auto` prints its table (λ=auto), not a format error."""
    from typer.testing import CliRunner

    from elcl.cli.app import app

    R = [[0.8, math.nan, math.nan], [0.7, 0.9, math.nan], [0.6, 0.8, 0.9]]
    run = write_run(tmp_path, "kfac-lamauto-o0-s1", "kfac", "auto", 1, R)
    res = CliRunner().invoke(app, ["evaluate", str(run)])
    assert res.exit_code == 0, res.output  # was: ValueError: Unknown format code 'g'
    assert "acc@1" in res.output


def test_lambda_chosen_on_the_first_task_pair(tmp_path):
    """The first-pair rule reads row 1 (after the second task) of the dev matrix only."""
    exp = tmp_path / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20))
        # λ=1: keeps A well after the second task, forgets by the end; λ=10 the reverse
        write_run(exp, f"ewc1_s{s}", "ewc", 1.0, s, seq(s, sA - 0.30, sB - 0.20, mid=0.7))
        write_run(exp, f"ewc10_s{s}", "ewc", 10.0, s, seq(s, sA - 0.10, sB - 0.10, mid=0.4))
    rep = build_report([exp])
    order = tuple(ORDER)
    assert rep.selections[("ewc", order)].chosen == 10.0
    fp = rep.first_pair[("ewc", order)]
    assert fp.chosen == 1.0
    assert fp.scores[1.0] == pytest.approx(np.mean([(0.7 + SINGLE[s][1]) / 2 for s in (0, 1)]))
    assert ("naive", order) not in rep.first_pair  # no penalty, no rule
    row = _row(render.report_markdown(rep).split("## λ chosen on the first task pair")[1], "| ewc |")
    # 1 - mean(0.30, 0.20) / mean(0.40, 0.20) and 1 - mean(0.10, 0.10) / mean(0.40, 0.20)
    assert row[:4] == ["ewc", "1", "10", "16.7"] and row[4] == "66.7"
    assert render.summary_dict(rep)["lambda_first_pair"][0]["chosen_lambda"] == 1.0


def test_the_papers_values_are_placed_against_the_intervals(tmp_path):
    """K-FAC 73.3% and EWC 25% (both seeds alike: zero-width intervals) against the paper's
    51% / 27%; the difference 48.3 points against the paper's 24; a λ rule arm and
    online K-FAC (no published value) are not tested."""
    exp = make_experiment(tmp_path)
    for s in (0, 1):
        sA, sB, _ = SINGLE[s]
        write_run(exp, f"kfac_auto_s{s}", "kfac", "auto", s, seq(s, sA - 0.20, sB - 0.10))
        write_run(exp, f"okfac_s{s}", "online_kfac", 1.0, s, seq(s, sA - 0.10, sB - 0.10))
    rep = build_report([exp])
    checks = render.summary_dict(rep)["comparison"]["against_paper"]
    got = {c["what"]: (c["paper"], c["ours"]["point"], c["position"]) for c in checks}
    kfac, ewc = 1 - 0.08 / 0.30, 0.25
    assert got == {
        "ewc (λ 1) forgetting reduction": (0.27, pytest.approx(ewc), "above"),
        "kfac (λ 100) forgetting reduction": (0.51, pytest.approx(kfac), "below"),
        "kfac − ewc forgetting reduction": (pytest.approx(0.24), pytest.approx(kfac - ewc), "below"),
    }
    md = render.report_markdown(rep)
    assert "### Against the paper (McInerney et al. 2021" in md
    assert "the paper's 51% lies below the interval: not consistent with the paper" in md
    assert "the paper's +24 points lies below the interval" in md
    assert "no difference separated" not in md  # 48.3 [48.3, 48.3] excludes 0
    assert "Against the paper" in render.stdout_markdown(rep)


def test_a_paper_value_inside_or_untested():
    from elcl.evaluation.paper import PaperCheck
    from elcl.evaluation.stats import Interval

    inside = PaperCheck("kfac − ewc forgetting reduction", 0.24, Interval(0.10, -0.05, 0.30), True)
    assert inside.position == "inside"
    assert inside.words() == (
        "kfac − ewc forgetting reduction: +10.0 points, 95% CI [-5.0, 30.0]; the paper's +24 points lies "
        "inside the interval: consistent with the paper; the interval includes 0: no difference separated"
    )
    none = PaperCheck("ewc forgetting reduction", 0.27, Interval(0.5, math.nan, math.nan), False)
    assert none.position == "untested" and "not tested" in none.words()


def test_no_paper_section_without_a_method_the_paper_measured(tmp_path):
    exp = tmp_path / "exp"
    sA, sB, sC = SINGLE[0]
    write_run(exp, "single", "single", None, 0, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
    write_run(exp, "naive", "naive", None, 0, seq(0, sA - 0.40, sB - 0.20))
    write_run(exp, "replay", "replay", None, 0, seq(0, sA - 0.20, sB - 0.10))
    rep = build_report([exp])
    assert render.summary_dict(rep)["comparison"]["against_paper"] == []
    assert "Against the paper" not in render.report_markdown(rep)


def test_an_experiment_scored_on_test_only_reports_its_fixed_lambda(tmp_path):
    """A confirmatory experiment (one λ per penalty, ``train.eval_splits: [test]``, as
    configs/reproduce_cpu_confirm.yaml) has no dev scores: the single λ is the chosen one and
    the reductions, their intervals and the paper's check are computed from test as usual."""
    exp = tmp_path / "confirm"
    only_test = {"splits": ("test",), "predictions": True}
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]], **only_test)
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20), **only_test)
        write_run(exp, f"ewc_s{s}", "ewc", 1e5, s, seq(s, sA - 0.30, sB - 0.15), **only_test)
        write_run(exp, f"kfac_s{s}", "kfac", 1e4, s, seq(s, sA - 0.10, sB - 0.05), **only_test)
    rep = build_report([exp])
    g = {(g.method, g.lam): g for g in rep.groups}
    assert g[("ewc", 1e5)].chosen and g[("kfac", 1e4)].chosen
    assert g[("kfac", 1e4)].reduction.point == pytest.approx(1 - 0.075 / 0.30)
    assert g[("ewc", 1e5)].reduction.point == pytest.approx(1 - 0.225 / 0.30)
    # test mentions are resampled (prediction files kept), so the intervals have width
    assert g[("kfac", 1e4)].reduction.lo < g[("kfac", 1e4)].reduction.point < g[("kfac", 1e4)].reduction.hi
    assert math.isnan(g[("naive", None)].scalars["avg_final_dev_acc1"][0])
    out = tmp_path / "out"
    write_report(rep, out)
    summary = json.loads((out / "summary.json").read_text())
    checked = [c["what"] for c in summary["comparison"]["against_paper"]]
    assert checked == [
        "ewc (λ 100000) forgetting reduction",
        "kfac (λ 10000) forgetting reduction",
        "kfac − ewc forgetting reduction",
    ]
    assert "| kfac | 10000 | 2 |" in (out / "report.md").read_text()


def test_lambda_is_chosen_on_the_seeds_every_lambda_has(tmp_path):
    """A λ with an extra seed must not win (or lose) on that seed's luck: the choice is made on the shared seeds, and
    the report says which run it set aside; the extra run still counts in its group."""
    exp = tmp_path / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20))
    # seed 0: λ=1 beats λ=10 on dev by 0.02; seed 1 has λ=10 only, with a dev score that would carry its mean above
    write_run(exp, "ewc1_s0", "ewc", 1.0, 0, seq(0, 0.5, 0.5), dev_offset=0.02)
    write_run(exp, "ewc10_s0", "ewc", 10.0, 0, seq(0, 0.5, 0.5))
    write_run(exp, "ewc10_s1", "ewc", 10.0, 1, seq(1, 0.5, 0.5), dev_offset=0.10)
    rep = build_report([exp])
    choice = rep.selections[("ewc", tuple(ORDER))]
    assert choice.chosen == 1.0
    assert choice.counts == {1.0: 1, 10.0: 1}
    assert any("chosen on seed(s) 0" in w and "λ=10 also has seed(s) 1" in w for w in rep.warnings)
    assert {(g.method, g.lam): g.n_runs for g in rep.groups}[("ewc", 10.0)] == 2
    # a balanced grid says nothing
    write_run(exp, "ewc1_s1", "ewc", 1.0, 1, seq(1, 0.5, 0.5))
    rep = build_report([exp])
    assert not any("λ selection" in w for w in rep.warnings)
    assert rep.selections[("ewc", tuple(ORDER))].chosen == 10.0


def test_a_grid_with_no_shared_seed_says_its_means_are_over_different_seeds(tmp_path):
    exp = tmp_path / "exp"
    write_run(exp, "ewc1_s0", "ewc", 1.0, 0, seq(0, 0.5, 0.5))
    write_run(exp, "ewc10_s1", "ewc", 10.0, 1, seq(1, 0.5, 0.5))
    rep = build_report([exp])
    assert any("no seed is shared by every λ" in w and "different seeds" in w for w in rep.warnings)
    assert rep.selections[("ewc", tuple(ORDER))].counts == {1.0: 1, 10.0: 1}
