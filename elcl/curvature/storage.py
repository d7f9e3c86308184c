"""On-disk format of curvature statistics (a contract; format ``elcl-curvature/1``).

A curvature directory holds two files:

``factors.safetensors`` (written with ``safetensors.torch``, never pickle), tensors:
  * ``<module path>.A``, ``<module path>.G`` — K-FAC factors of a Linear/Conv1d block.
    With ``symmetric_storage = "triu"`` each is the packed upper triangle, a 1-D tensor
    of length ``d(d+1)/2`` in ``torch.triu_indices(d, d)`` (row-major) order; with
    ``"full"`` the ``[d, d]`` matrix. The root module's path is ``""`` (key ``.A``).
  * ``<parameter name>.diag`` — diagonal Fisher, shaped like the parameter.
  * ``<parameter name>.anchor`` — θ* (kept in the parameter's own dtype).
  Factors and diagonals are stored in ``dtype``. The name before the last ``.`` is the
  module path / parameter name; the last component says which tensor it is.

``meta.json``: ``format``, ``approximation``, ``fisher_kind``, ``sequence_variant``,
``n_examples``, ``n_samples``, ``model_config_hash``, ``dtype``, ``symmetric_storage``,
``factors_sha256`` (of the tensor file's bytes), ``elcl_version``, ``file``.

Both files are written to a temporary file in the same directory and moved in place
with ``os.replace`` (tensors first, then meta), so a crash leaves either the old pair
or a pair whose checksum mismatches — never a silently half-written file.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import elcl
from elcl.curvature.collect import CurvatureStats
from elcl.errors import CheckpointError
from elcl.fileio import atomic_path, atomic_write_text, sha256_file
from elcl.schemas import CURVATURE_FORMAT, CurvatureMeta, dump_json, parse_json_file

FORMAT = CURVATURE_FORMAT
FACTORS_FILE = "factors.safetensors"
META_FILE = "meta.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}


def dtype_name(dtype: torch.dtype) -> str:
    for k, v in DTYPES.items():
        if v == dtype:
            return k
    raise CheckpointError(f"curvature storage: unsupported dtype {dtype}; use one of {', '.join(DTYPES)}")


def pack_triu(M: torch.Tensor) -> torch.Tensor:
    d = M.shape[0]
    i, j = torch.triu_indices(d, d, device=M.device)
    return M[i, j].contiguous()


def unpack_triu(v: torch.Tensor, where: str = "") -> torch.Tensor:
    L = v.numel()
    d = int(round((math.sqrt(8 * L + 1) - 1) / 2))
    if v.dim() != 1 or d * (d + 1) // 2 != L:
        raise CheckpointError(f"{where}: packed factor of {L} values is not an upper triangle d(d+1)/2")
    i, j = torch.triu_indices(d, d, device=v.device)
    M = v.new_zeros(d, d)
    M[i, j] = v
    M[j, i] = v
    return M


def save_curvature(
    stats: CurvatureStats,
    directory: str | os.PathLike[str],
    model_config_hash: str,
    dtype: torch.dtype = torch.float32,
    symmetric: str = "triu",
) -> Path:
    """Write ``stats`` to ``directory`` (created if needed); returns the directory."""
    if symmetric not in ("full", "triu"):
        raise CheckpointError(f"curvature storage: symmetric must be 'full' or 'triu', got {symmetric!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}

    def put(key: str, t: torch.Tensor) -> None:
        if key in tensors:
            raise CheckpointError(f"curvature storage: duplicate tensor name {key!r}")
        tensors[key] = t.detach().to("cpu").contiguous().clone()

    for path, (A, G) in stats.kfac.items():
        for tag, M in (("A", A), ("G", G)):
            M = M.to(dtype)
            put(f"{path}.{tag}", pack_triu(M) if symmetric == "triu" else M)
    for name, v in stats.diag.items():
        put(f"{name}.diag", v.to(dtype))
    for name, v in stats.anchors.items():
        put(f"{name}.anchor", v)
    with atomic_path(d / FACTORS_FILE, ".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT})
        digest = sha256_file(tmp)
    meta = CurvatureMeta(
        file=FACTORS_FILE,
        approximation=stats.meta.get("approx"),
        fisher_kind=stats.meta.get("kind"),
        sequence_variant=stats.meta.get("variant"),
        n_examples=int(stats.meta.get("n_examples", 0)),
        n_samples=int(stats.meta.get("n_samples", 1)),
        model_config_hash=model_config_hash,
        dtype=dtype_name(dtype),  # type: ignore[arg-type]
        symmetric_storage=symmetric,  # type: ignore[arg-type]
        factors_sha256=digest,
        elcl_version=elcl.__version__,
    )
    atomic_write_text(d / META_FILE, dump_json(meta))
    return d


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``meta.json`` of a curvature directory (schema: :class:`CurvatureMeta`)."""
    mpath = Path(directory) / META_FILE
    if not mpath.is_file():
        raise CheckpointError(f"{mpath}: curvature metadata file not found")
    return parse_json_file(CurvatureMeta, mpath, error=CheckpointError).dump()


