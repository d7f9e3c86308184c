"""Dense candidates: exact search equals brute force, the embedding cache, the merge rule,
the config hook and the CLI rows."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch
from tiny_models import write_tiny_bert
from typer.testing import CliRunner

from elcl.candidates.tfidf import Candidate, TfidfCandidateGenerator
from elcl.data.ontology import Ontology
from elcl.models.dense_candidates import (
    DenseCandidateGenerator,
    MergedCandidateGenerator,
    merge_candidates,
    union_candidates,
)


def _random_ontology(n_concepts: int = 40, seed: int = 0) -> Ontology:
    rng = random.Random(seed)

    def word() -> str:
        return "".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(3, 9)))

    names = {
        f"D{i:06d}": [" ".join(word() for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 4))]
        for i in range(n_concepts)
    }
    names["D000000"] = [
        f"zz {i}" for i in range(30)
    ]  # one concept owning many similar names: the search must look further
    names["D000001"].append(names["D000002"][0])  # one name shared by two concepts
    return Ontology(names, {}, "random")


def _brute_force(gen: DenseCandidateGenerator, onto: Ontology, text: str, k: int) -> list[tuple[str, str]]:
    """Score every name, sort them all, walk down collecting distinct concepts."""
    from elcl.models.dense_candidates import name_rows

    rows, display, concepts, cids = name_rows(onto)
    sims = (gen.encode([text]) @ gen._emb.T)[0].tolist()
    out: list[tuple[str, str]] = []
    for r in sorted(range(len(rows)), key=lambda r: -sims[r]):
        for c in concepts[r]:
            if cids[c] not in [o for o, _ in out]:
                out.append((cids[c], display[r]))
    return out[:k]


@pytest.mark.parametrize("query_chunk", [3, 512])
def test_dense_search_equals_brute_force(tiny_bert: Path, tmp_path: Path, query_chunk: int) -> None:
    onto = _random_ontology()
    gen = DenseCandidateGenerator(onto, str(tiny_bert), cache_dir=tmp_path, query_chunk=query_chunk, batch_size=7).fit()
    from elcl.models.dense_candidates import name_rows

    assert torch.allclose(gen._emb, gen.encode(name_rows(onto)[0]), atol=1e-6)  # the index holds every name's embedding
    queries = ["zz 3", "abc def", "ponm", "zz 3", "a"]
    got = gen.top_k(queries, 12)
    for q, cands in zip(queries, got):
        assert len(cands) == 12 and len({c.concept_id for c in cands}) == 12
        assert [(c.concept_id, c.name) for c in cands] == _brute_force(gen, onto, q, 12)
        assert all(a.score >= b.score for a, b in itertools.pairwise(cands))


def test_embeddings_are_cached_by_encoder_and_ontology(tiny_bert: Path, tmp_path: Path) -> None:
    onto = _random_ontology()
    first = DenseCandidateGenerator(onto, str(tiny_bert), cache_dir=tmp_path).fit()
    assert not first.cache_hit and len(list(tmp_path.glob("dense-*.safetensors"))) == 1
    again = DenseCandidateGenerator(onto, str(tiny_bert), cache_dir=tmp_path).fit()
    assert again.cache_hit and torch.equal(first._emb, again._emb)
    other_model = write_tiny_bert(tmp_path / "bert2", hidden=32, layers=2, seed=1)
    assert DenseCandidateGenerator(onto, str(other_model), cache_dir=tmp_path).cache_key() != first.cache_key()
    assert (
        DenseCandidateGenerator(_random_ontology(seed=1), str(tiny_bert), cache_dir=tmp_path).cache_key()
        != first.cache_key()
    )
    next(tmp_path.glob("dense-*.safetensors")).write_bytes(b"garbage")  # a corrupt entry is rebuilt
    rebuilt = DenseCandidateGenerator(onto, str(tiny_bert), cache_dir=tmp_path).fit()
    assert not rebuilt.cache_hit and torch.equal(rebuilt._emb, first._emb)


def _c(cid: str) -> Candidate:
    return Candidate(cid, cid.lower(), 1.0)


def test_merge_rule() -> None:
    sparse = [_c(x) for x in "ABCDEF"]
    dense = [_c(x) for x in "BXAYZ"]
    assert [c.concept_id for c in merge_candidates(sparse, dense, 6)] == list("ABCXYZ")
    assert [c.concept_id for c in merge_candidates(sparse, dense, 6, n_dense=1)] == list("ABCDEX")
    assert [c.concept_id for c in merge_candidates(sparse, dense, 4, n_dense=4)] == list("BXAY")
    assert [c.concept_id for c in merge_candidates(sparse, [_c("A")], 4)] == list(
        "ABCD"
    )  # dense runs out: TF-IDF fills
    assert [c.concept_id for c in union_candidates(sparse[:3], dense[:3])] == list("ABCX")


def test_merged_generator_scores_dense_finds_with_tfidf(tiny_bert: Path, tmp_path: Path) -> None:
    onto = Ontology(
        {"D000001": ["heart attack", "myocardial infarction"], "D000002": ["flu", "influenza"], "D000003": ["gout"]},
        {},
        "t",
    )
    sparse = TfidfCandidateGenerator(onto).fit()
    merged = MergedCandidateGenerator(
        sparse, DenseCandidateGenerator(onto, str(tiny_bert), cache_dir=tmp_path), n_dense=2
    ).fit()
    got = merged.top_k(["heart attack", "flu"], 3)
    for text, cands in zip(["heart attack", "flu"], got):
        assert len({c.concept_id for c in cands}) == 3
        for c in cands:
            assert c.score == pytest.approx(float(sparse.pair_scores([text], [c.name])[0]), abs=1e-6)


def test_config_hook_and_cli_rows(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from synthetic import write_synthetic_corpora

    from elcl.config import config_from_dict
    from elcl.training.tasks import prepare_eval_task

    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    data = write_synthetic_corpora(tmp_path / "data")
    cfg = config_from_dict(
        {
            "data": {"data_dir": str(data), "ontology": "mentions"},
            "tasks": ["ncbi_disease"],
            "candidates": {"k": 4, "dense": True, "dense_k": 2},
            "model": {"name": str(tiny_bert), "max_length": 16},
        }
    )
    task = prepare_eval_task("ncbi_disease", cfg)
    ex = task.examples["test"][0]
    assert len(ex.cand_ids) == 4 and len(set(ex.cand_ids)) == 4
    assert list((tmp_path / "cache" / "candidates").glob("dense-*.safetensors"))
    row = _dense_candidates_json(data, tiny_bert, "--k", "1", "--k", "3")["splits"]["test"]
    assert set(row) >= {"recall", "recall_dense", "recall_merged", "recall_union"}
    assert row["recall_union"]["3"] >= max(row["recall"]["3"], row["recall_dense"]["3"])


def test_cli_dense_pool_indexes_only_tfidf_names(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from synthetic import write_synthetic_corpora

    from elcl.cli.app import app

    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    data = write_synthetic_corpora(tmp_path / "data")
    runs = {
        bool(pool): _dense_candidates_json(data, tiny_bert, "--k", "1", *pool) for pool in ([], ["--dense-pool", "1"])
    }
    assert runs[True]["dense"]["indexed_names"] < runs[False]["dense"]["indexed_names"]
    res = CliRunner().invoke(
        app,
        ["data", "candidates", "ncbi_disease", "--data-dir", str(data), "--dense", str(tiny_bert), "--dense-pool", "0"],
    )
    assert res.exit_code != 0


def _dense_candidates_json(data: Path, encoder: Path, *extra: str) -> dict:
    """`elcl data candidates ncbi_disease --dense ENCODER --json` on the test split, parsed."""
    import json

    from elcl.cli.app import app

    res = CliRunner().invoke(
        app,
        ["data", "candidates", "ncbi_disease", "--data-dir", str(data), "--ontology", "mentions"]
        + ["--split", "test", "--dense", str(encoder), "--json", *extra],
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.output[res.output.index("{\n") :])
