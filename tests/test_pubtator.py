"""PubTator parser on small golden and malformed fixtures."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from elcl.data.pubtator import canonical_id, parse_pubtator, parse_pubtator_file
from elcl.errors import CorpusFormatError

TITLE = "Famotidine-associated delirium."
ABSTRACT = "Breast and ovarian cancer occur. Some x."
GOOD = (
    f"1|t|{TITLE}\n"
    f"1|a|{ABSTRACT}\n"
    "1\t0\t10\tFamotidine\tChemical\tMESH:D015738\n"
    "1\t22\t30\tdelirium\tDisease\tD003693\n"
    "1\t32\t57\tBreast and ovarian cancer\tDisease\tD001943|D010051\tBreast cancer|ovarian cancer\n"
    "1\t70\t71\tx\tDisease\t-1\n"
    "1\tCID\tD015738\tD003693\n"
    "\n"
    "2|t|Wilson disease\n"
    "2|a|\n"
    "2\t0\t14\tWilson disease\tSpecificDisease\tOMIM:277900+C012345\n"
    "\n"
)


def write(tmp_path: Path, text: str | bytes, name: str = "c.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return p


def test_golden(tmp_path: Path) -> None:
    docs = parse_pubtator(write(tmp_path, GOOD))
    assert [d.doc_id for d in docs] == ["1", "2"]
    d = docs[0]
    assert d.text == f"{TITLE} {ABSTRACT}"
    m = d.mentions
    assert m[0].concept_ids == ("D015738",) and not m[0].composite
    assert m[2].concept_ids == ("D001943", "D010051") and m[2].composite
    assert m[2].components == ("Breast cancer", "ovarian cancer")
    assert m[3].unlinkable and m[3].concept_ids == () and not m[3].linkable
    assert d.relations == (("CID", "D015738", "D003693"),)
    assert docs[1].abstract == ""
    assert docs[1].mentions[0].concept_ids == ("OMIM:277900", "C012345")


def test_gzip(tmp_path: Path) -> None:
    p = tmp_path / "c.txt.gz"
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(GOOD)
    assert len(parse_pubtator(p)) == 2


def test_canonical_ids() -> None:
    assert canonical_id("MESH:D012345") == "D012345"
    assert canonical_id(" D012345") == "D012345"
    assert canonical_id("OMIM:123456") == "OMIM:123456"
    assert canonical_id("UMLS:C0000001") == "UMLS:C0000001"
    assert canonical_id("123456") is None
    assert canonical_id("foo") is None


def test_composite_with_unlinkable_part(tmp_path: Path) -> None:
    text = "3|t|a b\n3|a|c\n3\t0\t3\ta b\tDisease\tD002544|-1\n"
    (m,) = parse_pubtator(write(tmp_path, text))[0].mentions
    assert m.concept_ids == ("D002544",) and m.composite and m.linkable


def test_whitespace_offset_mismatch_is_a_warning(tmp_path: Path) -> None:
    text = "4|t|a b\n4|a|c\n4\t0\t3\ta b  \tDisease\tD000001\n"
    res = parse_pubtator_file(write(tmp_path, text))
    assert res.documents[0].mentions[0].text == "a b"
    assert len(res.warnings) == 1 and ":3:" in res.warnings[0]


@pytest.mark.parametrize(
    "text, line, fragment",
    [
        (
            GOOD.replace("1\t22\t30\tdelirium", "1\t22\t31\tdelirium"),
            4,
            "offsets 22-31 give 'delirium.' but the mention text is 'delirium'",
        ),
        (
            GOOD.replace("1\t22\t30\tdelirium\tDisease\tD003693", "1\t22\t30\tdelirium\tDisease"),
            4,
            "expected at least 6",
        ),
        (GOOD.replace("1\t22\t30", "1\t2x\t30"), 4, "not integers"),
        (GOOD.replace("\tD003693\n", "\tDOID:123\n"), 4, "unknown concept id format 'DOID:123'"),
        (GOOD.replace("\tD003693\n", "\t123456\n"), 4, "unknown concept id format"),
        (GOOD.replace(f"1|a|{ABSTRACT}\n", ""), 2, "annotation line before the abstract"),
        (GOOD.replace("2|a|\n", ""), 10, "truncated document 2"),
        (GOOD.split("2|a|")[0], 9, "truncated document 2: title without an abstract"),
        (GOOD.replace("\n\n2|t|", "\n2|t|").replace("2\t0\t14", "1\t0\t14"), 10, "annotation for 1 inside document 2"),
        (GOOD.replace("1\tCID", "9\tCID"), 7, "annotation for 9 inside document 1"),
        ("5\t0\t1\tx\tDisease\tD000001\n", 1, "outside a document"),
        ("garbage\n", 1, "expected 'PMID|t|title'"),
    ],
)
def test_malformed(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(CorpusFormatError) as err:
        parse_pubtator(p)
    assert str(err.value).startswith(f"{p}:{line}: "), str(err.value)
    assert fragment in str(err.value)
    assert err.value.line == line


def test_non_utf8(tmp_path: Path) -> None:
    p = write(tmp_path, GOOD.encode("utf-8").replace(b"delirium.", b"delir\xffum."))
    with pytest.raises(CorpusFormatError, match=rf"^{p}:1: not valid UTF-8"):
        parse_pubtator(p)
