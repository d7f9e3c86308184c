"""Size report of curvature statistics (``elcl fisher --stats``).

One row per K-FAC block (``kind='kfac'``: weight + folded bias) and per diagonal
parameter (``kind='diag'``), then a ``TOTAL`` row. ``params`` counts the parameters
the statistic covers, ``param_bytes`` their size in the model's dtype, and
``factor_bytes`` the stored statistic (a symmetric factor of dimension d counts
d(d+1)/2 values when stored ``triu``, d² when ``full``), in the statistics' dtype.
Anchors (a copy of the parameters, ratio 1 by construction) are not counted.
``ratio = factor_bytes / param_bytes``. The TOTAL row counts each parameter once
(with ``approx='both'`` a weight has a block and a diagonal).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from elcl.curvature.collect import CurvatureStats
from elcl.curvature.storage import DTYPES, load_curvature, read_meta


@dataclass(frozen=True)
class SizeRow:
    layer: str
    kind: str
    params: int
    param_bytes: int
    factor_bytes: int

    @property
    def ratio(self) -> float:
        return self.factor_bytes / self.param_bytes if self.param_bytes else float("nan")


def _elem(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def factor_size_table(
    stats_or_file: CurvatureStats | str | os.PathLike[str],
    model: nn.Module | None = None,
    symmetric: str | None = None,
    dtype: torch.dtype | None = None,
) -> list[SizeRow]:
    """Rows ``(layer, kind, params, param_bytes, factor_bytes, ratio)``; the last row is ``TOTAL``.

    ``stats_or_file``: statistics in memory, or a curvature directory (its stored
    ``symmetric_storage`` and ``dtype`` are used). Without ``model`` parameter sizes come
    from the anchors. In-memory statistics default to ``symmetric='triu'`` and their own dtype.
    """
    if isinstance(stats_or_file, CurvatureStats):
        stats = stats_or_file
        sym = symmetric or "triu"
    else:
        meta = read_meta(Path(stats_or_file))
        stats = load_curvature(stats_or_file)
        sym = symmetric or meta["symmetric_storage"]
        dtype = dtype or DTYPES[meta["dtype"]]
    params = dict(model.named_parameters()) if model is not None else {}

    def pinfo(name: str) -> tuple[int, int]:
        t: torch.Tensor | None = params.get(name)
        if t is None:
            t = stats.anchors.get(name)
        if t is None:
            return 0, 0
        return t.numel(), t.numel() * t.element_size()

    def sym_count(d: int) -> int:
        return d * (d + 1) // 2 if sym == "triu" else d * d

    rows: list[SizeRow] = []
    covered: set[str] = set()
    for path, (A, G) in sorted(stats.kfac.items()):
        e = _elem(dtype or A.dtype)
        n_w, b_w = pinfo(f"{path}.weight" if path else "weight")
        n_b, b_b = (0, 0)
        if A.shape[0] == (n_w // max(G.shape[0], 1)) + 1:
            n_b, b_b = pinfo(f"{path}.bias" if path else "bias")
            covered.add(f"{path}.bias" if path else "bias")
        covered.add(f"{path}.weight" if path else "weight")
        rows.append(
            SizeRow(path or "<root>", "kfac", n_w + n_b, b_w + b_b, (sym_count(A.shape[0]) + sym_count(G.shape[0])) * e)
        )
    for name, F in sorted(stats.diag.items()):
        n, b = pinfo(name)
        covered.add(name)
        rows.append(SizeRow(name, "diag", n, b, F.numel() * _elem(dtype or F.dtype)))
    rows.append(
        SizeRow(
            "TOTAL",
            "",
            sum(pinfo(n)[0] for n in covered),
            sum(pinfo(n)[1] for n in covered),
            sum(r.factor_bytes for r in rows),
        )
    )
    return rows


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def format_size_table(rows: list[SizeRow]) -> str:
    """Plain-text table for the CLI."""
    head = ("layer", "kind", "params", "param size", "factor size", "ratio")
    body = [
        (r.layer, r.kind, f"{r.params:,}", _human(r.param_bytes), _human(r.factor_bytes), f"{r.ratio:.3f}")
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    lines = [
        "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in (head, *body)
    ]
    lines.insert(1, "-" * len(lines[0]))
    if len(lines) > 3:
        lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)
