"""BioRED (Luo et al. 2022): six entity types, each with its own id vocabulary.

Ids are made canonical per type, with a prefix where the bare form would be ambiguous
(a gene number and a taxon number are both digits):

* DiseaseOrPhenotypicFeature, ChemicalEntity: MeSH ``D012345`` / ``C012345`` and
  ``OMIM:123456``, as in NCBI Disease and BC5CDR, so they meet MEDIC and MeSH ids;
* GeneOrGeneProduct: ``NCBIGene:3175``; OrganismTaxon: ``NCBITaxon:9606``;
* SequenceVariant: ``dbSNP:rs74805019``, or ``tmVar:<the id as written>`` for the
  HGVS-like ids (``p|SUB|P|75|A``: their ``|`` is part of the id, not a separator);
* CellLine: ``Cellosaurus:CVCL_0030``.

Composite ids are joined by ``,`` (and ``|`` or ``;`` for MeSH ids); ``-`` marks a
mention without an id (unlinkable, like BC5CDR's ``-1``).
"""

from __future__ import annotations

import re

from elcl.data.pubtator import canonical_id

TYPES = (
    "GeneOrGeneProduct",
    "DiseaseOrPhenotypicFeature",
    "ChemicalEntity",
    "OrganismTaxon",
    "SequenceVariant",
    "CellLine",
)
ID_HELP = (
    "per type: MeSH D012345/C012345 or OMIM:123456 (diseases, chemicals), NCBI Gene / Taxonomy numbers, "
    "rs123 or tmVar 'p|SUB|P|75|A' (variants), CVCL_0030 (cell lines), '-' for none; composites joined by ','"
)
_DIGITS = re.compile(r"^\d+$")
_RS = re.compile(r"^rs\d+$")
_CVCL = re.compile(r"^CVCL_[A-Z0-9]+$")
_MESH_SEP = re.compile(r"[,|;]")
_SEP = re.compile(r"[,;]")


def _parts(raw: str, sep: re.Pattern[str]) -> list[str]:
    return [p.strip() for p in sep.split(raw) if p.strip()]


def parse_biored_ids(raw: str, semantic_type: str) -> tuple[tuple[str, ...], bool] | None:
    """(canonical ids, unlinkable) of one BioRED id column, or None when the format is unknown."""
    raw = raw.strip()
    if raw in ("-", "-1"):
        return (), True
    if not raw or semantic_type not in TYPES:
        return None
    out: list[str] = []
    if semantic_type in ("DiseaseOrPhenotypicFeature", "ChemicalEntity"):
        for part in _parts(raw, _MESH_SEP):
            cid = canonical_id(part)
            if cid is None:
                return None
            out.append(cid)
    elif semantic_type in ("GeneOrGeneProduct", "OrganismTaxon"):
        prefix = "NCBIGene" if semantic_type == "GeneOrGeneProduct" else "NCBITaxon"
        for part in _parts(raw, _SEP):
            if not _DIGITS.match(part):
                return None
            out.append(f"{prefix}:{part}")
    elif semantic_type == "CellLine":
        for part in _parts(raw, _SEP):
            if not _CVCL.match(part):
                return None
            out.append(f"Cellosaurus:{part}")
    else:  # SequenceVariant
        parts = _parts(raw, _SEP)
        if parts and all(_RS.match(p) for p in parts):
            out = [f"dbSNP:{p}" for p in parts]
        elif "\t" in raw or " " in raw:
            return None
        else:
            out = [f"tmVar:{raw}"]
    return tuple(dict.fromkeys(out)), False
