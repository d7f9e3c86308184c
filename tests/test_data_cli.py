"""`elcl data fetch|stats|candidates` through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.data import fetch as fetch_mod
from elcl.errors import ElclError

runner = CliRunner()

DOC = "1|t|Wilson disease\n1|a|Rare.\n1\t0\t14\tWilson disease\tDisease\tD006527\n\n"


def make_mirror(root: Path) -> Path:
    d = root / "ncbi_disease"
    d.mkdir(parents=True)
    for n in ("NCBItrainset", "NCBIdevelopset", "NCBItestset"):
        (d / f"{n}_corpus.txt").write_text(DOC)
    return root


def test_fetch_from_mirror_and_stats(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch_mod, "KNOWN_SHA256", {})
    mirror = make_mirror(tmp_path / "mirror")
    data = tmp_path / "data"
    res = runner.invoke(app, ["data", "fetch", "ncbi_disease", "--mirror", str(mirror), "--data-dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "copied from" in res.output and (data / "ncbi_disease" / "NCBItestset_corpus.txt").read_text() == DOC
    res = runner.invoke(app, ["data", "fetch", "ncbi_disease", "--mirror", str(mirror), "--data-dir", str(data)])
    assert "present" in res.output
    res = runner.invoke(app, ["data", "stats", "ncbi_disease", "--data-dir", str(data), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats["ncbi_disease"]["test"] == {
        "documents": 1,
        "mentions": 1,
        "concepts": 1,
        "unlinkable": 0,
        "composite": 0,
        "warnings": 0,
        "types": {"Disease": 1},
    }
    res = runner.invoke(app, ["data", "stats", "ncbi_disease", "--data-dir", str(data)])
    assert res.exit_code == 0 and "ncbi_disease" in res.output


def test_checksum_mismatch_keeps_good_file(tmp_path: Path) -> None:
    mirror = make_mirror(tmp_path / "mirror")
    data = tmp_path / "data"
    dest = data / "ncbi_disease" / "NCBItrainset_corpus.txt"
    dest.parent.mkdir(parents=True)
    dest.write_text("previous file\n")
    with pytest.raises(ElclError, match="sha256 .* does not match the expected f311381b"):
        fetch_mod.fetch("ncbi_disease", data, mirror=mirror)
    assert dest.read_text() == "previous file\n"
    assert not list(dest.parent.glob("*.part"))
    res = runner.invoke(app, ["data", "fetch", "ncbi_disease", "--mirror", str(mirror), "--data-dir", str(data)])
    assert isinstance(res.exception, ElclError)


def test_unknown_names(tmp_path: Path) -> None:
    res = runner.invoke(app, ["data", "fetch", "nope", "--mirror", str(tmp_path), "--data-dir", str(tmp_path)])
    assert isinstance(res.exception, ElclError) and "known: ncbi_disease" in str(res.exception)
    res = runner.invoke(app, ["data", "stats", "ncbi_disease", "--data-dir", str(tmp_path)])
    assert isinstance(res.exception, ElclError) and "elcl data fetch ncbi_disease" in str(res.exception)


def test_exit_code_via_main(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from elcl.cli.app import main; main()",
            "data",
            "candidates",
            "nope",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unknown corpus/task 'nope'")


def test_candidates_with_mention_dictionary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELCL_CACHE_DIR", str(tmp_path / "cache"))
    data = make_mirror(tmp_path / "data")
    res = runner.invoke(
        app,
        ["data", "candidates", "ncbi_disease", "--ontology", "mentions", "--data-dir", str(data), "--json", "--k", "1"],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["ontology"] == "mentions of ncbi_disease train"
    assert out["splits"]["test"]["recall"] == {"1": 1.0}


@pytest.mark.integration
def test_real_stats_table(shared_corpora: Path) -> None:
    res = runner.invoke(app, ["data", "stats", "bc5cdr", "--data-dir", str(shared_corpora), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["bc5cdr"]["test"]["mentions"] == 9809


@pytest.mark.integration
def test_fetch_real_mirror_verifies_checksums(shared_corpora: Path, tmp_path: Path) -> None:
    report = fetch_mod.fetch("ncbi_disease", tmp_path, mirror=shared_corpora)
    assert [a.startswith("copied") for _, a in report] == [True, True, True]
    assert (
        fetch_mod.sha256_file(tmp_path / "ncbi_disease" / "NCBItestset_corpus.txt")
        == fetch_mod.KNOWN_SHA256["ncbi_disease/NCBItestset_corpus.txt"][0]
    )
