"""The benchmark scripts run end to end on a tiny model (timings are not checked here,
only that each script measures every case it promises and writes its JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from script_loader import load_script
from synthetic import write_synthetic_corpora

_load = load_script


def _check_penalty_result(out: dict, path: Path) -> None:
    assert json.loads(path.read_text())["results"].keys() == out["results"].keys()
    res = out["results"]
    assert res["step_plain"]["seconds"] > 0
    for case in ("kfac", "kfac bf16 products", "kfac low-rank r=4", "ewc"):
        assert res[case]["step_seconds"] > 0 and res[case]["add_grad_seconds"] > 0, case
        assert 0 < res[case]["add_grad_ops"] < 200, case  # grouped/foreach: not a dozen per parameter


def test_bench_penalty_synthetic_batch(tiny_bert: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("ELCL_CPU_CAPABILITY", "AVX2")
    monkeypatch.setenv("ELCL_CPU_FLAGS", "avx2 fma")
    out_path = tmp_path / "pen.json"
    out = _load("bench_penalty").main(
        [
            "--model",
            str(tiny_bert),
            "--rank",
            "4",
            "--repeat",
            "1",
            "--batch-size",
            "2",
            "--cands",
            "3",
            "--tokens",
            "6",
            "--out",
            str(out_path),
        ]
    )
    _check_penalty_result(out, out_path)
    assert out["results"]["batch_shape"] == {"batch_size": 2, "sequences": 8, "width": 6}
    printed = capsys.readouterr().out.splitlines()
    # The CPU it ran on comes first: bfloat16 timings mean nothing without it.
    assert printed[0].startswith("running on: CPU capability AVX2, no native bfloat16")
    assert out["machine"]["cpu_capability"] == "AVX2" and out["machine"]["cpu_native_bf16"] is False


def test_bench_penalty_real_batches_of_a_config(tiny_bert: Path, tmp_path: Path, monkeypatch) -> None:
    """--config/--task: the config's model, batch size and max_length on real training batches."""
    data = write_synthetic_corpora(tmp_path / "data")
    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    cfg = {
        "name": "bench",
        "tasks": ["ncbi_disease"],
        "data": {"data_dir": str(data), "ontology": "mentions"},
        "candidates": {"k": 4},
        "model": {"name": str(tiny_bert), "max_length": 10},
        "train": {"batch_size": 3, "amp": "bf16", "grad_clip": 1.0},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out_path = tmp_path / "pen.json"
    out = _load("bench_penalty").main(
        [
            "--config",
            str(tmp_path / "c.yaml"),
            "--task",
            "ncbi_disease",
            "--batches",
            "2",
            "--rank",
            "4",
            "--repeat",
            "1",
            "--out",
            str(out_path),
        ]
    )
    _check_penalty_result(out, out_path)
    shape = out["results"]["batch_shape"]
    assert shape["batch_size"] == 3 and shape["batches"] == 2
    assert 3 < shape["sequences"] <= 3 * 5 and 1 < shape["width"] <= 10  # 3 mentions + shared candidates, ≤ max_length


def test_bench_memory_tasks_table(tiny_bert: Path, tmp_path: Path) -> None:
    """K-FAC's per-task curvature grows with the number of tasks; online K-FAC's stays one task's."""
    out = _load("bench_memory").main(
        ["--model", str(tiny_bert), "--no-bert-base", "--tasks", "1,2,5", "--out", str(tmp_path / "m.json")]
    )
    rows = next(iter(out["tasks"].values()))
    assert [r["tasks"] for r in rows] == [1, 2, 5]
    one = rows[0]["kfac_bytes"]
    assert one > 0 and [r["kfac_bytes"] for r in rows] == [one, 2 * one, 5 * one]
    assert [r["online_kfac_bytes"] for r in rows] == [one] * 3
    assert [r["online_kfac_disk_bytes"] for r in rows] == [one, 2 * one, 2 * one]


def test_bench_penalty_fake_stats_sit_beside_the_weights() -> None:
    """The synthetic statistics are drawn with a CPU generator and must land on the model's
    device (a CUDA run once failed here); the meta device stands in for a GPU."""
    from torch import nn

    mod = _load("bench_penalty")
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)).to("meta")
    for approx in ("kfac", "ewc"):
        stats = mod.fake_stats(model, 0, approx)
        tensors = [*stats.anchors.values(), *stats.diag.values(), *(t for pair in stats.kfac.values() for t in pair)]
        assert tensors and all(t.device.type == "meta" for t in tensors), approx
        assert set(stats.anchors) == {n for n, _ in model.named_parameters()}
        assert bool(stats.kfac) == (approx == "kfac")


def _write_logged_run(root: Path, name: str, log: str, method: str = "kfac") -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "log.txt").write_text(log)
    (d / "config.yaml").write_text("name: exp\n")
    state = {"experiment": "exp", "method": method, "order": ["A", "B"], "seed": 1, "status": "done", "steps_done": 2}
    (d / "run.json").write_text(json.dumps(state))
    return d


