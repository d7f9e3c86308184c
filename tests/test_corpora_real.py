"""Corpus registry: a MedMentions-layout fixture, errors, and the real corpora counts."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from elcl.data.corpora import TASKS, clear_cache, load_corpus
from elcl.errors import ElclError

MM = (
    "100|t|Dctn4 in cystic fibrosis\n100|a|Text.\n"
    "100\t9\t24\tcystic fibrosis\tT047\tUMLS:C0010674\n\n"
    "200|t|Aspirin\n200|a|Pain.\n"
    "200\t0\t7\tAspirin\tT109,T121\tUMLS:C0004057\n\n"
    "300|t|Pain\n300|a|\n"
    "300\t0\t4\tPain\tT184\tUMLS:C0030193\n\n"
)


def test_medmentions_layout(tmp_path: Path) -> None:
    d = tmp_path / "medmentions" / "st21pv" / "data"
    d.mkdir(parents=True)
    with gzip.open(d / "corpus_pubtator.txt.gz", "wt", encoding="utf-8") as fh:
        fh.write(MM)
    pm = tmp_path / "medmentions" / "full" / "data"
    pm.mkdir(parents=True)
    for split, pmid in (("trng", "100"), ("dev", "200"), ("test", "300")):
        (pm / f"corpus_pubtator_pmids_{split}.txt").write_text(pmid + "\n")
    clear_cache()
    c = load_corpus("medmentions_st21pv", tmp_path)
    assert [len(c.documents(s)) for s in ("train", "dev", "test")] == [1, 1, 1]
    assert c.mentions("train")[0].concept_ids == ("UMLS:C0010674",)
    assert c.mentions("dev")[0].semantic_type == "T109,T121"


def test_unknown_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ElclError, match="known: ncbi_disease"):
        load_corpus("nope", tmp_path)
    with pytest.raises(ElclError, match=r"NCBItrainset_corpus.txt not found; run `elcl data fetch ncbi_disease"):
        load_corpus("ncbi_disease", tmp_path)


def test_cache_returns_same_object(shared_corpora: Path) -> None:
    assert load_corpus("ncbi_disease", shared_corpora) is load_corpus("ncbi_disease", shared_corpora)


@pytest.mark.integration
@pytest.mark.parametrize(
    "name, docs, mentions",
    [
        ("ncbi_disease", (593, 100, 100), (5145, 787, 960)),
        ("bc5cdr", (500, 500, 500), (9385, 9591, 9809)),
    ],
)
def test_real_counts(shared_corpora: Path, name: str, docs: tuple[int, ...], mentions: tuple[int, ...]) -> None:
    c = load_corpus(name, shared_corpora)
    splits = ("train", "dev", "test")
    assert tuple(len(c.documents(s)) for s in splits) == docs
    assert tuple(len(c.mentions(s)) for s in splits) == mentions


@pytest.mark.integration
def test_bc5cdr_filters(shared_corpora: Path) -> None:
    dis = load_corpus("bc5cdr_disease", shared_corpora)
    chem = load_corpus("bc5cdr_chemical", shared_corpora)
    allm = load_corpus("bc5cdr", shared_corpora)
    for s in ("train", "dev", "test"):
        assert len(dis.mentions(s)) + len(chem.mentions(s)) == len(allm.mentions(s))
        assert {m.semantic_type for m in dis.mentions(s)} == {"Disease"}
    assert set(TASKS) >= {"medmentions_st21pv", "medmentions_full"}
