"""`elcl export` → `elcl update` → `elcl export`: curvature, anchors and lineage carried
across versions; the update chain equals the `elcl train` sequence; refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from console import run_main
from safetensors.torch import load_file, save_file
from synthetic import write_synthetic_corpora
from tiny_models import tiny_config, write_tiny_bert
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.continual.versions import read_lineage, tensors_sha256
from elcl.curvature.storage import load_curvature
from elcl.models.export import load_exported
from elcl.schemas import Lineage

runner = CliRunner()
A, B, C = "ncbi_disease", "bc5cdr_chemical", "bc5cdr_disease"
LAM = 100.0


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("update")
    return root, write_synthetic_corpora(root / "data"), write_tiny_bert(root / "tinybert")


def _train(inputs, name: str, tasks: list[str], method: str, seed: int = 5, approx: str = "both") -> Path:
    root, data, model = inputs
    section = {"lambda": LAM} if method != "naive" else {}
    cfg = tiny_config(
        root,
        name,
        tasks,
        seed,
        inputs=(data, model),
        method={"name": method, **({method: section} if section else {})},
        curvature={"approx": approx},
        # a few optimiser steps per task: at the first step the weights are the anchor and
        # the penalty's gradient is zero, so one step would not show it
        train={"num_threads": 1, "epochs": 3, "batch_size": 4},
    )
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    (run,) = [p for p in (root / "runs" / name).iterdir() if (p / "run.json").is_file()]
    return run


def _export(run: Path, out: Path) -> Path:
    res = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out


def _update(prev: Path, out: Path, task: str, method: str, *extra: str) -> Path:
    lam = ["--lambda", str(LAM)] if method != "naive" else []
    res = runner.invoke(app, ["update", str(prev), "--task", task, "--method", method, "--out", str(out), *lam, *extra])
    assert res.exit_code == 0, res.output
    return out


def _one_error(err: str) -> bool:
    """One error line (after any progress bars of the weights loading)."""
    return [ln for ln in err.splitlines() if ln.startswith("error:")] == [err.rstrip().splitlines()[-1]]


def _weights(export: Path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_exported(export).model.state_dict().items()}


@pytest.fixture(scope="module")
def v1(inputs) -> Path:
    """NCBI-like task A trained by online K-FAC (a first step: plain training), curvature both."""
    return _export(_train(inputs, "v1", [A], "online_kfac"), inputs[0] / "exports" / "v1")


def test_export_carries_lineage_curvature_and_anchor(v1, inputs):
    lineage = read_lineage(v1)
    assert isinstance(lineage, Lineage) and [v.version for v in lineage.versions] == [1]
    v = lineage.current
    assert v.made_by == "train" and v.tasks == [A] and v.method == "online_kfac" and v.lam == LAM
    assert v.parent is None and v.seed == 5 and v.settings["tasks"] == [A]
    data_dir = inputs[1]
    from elcl.data.task_config import file_sha256

    names = {"train": "NCBItrainset_corpus.txt", "dev": "NCBIdevelopset_corpus.txt", "test": "NCBItestset_corpus.txt"}
    assert {r: v.data[0].files[r] for r in names} == {
        r: file_sha256(data_dir / "ncbi_disease" / f) for r, f in names.items()
    }
    assert {(m.task, m.split) for m in v.metrics} == {(A, "dev"), (A, "test")}
    rec = lineage.curvature
    assert rec is not None and rec.mode == "online" and rec.approximation == "both" and len(rec.entries) == 1
    stats = load_curvature(v1 / "curvature" / rec.entries[0].dir, rec.model_config_hash)
    weights = dict(load_exported(v1).model.named_parameters())
    # the anchor is the exported weights, and its hash is recorded
    assert stats.kfac and all(torch.equal(t, weights[n].detach()) for n, t in stats.anchors.items())
    assert tensors_sha256(stats.anchors) == rec.anchor_sha256
    assert rec.bytes == (v1 / "curvature" / rec.entries[0].dir / "factors.safetensors").stat().st_size
    # the weights still load with transformers alone
    from transformers import AutoModel

    AutoModel.from_pretrained(v1)


def test_update_round_trip_and_link(v1, inputs, tmp_path, capsys, monkeypatch):
    v2 = _update(v1, tmp_path / "v2", B, "online_kfac", "--eval", f"{A}:test")
    lin = read_lineage(v2)
    assert [v.version for v in lin.versions] == [1, 2] and lin.versions[0] == read_lineage(v1).versions[0]
    cur = lin.current
    assert cur.parent == 1 and cur.made_by == "update" and cur.tasks == [B] and cur.step == 1 and cur.gamma == 1.0
    assert cur.data[0].train_examples > 0
    assert [(m.task, m.split) for m in cur.metrics_before] == [(A, "test")]
    assert {(m.task, m.split) for m in cur.metrics} >= {(A, "test"), (B, "test")}
    rec = lin.curvature
    assert rec is not None and rec.mode == "online" and rec.entries[0].tasks == [A, B] and rec.entries[0].weight == 2.0
    stats = load_curvature(v2 / "curvature" / rec.entries[0].dir, rec.model_config_hash)
    weights = dict(load_exported(v2).model.named_parameters())
    assert all(torch.equal(t, weights[n].detach()) for n, t in stats.anchors.items())
    assert tensors_sha256(stats.anchors) == rec.anchor_sha256
    assert json.loads((v2 / "elcl_linker.json").read_text())["task"] == B
    # v2 links as any export does, against the new task's ontology
    spans = tmp_path / "m.pubtator"
    shutil.copyfile(inputs[1] / "bc5cdr" / "CDR_TestSet.PubTator.txt", spans)
    code, err = run_main(["link", str(v2), "-i", str(spans), "-o", str(tmp_path / "linked.jsonl")], capsys, monkeypatch)
    assert code == 0, err
    assert (tmp_path / "linked.jsonl").read_text().strip()


@pytest.mark.parametrize("method", ["online_kfac", "online_ewc", "kfac", "ewc"])
def test_update_chain_equals_the_train_sequence(inputs, tmp_path, method):
    """v1 (A) → update B → update C gives the weights of `elcl train` on A → B → C."""
    first = _export(_train(inputs, f"chain_{method}", [A], method), tmp_path / "v1")
    v2 = _update(first, tmp_path / "v2", B, method)
    v3 = _update(v2, tmp_path / "v3", C, method)
    seq = _train(inputs, f"seq_{method}", [A, B, C], method)
    ref = load_file(str(seq / "steps" / f"2_{C}" / "model.safetensors"))
    got = _weights(v3)
    start = _weights(first)
    assert set(ref) == set(got)
    moved = max(float((got[k] - start[k]).abs().max()) for k in ref)
    assert moved > 1e-4  # the chain did train
    for k in ref:
        # online EWC's running diagonal is stored in float32 between versions (the run
        # folds float32 per-task files in float64): equal to rounding, the others bit for bit
        tol = 1e-6 if method == "online_ewc" else 0.0
        torch.testing.assert_close(got[k], ref[k], atol=tol, rtol=0.0, msg=lambda m, k=k: f"{k}: {m}")
    sizes = [read_lineage(v).curvature.bytes for v in (first, v2, v3)]  # type: ignore[union-attr]
    if method.startswith("online"):
        assert sizes[0] == sizes[1] == sizes[2]  # one running state whatever the versions
    else:
        # per task: each task's own block at its own anchor, one more per version
        assert sizes[0] < sizes[1] < sizes[2] and abs(sizes[2] - 3 * sizes[0]) < 0.01 * sizes[0]
        assert [e.tasks for e in read_lineage(v3).curvature.entries] == [[A], [B], [C]]  # type: ignore[union-attr]


def test_penalty_changes_the_update(v1, tmp_path):
    """λ = 0 is naive fine-tuning to the bit; λ > 0 pulls the weights towards the anchor."""
    naive = _weights(_update(v1, tmp_path / "naive", B, "naive"))
    res = runner.invoke(
        app, ["update", str(v1), "--task", B, "--method", "online_kfac", "--lambda", "0", "--out", str(tmp_path / "l0")]
    )
    assert res.exit_code == 0, res.output
    zero = _weights(tmp_path / "l0")
    pen = _weights(_update(v1, tmp_path / "pen", B, "online_kfac", "--lambda", "100000"))
    start = _weights(v1)
    assert all(torch.equal(zero[k], naive[k]) for k in naive)

    def dist(w):
        return sum(float(((w[k] - start[k]) ** 2).sum()) for k in start) ** 0.5

    assert max(float((pen[k] - naive[k]).abs().max()) for k in naive) > 1e-5
    assert dist(pen) < dist(naive)


def test_no_old_training_data_is_read(v1, tmp_path, monkeypatch):
    import elcl.training.tasks as tasks

    built: list[tuple[str, str]] = []
    real = tasks._split_examples

    def spy(name, cfg, split):
        built.append((name, split))
        return real(name, cfg, split)

    monkeypatch.setattr(tasks, "_split_examples", spy)
    _update(v1, tmp_path / "v2", B, "online_kfac", "--eval", f"{A}:test")
    assert {n for n, s in built if s == "train"} == {B}


def test_refusals_one_line_exit_2_nothing_written(inputs, v1, tmp_path, capsys, monkeypatch):
    # a model without curvature, with a penalty method
    bare = _export(_train(inputs, "bare", [A], "naive", approx="auto"), tmp_path / "bare")
    assert read_lineage(bare).curvature is None
    out = tmp_path / "new"
    code, err = run_main(
        ["update", str(bare), "--task", B, "--method", "online_kfac", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "carries no curvature" in err and not out.exists()
    # ... which naive can still update
    _update(bare, tmp_path / "bare2", B, "naive")

    # weights changed after export: the anchor no longer matches
    changed = tmp_path / "changed"
    shutil.copytree(v1, changed)
    weights = load_file(str(changed / "model.safetensors"))
    name = next(k for k in weights if k.endswith("query.weight"))
    weights[name] = weights[name] + 1e-3
    save_file(weights, str(changed / "model.safetensors"), metadata={"format": "pt"})
    code, err = run_main(
        ["update", str(changed), "--task", B, "--method", "online_kfac", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "changed after export" in err and not out.exists()

    # curvature of another model config
    other = tmp_path / "other"
    shutil.copytree(v1, other)
    lin = json.loads((other / "lineage.json").read_text())
    lin["curvature"]["model_config_hash"] = "0123456789abcdef"
    (other / "lineage.json").write_text(json.dumps(lin))
    code, err = run_main(
        ["update", str(other), "--task", B, "--method", "online_ewc", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "model config '0123456789abcdef'" in err and not out.exists()

    # a curvature file changed after export
    broken = tmp_path / "broken"
    shutil.copytree(v1, broken)
    f = next((broken / "curvature").glob("*/factors.safetensors"))
    f.write_bytes(f.read_bytes()[:-8] + b"\0" * 8)
    code, err = run_main(
        ["update", str(broken), "--task", B, "--method", "online_kfac", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "does not match" in err and not out.exists()

    # an existing output folder is never touched
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "mine.txt").write_text("mine")
    code, err = run_main(
        ["update", str(v1), "--task", B, "--method", "online_kfac", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "already exists" in err
    assert (out / "keep" / "mine.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".new.")]

    # model settings cannot change; λ auto is not an update's
    code, err = run_main(
        [
            "update",
            str(v1),
            "--task",
            B,
            "--method",
            "naive",
            "--set",
            "model.max_length=8",
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "model.max_length" in err and not (tmp_path / "m").exists()
    code, err = run_main(
        [
            "update",
            str(v1),
            "--task",
            B,
            "--method",
            "online_kfac",
            "--set",
            "method.online_kfac.lambda=auto",
            "--out",
            str(tmp_path / "m"),
        ],
        capsys,
        monkeypatch,
    )
    assert code == 2 and "auto is not supported" in err and not (tmp_path / "m").exists()


def test_per_task_export_of_several_tasks_needs_its_blocks(inputs, tmp_path, capsys, monkeypatch):
    """An online state of several tasks cannot feed kfac's per-task sum; a kfac run's per-task
    export can feed online_kfac (folded as online K-FAC would have)."""
    online = _export(_train(inputs, "online2", [A, B], "online_kfac"), tmp_path / "online2")
    out = tmp_path / "x"
    code, err = run_main(
        ["update", str(online), "--task", C, "--method", "kfac", "--out", str(out)], capsys, monkeypatch
    )
    assert code == 2 and _one_error(err) and "online method" in err and not out.exists()
    per_task = _export(_train(inputs, "kfac2", [A, B], "kfac"), tmp_path / "kfac2")
    assert [e.tasks for e in read_lineage(per_task).curvature.entries] == [[A], [B]]  # type: ignore[union-attr]
    v = _update(per_task, tmp_path / "folded", C, "online_kfac")
    rec = read_lineage(v).curvature
    assert rec is not None and rec.mode == "online" and rec.entries[0].tasks == [A, B, C]


def test_update_on_a_custom_task_file(v1, inputs, tmp_path, capsys, monkeypatch):
    """--task takes a YAML file of one task entry (read by read_task_spec); its files'
    sha256 go into the lineage and the version's settings, and a later update can still
    score it by name with --eval."""
    corpus = tmp_path / "clinic"
    corpus.mkdir()
    for split, name in (("train", "CDR_TrainingSet"), ("dev", "CDR_DevelopmentSet"), ("test", "CDR_TestSet")):
        shutil.copyfile(inputs[1] / "bc5cdr" / f"{name}.PubTator.txt", corpus / f"{split}.pubtator")
    spec = tmp_path / "clinic.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "clinic",
                "files": {s: f"clinic/{s}.pubtator" for s in ("train", "dev", "test")},
                "format": "pubtator",
                "types": ["Chemical"],
            }
        )
    )
    v2 = _update(v1, tmp_path / "v2", str(spec), "online_kfac", "--eval", f"{A}:test", "--eval", f"{spec}:dev")
    cur = read_lineage(v2).current
    assert cur.tasks == ["clinic"]
    from elcl.data.task_config import file_sha256

    assert cur.data[0].files == {s: file_sha256(corpus / f"{s}.pubtator") for s in ("train", "dev", "test")}
    assert [(m.task, m.split) for m in cur.metrics_before] == [(A, "test"), ("clinic", "dev")]
    (entry,) = [t for t in cur.settings["tasks"] if isinstance(t, dict)]
    assert entry["name"] == "clinic" and entry["sha256"]["train"] == cur.data[0].files["train"]
    v3 = _update(v2, tmp_path / "v3", C, "online_kfac", "--eval", "clinic:test")
    assert [(m.task, m.split) for m in read_lineage(v3).current.metrics_before] == [("clinic", "test")]
    code, err = run_main(
        ["link", str(v2), "-i", str(corpus / "test.pubtator"), "-o", str(tmp_path / "l.jsonl")], capsys, monkeypatch
    )
    assert code == 0, err
