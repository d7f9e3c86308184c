"""BioRED: per-type ids, relation lines by rule, tasks and their ontologies, fetch layout."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.data import fetch as fetch_mod
from elcl.data.biored import parse_biored_ids
from elcl.data.corpora import clear_cache, load_corpus
from elcl.data.ontology import load_gene_info, ontology_for_task
from elcl.data.pubtator import parse_pubtator_file
from elcl.errors import CorpusFormatError


def _doc(pmid: str, title: str, abstract: str, anns: list[tuple[str, str, str]], relations: list[str]) -> str:
    """A PubTator document; ``anns`` are (text, type, id) found in order in the text."""
    text = f"{title} {abstract}"
    lines = [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
    pos = 0
    for mtext, mtype, mid in anns:
        start = text.index(mtext, pos)
        lines.append(f"{pmid}\t{start}\t{start + len(mtext)}\t{mtext}\t{mtype}\t{mid}")
        pos = start + len(mtext)
    lines += [f"{pmid}\t{r}" for r in relations]
    return "\n".join(lines) + "\n\n"


DOC_A = _doc(
    "100",
    "HNF-6 and type II diabetes.",
    "MODY genes and glucose in patients with Pro75Ala and p.P75A; HeLa cells; lectin.",
    [
        ("HNF-6", "GeneOrGeneProduct", "3175"),
        ("type II diabetes", "DiseaseOrPhenotypicFeature", "D003924"),
        ("MODY", "GeneOrGeneProduct", "3172,3651,6927"),
        ("glucose", "ChemicalEntity", "D005947"),
        ("patients", "OrganismTaxon", "9606"),
        ("Pro75Ala", "SequenceVariant", "rs74805019"),
        ("p.P75A", "SequenceVariant", "p|SUB|P|75|A"),
        ("HeLa", "CellLine", " CVCL_0030"),
        ("lectin", "GeneOrGeneProduct", "-"),
    ],
    ["Association\t3175\tD003924\tNo", "Positive_Correlation\tD005947\t3630\tNovel"],
)
DOC_B = _doc(
    "200",
    "Aspirin and asthma.",
    "Aspirin worsened asthma in mice via IL6.",
    [
        ("Aspirin", "ChemicalEntity", "D001241"),
        ("asthma", "DiseaseOrPhenotypicFeature", "D001249"),
        ("Aspirin", "ChemicalEntity", "D001241"),
        ("asthma", "DiseaseOrPhenotypicFeature", "D001249"),
        ("mice", "OrganismTaxon", "10090"),
        ("IL6", "GeneOrGeneProduct", "3569"),
    ],
    ["Positive_Correlation\tD001241\tD001249\tNovel"],
)


def test_ids_per_type() -> None:
    assert parse_biored_ids("3172,3651", "GeneOrGeneProduct") == (("NCBIGene:3172", "NCBIGene:3651"), False)
    assert parse_biored_ids("9606", "OrganismTaxon") == (("NCBITaxon:9606",), False)
    assert parse_biored_ids("D003924,D003920", "DiseaseOrPhenotypicFeature") == (("D003924", "D003920"), False)
    assert parse_biored_ids("OMIM:138040", "DiseaseOrPhenotypicFeature") == (("OMIM:138040",), False)
    assert parse_biored_ids("C000002", "ChemicalEntity") == (("C000002",), False)
    assert parse_biored_ids("c|DEL||32", "SequenceVariant") == (("tmVar:c|DEL||32",), False)
    assert parse_biored_ids("rs1,rs2", "SequenceVariant") == (("dbSNP:rs1", "dbSNP:rs2"), False)
    assert parse_biored_ids(" CVCL_0030", "CellLine") == (("Cellosaurus:CVCL_0030",), False)
    assert parse_biored_ids("-", "ChemicalEntity") == ((), True)
    for raw, typ in (
        ("abc", "GeneOrGeneProduct"),
        ("9606x", "OrganismTaxon"),
        ("X1", "ChemicalEntity"),
        ("D1", "Protein"),
        ("", "GeneOrGeneProduct"),
        ("HeLa", "CellLine"),
    ):
        assert parse_biored_ids(raw, typ) is None, (raw, typ)


def _write_biored(root: Path, train: str = DOC_A, dev: str = DOC_B, test: str | None = None) -> Path:
    d = root / "biored"
    d.mkdir(parents=True, exist_ok=True)
    (d / "Train.PubTator").write_text(train)
    (d / "Dev.PubTator").write_text(dev)
    (d / "Test.PubTator").write_text(
        test
        if test is not None
        else _doc(
            "300",
            "Lithium.",
            "Lithium and BDNF in rats with mania.",
            [
                ("Lithium", "ChemicalEntity", "D008094"),
                ("BDNF", "GeneOrGeneProduct", "627"),
                ("rats", "OrganismTaxon", "10116"),
                ("mania", "DiseaseOrPhenotypicFeature", "D001714"),
            ],
            [],
        )
    )
    clear_cache()
    return root


def test_golden_fixture(tmp_path: Path) -> None:
    res = parse_pubtator_file(_write_biored(tmp_path) / "biored" / "Train.PubTator", id_parser=parse_biored_ids)
    (doc,) = res.documents
    assert [(m.text, m.semantic_type, m.concept_ids, m.composite, m.unlinkable) for m in doc.mentions] == [
        ("HNF-6", "GeneOrGeneProduct", ("NCBIGene:3175",), False, False),
        ("type II diabetes", "DiseaseOrPhenotypicFeature", ("D003924",), False, False),
        ("MODY", "GeneOrGeneProduct", ("NCBIGene:3172", "NCBIGene:3651", "NCBIGene:6927"), True, False),
        ("glucose", "ChemicalEntity", ("D005947",), False, False),
        ("patients", "OrganismTaxon", ("NCBITaxon:9606",), False, False),
        ("Pro75Ala", "SequenceVariant", ("dbSNP:rs74805019",), False, False),
        ("p.P75A", "SequenceVariant", ("tmVar:p|SUB|P|75|A",), False, False),
        ("HeLa", "CellLine", ("Cellosaurus:CVCL_0030",), False, False),
        ("lectin", "GeneOrGeneProduct", (), False, True),
    ]
    # Relation lines (five columns) are relations by rule, never mentions.
    assert doc.relations == (
        ("Association", "3175", "D003924", "No"),
        ("Positive_Correlation", "D005947", "3630", "Novel"),
    )


@pytest.mark.parametrize(
    ("extra", "what"),
    [
        ("100\tAssociation\t3175\tD003924\tMaybe", "novelty 'Maybe'; expected 'Novel' or 'No'"),
        ("100\t0\t5\tHNF-6\tGeneOrGeneProduct", "mention line has 5 tab-separated columns"),
        ("100\t0\t5\tHNF-6\tGeneOrGeneProduct\tHNF6", "unknown concept id format 'HNF6' for type 'GeneOrGeneProduct'"),
    ],
)
def test_bad_lines(tmp_path: Path, extra: str, what: str) -> None:
    root = _write_biored(tmp_path, train=DOC_A.rstrip("\n") + "\n" + extra + "\n\n")
    line = len(DOC_A.rstrip("\n").split("\n")) + 1
    with pytest.raises(CorpusFormatError, match=rf"Train.PubTator:{line}: .*{re.escape(what)}"):
        load_corpus("biored_gene", root)


def test_tasks_and_ontologies(tmp_path: Path) -> None:
    root = _write_biored(tmp_path)
    c = load_corpus("biored", root)
    assert [len(c.documents(s)) for s in ("train", "dev", "test")] == [1, 1, 1]
    assert [len(c.mentions(s)) for s in ("train", "dev", "test")] == [9, 6, 4]
    genes = load_corpus("biored_gene", root)
    assert {m.semantic_type for m in genes.mentions("train")} == {"GeneOrGeneProduct"}
    onto = ontology_for_task("biored_gene", root, genes)
    assert onto.source == "mentions of biored_gene train" and onto.names["NCBIGene:3175"] == ["HNF-6"]
    # With NCBI Gene present the gene task links against it.
    onto_dir = root / "ontologies"
    onto_dir.mkdir()
    row = [
        "9606",
        "3175",
        "ONECUT1",
        "-",
        "HNF-6|HNF6A",
        "MIM:604164",
        "15",
        "15q21.3",
        "one cut homeobox 1",
        "protein-coding",
        "ONECUT1",
        "one cut homeobox 1",
        "O",
        "hepatocyte nuclear factor 6|one cut domain family member 1",
        "20240101",
        "-",
    ]
    with gzip.open(onto_dir / "gene_info.gz", "wt") as fh:
        fh.write("#tax_id\tGeneID\tSymbol\n" + "\t".join(row) + "\n")
    g = ontology_for_task("biored_gene", root, genes)
    assert g.source.startswith("NCBI Gene file")
    assert g.names["NCBIGene:3175"] == [
        "ONECUT1",
        "HNF-6",
        "HNF6A",
        "one cut homeobox 1",
        "hepatocyte nuclear factor 6",
        "one cut domain family member 1",
    ]
    # The whole corpus without MEDIC: a dictionary of all its training mentions.
    assert ontology_for_task("biored", root, c).source == "mentions of biored train"
    (onto_dir / "CTD_diseases.tsv").write_text(
        "Diabetes Mellitus, Type 2\tMESH:D003924\t\t\t\t\t\tType II diabetes\t\n"
    )
    (onto_dir / "mesh_descriptors_2024.tsv").write_text("D005947\tGlucose\tD09.947\tDextrose\n")
    whole = ontology_for_task("biored", root, c)
    assert {"D003924", "D005947", "NCBITaxon:9606", "Cellosaurus:CVCL_0030", "tmVar:p|SUB|P|75|A"} <= set(whole.names)
    assert "NCBIGene:3175" in whole.names  # genes: training mentions (gene_info is used by biored_gene only)
    assert (
        "MEDIC file" in whole.source
        and "MeSH descriptors file" in whole.source
        and whole.source.endswith("mentions of biored train")
    )
    assert ontology_for_task("biored_chemical", root, load_corpus("biored_chemical", root)).names == {
        "D005947": ["Glucose", "Dextrose"]
    }


def test_bad_gene_info(tmp_path: Path) -> None:
    p = tmp_path / "gene_info"
    p.write_text("#h\n9606\tX12\tA\t-\t-\t-\t-\t-\tdesc\n")
    with pytest.raises(CorpusFormatError, match=rf"^{p}:2: GeneID 'X12'"):
        load_gene_info(p)


def test_stats_cli_per_type(tmp_path: Path) -> None:
    root = _write_biored(tmp_path)
    res = CliRunner().invoke(app, ["data", "stats", "biored", "--data-dir", str(root), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)["biored"]
    assert out["train"]["types"] == {
        "CellLine": 1,
        "ChemicalEntity": 1,
        "DiseaseOrPhenotypicFeature": 1,
        "GeneOrGeneProduct": 3,
        "OrganismTaxon": 1,
        "SequenceVariant": 2,
    }
    assert (out["train"]["unlinkable"], out["train"]["composite"]) == (1, 1)
    table = CliRunner().invoke(app, ["data", "stats", "biored", "--data-dir", str(root)])
    assert "mentions per entity type" in table.output and "SequenceVariant" in table.output


def test_fetch_mirror_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """biored and mesh from a mirror laid out like ../shared/corpora (MeSH as converted TSV)."""
    monkeypatch.setattr(fetch_mod, "KNOWN_SHA256", {})
    mirror = _write_biored(tmp_path / "mirror")
    (mirror / "ontologies").mkdir()
    for name in ("mesh_descriptors_2024.tsv.gz", "mesh_supplementary_2018.tsv.gz"):
        with gzip.open(mirror / "ontologies" / name, "wt") as fh:
            fh.write("x\n")
    data = tmp_path / "data"
    got = dict(fetch_mod.fetch("biored_chemical", data, mirror=mirror))
    assert set(got) == {str(data / "biored" / f"{n}.PubTator") for n in ("Train", "Dev", "Test")}
    assert (data / "biored" / "Dev.PubTator").read_text() == DOC_B
    got = dict(fetch_mod.fetch("mesh", data, mirror=mirror))
    assert set(got) == {
        str(data / "ontologies" / "mesh_descriptors_2024.tsv.gz"),
        str(data / "ontologies" / "mesh_supplementary_2018.tsv.gz"),
    }
    # Downloads name NLM's XML and NCBI's BIORED.zip.
    urls = {s.url for s in fetch_mod.SOURCES["mesh"]} | {s.url for s in fetch_mod.SOURCES["biored"]}
    assert (
        any(u.endswith(f"desc{fetch_mod.MESH_YEAR}.xml") for u in urls)
        and "https://ftp.ncbi.nlm.nih.gov/pub/lu/BioRED/BIORED.zip" in urls
    )


@pytest.mark.integration
def test_real_biored_counts(shared_corpora: Path) -> None:
    from elcl.data.stats import corpus_stats

    if not (shared_corpora / "biored").is_dir():
        pytest.skip("BioRED not in the corpora dir")
    st = corpus_stats(load_corpus("biored", shared_corpora))
    assert [st[s]["documents"] for s in ("train", "dev", "test")] == [400, 100, 100]
    assert [st[s]["mentions"] for s in ("train", "dev", "test")] == [13351, 3533, 3535]
    assert all(sum(st[s]["types"].values()) == st[s]["mentions"] and len(st[s]["types"]) == 6 for s in st)
    docs = load_corpus("biored", shared_corpora)
    assert sum(len(d.relations) for s in ("train", "dev", "test") for d in docs.documents(s)) == 6503
    parts = [load_corpus(t, shared_corpora) for t in ("biored_disease", "biored_chemical", "biored_gene")]
    assert [len(p.mentions("train")) for p in parts] == [
        st["train"]["types"][t] for t in ("DiseaseOrPhenotypicFeature", "ChemicalEntity", "GeneOrGeneProduct")
    ]
