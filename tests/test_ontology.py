"""Ontology loaders on small fixtures."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from elcl.data.ontology import (
    build_from_mentions,
    load_ctd_chemicals,
    load_dictionary,
    load_medic,
    load_mrconso,
    ontology_for_task,
)
from elcl.data.types import Corpus, Document, Mention
from elcl.errors import CorpusFormatError, ElclError

MEDIC = (
    "# CTD header\n# Fields:\n"
    "Wilson Disease\tMESH:D006527\tOMIM:277900|DO:DOID:893\t\t\t\t\tHepatolenticular Degeneration|Wilson's disease\t\n"
    "Breast Neoplasms\tMESH:D001943\t\t\t\t\t\tBreast Cancer|Breast Tumor\t\n"
)


def test_medic(tmp_path: Path) -> None:
    p = tmp_path / "CTD_diseases.tsv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(MEDIC)
    o = load_medic(p)
    assert o.names["D006527"] == ["Wilson Disease", "Hepatolenticular Degeneration", "Wilson's disease"]
    assert o.equivalent_ids("OMIM:277900") == {"D006527", "OMIM:277900", "DO:DOID:893"}
    assert o.equivalent_ids("D001943") == {"D001943"}
    assert "MEDIC file" in o.source
    assert len(o.content_hash()) == 64


def test_malformed_medic(tmp_path: Path) -> None:
    p = tmp_path / "CTD_diseases.tsv"
    p.write_text(MEDIC + "Broken\n")
    with pytest.raises(CorpusFormatError, match=rf"^{p}:5: "):
        load_medic(p)
    q = tmp_path / "CTD_bad_id.tsv"
    q.write_text("Foo\tD12 34\t\n")
    with pytest.raises(CorpusFormatError, match=rf"^{q}:1: bad MEDIC row"):
        load_medic(q)


def test_chemicals_mrconso_dictionary(tmp_path: Path) -> None:
    chem = tmp_path / "CTD_chemicals.tsv"
    chem.write_text("# x\nAspirin\tMESH:D001241\t50-78-2\t\t\t\t\tAcetylsalicylic Acid|ASA\n")
    assert load_ctd_chemicals(chem).names["D001241"] == ["Aspirin", "Acetylsalicylic Acid", "ASA"]
    rrf = tmp_path / "MRCONSO.RRF"
    row = ["C0004057", "ENG"] + ["x"] * 12 + ["Aspirin", "N", ""]
    fr = ["C0004057", "FRE"] + ["x"] * 12 + ["Aspirine", "N", ""]
    rrf.write_text("|".join(row) + "\n" + "|".join(fr) + "\n")
    assert load_mrconso(rrf).names == {"UMLS:C0004057": ["Aspirin"]}
    bad = tmp_path / "MRCONSO_bad.RRF"
    bad.write_text("C1|ENG|x\n")
    with pytest.raises(CorpusFormatError, match=rf"^{bad}:1:"):
        load_mrconso(bad)
    dic = tmp_path / "dict.txt"
    dic.write_text("D001943|D010051||breast and ovarian cancer\nOMIM:277900||wilson\n")
    o = load_dictionary(dic)
    assert o.names["D010051"] == ["breast and ovarian cancer"] and o.names["OMIM:277900"] == ["wilson"]
    bad_dic = tmp_path / "bad_dict.txt"
    bad_dic.write_text("D1||a\nfoo||b\n")
    with pytest.raises(CorpusFormatError, match=rf"^{bad_dic}:2: unknown concept id format 'foo'"):
        load_dictionary(bad_dic)


def _corpus() -> Corpus:
    def m(text: str, ids: tuple[str, ...], comps: tuple[str, ...] = ()) -> Mention:
        return Mention("1", 0, len(text), text, "Disease", ids, composite=len(ids) > 1, components=comps)

    train = (
        Document(
            "1",
            "t",
            "a",
            (m("wd", ("D1",)), m("wilson", ("D1",)), m("wilson", ("D1",)), m("a and b", ("D2", "D3"), ("a", "b"))),
        ),
    )
    test = (Document("2", "t", "a", (m("secret", ("D9",)),)),)
    return Corpus("toy", {"train": train, "dev": (), "test": test})


def test_build_from_mentions() -> None:
    o = build_from_mentions(_corpus())
    assert o.names == {"D1": ["wilson", "wd"], "D2": ["a"], "D3": ["b"]}
    assert o.source == "mentions of toy train"
    with pytest.raises(ElclError, match="test"):
        build_from_mentions(_corpus(), ("train", "test"))


def test_ontology_for_task(tmp_path: Path) -> None:
    c = _corpus()
    assert ontology_for_task("bc5cdr_chemical", tmp_path, c).source == "mentions of toy train"
    assert ontology_for_task("medmentions_st21pv", tmp_path, c, mode="mentions").source.startswith("mentions")
    with pytest.raises(ElclError, match="MEDIC not found"):
        ontology_for_task("ncbi_disease", tmp_path, c)
    (tmp_path / "ontologies").mkdir()
    (tmp_path / "ontologies" / "CTD_diseases.tsv").write_text(MEDIC)
    assert ontology_for_task("ncbi_disease", tmp_path, c).source.startswith("MEDIC file")
    mixed = ontology_for_task("bc5cdr", tmp_path, c)
    assert "D006527" in mixed.names and mixed.source.endswith("+ mentions of toy train")


@pytest.mark.integration
def test_real_medic(shared_corpora: Path) -> None:
    o = load_medic(shared_corpora / "ontologies" / "CTD_diseases.tsv.gz")
    assert len(o) == 11865
    assert "D006527" in o.equivalent_ids("OMIM:277900")
