"""MeSH loaders (TSV and official XML), chemical-ontology choice, gold coverage, bad input."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from elcl.cli.app import app, main
from elcl.data.mesh import find_mesh_files, load_mesh_chemicals, load_mesh_descriptors, load_mesh_supplementary
from elcl.data.ontology import Ontology, gold_coverage, ontology_for_task
from elcl.data.types import Corpus, Document, Mention
from elcl.errors import CorpusFormatError

DESC = (
    "DescriptorUI\tPreferredName\tTreeNumbers\tSynonyms\n"
    "D000001\tCalcimycin\tD02.355.291|D03.633.100\tA-23187|A23187\n"
    "D001241\tAspirin\tD02.455.426|D02.241.223\tAcetylsalicylic Acid|ASA\n"
    "D006527\tHepatolenticular Degeneration\tC06.552.413|C10.228\tWilson Disease\n"
    "D000072182\tNon-Medical Facilities\t\tNon Medical Facilities\n"
)
SUPP = "SupplementaryUI\tName\nC000002\tAcabel\nC000002\tCG 201\nC476217\tamyloid beta-protein (1-42)\n"

DESC_XML = """<?xml version="1.0"?>
<DescriptorRecordSet LanguageCode="eng">
 <DescriptorRecord DescriptorClass="1">
  <DescriptorUI>D001241</DescriptorUI>
  <DescriptorName><String>Aspirin</String></DescriptorName>
  <TreeNumberList><TreeNumber>D02.455.426</TreeNumber></TreeNumberList>
  <ConceptList><Concept PreferredConceptYN="Y"><ConceptUI>M0001</ConceptUI>
   <ConceptName><String>Aspirin</String></ConceptName>
   <TermList><Term><TermUI>T1</TermUI><String>Aspirin</String></Term>
             <Term><TermUI>T2</TermUI><String>Acetylsalicylic Acid</String></Term></TermList>
  </Concept></ConceptList>
 </DescriptorRecord>
 <DescriptorRecord DescriptorClass="1">
  <DescriptorUI>D006527</DescriptorUI>
  <DescriptorName><String>Hepatolenticular Degeneration</String></DescriptorName>
  <TreeNumberList><TreeNumber>C06.552.413</TreeNumber></TreeNumberList>
  <ConceptList><Concept><TermList><Term><String>Wilson Disease</String></Term></TermList></Concept></ConceptList>
 </DescriptorRecord>
</DescriptorRecordSet>
"""
SUPP_XML = """<?xml version="1.0"?>
<SupplementalRecordSet LanguageCode="eng">
 <SupplementalRecord SCRClass="1">
  <SupplementalRecordUI>C000002</SupplementalRecordUI>
  <SupplementalRecordName><String>Acabel</String></SupplementalRecordName>
  <ConceptList><Concept><TermList><Term><String>Acabel</String></Term><Term><String>CG 201</String></Term></TermList></Concept></ConceptList>
 </SupplementalRecord>
