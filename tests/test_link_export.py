"""`elcl link` and `elcl export` on tiny runs trained in the test."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from console import run_main
from script_loader import load_script
from synthetic import write_synthetic_corpora
from tiny_models import write_tiny_bert
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.data.pubtator import parse_pubtator_file
from elcl.linking.inputs import read_input
from elcl.linking.link import link_input
from elcl.linking.source import open_source

runner = CliRunner()


def _train(root: Path, name: str, model: dict, candidates: dict | None = None) -> Path:
    cfg = {
        "name": name,
        "output_dir": str(root / "runs"),
        "tasks": ["ncbi_disease", "bc5cdr_disease"],
        "seeds": [3],
        "data": {"data_dir": str(root / "data"), "ontology": "mentions"},
        "candidates": candidates or {"k": 4},
        "model": model,
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3, "device": "cpu"},
        "method": {"name": "naive"},
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = runner.invoke(app, ["train", "--config", str(path)])
    assert res.exit_code == 0, res.output
    return root / "runs" / name / "naive-o0-s3"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("link")
    write_synthetic_corpora(root / "data")
    tiny = write_tiny_bert(root / "tinybert")
    bert = _train(root, "bert", {"name": str(tiny), "max_length": 12})
    # dense candidates from the (untrained) tiny encoder, not from the fine-tuned one
    dense = _train(root, "dense", {"name": str(tiny), "max_length": 12}, {"k": 4, "dense": True, "dense_k": 2})
    prior = _train(root, "prior", {"name": str(tiny), "max_length": 12, "prior_weight": 2.0})
    cnn = _train(
        root,
        "cnn",
        {"type": "cnn", "name": str(tiny), "max_length": 12, "cnn": {"embedding_dim": 16, "channels": 16, "blocks": 1}},
    )
    return {"root": root, "data": root / "data", "bert": bert, "dense": dense, "prior": prior, "cnn": cnn}


def _metric(run: Path, step: int, task: str, split: str = "test") -> dict:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return next(r for r in rows if r["step"] == step and r["eval_task"] == task and r["split"] == split)


@pytest.mark.parametrize(
    "kind,step,task",
    [
        ("bert", 0, "ncbi_disease"),
        ("bert", 1, "ncbi_disease"),
        ("bert", 1, "bc5cdr_disease"),
        ("dense", 0, "ncbi_disease"),
        ("dense", 1, "bc5cdr_disease"),
        ("prior", 0, "ncbi_disease"),
        ("prior", 1, "bc5cdr_disease"),
    ],
)
def test_link_reproduces_evaluate_exactly(trained, kind, step, task, monkeypatch):
    monkeypatch.setenv("ELCL_CACHE_DIR", str(trained["root"] / "cache"))
    run = trained[kind]
    test_file = {
        "ncbi_disease": trained["data"] / "ncbi_disease" / "NCBItestset_corpus.txt",
        "bc5cdr_disease": trained["data"] / "bc5cdr" / "CDR_TestSet.PubTator.txt",
    }[task]
    inp = read_input(str(test_file))
    if task == "bc5cdr_disease":  # the task keeps the disease mentions of BC5CDR
        inp.mentions = [m for m in inp.mentions if m.semantic_type == "Disease"]
    res = link_input(open_source(run, step=step, task=task), inp)
    row = _metric(run, step, task)
    assert (res.acc1, res.acc5, res.n_gold) == (row["acc1"], row["acc5"], row["n"])
    # and the rankings are the stored predictions of that step
    stored = [
        json.loads(x)
        for x in (run / "predictions" / f"{step}_{['ncbi_disease', 'bc5cdr_disease'][step]}" / f"{task}.test.jsonl")
        .read_text()
        .splitlines()
    ]
    assert [r["ids"] for r in res.rows] == [[c for c, _ in p["predicted"]] for p in stored]


def test_link_cli_prints_evaluate_numbers_and_writes_outputs(trained, tmp_path):
    run = trained["bert"]
    test_file = trained["data"] / "ncbi_disease" / "NCBItestset_corpus.txt"
    out, pub = tmp_path / "links.jsonl", tmp_path / "linked.pubtator"
    res = runner.invoke(
        app,
        [
            "link",
            str(run),
            "-i",
            str(test_file),
            "--task",
            "ncbi_disease",
            "--out",
            str(out),
            "--pubtator-out",
            str(pub),
            "--top-k",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    row = _metric(run, 1, "ncbi_disease")
    assert f"acc@1 {row['acc1']:.4f} acc@5 {row['acc5']:.4f} over {row['n']}" in res.stderr
    shown = runner.invoke(app, ["evaluate", str(run)])
    assert f"{row['acc1']:.4f}" in shown.stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == row["n"] and all(len(r["ids"]) == len(r["names"]) == len(r["scores"]) == 3 for r in rows)
    assert rows[0]["scores"] == sorted(rows[0]["scores"], reverse=True) and "gold" in rows[0]
    docs = parse_pubtator_file(pub).documents
    filled = [m.concept_ids[0] for d in docs for m in d.mentions]
    assert filled == [r["ids"][0] for r in rows]
    assert [(m.doc_id, m.start, m.end) for d in docs for m in d.mentions] == [
        (r["doc_id"], r["start"], r["end"]) for r in rows
    ]


def test_link_inputs_without_ids_tsv_and_stdin(trained, tmp_path):
    run = trained["bert"]
    docs = parse_pubtator_file(trained["data"] / "ncbi_disease" / "NCBIdevelopset_corpus.txt").documents[:2]
    # PubTator without the id column
    bare = tmp_path / "bare.txt"
    bare.write_text(
        "".join(
            f"{d.doc_id}|t|{d.title}\n{d.doc_id}|a|{d.abstract}\n"
            + "".join(f"{m.doc_id}\t{m.start}\t{m.end}\t{m.text}\t{m.semantic_type}\n" for m in d.mentions)
            + "\n"
            for d in docs
        )
    )
    # the same spans as a TSV beside the documents' text
    texts, spans = tmp_path / "docs.tsv", tmp_path / "spans.tsv"
    texts.write_text("".join(f"{d.doc_id}\t{d.text}\n" for d in docs))
    spans.write_text(
        "doc_id\tstart\tend\ttext\n"
        + "".join(f"{m.doc_id}\t{m.start}\t{m.end}\t{m.text}\n" for d in docs for m in d.mentions)
    )
    a = runner.invoke(app, ["link", str(run), "-i", str(bare)])
    b = runner.invoke(app, ["link", str(run), "-i", str(spans), "--docs", str(texts)])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    rows_a = [json.loads(x) for x in a.stdout.splitlines()]
    rows_b = [json.loads(x) for x in b.stdout.splitlines()]
    assert len(rows_a) == sum(len(d.mentions) for d in docs) and "acc@1" not in a.stderr
    assert [r["ids"] for r in rows_a] == [r["ids"] for r in rows_b]
    assert all("gold" not in r for r in rows_a)
    c = runner.invoke(app, ["link", str(run)], input="breast cancer\n\nasthma\n")
    assert c.exit_code == 0, c.output
    rows_c = [json.loads(x) for x in c.stdout.splitlines()]
    assert [r["mention"] for r in rows_c] == ["breast cancer", "asthma"] and "doc_id" not in rows_c[0]
    assert rows_c[0]["ids"] and rows_c[0]["names"][0]


def _hf_embed(folder: Path, texts: list[str]) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer

    st = json.loads((folder / "sentence_bert_config.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"]
    tok = AutoTokenizer.from_pretrained(folder)
    enc = AutoModel.from_pretrained(folder).eval()
    batch = tok(texts, truncation=True, max_length=st["max_seq_length"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = enc(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    vec = (hidden * mask).sum(1) / mask.sum(1)
    if any(m["type"].endswith("Normalize") for m in json.loads((folder / "modules.json").read_text())):
        vec = torch.nn.functional.normalize(vec, dim=-1)
    return vec


def test_dense_runs_link_with_their_training_candidates(trained):
    """The dense run's lists differ from TF-IDF's alone: linking with TF-IDF only would not match."""
    from elcl.training.tasks import candidate_generator

    src = open_source(trained["dense"], step=0)
    stored = [
        json.loads(x)
        for x in (trained["dense"] / "predictions" / "0_ncbi_disease" / "ncbi_disease.test.jsonl")
        .read_text()
        .splitlines()
    ]
    sparse = candidate_generator(src.ontology, src.candidates).top_k([r["mention"] for r in stored], 4)
    assert any({c.concept_id for c in s} != {c for c, _ in r["predicted"]} for s, r in zip(sparse, stored))


def test_dense_export_carries_its_candidate_encoder(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("ELCL_CACHE_DIR", str(trained["root"] / "cache"))
    run = trained["dense"]
    out = tmp_path / "dense_export"
    res = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "elcl_linker.json").read_text())["candidates"]["dense_encoder"] == "dense_encoder"
    moved = tmp_path / "elsewhere" / "dense_model"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    test_file = trained["data"] / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    via_run = runner.invoke(app, ["link", str(run), "-i", str(test_file)])
    alone = runner.invoke(app, ["link", str(moved), "-i", str(test_file)])
    assert via_run.exit_code == 0 and alone.exit_code == 0, via_run.output + alone.output
    assert alone.stdout == via_run.stdout and via_run.stdout.count("\n") > 10


def test_prior_export_carries_its_counts_and_links_like_the_run(trained, tmp_path, capsys, monkeypatch):
    run = trained["prior"]
    out = tmp_path / "prior_export"
    res = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "elcl_linker.json").read_text())
    counts = meta["concept_prior"]["counts"]
    assert meta["model"]["prior_weight"] == 2.0 and counts and all(n > 0 for n in counts.values())
    test_file = trained["data"] / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    via_run = runner.invoke(app, ["link", str(run), "-i", str(test_file)])
    alone = runner.invoke(app, ["link", str(out), "-i", str(test_file)])
    assert via_run.exit_code == 0 and alone.exit_code == 0, via_run.output + alone.output
    assert alone.stdout == via_run.stdout
    # the prior changes the rankings: the same weights without it rank differently
    src = open_source(out)
    src.prior = None
    inp = read_input(str(test_file))
    assert [r["ids"] for r in link_input(src, inp).rows] != [r["ids"] for r in link_input(open_source(out), inp).rows]
    # an export whose counts were lost says so in one line
    del meta["concept_prior"]
    (out / "elcl_linker.json").write_text(json.dumps(meta))
    capsys.readouterr()
    code, err = run_main(["link", str(out), "-i", str(test_file)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "'concept_prior' is missing" in err


def test_export_loads_with_transformers_alone_and_links_like_the_run(trained, tmp_path):
    from elcl.training.batching import TokenCache

    run = trained["bert"]
    out = tmp_path / "export"
    res = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert res.exit_code == 0, res.output
    texts = ["breast cancer", "myocardial infarction of the heart", "asthma"]
    src = open_source(run)
    ids, mask = TokenCache(src.model.tokenizer, src.max_length).pad(texts)
    with torch.no_grad():
        inside = src.model.embed(ids, mask)
    torch.testing.assert_close(_hf_embed(out, texts), inside, atol=1e-6, rtol=0)

    card = (out / "README.md").read_text()
    for needed in (
        "naive",
        "ncbi_disease → **bc5cdr_disease**",
        "acc@1",
        "elcl version: 0.1.0",
        "bc5cdr_disease | test",
    ):
        assert needed in card, needed
    umask = os.umask(0)
    os.umask(umask)
    # the modes of a plain mkdir/open, not a private temporary folder's
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert all(f.stat().st_mode & 0o777 == 0o666 & ~umask for f in out.rglob("*") if f.is_file())
    meta = json.loads((out / "elcl_linker.json").read_text())
    assert (
        meta["task"] == "bc5cdr_disease"
        and meta["run"]["step"] == 1
        and meta["ontology"]["concepts"] == len(src.ontology)
    )

    test_file = trained["data"] / "bc5cdr" / "CDR_TestSet.PubTator.txt"
    via_run = runner.invoke(app, ["link", str(run), "-i", str(test_file)])
    via_dir = runner.invoke(app, ["link", "--model", str(out), "-i", str(test_file)])
    assert via_run.exit_code == 0 and via_dir.exit_code == 0, via_run.output + via_dir.output
    assert via_run.stdout == via_dir.stdout and via_run.stdout.count("\n") > 10
    # the folder alone: no corpora, no run directory
    moved = tmp_path / "elsewhere" / "model"
    shutil.copytree(out, moved)
    alone = runner.invoke(app, ["link", str(moved), "-i", str(test_file)])
    assert alone.stdout == via_run.stdout


def test_cnn_export_round_trip(trained, tmp_path):
    from safetensors import safe_open

    run = trained["cnn"]
    out = tmp_path / "cnn_export"
    res = runner.invoke(app, ["export", str(run), "--out", str(out), "--step", "0"])
    assert res.exit_code == 0, res.output
    with safe_open(str(out / "cnn_encoder.safetensors"), framework="pt") as fh:
        assert fh.metadata()["channels"] == "16" and "blocks.0.conv1.weight" in fh.keys()
    assert not (out / "modules.json").exists()
    test_file = trained["data"] / "ncbi_disease" / "NCBItestset_corpus.txt"
    via_run = runner.invoke(app, ["link", str(run), "--step", "0", "-i", str(test_file)])
    via_dir = runner.invoke(app, ["link", "--model", str(out), "-i", str(test_file)])
    assert via_run.exit_code == 0 and via_dir.exit_code == 0, via_run.output + via_dir.output
    assert via_run.stdout == via_dir.stdout
    row = _metric(run, 0, "ncbi_disease")
    assert f"acc@1 {row['acc1']:.4f}" in via_dir.stderr


def test_bad_inputs_one_line_exit_2(trained, tmp_path, capsys, monkeypatch):
    run = trained["bert"]
    code, err = run_main(["link", str(tmp_path / "nope")], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "no such run directory or export folder" in err

    partial = tmp_path / "partial"
    shutil.copytree(run, partial)
    state = json.loads((partial / "run.json").read_text())
    (partial / "run.json").write_text(json.dumps({**state, "status": "running", "steps_done": 1}))
    code, err = run_main(["link", str(partial), "--step", "1"], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "--step 1: not a finished step" in err

    doc = parse_pubtator_file(trained["data"] / "ncbi_disease" / "NCBIdevelopset_corpus.txt").documents[0]
    m = doc.mentions[0]
    texts, spans = tmp_path / "d.tsv", tmp_path / "s.tsv"
    texts.write_text(f"{doc.doc_id}\t{doc.text}\n")
    spans.write_text(f"{m.doc_id}\t{m.start}\t{m.end}\t{m.text}\n{m.doc_id}\t{m.start + 1}\t{m.end + 1}\t{m.text}\n")
    code, err = run_main(["link", str(run), "-i", str(spans), "--docs", str(texts)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and f"{spans}:2: offsets" in err
    spans.write_text(f"{m.doc_id}\t{m.start}\t99999\t{m.text}\n")
    code, err = run_main(["link", str(run), "-i", str(spans), "--docs", str(texts)], capsys, monkeypatch)
    assert code == 2 and f"{spans}:1: offsets {m.start}-99999 outside document" in err

    out = tmp_path / "exp"
    (out / "keep").mkdir(parents=True)
    (out / "keep" / "file.txt").write_text("mine")
    code, err = run_main(["export", str(run), "--out", str(out)], capsys, monkeypatch)
    assert code == 2 and err.count("\n") == 1 and "already exists" in err
    assert (out / "keep" / "file.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp.")]


def test_prior_sweep_rescoring_at_zero_is_the_runs_accuracy(trained, monkeypatch, capsys):
    from elcl.errors import ElclError

    monkeypatch.setenv("ELCL_CACHE_DIR", str(trained["root"] / "cache"))
    mod = load_script("prior_sweep")
    out = mod.main([str(trained["bert"]), "--step", "0", "--weights", "0", "3"])
    for split in ("dev", "test"):
        assert out["acc1"][split][0.0] == _metric(trained["bert"], 0, "ncbi_disease", split)["acc1"]
    assert out["best_on_dev"] in (0.0, 3.0) and "best on dev" in capsys.readouterr().out
    with pytest.raises(ElclError, match="would count it twice"):
        mod.main([str(trained["prior"])])
