"""Put corpora and ontologies under the data dir: from a local mirror or the official sites.

Every file is written to a temporary name, checked against its known sha256 (when one
is recorded below) and only then renamed into place, so an interrupted or corrupt
download never replaces a good file.
"""

from __future__ import annotations

import gzip
import io
import shutil
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elcl.errors import ElclError
from elcl.fileio import atomic_path, sha256_file

# sha256 of the extracted files (../shared/corpora/SOURCES.md).  ``download=False``: the
# sum describes the mirror's copy only (the mirror's BC5CDR training file was rebuilt
# from a 1000-abstract file; the current MEDIC release differs from the 2017 copy).
KNOWN_SHA256: dict[str, tuple[str, bool]] = {
    "ncbi_disease/NCBItrainset_corpus.txt": ("f311381b28a6d0f641f57f4a963bb83619c2bdec5cd9caabb1381f894d5db817", True),
    "ncbi_disease/NCBIdevelopset_corpus.txt": (
        "02db559974624ae9cbe6cd95d64d953e6926bb63afb6b25b63e53bd8b41a4b55",
        True,
    ),
    "ncbi_disease/NCBItestset_corpus.txt": ("61c8050bf6979ef7b943ec1158dfc03b651ea3367d4c37356f9de4841e85c9a3", True),
    "bc5cdr/CDR_TrainingSet.PubTator.txt": ("7afcec134e3d4871e74b0398d92850d3c9ac94c0bdc780003f2d60184c012bd8", False),
    "bc5cdr/CDR_DevelopmentSet.PubTator.txt": (
        "9e18d8e700168887a7919e62f67ac2ce2357e3f409a48ee992906abdd80fe3e5",
        True,
    ),
    "bc5cdr/CDR_TestSet.PubTator.txt": ("a3c48d5f35bdfce20c2371778abedc9fd24d1da092207072e5181ad53c8d0e2f", True),
    "ontologies/CTD_diseases.tsv.gz": ("3a83865362b11f996fec18562d2e7996f66e94d01d2e0c6360770d64184e3326", False),
    # BioRED: the mirror's copies of the PubTator files (from a public redistribution of
    # BIORED.zip); NCBI has not published sums, so a download is not held to them.
    "biored/Train.PubTator": ("57f96059c1dc5b8a738ee0b7ec5254cf38a1cbb50cd12682809cad627f8c6b36", False),
    "biored/Dev.PubTator": ("b648faefe4d8b76029746afbec437f31398ce35d2e691eb734aaac5db5dc5736", False),
    "biored/Test.PubTator": ("eee53e2da22cd49a92f300d8d76df610cc04b22bf9f8b09e874bfb8b280ab240", False),
    # MeSH as TSV exists only in the mirror (converted copies); downloads are NLM's XML.
    "ontologies/mesh_descriptors_2024.tsv.gz": (
        "5729d570a50cb63b0ea176defbe3d58745fcecc5cd26805bc564b2f6432de69b",
        False,
    ),
    "ontologies/mesh_supplementary_2018.tsv.gz": (
        "afabf2a0fc51e6a7718e6e5ffc04044083b7508cd4ef6a9d036f8e10c76ec6fd",
        False,
    ),
}


@dataclass(frozen=True)
class Source:
    """One file to put at ``dest`` (relative to the data dir)."""

    dest: str
    url: str
    member: str | None = None
    """Path inside a zip archive at ``url`` (None: the URL is the file itself)."""
    mirror_rel: str | None = None
    """Where the mirror keeps this file when its form differs from the download (MeSH:
    converted TSV in the mirror, NLM's XML from the site); it is installed under that name."""


_NCBI = "https://www.ncbi.nlm.nih.gov/CBBresearch/Dogan/DISEASE/"
_CDR = "https://biocreative.bioinformatics.udel.edu/media/store/files/2016/CDR_Data.zip"
_MM = "https://github.com/chanzuckerberg/MedMentions/raw/master/"
_BIORED = "https://ftp.ncbi.nlm.nih.gov/pub/lu/BioRED/BIORED.zip"
_MESH = "https://nlmpubs.nlm.nih.gov/projects/mesh/MESH_FILES/xmlmesh/"
MESH_YEAR = 2025