</SupplementalRecordSet>
"""


def _gz(path: Path, text: str) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(text)
    return path


def _onto_dir(tmp_path: Path) -> Path:
    d = tmp_path / "ontologies"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_descriptors_tsv(tmp_path: Path) -> None:
    p = _gz(tmp_path / "mesh_descriptors_2024.tsv.gz", DESC)
    every = load_mesh_descriptors(p)
    assert every.names["D001241"] == ["Aspirin", "Acetylsalicylic Acid", "ASA"]
    assert set(every.names) == {"D000001", "D001241", "D006527", "D000072182"}
    chem = load_mesh_descriptors(p, ("D",))
    assert set(chem.names) == {"D000001", "D001241"}
    assert "trees D" in chem.source


def test_supplementary_tsv(tmp_path: Path) -> None:
    o = load_mesh_supplementary(_gz(tmp_path / "mesh_supplementary_2018.tsv.gz", SUPP))
    assert o.names == {"C000002": ["Acabel", "CG 201"], "C476217": ["amyloid beta-protein (1-42)"]}


def test_official_xml_matches_tsv(tmp_path: Path) -> None:
    desc = tmp_path / "desc2025.xml"
    desc.write_text(DESC_XML)
    supp = _gz(tmp_path / "supp2025.xml.gz", SUPP_XML)
    d = load_mesh_descriptors(desc, ("D",))
    assert d.names == {"D001241": ["Aspirin", "Acetylsalicylic Acid"]}
    assert load_mesh_descriptors(desc).names["D006527"] == ["Hepatolenticular Degeneration", "Wilson Disease"]
    assert load_mesh_supplementary(supp).names == {"C000002": ["Acabel", "CG 201"]}


def test_newest_release_is_found(tmp_path: Path) -> None:
    d = _onto_dir(tmp_path)
    _gz(d / "mesh_descriptors_2021.tsv.gz", DESC)
    _gz(d / "mesh_descriptors_2024.tsv.gz", DESC)
    (d / "desc2023.xml").write_text(DESC_XML)
    _gz(d / "mesh_supplementary_2018.tsv.gz", SUPP)
    desc, supp = find_mesh_files(d)
    assert desc is not None and desc.name == "mesh_descriptors_2024.tsv.gz"
    assert supp is not None and supp.name == "mesh_supplementary_2018.tsv.gz"
    (d / "desc2025.xml").write_text(DESC_XML)
    assert find_mesh_files(d)[0].name == "desc2025.xml"  # type: ignore[union-attr]


def _chem_corpus() -> Corpus:
    def m(text: str, ids: tuple[str, ...]) -> Mention:
        return Mention("1", 0, len(text), text, "Chemical", ids)

    train = (Document("1", "t", "a", (m("aspirin", ("D001241",)), m("acabel", ("C000002",)), m("old", ("C999999",)))),)
    return Corpus("toy", {"train": train, "dev": (), "test": ()})


def test_auto_uses_ctd_then_mesh_then_mentions(tmp_path: Path) -> None:
    c = _chem_corpus()
    assert ontology_for_task("bc5cdr_chemical", tmp_path, c).source.startswith("mentions")
    d = _onto_dir(tmp_path)
    _gz(d / "mesh_descriptors_2024.tsv.gz", DESC)
    only_desc = ontology_for_task("bc5cdr_chemical", tmp_path, c)
    assert set(only_desc.names) == {"D000001", "D001241"}  # tree D only, no C ids without the supplementary file
    _gz(d / "mesh_supplementary_2018.tsv.gz", SUPP)
    mesh = ontology_for_task("bc5cdr_chemical", tmp_path, c)
    assert set(mesh.names) == {"D000001", "D001241", "C000002", "C476217"}
    assert "MeSH descriptors file" in mesh.source and "MeSH supplementary file" in mesh.source
    both = ontology_for_task("bc5cdr_chemical", tmp_path, c, mode="auto+mentions")
    assert "old" in both.names["C999999"] and both.source.endswith("mentions of toy train")
    assert ontology_for_task("bc5cdr_chemical", tmp_path, c, mode="mentions").source.startswith("mentions")
    (d / "CTD_chemicals.tsv").write_text("# x\nAspirin\tMESH:D001241\t50-78-2\t\t\t\t\tASA\n")
    assert ontology_for_task("bc5cdr_chemical", tmp_path, c).source.startswith("CTD chemicals file")


def test_gold_coverage_counts_retired_ids(tmp_path: Path) -> None:
    d = _onto_dir(tmp_path)
    _gz(d / "mesh_descriptors_2024.tsv.gz", DESC)
    _gz(d / "mesh_supplementary_2018.tsv.gz", SUPP)
    onto = load_mesh_chemicals(d)
    assert onto is not None
    c = _chem_corpus()
    cov = gold_coverage(c.mentions("train"), onto)
    assert (cov.linkable, cov.absent, cov.absent_ids) == (3, 1, (("C999999", 1),))
    assert cov.summary().startswith("1/3 linkable mentions have gold ids absent")
    empty = Ontology({"D1": ["x"]})
    assert gold_coverage([Mention("1", 0, 1, "x", "Chemical", (), unlinkable=True)], empty).linkable == 0


@pytest.mark.parametrize(
    ("name", "text", "line", "what"),
    [
        ("mesh_descriptors_2024.tsv", DESC + "D000002\tTemefos\tD02.705\n", 6, "3 tab-separated columns, expected 4"),
        ("mesh_descriptors_2024.tsv", DESC + "X000002\tTemefos\tD02.705\t\n", 6, "descriptor id 'X000002'"),
        ("mesh_descriptors_2024.tsv", DESC + "D000001\tAgain\tD02\t\n", 6, "appears twice"),
        ("mesh_supplementary_2018.tsv", SUPP + "C000003\tfoo\tbar\n", 5, "3 tab-separated columns, expected 2"),
        ("mesh_supplementary_2018.tsv", SUPP + "12345\tfoo\n", 5, "supplementary concept id '12345'"),
    ],
)
def test_bad_rows(tmp_path: Path, name: str, text: str, line: int, what: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    loader = load_mesh_descriptors if "descriptors" in name else load_mesh_supplementary
    with pytest.raises(CorpusFormatError, match=rf"^{p}:{line}: .*{what}"):
        loader(p)


def test_truncated_gzip(tmp_path: Path) -> None:
    full = _gz(tmp_path / "full.tsv.gz", SUPP + "".join(f"C{i:06d}\tname {i}\n" for i in range(10, 5000)))
    cut = tmp_path / "mesh_supplementary_2018.tsv.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CorpusFormatError, match=rf"^{cut}:\d+: compressed stream ends early"):
        load_mesh_supplementary(cut)


def test_cli_bad_mesh_exit_2_nothing_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken MeSH file stops `elcl data candidates` with FILE:LINE and exit 2; no index is cached."""
    from tests.synthetic import write_synthetic_corpora

    root = write_synthetic_corpora(tmp_path / "data")
    d = _onto_dir(root)
    (d / "mesh_descriptors_2024.tsv").write_text(DESC + "D12\tbad\t\t\n")
    cache = tmp_path / "cache"
    monkeypatch.setenv("ELCL_CACHE_DIR", str(cache))
    monkeypatch.setattr(sys, "argv", ["elcl", "data", "candidates", "bc5cdr_chemical", "--data-dir", str(root)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"error: {d / 'mesh_descriptors_2024.tsv'}:6: descriptor id 'D12': expected D followed by 6 or 9 digits (e.g. D000001)"
    )
    assert not cache.exists() or not any(cache.rglob("*.joblib"))


def test_cli_candidates_reports_absent_gold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.synthetic import write_synthetic_corpora

    root = write_synthetic_corpora(tmp_path / "data")
    d = _onto_dir(root)
    # A MeSH file that knows none of the synthetic chemical ids: every linkable mention is absent.
    _gz(d / "mesh_descriptors_2024.tsv.gz", DESC)
    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    res = CliRunner().invoke(
        app, ["data", "candidates", "bc5cdr_chemical", "--data-dir", str(root), "--json", "--k", "1"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert "MeSH descriptors file" in out["ontology"]
    for s in ("dev", "test"):
        row = out["splits"][s]
        assert row["gold_absent"] == row["linkable"] > 0
        assert sum(row["gold_absent_ids"].values()) >= row["gold_absent"]


@pytest.mark.integration
def test_real_mesh_bc5cdr_coverage(shared_corpora: Path) -> None:
    from elcl.data.corpora import load_corpus

    if find_mesh_files(shared_corpora / "ontologies")[1] is None:
        pytest.skip("MeSH files not in the corpora dir")
    onto = load_mesh_chemicals(shared_corpora / "ontologies")
    assert onto is not None
    desc = load_mesh_descriptors(next((shared_corpora / "ontologies").glob("mesh_descriptors_*.tsv.gz")))
    assert len(desc) == 30764  # SOURCES.md: every row is a descriptor
    assert len(load_mesh_descriptors(desc.source.split(" file ")[1], ("D",))) == 10527  # tree D
    c = load_corpus("bc5cdr_chemical", shared_corpora)
    for split in ("train", "dev", "test"):
        cov = gold_coverage(c.mentions(split), onto)
        # SOURCES.md: the two files hold the ids of about 98% of BC5CDR chemical mentions.
        assert 0.97 < 1 - cov.absent / cov.linkable < 0.995
