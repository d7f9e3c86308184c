"""Which ontology a pretraining pass reads: ``medic``, ``mesh`` or a TSV file of names.

Only ontology files are opened here — never a corpus — so a pass can run before any
task of a continual sequence (``tests/test_pretraining.py`` guards this with a spy).
"""

from __future__ import annotations

from pathlib import Path

from elcl.data.ontology import Ontology, _text_lines, load_medic
from elcl.errors import CorpusFormatError, ElclError


def load_name_table(path: Path | str) -> Ontology:
    """``id<TAB>name[<TAB>name...]`` lines (``#`` comments, repeated ids add synonyms)."""
    p = Path(path).expanduser()
    names: dict[str, list[str]] = {}
    for no, line in _text_lines(p):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2 or not cols[0].strip() or not any(c.strip() for c in cols[1:]):
            raise CorpusFormatError(p, no, "expected 'ID<TAB>name' (a concept id and at least one name)")
        cur = names.setdefault(cols[0].strip(), [])
        for name in cols[1:]:
            name = " ".join(name.split())
            if name and name not in cur:
                cur.append(name)
    if not names:
        raise CorpusFormatError(p, None, "no 'ID<TAB>name' lines found")
    return Ontology(names, {}, f"name table {p}")


def _first(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def load_pretraining_ontology(spec: str, data_dir: Path | str) -> Ontology:
    """``medic`` / ``mesh`` from ``data_dir/ontologies``, else ``spec`` is a TSV path."""
    onto_dir = Path(data_dir) / "ontologies"
    if spec == "medic":
        path = _first(onto_dir / "CTD_diseases.tsv.gz", onto_dir / "CTD_diseases.tsv")
        if path is None:
            raise ElclError(
                f"--ontology medic: {onto_dir / 'CTD_diseases.tsv.gz'} not found; run `elcl data fetch medic`"
            )
        return load_medic(path)
    if spec == "mesh":
        try:
            from elcl.data.mesh import load_mesh_chemicals
        except ImportError:
            raise ElclError(
                "--ontology mesh: this elcl has no MeSH loader yet; pass a TSV of id<TAB>name instead"
            ) from None
        return load_mesh_chemicals(onto_dir)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise ElclError(f"--ontology {spec!r}: expected medic, mesh or an existing TSV file of id<TAB>name")
    return load_name_table(path)
