"""The self-alignment pass: loss and mining numerics, learning on a tiny ontology,
resume equivalence, the encoder folder it writes, and the never-reads-a-corpus guard."""

from __future__ import annotations

import builtins
import gzip
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from synthetic import DISEASES, write_synthetic_corpora
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.data.ontology import Ontology
from elcl.errors import ElclError
from elcl.pretraining.losses import (
    info_nce_loss,
    mine_hard_pairs,
    multi_similarity_loss,
    pair_masks,
)
from elcl.pretraining.sources import load_name_table, load_pretraining_ontology
from elcl.pretraining.synonyms import SynonymBatcher, SynonymSets
from elcl.pretraining.trainer import PretrainConfig, pretrain


def write_medic(path: Path, concepts: dict[str, list[str]]) -> Path:
    rows = ["# DiseaseName\tDiseaseID\tAltDiseaseIDs\tDefinition\tParentIDs\tTreeNumbers\tParentTreeNumbers\tSynonyms"]
    for cid, names in concepts.items():
        rows.append(f"{names[0]}\tMESH:{cid}\t\t\t\t\t\t{'|'.join(names[1:])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    return path


TINY = Ontology({cid.replace("D00", "D00000"): names for cid, names in DISEASES.items()}, {}, "tiny")


def _brute_ms(
    emb: torch.Tensor, labels: list[int], alpha: float, beta: float, base: float, margin: float | None
) -> float:
    """Multi-similarity loss from its definition: loops over anchors, triplets and pairs."""
    x = torch.nn.functional.normalize(emb, dim=-1)
    s = (x @ x.T).tolist()
    n = len(labels)
    per_anchor = []
    for a in range(n):
        pos = [p for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [q for q in range(n) if labels[q] != labels[a]]
        if margin is not None:
            trip = [(p, q) for p, q in itertools.product(pos, neg) if s[a][q] > s[a][p] - margin]
            pos = sorted({p for p, _ in trip})
            neg = sorted({q for _, q in trip})
        if not pos and not neg:
            continue
        lp = math.log1p(sum(math.exp(-alpha * (s[a][p] - base)) for p in pos)) / alpha
        ln = math.log1p(sum(math.exp(beta * (s[a][q] - base)) for q in neg)) / beta
        per_anchor.append(lp + ln)
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("margin", [None, 0.2, 0.05])
def test_multi_similarity_equals_its_definition(margin: float | None) -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(10, 6, generator=g, dtype=torch.float64)
    labels = [0, 0, 1, 1, 1, 2, 2, 3, 3, 4]
    got = float(multi_similarity_loss(emb, torch.tensor(labels), alpha=2.0, beta=50.0, base=0.5, margin=margin))
    assert got == pytest.approx(_brute_ms(emb, labels, 2.0, 50.0, 0.5, margin), rel=1e-9, abs=1e-12)


def test_mining_keeps_only_pairs_of_violating_triplets() -> None:
    # anchor 0: positive 1 at 0.9, negatives 2 (0.8, within 0.2 of the positive) and 3 (0.1, easy).
    sim = torch.tensor([[1.0, 0.9, 0.8, 0.1], [0.9, 1.0, 0.1, 0.1], [0.8, 0.1, 1.0, 0.5], [0.1, 0.1, 0.5, 1.0]])
    pos, neg = pair_masks(torch.tensor([0, 0, 1, 2]))
    hp, hn = mine_hard_pairs(sim, pos, neg, margin=0.2)
    assert hp[0, 1] and hn[0, 2] and not hn[0, 3]
    assert not hp[1, 0] and not hn[1].any()  # anchor 1's negatives are all far: nothing to learn
    assert not hp[2].any() and not hp[3].any()  # no positives for singletons


def test_same_string_under_two_concepts_is_no_negative() -> None:
    _, neg = pair_masks(torch.tensor([0, 0, 1, 1]), torch.tensor([5, 6, 5, 7]))
    assert not neg[0, 2] and not neg[2, 0] and neg[0, 3]


def test_info_nce_is_minus_log_synonym_mass() -> None:
    g = torch.Generator().manual_seed(1)
    emb = torch.randn(6, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    x = torch.nn.functional.normalize(emb, dim=-1)
    logits = x @ x.T / 0.1
    want = []
    for a in range(6):
        others = [j for j in range(6) if j != a]
        p = torch.softmax(logits[a, others], 0)
        want.append(-torch.log(sum(p[i] for i, j in enumerate(others) if labels[j] == labels[a])))
    assert float(info_nce_loss(emb, labels, temperature=0.1)) == pytest.approx(
        float(torch.stack(want).mean()), rel=1e-9
    )


def test_batches_hold_positives_and_are_a_function_of_the_step() -> None:
    sets = SynonymSets.from_ontology(TINY)
    b = SynonymBatcher(sets, batch_size=4, names_per_concept=2, seed=3)
    assert b.steps_per_epoch == 3
    for step in range(7):
        batch = b.batch(step)
        assert len(batch.texts) == 4
        assert all(batch.labels.count(c) == 2 for c in batch.labels)
        assert batch == SynonymBatcher(sets, 4, 2, 3).batch(step)  # fresh batcher, same batch: nothing to save
    assert sorted(c for s in range(3) for c in b.batch(s).labels[::2]) == list(
        range(6)
    )  # an epoch covers every concept
    with pytest.raises(ElclError, match="2 or more distinct names"):
        SynonymSets.from_ontology(Ontology({"D000001": ["a"]}))


def _mean_sims(model_dir: Path, onto: Ontology) -> tuple[float, float]:
    from transformers import AutoModel, AutoTokenizer

    from elcl.models.embedding import embed_texts

    model = AutoModel.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = [n for names in onto.names.values() for n in names]
    labels = [c for c, names in onto.names.items() for _ in names]
    with torch.no_grad():
        x = embed_texts(model, tok, texts, max_length=25, normalize=True)
    s = x @ x.T
    same = torch.tensor([[a == b for b in labels] for a in labels])
    eye = torch.eye(len(texts), dtype=torch.bool)
    return float(s[same & ~eye].mean()), float(s[~same].mean())


@pytest.mark.parametrize("loss", ["ms", "infonce"])
def test_synonyms_end_up_closer_than_non_synonyms(tiny_bert: Path, tmp_path: Path, loss: str) -> None:
    syn0, non0 = _mean_sims(tiny_bert, TINY)
    cfg = PretrainConfig(
        encoder=str(tiny_bert),
        batch_size=12,
        steps=30,
        lr=3e-3,
        warmup_ratio=0.0,
        loss=loss,
        seed=0,
        num_threads=1,
        miner_margin=None if loss == "ms" else 0.2,
    )
    res = pretrain(cfg, TINY, tmp_path / "out", progress=False)
    syn1, non1 = _mean_sims(tmp_path / "out", TINY)
    assert res.finished and len(res.losses) == 30
    assert syn1 - non1 > (syn0 - non0) + 0.1, (syn0, non0, syn1, non1)
    assert sum(res.losses[-5:]) < sum(res.losses[:5])


def test_output_is_an_encoder_folder_model_name_accepts(tiny_bert: Path, tmp_path: Path) -> None:
    from elcl.config import ModelConfig
    from elcl.models.linker import Linker

    out = tmp_path / "enc"
    pretrain(PretrainConfig(encoder=str(tiny_bert), batch_size=6, steps=2, num_threads=1), TINY, out, progress=False)
    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["steps"] == 2 and meta["concepts_aligned"] == 6 and meta["ontology_hash"] == TINY.content_hash()
    assert not (out / "checkpoints").exists()
    linker = Linker(ModelConfig(name=str(out), max_length=16))
    trained = load_file(str(out / "model.safetensors"))
    key = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(linker.encoder.model.state_dict()[key], trained[key])
    with pytest.raises(ElclError, match="finished pass"):
        pretrain(
            PretrainConfig(encoder=str(tiny_bert), batch_size=6, steps=2, num_threads=1), TINY, out, progress=False
        )


def test_resume_after_interruption_equals_uninterrupted_run(tiny_bert: Path, tmp_path: Path) -> None:
    cfg = PretrainConfig(
        encoder=str(tiny_bert), batch_size=6, steps=7, lr=1e-3, checkpoint_every=2, num_threads=1, seed=5
    )
    whole = pretrain(cfg, TINY, tmp_path / "whole", progress=False)
    part = pretrain(cfg, TINY, tmp_path / "cut", progress=False, stop_after=3)
    assert not part.finished and part.steps_done == 3
    assert json.loads((tmp_path / "cut" / "checkpoints" / "latest.json").read_text())["step"] == 3
    with pytest.raises(ElclError, match="--resume"):
        pretrain(cfg, TINY, tmp_path / "cut", progress=False)
    torch.manual_seed(999)  # the RNG of the resumed process is restored from the checkpoint, not inherited
    rest = pretrain(cfg, TINY, tmp_path / "cut", progress=False, resume=True)
    assert rest.finished and rest.losses == whole.losses
    a, b = (
        load_file(str(tmp_path / "whole" / "model.safetensors")),
        load_file(str(tmp_path / "cut" / "model.safetensors")),
    )
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = cfg.model_copy(update={"lr": 2e-3})
    pretrain(other, TINY, tmp_path / "cut2", progress=False, stop_after=2)
    with pytest.raises(ElclError, match="another pass"):
        pretrain(cfg, TINY, tmp_path / "cut2", progress=False, resume=True)


def test_name_table_and_sources(tmp_path: Path) -> None:
    p = tmp_path / "names.tsv"
    p.write_text("# id\tname\nC1\theart attack\tmyocardial infarction\nC1\tMI\nC2\tflu\n", encoding="utf-8")
    onto = load_name_table(p)
    assert onto.names == {"C1": ["heart attack", "myocardial infarction", "MI"], "C2": ["flu"]}
    (tmp_path / "bad.tsv").write_text("C1\theart attack\nC2\n", encoding="utf-8")
    with pytest.raises(ElclError, match=r"bad.tsv:2: expected 'ID<TAB>name'"):
        load_name_table(tmp_path / "bad.tsv")
    with pytest.raises(ElclError, match="medic, mesh or an existing TSV"):
        load_pretraining_ontology(str(tmp_path / "missing.tsv"), tmp_path)
    with pytest.raises(ElclError, match="CTD_diseases"):
        load_pretraining_ontology("medic", tmp_path)


def test_pretraining_never_reads_a_corpus(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Corpora sit next to the ontology, yet no corpus loader runs and no corpus file is opened."""
    from elcl.data import corpora, pubtator

    data = write_synthetic_corpora(tmp_path / "data")
    write_medic(data / "ontologies" / "CTD_diseases.tsv.gz", DISEASES)
    calls: list[str] = []

    def spy(name: str):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"pretraining called {name}")

        return fail

    for mod, fn in (
        (corpora, "load_corpus"),
        (corpora, "_load_cached"),
        (pubtator, "parse_pubtator"),
        (pubtator, "parse_pubtator_file"),
    ):
        monkeypatch.setattr(mod, fn, spy(f"{mod.__name__}.{fn}"))
    opened: list[str] = []
    real_open, real_gzip_open = builtins.open, gzip.open

    def record_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def record_gzip(file, *args, **kwargs):
        opened.append(str(file))
        return real_gzip_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", record_open)
    monkeypatch.setattr(gzip, "open", record_gzip)
    out = tmp_path / "enc"
    res = CliRunner().invoke(
        app,
        [
            "pretrain",
            "--ontology",
            "medic",
            "--data-dir",
            str(data),
            "--out",
            str(out),
            "--encoder",
            str(tiny_bert),
            "--steps",
            "3",
            "--batch-size",
            "6",
            "--no-progress",
            "--num-threads",
            "1",
        ],
    )
    assert res.exit_code == 0, res.output
    assert calls == []
    assert any(p.endswith("CTD_diseases.tsv.gz") for p in opened)
    corpus_dirs = (str(data / "ncbi_disease"), str(data / "bc5cdr"))
    assert not [p for p in opened if p.startswith(corpus_dirs)]
    assert (out / "model.safetensors").is_file() and "3 steps" in res.output


def test_pretraining_works_without_any_corpus(tiny_bert: Path, tmp_path: Path) -> None:
    names = tmp_path / "names.tsv"
    names.write_text("".join(f"{cid}\t{n}\n" for cid, ns in DISEASES.items() for n in ns), encoding="utf-8")
    empty = tmp_path / "no_corpora"
    empty.mkdir()
    res = CliRunner().invoke(
        app,
        [
            "pretrain",
            "--ontology",
            str(names),
            "--data-dir",
            str(empty),
            "--out",
            str(tmp_path / "enc"),
            "--encoder",
            str(tiny_bert),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--loss",
            "infonce",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output


def test_cli_bad_option_is_one_line(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["pretrain", "--ontology", "medic", "--out", str(tmp_path / "x"), "--loss", "triplet"]
    )
    assert res.exit_code != 0 and "loss" in str(res.exception or res.output)


def test_ctrl_c_note_names_the_checkpoint(tmp_path: Path) -> None:
    from elcl.cli.pretrain_cmd import _resume_note

    assert "no checkpoint written yet" in _resume_note(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest.json").write_text(json.dumps({"step": 25, "dir": "step-00000025"}))
    assert "step 25" in _resume_note(tmp_path) and "--resume" in _resume_note(tmp_path)
