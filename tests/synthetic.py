"""A small synthetic corpus pair in the official PubTator layout, for fast end-to-end tests."""

from __future__ import annotations

import random
from pathlib import Path

DISEASES = {
    "D000001": ["breast cancer", "breast carcinoma", "mammary cancer"],
    "D000002": ["lung cancer", "lung carcinoma", "pulmonary cancer"],
    "D000003": ["diabetes", "diabetes mellitus", "diabetic disease"],
    "D000004": ["asthma", "bronchial asthma", "asthmatic disease"],
    "D000005": ["heart attack", "myocardial infarction", "cardiac infarction"],
    "D000006": ["migraine", "migraine headache", "hemicrania"],
}
CHEMICALS = {
    "D000101": ["aspirin", "acetylsalicylic acid"],
    "D000102": ["cisplatin", "cis-platinum"],
    "D000103": ["lithium", "lithium carbonate"],
    "D000104": ["nicotine", "nicotine tartrate"],
}


def _document(pmid: str, rng: random.Random, concepts: dict[str, list[str]], kind: str, n_mentions: int) -> str:
    title = f"Study {pmid} of patients."
    parts, mentions = [], []
    text = title + " "
    for _ in range(n_mentions):
        cid = rng.choice(sorted(concepts))
        name = rng.choice(concepts[cid])
        prefix = "We observed "
        start = len(text) + len(prefix)
        sentence = f"{prefix}{name} in the cohort. "
        text += sentence
        parts.append(sentence)
        mentions.append(f"{pmid}\t{start}\t{start + len(name)}\t{name}\t{kind}\t{cid}")
    abstract = "".join(parts).strip()
    return "\n".join([f"{pmid}|t|{title}", f"{pmid}|a|{abstract}", *mentions]) + "\n\n"


def write_synthetic_corpora(root: Path, docs_per_split: int = 6, mentions_per_doc: int = 4, seed: int = 0) -> Path:
    """NCBI-Disease-like and BC5CDR-like files under ``root`` (the data dir)."""
    rng = random.Random(seed)
    ncbi = root / "ncbi_disease"
    cdr = root / "bc5cdr"
    ncbi.mkdir(parents=True, exist_ok=True)
    cdr.mkdir(parents=True, exist_ok=True)
    names = {
        "train": ("NCBItrainset_corpus.txt", "CDR_TrainingSet.PubTator.txt"),
        "dev": ("NCBIdevelopset_corpus.txt", "CDR_DevelopmentSet.PubTator.txt"),
        "test": ("NCBItestset_corpus.txt", "CDR_TestSet.PubTator.txt"),
    }
    pmid = 1000
    for ncbi_file, cdr_file in names.values():
        out_ncbi, out_cdr = [], []
        for _ in range(docs_per_split):
            pmid += 1
            out_ncbi.append(_document(str(pmid), rng, DISEASES, "SpecificDisease", mentions_per_doc))
            pmid += 1
            kind, concepts = ("Chemical", CHEMICALS) if rng.random() < 0.5 else ("Disease", DISEASES)
            out_cdr.append(_document(str(pmid), rng, concepts, kind, mentions_per_doc))
        (ncbi / ncbi_file).write_text("".join(out_ncbi), encoding="utf-8")
        (cdr / cdr_file).write_text("".join(out_cdr), encoding="utf-8")
    return root


PHENOTYPES = {
    "HP:0001658": ["myocardial infarction", "heart attack", "cardiac infarction"],
    "HP:0001250": ["seizure", "epileptic seizure", "fits"],
    "HP:0002315": ["headache", "cephalalgia", "head pain"],
    "HP:0002099": ["asthma", "bronchial asthma", "asthmatic attack"],
}


def write_custom_corpus(
    root: Path, docs_per_split: int = 6, mentions_per_doc: int = 4, seed: int = 1, first_pmid: int = 5001
) -> Path:
    """A user's own corpus: PubTator train/dev/test files with HPO-style ids (pmids from
    ``first_pmid``, apart from :func:`write_synthetic_corpora`'s) and their vocabulary as a
    TSV (``vocab.tsv``: id, name, synonyms) under ``root``."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    pmid = first_pmid - 1
    for split in ("train", "dev", "test"):
        docs = []
        for _ in range(docs_per_split):
            pmid += 1
            docs.append(_document(str(pmid), rng, PHENOTYPES, "Disease", mentions_per_doc))
        (root / f"{split}.pubtator").write_text("".join(docs), encoding="utf-8")
    rows = ["id\tname\tsynonyms"] + [f"{cid}\t{names[0]}\t{'|'.join(names[1:])}" for cid, names in PHENOTYPES.items()]
    (root / "vocab.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root
