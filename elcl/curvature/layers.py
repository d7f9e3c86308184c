"""One small class per supported layer kind: how its calls become curvature rows.

The hooks (:mod:`elcl.curvature.hooks`) only capture a layer's input and output
gradient, select the real positions and accumulate; everything that depends on what
the layer *is* lives here, looked up once per module from :data:`LAYER_KINDS` by module
type (the idea of curvlinops' per-layer io patterns, done for elcl's four kinds):

* ``input_rows``: the layer input as one row per position, ``[n_rows * n_pos, d]``
  (the rows of K-FAC's ``A``; token ids for an Embedding);
* ``grad_rows``: the output gradient at the selected positions, ``[P, d_out]`` (the
  rows of ``G``);
* ``diag``: the layer's contribution to the diagonal Fisher, from the per-example
  gradients the rows imply (dense, or a sparse COO tensor when it touches few rows, as an
  embedding table's does);
* ``rows_from_input_only``: the rows depend on the input tensor alone (not on the
  module), so modules fed the same tensor share them and their ``A`` product;
* ``kfac`` / ``factor_dims``: whether the kind gets a Kronecker block, and its size.

Positions: a Linear input ``[N, d]`` has one position per row; ``[N, T, d]`` (or
``[N, ..., d]``, middle dims flattened) has ``T`` positions per row. A Conv1d input
``[N, C, L]`` is unfolded into ``[N, L_out, C*k]`` patches (KFC, Grosse & Martens 2016;
the patch index is ``c*k + j``, matching ``weight.reshape(out, C*k)``), one position per
output step. Embedding positions are token ids; LayerNorm positions are the rows it
normalises, and its rows are the normalised inputs ``x̂`` (so ``∂l/∂weight = g ⊙ x̂``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from elcl.errors import ElclError


class Layout(Protocol):
    """What a layer kind reads of a batch's position layout (built by
    :class:`elcl.curvature.hooks.Layout`, which imports this module, so it is named here
    by its shape, not imported): ``ex [P]``, the example of each kept position."""

    ex: torch.Tensor

    def segment_sum(self, rows: torch.Tensor) -> torch.Tensor: ...

    def max_count(self) -> int: ...

    def padded(self, rows: torch.Tensor) -> torch.Tensor: ...


# at most this many elements in one chunk of per-example weight gradients
_PER_EXAMPLE_BUDGET = 1 << 26


def _tensor(module: nn.Module, name: str) -> torch.Tensor:
    t = getattr(module, name)
    assert isinstance(t, torch.Tensor), name
    return t


def _take(rows: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
    return rows if idx is None else rows.index_select(0, idx)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """Per-batch products run in ``promote(activation dtype, float32)``."""
    return torch.promote_types(t.dtype, torch.float32)


class LayerKind:
    """What a layer kind contributes; the base gives the diagonal-only behaviour."""

    kfac: ClassVar[bool] = False  # gets a Kronecker block (else only the diagonal)
    rows_from_input_only: ClassVar[bool] = False  # input_rows ignores the module's own settings

    def check(self, name: str, module: nn.Module) -> None:
        """Refuse a configuration whose rows these formulas would get wrong."""

    def input_rows(self, name: str, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """``(rows [n_rows * n_pos, d], n_rows, n_pos)`` of one call's input ``x``."""
        raise NotImplementedError

    def grad_rows(self, module: nn.Module, g: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        """Output gradient ``g`` (already in the compute dtype) at the selected positions ``idx``
        (``None``: every position, in order)."""
        return _take(g.reshape(-1, g.shape[-1]), idx)

    def out_width(self, module: nn.Module, out_shape: torch.Size) -> int:
        """Width of :meth:`grad_rows` (for a call whose output the loss never reached)."""
        return int(out_shape[-1])

    def diag(
        self, module: nn.Module, wanted: list[str], g: torch.Tensor, a: torch.Tensor, lay: Layout
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """``(parameter, Σ_n (∂l_n/∂θ)²)`` for the ``wanted`` local parameters, unweighted."""
        if "bias" in wanted:
            yield "bias", lay.segment_sum(g).square().sum(0).reshape(_tensor(module, "bias").shape)
        if "weight" in wanted:
            w = self.weight_diag(module, g, a.to(g.dtype), lay)
            if w is not None:
                yield "weight", w.reshape(_tensor(module, "weight").shape)

    def weight_diag(self, module: nn.Module, g: torch.Tensor, a: torch.Tensor, lay: Layout) -> torch.Tensor | None:
        raise NotImplementedError

    def factor_dims(self, module: nn.Module, has_bias: bool) -> tuple[int, int]:
        """``(d_in, d_out)`` of the Kronecker factors ``A`` and ``G`` (bias folded into ``A``)."""
        raise ElclError(f"curvature: {type(module).__name__} has no Kronecker block")


class _Kronecker(LayerKind):
    """Layers computing ``W a + b`` per position: a K-FAC block ``A ⊗ G``."""

    kfac = True

    def weight_diag(self, module: nn.Module, g: torch.Tensor, a: torch.Tensor, lay: Layout) -> torch.Tensor | None:
        # per-example weight gradient = Σ_r g_r a_rᵀ over the example's positions
        if lay.ex.numel() == 0:
            return None
        if lay.max_count() <= 1:
            return g.square().T @ a.square()
        gp, ap = lay.padded(g), lay.padded(a)
        n = gp.shape[0]
        d = g.new_zeros(g.shape[1], a.shape[1])
        per = max(1, _PER_EXAMPLE_BUDGET // max(1, g.shape[1] * a.shape[1]))
        for s in range(0, n, per):
            pe = torch.bmm(gp[s : s + per].transpose(1, 2), ap[s : s + per])
            d += pe.square().sum(0)
        return d

    def factor_dims(self, module: nn.Module, has_bias: bool) -> tuple[int, int]:
        w = _tensor(module, "weight")
        return w[0].numel() + (1 if has_bias else 0), int(w.shape[0])


class Linear(_Kronecker):
    rows_from_input_only = True

    def input_rows(self, name: str, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        xf = x.to(compute_dtype(x))
        if xf.dim() == 1:
            xf = xf[None]
        n, d = xf.shape[0], xf.shape[-1]
        n_pos = xf.numel() // (n * d) if n * d else 0
        return xf.reshape(n * n_pos, d), n, n_pos


def conv1d_patches(module: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """Unfold ``x [N, C, L]`` into patches ``[N, L_out, C*k]`` (index ``c*k + j``)."""
    (k,) = module.kernel_size
    (dil,) = module.dilation
    if module.padding == "same":
        total = dil * (k - 1)
        left = total // 2
        x = F.pad(x, (left, total - left))
    elif isinstance(module.padding, tuple):  # else "valid": no padding
        (p,) = module.padding
        if p:
            x = F.pad(x, (p, p))
    # x: [N, C, Lp] -> unfold over last dim: [N, C, L_out, k]
    patches = x.unfold(2, dil * (k - 1) + 1, 1)[..., ::dil]
    n, c, l_out, _ = patches.shape
    return patches.permute(0, 2, 1, 3).reshape(n, l_out, c * k)


class Conv1d(_Kronecker):
    def check(self, name: str, module: nn.Module) -> None:
        assert isinstance(module, nn.Conv1d)
        if module.stride != (1,):
            raise ElclError(f"curvature: Conv1d '{name}' has stride {module.stride[0]}; only stride 1 is supported")
        if module.groups != 1:
            raise ElclError(f"curvature: Conv1d '{name}' has groups={module.groups}; only groups=1 is supported")
        if module.padding_mode != "zeros":
            raise ElclError(
                f"curvature: Conv1d '{name}' has padding_mode={module.padding_mode!r}; only 'zeros' is supported"
            )

    def input_rows(self, name: str, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        assert isinstance(module, nn.Conv1d)
        if x.dim() != 3:
            raise ElclError(f"curvature: Conv1d '{name}' needs a batched input [N, C, L], got {tuple(x.shape)}")
        p = conv1d_patches(module, x.to(compute_dtype(x)))
        n, l_out, d = p.shape
        return p.reshape(n * l_out, d), n, l_out

    def grad_rows(self, module: nn.Module, g: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return super().grad_rows(module, g.transpose(1, 2), idx)  # [N, out, L_out] -> [N, L_out, out]

    def out_width(self, module: nn.Module, out_shape: torch.Size) -> int:
        assert isinstance(module, nn.Conv1d)
        return module.out_channels


class Embedding(LayerKind):
    def check(self, name: str, module: nn.Module) -> None:
        assert isinstance(module, nn.Embedding)
        if module.scale_grad_by_freq:
            raise ElclError(f"curvature: Embedding '{name}' uses scale_grad_by_freq, which is not supported")

    def input_rows(self, name: str, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        n = x.shape[0] if x.dim() else 1
        n_pos = x.numel() // max(n, 1)
        return x.reshape(-1), n, n_pos

    def diag(
        self, module: nn.Module, wanted: list[str], g: torch.Tensor, a: torch.Tensor, lay: Layout
    ) -> Iterator[tuple[str, torch.Tensor]]:
        # Per example, the gradient of a row is the sum of g over the positions holding its id.
        assert isinstance(module, nn.Embedding)
        ids, ex = a.long(), lay.ex
        if module.padding_idx is not None:
            ok = ids != module.padding_idx
            ids, ex, g = ids[ok], ex[ok], g[ok]
        key = ex * module.num_embeddings + ids
        uniq, inv = torch.unique(key, return_inverse=True)
        sums = g.new_zeros(uniq.numel(), g.shape[1]).index_add_(0, inv, g)
        rows = uniq % module.num_embeddings
        # only the rows this batch touched (a table of 30k rows would otherwise be zeroed,
        # converted and added every batch)
        yield (
            "weight",
            torch.sparse_coo_tensor(rows[None], sums.square(), tuple(module.weight.shape), check_invariants=False),
        )


class LayerNorm(LayerKind):
    def input_rows(self, name: str, module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        assert isinstance(module, nn.LayerNorm)
        k = len(module.normalized_shape)
        xf = x.to(compute_dtype(x))
        xhat = F.layer_norm(xf, module.normalized_shape, None, None, module.eps)
        d = math.prod(module.normalized_shape)
        lead = xf.shape[: xf.dim() - k]
        n = lead[0] if len(lead) else 1
        n_pos = math.prod(lead[1:]) if len(lead) > 1 else 1
        return xhat.reshape(n * n_pos, d), n, n_pos

    def grad_rows(self, module: nn.Module, g: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return _take(g.reshape(-1, self.out_width(module, g.shape)), idx)

    def out_width(self, module: nn.Module, out_shape: torch.Size) -> int:
        assert isinstance(module, nn.LayerNorm)
        return math.prod(module.normalized_shape)

    def weight_diag(self, module: nn.Module, g: torch.Tensor, a: torch.Tensor, lay: Layout) -> torch.Tensor | None:
        return lay.segment_sum(g * a).square().sum(0)


LAYER_KINDS: dict[type[nn.Module], LayerKind] = {
    nn.Linear: Linear(),
    nn.Conv1d: Conv1d(),
    nn.Embedding: Embedding(),
    nn.LayerNorm: LayerNorm(),
}


def layer_kind(module: nn.Module) -> LayerKind | None:
    """The kind of ``module`` (subclasses of a supported type count as it), or None."""
    for cls in type(module).__mro__:
        kind = LAYER_KINDS.get(cls)
        if kind is not None:
            return kind
    return None


def supported_names() -> str:
    return ", ".join(cls.__name__ for cls in LAYER_KINDS)
