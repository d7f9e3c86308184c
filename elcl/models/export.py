"""A trained linker as a folder that loads without elcl (`elcl export`), and back.

Layout of an export folder (format ``elcl-export/1``)::

    README.md                 model card: training sequence, method, λ, corpora, metrics
    elcl_linker.json          what elcl needs to link with it (model, candidates, task, run)
    ontology.jsonl.gz         the concepts linked against: {"id", "names", "alt_ids"} per line
    # BERT-family encoder (model.type bert), Hugging Face format:
    config.json, model.safetensors, tokenizer files      AutoModel / AutoTokenizer.from_pretrained(DIR)
    modules.json, sentence_bert_config.json,             sentence-transformers layout (bi-encoders):
      1_Pooling/config.json [, 2_Normalize/]             mean/CLS pooling [, L2 normalisation]
    linker_head.safetensors   cross-encoders only: the scoring head (weight [1, hidden], bias [1])
    lineage.json, curvature/, rng_state.safetensors
                              what a later `elcl update` needs (elcl.continual.versions)
    # ResCNN encoder (model.type cnn):
    cnn_encoder.safetensors   the encoder's tensors, named as elcl.models.encoders.CNNTextEncoder
                              (embed.weight, inp.weight/bias, blocks.<i>.conv1/conv2.weight/bias,
                              proj.weight/bias); header metadata holds its shape settings
    tokenizer files           wordpiece vocabulary (cnn.vocab wordpiece)
    dense_encoder/            runs with candidates.dense only: the encoder that lists the
                              dense candidates (Hugging Face format), not the fine-tuned one
    (elcl_linker.json's concept_prior: runs with model.prior_weight only, the task's
    training-annotation count per concept, {"source", "mentions", "counts"})

The folder is built beside its target and renamed into place, so it appears complete
or not at all.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from elcl import __version__
from elcl.candidates.prior import ConceptPrior, PriorRecord
from elcl.config import CandidatesConfig, ModelConfig, upgrade_candidates
from elcl.data.ontology import Ontology
from elcl.errors import CheckpointError, ElclError
from elcl.models.encoders import CNNTextEncoder, TransformerTextEncoder
from elcl.models.linker import Linker

EXPORT_FORMAT = "elcl-export/1"
META_FILE = "elcl_linker.json"
ONTOLOGY_FILE = "ontology.jsonl.gz"
HEAD_FILE = "linker_head.safetensors"
CNN_FILE = "cnn_encoder.safetensors"
DENSE_DIR = "dense_encoder"
PRIOR_KEY = "concept_prior"


def _save_dense_encoder(candidates: CandidatesConfig, cfg: ModelConfig, out: Path) -> CandidatesConfig:
    """Copy the encoder that ranks dense candidates into the export (``dense_encoder/``).

    The linker was trained on candidate lists from that encoder (the run's ``model.name``
    unless ``candidates.dense_encoder`` names another), not from the fine-tuned encoder
    the export holds, so linking from the folder needs it to list the same candidates."""
    if not candidates.dense:
        return candidates
    from elcl.models.encoders import load_encoder_model, load_tokenizer

    name = candidates.dense_encoder or cfg.name
    load_encoder_model(name, "candidates.dense_encoder" if candidates.dense_encoder else "model.name").save_pretrained(
        out / DENSE_DIR
    )
    load_tokenizer(name).save_pretrained(out / DENSE_DIR)
    return candidates.model_copy(update={"dense_encoder": DENSE_DIR})


def is_export_dir(path: Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def write_ontology(path: Path, ontology: Ontology) -> None:
    """One concept a line, in the ontology's own order (the TF-IDF index depends on it)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
        for cid, names in ontology.names.items():
            row = {"id": cid, "names": names, "alt_ids": sorted(ontology.alt_ids.get(cid, ()))}
            fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))


def read_ontology(path: Path, source: str = "") -> Ontology:
    names: dict[str, list[str]] = {}
    alts: dict[str, frozenset[str]] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for no, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    cid, row_names = str(row["id"]), [str(n) for n in row["names"]]
                    row_alts = frozenset(str(a) for a in row.get("alt_ids", ()))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ElclError(f"{path}:{no}: expected a JSON object with 'id', 'names' and 'alt_ids'") from None
                names[cid] = row_names
                if row_alts:
                    alts[cid] = row_alts
    except FileNotFoundError:
        raise ElclError(f"{path}: not found (an export folder holds its ontology here)") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ElclError(f"{path}: not a readable gzip file ({exc})") from None
    return Ontology(names, alts, source or str(path))


def _sentence_transformers_files(root: Path, cfg: ModelConfig, dim: int) -> None:
    modules: list[dict[str, Any]] = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if cfg.scorer == "cosine":
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
        (root / "2_Normalize").mkdir()
    (root / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    (root / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": cfg.max_length, "do_lower_case": False}, indent=2) + "\n"
    )
    (root / "1_Pooling").mkdir()
    pooling = {
        "word_embedding_dimension": dim,
        "pooling_mode_cls_token": cfg.pooling == "cls",
        "pooling_mode_mean_tokens": cfg.pooling == "mean",
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2) + "\n")


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _readable_by_all(root: Path) -> None:
    """The modes a plain mkdir/open would give (mkdtemp makes the folder private), so the
    folder can be handed on as it is."""
    umask = os.umask(0)
    os.umask(umask)
    root.chmod(0o777 & ~umask)
    for p in root.rglob("*"):
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)


