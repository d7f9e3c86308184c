"""TF-IDF candidates: ranking on a tiny ontology, cache, recall@k, real-data reference."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from elcl.candidates.abbrev import find_abbreviations, query_texts
from elcl.candidates.recall import recall_at_k
from elcl.candidates.tfidf import Candidate, TfidfCandidateGenerator
from elcl.data.ontology import Ontology
from elcl.data.types import Document, Mention


def tiny() -> Ontology:
    return Ontology(
        names={
            "D1": ["Wilson Disease", "hepatolenticular degeneration"],
            "D2": ["Breast Cancer", "breast neoplasm"],
            "D3": ["Ovarian Cancer"],
            "D4": ["Asthma"],
            "D5": ["asthma"],  # the same name as D4: both concepts score it
        },
        alt_ids={"D1": frozenset({"OMIM:277900"})},
        source="tiny",
    )


def test_ranking_and_names() -> None:
    gen = TfidfCandidateGenerator(tiny()).fit()
    (c,) = gen.top_k(["wilson's disease"], 1)
    assert c == [Candidate("D1", "Wilson Disease", c[0].score)] and 0 < c[0].score <= 1
    (c,) = gen.top_k(["breast neoplasms"], 2)
    assert c[0].concept_id == "D2" and c[0].name == "breast neoplasm"
    (c,) = gen.top_k(["asthma"], 5)
    assert [x.concept_id for x in c[:2]] == ["D4", "D5"]  # tie broken deterministically
    assert len(c) == 5 and len({x.concept_id for x in c}) == 5
    assert all(c[i].score >= c[i + 1].score for i in range(4))
    assert gen.top_k(["zzzz"], 3)[0][0].score == 0.0  # padded with zero-score concepts


def test_cache_hit(tmp_path: Path) -> None:
    first = TfidfCandidateGenerator(tiny(), cache_dir=tmp_path).fit()
    assert not first.cache_hit and list(tmp_path.glob("tfidf-*.joblib"))
    second = TfidfCandidateGenerator(tiny(), cache_dir=tmp_path).fit()
    assert second.cache_hit
    assert second.top_k(["ovarian cancer"], 3) == first.top_k(["ovarian cancer"], 3)
    other = TfidfCandidateGenerator(tiny(), cache_dir=tmp_path, ngram_range=(3, 4)).fit()
    assert not other.cache_hit


def test_recall_uses_equivalent_ids() -> None:
    o = tiny()
    ms = [
        Mention("1", 0, 1, "w", "Disease", ("OMIM:277900",)),
        Mention("1", 0, 1, "x", "Disease", ("D3",)),
        Mention("1", 0, 1, "y", "Disease", (), unlinkable=True),
    ]
    cands = [[Candidate("D1", "Wilson Disease", 0.9)], [Candidate("D2", "a", 0.9), Candidate("D3", "b", 0.5)], []]
    assert recall_at_k(ms, cands, o, ks=(1, 2)) == {1: 0.5, 2: 1.0}


def test_recall_scores_candidates_as_linker_accuracy_does() -> None:
    """Two concepts sharing an alt id stay two concepts: recall@1 is the retriever's acc@1."""
    from elcl.continual.runner import tfidf_top1
    from elcl.training.examples import GoldIndex, LinkingExample

    o = Ontology(
        names={"D1": ["a"], "D2": ["b"], "OMIM:9": ["c"]},
        alt_ids={"D1": frozenset({"DO:1"}), "D2": frozenset({"DO:1", "OMIM:9"})},
    )
    gold_index = GoldIndex(o)
    cases = [  # (gold ids, top candidate, right?)
        (("D1",), "D2", False),  # only the shared DO:1 in common
        (("D2",), "OMIM:9", True),  # a concept named by its alt id
        (("OMIM:9",), "D2", True),
        (("DO:1",), "D2", True),  # the alt id itself annotated
    ]
    for gold, top, right in cases:
        m = Mention("1", 0, 1, "w", "Disease", gold)
        assert recall_at_k([m], [[Candidate(top, "x", 1.0)]], o, ks=(1,)) == {1: float(right)}, (gold, top)
        ex = LinkingExample(m, "w", (top,), ("x",), (1.0,), (gold_index.is_correct(top, frozenset(gold)),))
        assert tfidf_top1([ex]) == float(right)


