"""No document in two tasks: the pure rule, its use by the runner, and the real corpora."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elcl.data.corpora import load_corpus
from elcl.data.overlap import cross_task_removals, held_out_ids, without_documents
from elcl.data.types import Corpus, Document, Mention


def _docs(*ids: str, n: int = 2) -> tuple[Document, ...]:
    return tuple(Document(i, "t", "a", tuple(Mention(i, 0, 1, "t", "Disease", ("D1",)) for _ in range(n))) for i in ids)


def _corpus(name: str, train: tuple[str, ...], dev: tuple[str, ...], test: tuple[str, ...], n: int = 2) -> Corpus:
    return Corpus(name, {"train": _docs(*train, n=n), "dev": _docs(*dev, n=n), "test": _docs(*test, n=n)})


def test_rule_on_overlapping_pmids() -> None:
    a = _corpus("a", ("1", "2", "3", "4"), ("10",), ("11",), n=2)
    b = _corpus("b", ("10", "5", "1"), ("2", "6"), ("3", "7"), n=3)
    c = _corpus("c", ("11", "2", "8"), ("9",), ("4",), n=1)
    r = cross_task_removals({"a": a, "b": b, "c": c})
    # a's train loses 2 and 3 (b's dev/test) and 4 (c's test); 1 is only in b's *train*: kept.
    assert r["a"].doc_ids == {"2", "3", "4"} and r["a"].mentions == 6 and r["a"].by_task == {"b": 2, "c": 1}
    # b's train loses 10 (a's dev); 1 is in a's train only: kept.
    assert r["b"].doc_ids == {"10"} and r["b"].mentions == 3 and r["b"].by_task == {"a": 1}
    # c's train loses 11 (a's test) and 2 (b's dev).
    assert r["c"].doc_ids == {"11", "2"} and r["c"].by_task == {"a": 1, "b": 1}
    assert r["a"].to_json() == {"documents": 3, "mentions": 6, "by_task": {"b": 2, "c": 1}, "doc_ids": ["2", "3", "4"]}
    assert "3 training documents (6 mentions) removed: 2 in b dev/test, 1 in c dev/test" in r["a"].summary()
    kept = without_documents(a, r["a"].doc_ids)
    assert [d.doc_id for d in kept.documents("train")] == ["1"] and kept.documents("dev") == a.documents("dev")
    assert held_out_ids(a) == {"10", "11"}


def test_same_corpus_tasks_and_single_task_remove_nothing() -> None:
    dis = _corpus("bc5cdr_disease", ("1", "2"), ("3",), ("4",))
    chem = _corpus("bc5cdr_chemical", ("1", "2"), ("3",), ("4",))
    r = cross_task_removals({"bc5cdr_disease": dis, "bc5cdr_chemical": chem})
    assert all(not x.doc_ids and x.mentions == 0 for x in r.values())
    assert cross_task_removals({"x": dis})["x"].doc_ids == frozenset()
    assert "no training document" in r["bc5cdr_disease"].summary()


def test_runner_trains_without_held_out_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sequence whose second task's dev split repeats a training document of the first:
    the runner never trains on it, logs the removal and stores it in run.json."""
    import torch
    from synthetic import write_synthetic_corpora
    from tiny_models import write_tiny_bert

    from elcl.config import config_from_dict
    from elcl.continual import runner
    from elcl.data.corpora import clear_cache
    from elcl.runtime import Runtime

    root = write_synthetic_corpora(tmp_path / "data", docs_per_split=3, mentions_per_doc=2)
    # Copy the first NCBI training abstract into BC5CDR's dev split (same PMID, as BioRED/BC5CDR share abstracts).
    ncbi_train = (root / "ncbi_disease" / "NCBItrainset_corpus.txt").read_text()
    first = ncbi_train.split("\n\n")[0].replace("SpecificDisease", "Disease") + "\n\n"
    shared_pmid = first.split("|", 1)[0]
    dev = root / "bc5cdr" / "CDR_DevelopmentSet.PubTator.txt"
    dev.write_text(first + dev.read_text())
    clear_cache()
    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    seen: list[str] = []
    real = runner.train_steps

    def spy(model, examples, *args, **kwargs):
        seen.extend(e.mention.doc_id for e in examples)
        return real(model, examples, *args, **kwargs)

    monkeypatch.setattr(runner, "train_steps", spy)
    cfg = config_from_dict(
        {
            "name": "overlap",
            "output_dir": str(tmp_path / "runs"),
            "tasks": ["ncbi_disease", "bc5cdr_disease"],
            "seeds": [1],
            "data": {"data_dir": str(root), "ontology": "mentions"},
            "model": {"name": str(write_tiny_bert(tmp_path / "tinybert")), "max_length": 12},
            "candidates": {"k": 4},
            "train": {"epochs": 1, "batch_size": 8, "device": "cpu", "eval_splits": ["test"]},
            "method": {"name": "naive"},
        }
    )
    (path,) = runner.run_experiment(cfg, Runtime(torch.device("cpu")))
    assert seen and shared_pmid not in seen
    state = json.loads((path / "run.json").read_text())
    removed = state["train_documents_removed"]
    assert removed["ncbi_disease"] == {
        "documents": 1,
        "mentions": 2,
        "by_task": {"bc5cdr_disease": 1},
        "doc_ids": [shared_pmid],
    }
    assert removed["bc5cdr_disease"]["documents"] == 0
    assert (
        "ncbi_disease: 1 training documents (2 mentions) removed: 1 in bc5cdr_disease dev/test"
        in (path / "log.txt").read_text()
    )


# SOURCES.md: BioRED train shares 41/44/53 abstracts with BC5CDR train/dev/test, dev 10/6/16,
# test 10/11/13; with NCBI Disease train 4/1/1, dev 3/1/0, test 1/0/0.
@pytest.mark.integration
@pytest.mark.parametrize(
    ("other", "removed_from_biored", "removed_from_other"),
    [("bc5cdr_chemical", 44 + 53, 10 + 10), ("bc5cdr_disease", 44 + 53, 10 + 10), ("ncbi_disease", 1 + 1, 3 + 1)],
)
def test_real_corpora_counts(
    shared_corpora: Path, other: str, removed_from_biored: int, removed_from_other: int
) -> None:
    if not (shared_corpora / "biored").is_dir():
        pytest.skip("BioRED not in the corpora dir")
    bio = "biored_chemical" if "chemical" in other else "biored_disease"
    r = cross_task_removals({other: load_corpus(other, shared_corpora), bio: load_corpus(bio, shared_corpora)})
    assert r[bio].documents == removed_from_biored
    assert r[other].documents == removed_from_other