def load_curvature(
    directory: str | os.PathLike[str],
    expected_model_config_hash: str | None = None,
    device: torch.device | str = "cpu",
) -> CurvatureStats:
    """Read and verify a curvature directory written by :func:`save_curvature`.

    Raises :class:`~elcl.errors.CheckpointError` (one line naming the file) when a file
    is missing, the checksum or model hash does not match, or the content is corrupt.
    """
    d = Path(directory)
    meta = read_meta(d)
    fpath = d / FACTORS_FILE
    if not fpath.is_file():
        raise CheckpointError(f"{fpath}: curvature tensor file not found")
    digest = sha256_file(fpath)
    if digest != meta["factors_sha256"]:
        raise CheckpointError(
            f"{fpath}: sha256 {digest[:12]}… does not match {META_FILE} ({str(meta['factors_sha256'])[:12]}…); "
            "the file is corrupt or was changed"
        )
    if expected_model_config_hash is not None and meta["model_config_hash"] != expected_model_config_hash:
        raise CheckpointError(
            f"{d / META_FILE}: curvature was computed for model config {meta['model_config_hash']!r}, "
            f"not {expected_model_config_hash!r}"
        )
    try:
        tensors = load_file(str(fpath), device=str(device))
    except Exception as exc:  # safetensors raises several types on corrupt input
        raise CheckpointError(f"{fpath}: not a readable safetensors file ({exc.__class__.__name__})") from None
    triu = meta["symmetric_storage"] == "triu"
    factors: dict[str, dict[str, torch.Tensor]] = {}
    stats = CurvatureStats(
        meta={
            "approx": meta["approximation"],
            "kind": meta["fisher_kind"],
            "variant": meta["sequence_variant"],
            "n_examples": int(meta["n_examples"]),
            "n_samples": int(meta["n_samples"]),
            "model_config_hash": meta["model_config_hash"],
            "dtype": meta["dtype"],
            "symmetric_storage": meta["symmetric_storage"],
        }
    )
    for key, t in tensors.items():
        name, _, tag = key.rpartition(".")
        if tag in ("A", "G"):
            if triu:
                t = unpack_triu(t, f"{fpath}: tensor {key!r}")
            elif t.dim() != 2 or t.shape[0] != t.shape[1]:
                raise CheckpointError(f"{fpath}: tensor {key!r} should be a square matrix, got {tuple(t.shape)}")
            factors.setdefault(name, {})[tag] = t
        elif tag == "diag":
            stats.diag[name] = t
        elif tag == "anchor":
            stats.anchors[name] = t
        else:
            raise CheckpointError(f"{fpath}: unexpected tensor name {key!r}")
    for name, ag in factors.items():
        if set(ag) != {"A", "G"}:
            raise CheckpointError(f"{fpath}: K-FAC block {name!r} lacks its {'G' if 'A' in ag else 'A'} factor")
        stats.kfac[name] = (ag["A"], ag["G"])
    return stats