def test_metrics_from_logs_rebuilds_exact_counts_and_adopted_steps(tmp_path: Path) -> None:
    mod = _load("metrics_from_logs")
    ref = tmp_path / "ref"
    rows = [
        {"acc1": 0.5, "acc5": 0.75, "eval_task": t, "n": 400, "n_unlinkable": u, "split": s, "step": 0}
        | {"tfidf_acc1": 0.25, "trained_task": "A"}
        for t, u in (("A", 0), ("B", 3))
        for s in ("dev", "test")
    ]
    (ref / "r").mkdir(parents=True)
    (ref / "r" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    constants = mod.data_constants([ref / "r"])
    logs = tmp_path / "logs"
    step0 = "".join(
        f"step 0 (A) -> {t} {s}: acc@1 0.8175 acc@5 0.9000 (n=400)\n" for t in ("A", "B") for s in ("dev", "test")
    )
    _write_logged_run(logs, "naive", step0, "naive")
    later = "".join(
        f"step 1 (B) -> {t} {s}: acc@1 0.7719 acc@5 0.8672 (n=399)\n" for t in ("A", "B") for s in ("dev", "test")
    )
    run = _write_logged_run(logs, "kfac", "step 0 (A) adopted from naive: same data\n" + later)
    got = mod.rows_from_log(run, constants)
    assert len(got) == 8
    first = next(r for r in got if r["step"] == 0 and r["eval_task"] == "A" and r["split"] == "test")
    assert first["acc1"] == 327 / 400 and first["tfidf_acc1"] == 0.25  # the sibling's step, the data's constant
    last = next(r for r in got if r["step"] == 1 and r["eval_task"] == "B")
    assert last["acc1"] == 308 / 399 and last["n_unlinkable"] == 3 and last["trained_task"] == "B"
    # a printed value that is no k/n is refused rather than rounded into a wrong count
    with pytest.raises(ValueError, match="no k/400"):
        mod._count("0.8176", 400)
    # reference runs that disagree on a data constant stop the recovery
    (ref / "r2").mkdir()
    (ref / "r2" / "metrics.jsonl").write_text(json.dumps(rows[0] | {"tfidf_acc1": 0.3}) + "\n")
    with pytest.raises(SystemExit, match="not a property of the data"):
        mod.data_constants([ref / "r", ref / "r2"])


@pytest.mark.parametrize("mode", ["bi", "cross"])
def test_bench_eval_compares_both_paths_on_a_tiny_model(tmp_path: Path, capsys, mode: str) -> None:
    from tiny_models import write_tiny_config

    cfg = write_tiny_config(
        tmp_path, "bench", ["ncbi_disease", "bc5cdr_disease"], 13, model={"mode": mode, "sparse_weight": 1.0}
    )
    out_path = tmp_path / "eval.json"
    _load("bench_eval").main(["--config", str(cfg), "--max-mentions", "12", "--out", str(out_path)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("running on: CPU capability")
    out = json.loads(out_path.read_text())
    assert out["splits"] == 4 and out["mentions"] > 0
    assert out["old_s"] > 0 and out["new_s"] > 0 and out["encoder_floor_s"] > 0
    assert out["acc_identical"] is True
    assert all(a["same_ranked_ids"] == a["mentions"] for a in out["agreement"].values())
    assert out["texts_new"] <= out["texts_old"]
    assert out["encoder_gflop"] == pytest.approx(2 * out["linear_weights"] * out["padded_tokens_new"] / 1e9)
    assert out["linear_weights"] > 0
    assert lines[-1] == f"speed-up: {out['speedup']:.1f}×"


def test_bench_factors_prints_marginal_and_extrapolated_ratios(tiny_bert: Path, tmp_path: Path, capsys) -> None:
    """With 4+ batches each case is also timed on half of them: the per-batch ratio and the
    ratio extrapolated to a task's 5,000 examples are the figures issue 29's target is about."""
    out_path = tmp_path / "bf.json"
    argv = ["--model", str(tiny_bert), "--batches", "4", "--batch-size", "2", "--cands", "3", "--tokens", "6"]
    out = _load("bench_factors").main(argv + ["--no-curvlinops", "--target-examples", "100", "--out", str(out_path)])
    res = out["results"]
    assert set(res) == {"forward+backward", "kfac expand", "diag", "kfac+diag (both)"}
    for case, r in res.items():
        assert r["seconds"] > 0 and r["seconds_half"] > 0, case
        n_batches = 50  # 100 examples / batch size 2
        per_plain = res["forward+backward"]["seconds_per_batch"]
        want = (r["fixed_seconds"] + n_batches * r["seconds_per_batch"]) / (n_batches * per_plain)
        assert r["ratio_at_target_examples"] == pytest.approx(want), case
    assert res["forward+backward"]["marginal_ratio_vs_fwd_bwd"] == pytest.approx(1.0)
    assert json.loads(out_path.read_text())["results"].keys() == res.keys()
    assert "x at 100 ex" in capsys.readouterr().out


def test_bench_factors_times_a_whole_collection_bracketed_by_plain_passes(tiny_bert: Path, tmp_path: Path) -> None:
    """``--examples N --bracket`` times one collection of N examples between two plain passes
    and takes every ratio against their mean, so a drifting machine cannot flatter the result."""
    argv = ["--model", str(tiny_bert), "--examples", "7", "--batch-size", "2", "--cands", "3", "--tokens", "6"]
    argv += ["--cases", "kfac", "--no-marginal", "--bracket", "--no-curvlinops", "--out", str(tmp_path / "bf.json")]
    out = _load("bench_factors").main(argv)
    assert out["args"]["batches"] == 4  # ceil(7 / 2)
    res = out["results"]
    assert set(res) == {"forward+backward", "kfac expand"}
    plain = res["forward+backward"]
    assert plain["seconds_mean"] == pytest.approx((plain["seconds"] + plain["seconds_after"]) / 2)
    assert res["kfac expand"]["ratio_vs_fwd_bwd"] == pytest.approx(
        res["kfac expand"]["seconds"] / plain["seconds_mean"]
    )
    assert "seconds_half" not in res["kfac expand"]


def test_bench_factors_refuses_an_unknown_case(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        _load("bench_factors").main(["--model", str(tiny_bert), "--cases", "kfac,nope", "--out", str(tmp_path / "x")])