SOURCES: dict[str, tuple[Source, ...]] = {
    "ncbi_disease": tuple(
        Source(f"ncbi_disease/{n}_corpus.txt", f"{_NCBI}{n}_corpus.zip", f"{n}_corpus.txt")
        for n in ("NCBItrainset", "NCBIdevelopset", "NCBItestset")
    ),
    "bc5cdr": tuple(
        Source(f"bc5cdr/CDR_{n}.PubTator.txt", _CDR, f"CDR_Data/CDR.Corpus.v010516/CDR_{n}.PubTator.txt")
        for n in ("TrainingSet", "DevelopmentSet", "TestSet")
    ),
    "medmentions": (
        Source("medmentions/st21pv/data/corpus_pubtator.txt.gz", f"{_MM}st21pv/data/corpus_pubtator.txt.gz"),
        Source("medmentions/full/data/corpus_pubtator.txt.gz", f"{_MM}full/data/corpus_pubtator.txt.gz"),
        *(
            Source(
                f"medmentions/full/data/corpus_pubtator_pmids_{s}.txt", f"{_MM}full/data/corpus_pubtator_pmids_{s}.txt"
            )
            for s in ("trng", "dev", "test")
        ),
    ),
    "medic": (Source("ontologies/CTD_diseases.tsv.gz", "http://ctdbase.org/reports/CTD_diseases.tsv.gz"),),
    "biored": tuple(Source(f"biored/{n}.PubTator", _BIORED, f"BioRED/{n}.PubTator") for n in ("Train", "Dev", "Test")),
    # NLM's current release as XML (read as a stream by elcl.data.mesh); the mirror holds
    # converted TSVs of the 2024 descriptors and 2018 supplementary concepts instead.
    "mesh": (
        Source(
            f"ontologies/desc{MESH_YEAR}.xml",
            f"{_MESH}desc{MESH_YEAR}.xml",
            mirror_rel="ontologies/mesh_descriptors_2024.tsv.gz",
        ),
        Source(
            f"ontologies/supp{MESH_YEAR}.xml",
            f"{_MESH}supp{MESH_YEAR}.xml",
            mirror_rel="ontologies/mesh_supplementary_2018.tsv.gz",
        ),
    ),
    "gene_info": (
        Source(
            "ontologies/Homo_sapiens.gene_info.gz",
            "https://ftp.ncbi.nlm.nih.gov/gene/DATA/GENE_INFO/Mammalia/Homo_sapiens.gene_info.gz",
        ),
    ),
}

# Task names fetch their corpus.
ALIASES = {
    "bc5cdr_disease": "bc5cdr",
    "bc5cdr_chemical": "bc5cdr",
    "medmentions_st21pv": "medmentions",
    "medmentions_full": "medmentions",
    "ctd_diseases": "medic",
    "biored_disease": "biored",
    "biored_chemical": "biored",
    "biored_gene": "biored",
    "mesh_descriptors": "mesh",
    "mesh_supplementary": "mesh",
    "ncbi_gene": "gene_info",
}


def fetch_names() -> list[str]:
    return list(SOURCES) + list(ALIASES)


def _resolve(name: str) -> str:
    key = ALIASES.get(name, name)
    if key not in SOURCES:
        raise ElclError(f"unknown fetch target {name!r}; known: {', '.join(fetch_names())}")
    return key


def _check(tmp: Path, dest_rel: str, origin: str, downloaded: bool) -> None:
    known = KNOWN_SHA256.get(dest_rel)
    if known is None or (downloaded and not known[1]):
        return
    got = sha256_file(tmp)
    if got != known[0]:
        tmp.unlink(missing_ok=True)
        raise ElclError(
            f"{origin}: sha256 {got} does not match the expected {known[0]} for {dest_rel}; the file was not installed"
        )


