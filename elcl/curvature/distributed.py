"""Merge curvature statistics collected by several processes on disjoint data shards.

Every process of a torchrun group collects on its own slice of the examples (the
runner uses ``usable[rank::world]``). The statistics are normalised means, so they
are un-normalised with the local counts, summed with ``all_reduce`` and divided by
the global counts:

* diagonals and K-FAC ``G``: ``Σ_ranks N_r · X_r / Σ_ranks N_r`` (``N_r`` examples);
* K-FAC ``A``: with ``expand`` weighted by the real positions ``P_{r,m}`` each rank saw
  at module ``m`` (``meta['n_positions']``), with ``reduce`` by ``N_r``.

The merged statistics equal the single-process statistics on the union of the shards
(up to floating-point summation order). Sums run in float64. Anchors are left as they
are (DDP keeps parameters identical on every rank). A rank with no examples takes
part with zero counts.
"""

from __future__ import annotations

import torch

from elcl.curvature.collect import CurvatureStats
from elcl.errors import ElclError

_F64 = torch.float64


def _flat_sum(tensors: list[torch.Tensor], group=None) -> list[torch.Tensor]:
    """One all_reduce(SUM) over all tensors (flattened into a float64 buffer)."""
    import torch.distributed as dist

    if not tensors:
        return []
    dev = tensors[0].device
    buf = torch.cat([t.reshape(-1).to(device=dev, dtype=_F64) for t in tensors])
    dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
    out, o = [], 0
    for t in tensors:
        out.append(buf[o : o + t.numel()].view(t.shape))
        o += t.numel()
    return out


def all_reduce_stats(stats: CurvatureStats, group=None) -> CurvatureStats:
    """Statistics of all ranks' data combined; every rank gets the same result.

    Needs an initialised default process group (or ``group``); with world size 1 it
    returns ``stats`` unchanged. Raises when ranks hold different blocks or settings.
    """
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ElclError("curvature: all_reduce_stats needs an initialised torch.distributed process group")
    if dist.get_world_size(group) == 1:
        return stats
    meta = stats.meta
    variant = str(meta.get("variant", "expand"))
    n_local = int(meta.get("n_examples", 0))
    n_pos_local: dict[str, int] = dict(meta.get("n_positions") or {})
    kfac_keys = sorted(stats.kfac)
    diag_keys = sorted(stats.diag)
    if variant == "expand" and stats.kfac and any(k not in n_pos_local for k in kfac_keys):
        raise ElclError(
            "curvature: K-FAC 'expand' statistics lack meta['n_positions']; collect them with collect_curvature"
        )

    # Every rank must hold the same blocks, shapes and settings.
    signature = (
        meta.get("approx"),
        meta.get("kind"),
        variant,
        meta.get("n_samples"),
        [(k, tuple(A.shape), tuple(G.shape)) for k, (A, G) in sorted(stats.kfac.items())],
        [(k, tuple(v.shape)) for k, v in sorted(stats.diag.items())],
    )
    sigs: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(sigs, signature, group=group)
    if any(s != signature for s in sigs):
        raise ElclError("curvature: ranks collected different statistics (blocks, shapes or settings differ)")

    dev = next(iter([*stats.diag.values(), *[A for A, _ in stats.kfac.values()]]), torch.zeros(())).device
    counts = torch.tensor([n_local] + [n_pos_local.get(k, 0) for k in kfac_keys], dtype=_F64, device=dev)
    tensors: list[torch.Tensor] = [counts]
    for k in kfac_keys:
        A, G = stats.kfac[k]
        a_w = n_pos_local[k] if variant == "expand" else n_local
        tensors += [A.to(_F64) * a_w, G.to(_F64) * n_local]
    for k in diag_keys:
        tensors.append(stats.diag[k].to(_F64) * n_local)
    summed = _flat_sum(tensors, group)
    counts_g = summed[0]
    n_global = int(round(float(counts_g[0])))
    denom_n = max(n_global, 1)
    kfac: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    n_pos_global: dict[str, int] = {}
    for i, k in enumerate(kfac_keys):
        A_s, G_s = summed[1 + 2 * i], summed[2 + 2 * i]
        A0, G0 = stats.kfac[k]
        p = int(round(float(counts_g[1 + i])))
        n_pos_global[k] = p
        a_norm = max(p, 1) if variant == "expand" else denom_n
        kfac[k] = ((A_s / a_norm).to(A0.dtype), (G_s / denom_n).to(G0.dtype))
    diag = {}
    off = 1 + 2 * len(kfac_keys)
    for j, k in enumerate(diag_keys):
        diag[k] = (summed[off + j] / denom_n).to(stats.diag[k].dtype)
    new_meta = dict(meta)
    new_meta["n_examples"] = n_global
    new_meta["n_positions"] = n_pos_global
    new_meta["world_size"] = dist.get_world_size(group)
    return CurvatureStats(kfac=kfac, diag=diag, anchors=dict(stats.anchors), meta=new_meta)


__all__ = ["all_reduce_stats"]