def test_abbreviations() -> None:
    text = "Copper toxicosis (CT) is rare. Patients with CT and familial adenomatous polyposis (FAP) ..."
    assert find_abbreviations(text) == {"CT": "Copper toxicosis", "FAP": "familial adenomatous polyposis"}
    ms = (Mention("1", 45, 47, "CT", "Disease", ("D1",)), Mention("1", 0, 5, "maternal CT", "Disease", ("D1",)))
    doc = Document("1", text, "", ms)
    assert query_texts([doc]) == ["Copper toxicosis", "maternal Copper toxicosis"]


def test_abbreviations_prefer_word_initials_and_expand_nested_forms() -> None:
    # Schwartz-Hearst's shortest tail would match AAPC's second A inside "adenomatous"
    text = "APC is implicated in attenuated adenomatous polyposis coli (AAPC), a milder form."
    assert find_abbreviations(text) == {"AAPC": "attenuated adenomatous polyposis coli"}
    # a long form holding another defined short form gets it expanded
    text = "Diffuse mesangial sclerosis (DMS) occurs. Of 24 patients, 10 had isolated DMS (IDMS)."
    assert find_abbreviations(text)["IDMS"] == "isolated Diffuse mesangial sclerosis"
    # initials across a hyphenated word and stop words; letters inside words still fall back
    assert find_abbreviations("in X-linked dilated cardiomyopathy (XLDCM) the") == {
        "XLDCM": "X-linked dilated cardiomyopathy"
    }
    assert find_abbreviations("a deficiency of the second component (DSC) was") == {
        "DSC": "deficiency of the second component"
    }
    assert find_abbreviations("patients with hereditary hemochromatosis (HH) were") == {
        "HH": "hereditary hemochromatosis"
    }
    # the earlier rule, kept for runs made with it, and no expansion at all
    text = "APC is implicated in attenuated adenomatous polyposis coli (AAPC), a milder form."
    assert find_abbreviations(text, "schwartz_hearst") == {"AAPC": "adenomatous polyposis coli"}
    assert find_abbreviations(text, "off") == {}


@pytest.mark.integration
def test_ncbi_reference(shared_corpora: Path, tmp_path: Path) -> None:
    from elcl.data.corpora import load_corpus
    from elcl.data.ontology import ontology_for_task

    corpus = load_corpus("ncbi_disease", shared_corpora)
    onto = ontology_for_task("ncbi_disease", shared_corpora, corpus)
    gen = TfidfCandidateGenerator(onto, cache_dir=tmp_path).fit()
    docs = corpus.documents("test")
    t0 = time.perf_counter()
    cands = gen.top_k(query_texts(docs), 20)
    assert time.perf_counter() - t0 < 30
    rec = recall_at_k(corpus.mentions("test"), cands, onto, ks=(1, 20))
    assert rec[1] >= 0.75 and rec[20] >= 0.90, rec


def test_pair_scores_match_top_k_scores() -> None:
    from elcl.candidates.tfidf import TfidfCandidateGenerator
    from elcl.data.ontology import Ontology

    onto = Ontology({"C1": ["lung cancer", "lung carcinoma"], "C2": ["breast cancer"], "C3": ["asthma"]})
    gen = TfidfCandidateGenerator(onto).fit()
    (cands,) = gen.top_k(["lung tumour"], 3)
    scores = gen.pair_scores(["lung tumour"] * len(cands), [c.name for c in cands])
    assert [round(float(s), 5) for s in scores] == [round(c.score, 5) for c in cands]