def _install(write: Callable[[BinaryIO], object], dest: Path, dest_rel: str, origin: str, downloaded: bool) -> None:
    """Write via ``write(fileobj)`` to a temp file beside ``dest``, verify, rename atomically."""
    with atomic_path(dest, ".part") as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
        _check(tmp, dest_rel, origin, downloaded)


def _is_good(dest: Path, dest_rel: str) -> bool:
    if not dest.is_file() or dest.stat().st_size == 0:
        return False
    known = KNOWN_SHA256.get(dest_rel)
    return known is None or sha256_file(dest) == known[0]


def _mirror_file(mirror: Path, rel: str) -> Path | None:
    """The mirror's copy of ``rel`` (also accepting a gz-compressed or uncompressed twin)."""
    for cand in (mirror / rel, mirror / (rel + ".gz"), mirror / rel.removesuffix(".gz")):
        if cand.is_file():
            return cand
    return None


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - fixed https/http URLs
            return resp.read()
    except OSError as exc:
        raise ElclError(f"download of {url} failed ({exc}); copy the files by hand or use --mirror DIR") from None


def fetch(name: str, data_dir: Path, mirror: Path | None = None, force: bool = False) -> list[tuple[str, str]]:
    """Install a corpus/ontology into ``data_dir``; returns (path, action) per file.

    With ``mirror`` the files are copied from that directory (same layout as the data
    dir); otherwise they are downloaded from the official URLs.
    """
    key = _resolve(name)
    data_dir = Path(data_dir)
    report: list[tuple[str, str]] = []
    archives: dict[str, bytes] = {}
    for src in SOURCES[key]:
        rel = src.mirror_rel if (mirror is not None and src.mirror_rel) else src.dest
        dest = data_dir / rel
        if not force and _is_good(dest, rel):
            report.append((str(dest), "present"))
            continue
        if mirror is not None:
            found = _mirror_file(Path(mirror), rel)
            if found is None:
                raise ElclError(f"{Path(mirror) / rel}: not in the mirror; fetch with --download to get {src.url}")
            if found.resolve() == dest.resolve():
                report.append((str(dest), "present"))
                continue

            def write(fh, found: Path = found, dest_gz: bool = rel.endswith(".gz")) -> None:
                opener = gzip.open if found.suffix == ".gz" and not dest_gz else open
                with opener(found, "rb") as inp:
                    if dest_gz and found.suffix != ".gz":
                        with gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
                            shutil.copyfileobj(inp, gz)
                    else:
                        shutil.copyfileobj(inp, fh)

            _install(write, dest, rel, str(found), downloaded=False)
            report.append((str(dest), f"copied from {found}"))
            continue
        if src.url not in archives:
            archives[src.url] = _download(src.url)
        payload = archives[src.url]
        if src.member is not None:
            try:
                with zipfile.ZipFile(io.BytesIO(payload)) as zf:
                    member = next(
                        (n for n in zf.namelist() if n.endswith(src.member) or Path(n).name == Path(src.member).name),
                        None,
                    )
                    if member is None:
                        raise ElclError(f"{src.url}: archive has no {src.member}")
                    payload_file = zf.read(member)
            except zipfile.BadZipFile:
                raise ElclError(f"{src.url}: not a zip archive") from None
        else:
            payload_file = payload

        def write_payload(fh: BinaryIO, data: bytes = payload_file) -> None:
            fh.write(data)

        _install(write_payload, dest, src.dest, src.url, downloaded=True)
        report.append((str(dest), f"downloaded from {src.url}"))
    return report


def default_mirror() -> Path | None:
    """../shared/corpora when it exists (the copies made for this project)."""
    for cand in (Path("../shared/corpora"), Path(__file__).resolve().parents[3] / "shared" / "corpora"):
        if cand.is_dir():
            return cand
    return None