def export_linker(
    model: Linker,
    candidates: CandidatesConfig,
    ontology: Ontology,
    out: Path,
    info: dict,
    card: str,
    prior: ConceptPrior | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``model`` (with the candidates settings and ontology it links with) to ``out``.

    ``extra`` writes more files into the folder being built (``elcl.continual.versions``:
    curvature, lineage), so they appear with it or not at all.

    ``info`` (task, run, metrics...) is stored in ``elcl_linker.json``; ``card`` becomes
    README.md. ``out`` must not exist (or be an empty folder). A linker with
    ``model.prior_weight`` needs its task's ``prior`` (stored as ``concept_prior``).
    """
    if model.cfg.prior_weight and prior is None:
        raise ElclError("export: model.prior_weight is set but no concept prior was given (nothing was written)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ElclError(f"{out}: already exists; export into a new folder (nothing was written)")
    cfg = model.cfg
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        enc = model.encoder
        if isinstance(enc, TransformerTextEncoder):
            enc.model.save_pretrained(tmp)
            model.tokenizer.save_pretrained(tmp)
            if model.head is None:
                _sentence_transformers_files(tmp, cfg, enc.dim)
            encoder = {"format": "huggingface", "pooling": cfg.pooling}
        else:
            assert isinstance(enc, CNNTextEncoder)
            c = cfg.cnn
            meta = {
                "vocab": c.vocab,
                "embedding_dim": str(c.embedding_dim),
                "channels": str(c.channels),
                "blocks": str(c.blocks),
                "kernel_size": str(c.kernel_size),
                "vocab_size": str(enc.embed.num_embeddings),
                "pooling": "masked max",
                "elcl_version": __version__,
            }
            save_file(_cpu(enc.state_dict()), str(tmp / CNN_FILE), metadata=meta)
            if c.vocab == "wordpiece":
                model.tokenizer.save_pretrained(tmp)
            encoder = {"format": "elcl-cnn", "file": CNN_FILE}
        if model.head is not None:
            save_file(_cpu(model.head.state_dict()), str(tmp / HEAD_FILE), metadata={"elcl_version": __version__})
        write_ontology(tmp / ONTOLOGY_FILE, ontology)
        candidates = _save_dense_encoder(candidates, cfg, tmp)
        if extra is not None:
            extra(tmp)
        meta_json = {
            "format": EXPORT_FORMAT,
            "elcl_version": __version__,
            "model": cfg.model_dump(mode="json"),
            "candidates": candidates.model_dump(mode="json"),
            "encoder": encoder,
            "head": HEAD_FILE if model.head is not None else None,
            "ontology": {
                "file": ONTOLOGY_FILE,
                "source": ontology.source,
                "concepts": len(ontology),
                "names": ontology.num_names(),
                "content_hash": ontology.content_hash(),
            },
            **info,
        }
        if model.cfg.prior_weight and prior is not None:
            meta_json[PRIOR_KEY] = prior.record().model_dump(mode="json")
        (tmp / META_FILE).write_text(json.dumps(meta_json, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(card, encoding="utf-8")
        _readable_by_all(tmp)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


@dataclass
class ExportedLinker:
    model: Linker
    candidates: CandidatesConfig
    ontology: Ontology
    meta: dict
    prior: ConceptPrior | None = None


def read_export_meta(path: Path) -> dict:
    file = Path(path) / META_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ElclError(f"{file}: not found; is {path} a folder written by `elcl export`?") from None
    except json.JSONDecodeError as exc:
        raise ElclError(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ElclError(f"{file}: format {found!r}, expected {EXPORT_FORMAT!r}")
    return meta


def _read_prior(path: Path, meta: dict, cfg: ModelConfig) -> ConceptPrior | None:
    """The export's concept prior; checked before any weights load, so a bad folder fails fast."""
    from pydantic import ValidationError

    if not cfg.prior_weight:
        return None
    where = f"{path / META_FILE}: model.prior_weight is {cfg.prior_weight:g} but '{PRIOR_KEY}'"
    if PRIOR_KEY not in meta:
        raise ElclError(f"{where} is missing; expected {{source, mentions, counts}} (re-export the run)")
    try:
        return ConceptPrior.from_record(PriorRecord.model_validate(meta[PRIOR_KEY]))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise ElclError(f"{where} is invalid at {loc or 'top level'}: {err['msg']}") from None


def load_exported(path: Path, device: torch.device | str = "cpu") -> ExportedLinker:
    """Rebuild the linker from an export folder alone (no run directory, no corpora)."""
    from pydantic import ValidationError

    path = Path(path).expanduser()
    meta = read_export_meta(path)
    try:
        cfg = ModelConfig.model_validate(meta["model"])
        candidates = CandidatesConfig.model_validate(upgrade_candidates(meta["candidates"]))
    except (KeyError, ValidationError) as exc:
        raise ElclError(
            f"{path / META_FILE}: invalid 'model' or 'candidates' section ({str(exc).splitlines()[0]})"
        ) from None
    prior = _read_prior(path, meta, cfg)
    if candidates.dense and candidates.dense_encoder == DENSE_DIR:
        candidates.dense_encoder = str(path / DENSE_DIR)
    if cfg.type == "bert" or cfg.cnn.vocab == "wordpiece":
        cfg.name = str(path)
    if cfg.type == "cnn":
        cfg.cnn.init_from = str(path / CNN_FILE)
    model = Linker(cfg)
    if model.head is not None:
        file = path / HEAD_FILE
        try:
            model.head.load_state_dict(load_file(str(file)))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{file}: not a readable linker head ({str(exc).splitlines()[0]})") from None
    ontology = read_ontology(
        path / meta.get("ontology", {}).get("file", ONTOLOGY_FILE), meta.get("ontology", {}).get("source", "")
    )
    return ExportedLinker(model.to(device).eval(), candidates, ontology, meta, prior)
