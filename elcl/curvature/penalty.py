"""Quadratic curvature penalties that keep a model near earlier tasks' optima.

Every penalty offers

* ``value(model)`` — a scalar tensor, differentiable by autograd;
* ``add_grad_(model)`` — adds the penalty gradient straight into ``p.grad`` (allocated
  when ``None``) without building a graph, and returns the (detached) value.

Penalties (``λ`` = ``lam``, tasks ``t`` = entries of ``stats_list``, oldest first). Each
takes optional per-task ``weights`` w_t that multiply task t's curvature (``lambda:
auto`` passes λ_t = N_t / N with ``lam = 1``); without them every w_t is 1:

* :class:`EWCPenalty`: ``(λ/2) Σ_t Σ_i F_{t,i} (θ_i − θ*_{t,i})²``. Evaluated in the
  equivalent form ``(λ/2) [Σ_i F̄_i (θ_i − c_i)² + C]`` with ``F̄ = Σ_t F_t``,
  ``c = Σ_t F_t θ*_t / F̄`` and the constant ``C = Σ_t Σ_i F_{t,i} (θ*_{t,i} − c_i)²``
  (precomputed in float64), so the cost does not grow with the number of tasks and
  there is no cancellation. Gradient ``λ F̄ (θ − c) = λ Σ_t F_t (θ − θ*_t)``.
* :class:`OnlineEWCPenalty`: ``F̃_t = γ F̃_{t−1} + F_t``, anchor = latest ``θ*``;
  ``(λ/2) Σ_i F̃_i (θ_i − θ*_i)²``.
* :class:`KFACPenalty`: for each task and K-FAC block ``(A, G)`` of module ``m``,
  ``ΔW = [W − W*, b − b*]`` (bias as the extra input column; Conv1d weight
  ``[out, C, k]`` as ``[out, C*k]``, the unfolding order of the hooks):
  ``(λ/2) tr(ΔWᵀ G ΔW A) = (λ/2) vec(ΔW)ᵀ (A ⊗ G) vec(ΔW)`` (column-stacking vec);
  gradient ``λ G ΔW A``. Sums of Kronecker products are not Kronecker products and
  anchors differ per task, so the per-task terms are kept; blocks of one shape (all
  tasks, all layers) are evaluated together with batched matmuls (``[L·T, out, in]``)
  and their gradients added with one foreach call. Parameters without a block use the EWC term of
  their diagonal. With ``stats.low_rank`` set (``CurvatureStats.to_low_rank``) the
  factors are applied in O(r·in·out).

  ``matmul_dtype=torch.bfloat16`` runs the two dense products in bfloat16 (fp32
  accumulation) — 3× faster on AVX512-BF16 CPUs and on tensor cores. ``ΔW`` is formed
  in the parameters' dtype *before* the cast, so nothing cancels; each product rounds
  its inputs and output to 8 mantissa bits, which leaves the gradient within about 1%
  (``tests/test_penalty.py`` pins it against float64). The runner uses it when the
  training itself autocasts to bf16 (``method.penalty_dtype: auto``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from elcl.curvature.collect import CurvatureStats, LowRankFactor
from elcl.errors import ElclError

_F64 = torch.float64


class _Cast:
    """Caches copies of stored tensors on the device/dtype of the parameters they meet."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        key = (id(t), ref.device, ref.dtype)
        out = self._cache.get(key)
        if out is None:
            out = t.to(device=ref.device, dtype=ref.dtype)
            self._cache[key] = out
        return out


def _params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def _lookup(params: dict[str, nn.Parameter], name: str, shape: torch.Size, what: str) -> nn.Parameter:
    p = params.get(name)
    if p is None:
        raise ElclError(f"{what}: the model has no parameter '{name}' (curvature from another model?)")
    if p.shape != shape:
        raise ElclError(f"{what}: parameter '{name}' has shape {tuple(p.shape)}, curvature has {tuple(shape)}")
    return p


def _add_grad(p: torch.Tensor, g: torch.Tensor) -> None:
    g = g.to(p.dtype)
    if p.grad is None:
        p.grad = g.clone()
    else:
        p.grad.add_(g)


def _add_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], alpha: float = 1.0) -> None:
    """``p.grad += alpha · g`` for all pairs, in one foreach call where grads exist."""
    have = [(p.grad, g) for p, g in zip(params, grads) if p.grad is not None and p.grad.dtype == g.dtype]
    for p, g in zip(params, grads):
        if p.grad is None or p.grad.dtype != g.dtype:
            _add_grad(p, g * alpha if alpha != 1.0 else g)
    if have:
        torch._foreach_add_([pg for pg, _ in have], [g for _, g in have], alpha=alpha)


class Penalty:
    """Base class; ``lam`` may be changed between steps."""

    lam: float

    def value(self, model: nn.Module) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def add_grad_(self, model: nn.Module) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class _DiagQuadratic:
    """``Σ_i F_i (θ_i − c_i)² + C`` per parameter (see the module docstring)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.F: dict[str, torch.Tensor] = {}
        self.c: dict[str, torch.Tensor] = {}
        self.const = torch.zeros((), dtype=_F64)
        self.cast = _Cast()
        self._roots: dict[str, torch.Tensor] = {}

    @classmethod
    def from_terms(cls, terms: dict[str, list[tuple[torch.Tensor, torch.Tensor]]], what: str) -> _DiagQuadratic:
        q = cls(what)
        for name, lst in terms.items():
            if len(lst) == 1:
                F, a = lst[0]
                q.F[name], q.c[name] = F.to(_F64), a.to(_F64)
                continue
            Fs = torch.stack([F.to(_F64) for F, _ in lst])
            As = torch.stack([a.to(_F64).to(Fs.device) for _, a in lst])
            Fbar = Fs.sum(0)
            c = torch.where(Fbar > 0, (Fs * As).sum(0) / Fbar.clamp_min(torch.finfo(_F64).tiny), As[-1])
            q.F[name], q.c[name] = Fbar, c
            q.const = q.const + (Fs * (As - c).square()).sum().cpu()
        return q

    def _resolved(self, model: nn.Module):
        params = _params(model)
        for name, F in self.F.items():
            p = _lookup(params, name, F.shape, self.what)
            yield p, self.cast(F, p), self.cast(self.c[name], p)

    def const_on(self, device: torch.device) -> torch.Tensor:
        """The constant on ``device``, cached (no host-to-device copy per step)."""
        return self.cast(self.const, torch.empty((), dtype=_F64, device=device))

    def value(self, model: nn.Module) -> torch.Tensor:
        total = None
        for p, F, c in self._resolved(model):
            t = (F * (p - c).square()).sum()
            total = t if total is None else total + t
        if total is None:
            return self.const.clone()
        return total + self.const.to(device=total.device, dtype=total.dtype)

    @torch.no_grad()
    def add_grad_(self, model: nn.Module, lam: float) -> torch.Tensor:
        """Adds ``lam · F (θ − c)``; returns the value of the (unscaled) quadratic.

        With ``u = √F ⊙ (θ − c)`` the value is ``Σ ‖u‖²`` and the gradient ``√F ⊙ u``:
        a few foreach calls for all parameters, everything on the parameters' device
        (no host sync)."""
        dev = next(iter(model.parameters())).device
        total = self.const_on(dev).clone()
        resolved = list(self._resolved(model))
        if not resolved:
            return total
        ps = [p for p, _, _ in resolved]
        roots = [self.cast(self._root(name), p) for name, p in zip(self.F, ps)]
        u = torch._foreach_mul(torch._foreach_sub([p.detach() for p in ps], [c for _, _, c in resolved]), roots)
        total += torch.stack(torch._foreach_norm(u)).to(_F64).square().sum()
        _add_grads(ps, torch._foreach_mul(u, roots), alpha=lam)
        return total

    def _root(self, name: str) -> torch.Tensor:
        r = self._roots.get(name)
        if r is None:
            r = self._roots[name] = self.F[name].clamp_min(0).sqrt()
        return r


def _weights(weights: Sequence[float] | None, stats_list: Sequence[CurvatureStats], what: str) -> list[float]:
    """Per-task multipliers of the curvature (λ_t / λ); all 1 when not given."""
    if weights is None:
        return [1.0] * len(stats_list)
    if len(weights) != len(stats_list):
        raise ElclError(f"{what}: {len(weights)} task weights for {len(stats_list)} tasks' curvature")
    if any(not (w >= 0) for w in weights):
        raise ElclError(f"{what}: task weights must be non-negative, got {list(weights)}")
    return [float(w) for w in weights]


def _scaled(t: torch.Tensor, w: float) -> torch.Tensor:
    """``w · t``; ``t`` itself for w = 1 (so the default is bit-for-bit the unweighted penalty)."""
    return t if w == 1.0 else t * w


def _require_diag(st: CurvatureStats, t: int, method: str) -> None:
    missing = [n for n in st.anchors if n not in st.diag]
    if missing:
        raise ElclError(
            f"{method}: task {t} curvature has no diagonal Fisher for '{missing[0]}' (approx "
            f"{st.approx!r}); collect it with curvature.approx 'diag' or 'both'"
        )


class EWCPenalty(Penalty):
    """``(λ/2) Σ_tasks Σ_i F_i (θ_i − θ*_i)²`` with each task's diagonal Fisher and anchor."""

    def __init__(
        self, stats_list: Sequence[CurvatureStats], lam: float, weights: Sequence[float] | None = None
    ) -> None:
        self.lam = float(lam)
        ws = _weights(weights, stats_list, "ewc")
        terms: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for t, st in enumerate(stats_list):
            _require_diag(st, t, "ewc")
            for name, F in st.diag.items():
                terms.setdefault(name, []).append((_scaled(F, ws[t]), st.anchors[name]))
        self._q = _DiagQuadratic.from_terms(terms, "ewc")

    def value(self, model: nn.Module) -> torch.Tensor:
        return 0.5 * self.lam * self._q.value(model)

    def add_grad_(self, model: nn.Module) -> torch.Tensor:
        return 0.5 * self.lam * self._q.add_grad_(model, self.lam)


class OnlineEWCPenalty(Penalty):
    """``(λ/2) Σ_i F̃_i (θ_i − θ*_i)²`` with a running Fisher ``F̃`` and the latest anchor."""

    def __init__(self, fisher: dict[str, torch.Tensor], anchors: dict[str, torch.Tensor], lam: float) -> None:
        self.lam = float(lam)
        missing = [n for n in fisher if n not in anchors]
        if missing:
            raise ElclError(f"online_ewc: no anchor for parameter '{missing[0]}'")
        self.fisher = fisher
        self.anchors = {n: anchors[n] for n in fisher}
        self._q = _DiagQuadratic.from_terms({n: [(F, self.anchors[n])] for n, F in fisher.items()}, "online_ewc")

    @classmethod
    def from_stats(
        cls,
        stats_list: Sequence[CurvatureStats],
        lam: float,
        gamma: float = 1.0,
        weights: Sequence[float] | None = None,
    ) -> OnlineEWCPenalty:
        """Folds ``F̃_t = γ F̃_{t−1} + w_t F_t`` over ``stats_list`` (oldest first; w_t = 1
        unless ``weights`` are given)."""
        ws = _weights(weights, stats_list, "online_ewc")
        running: dict[str, torch.Tensor] = {}
        anchors: dict[str, torch.Tensor] = {}
        for t, st in enumerate(stats_list):
            _require_diag(st, t, "online_ewc")
            for n in running:
                running[n] = gamma * running[n]
            for n, F in st.diag.items():
                F = _scaled(F.to(_F64), ws[t])
                running[n] = running[n] + F.to(running[n].device) if n in running else F.clone()
                anchors[n] = st.anchors[n]
        return cls(running, anchors, lam)

    def value(self, model: nn.Module) -> torch.Tensor:
        return 0.5 * self.lam * self._q.value(model)

    def add_grad_(self, model: nn.Module) -> torch.Tensor:
        return 0.5 * self.lam * self._q.add_grad_(model, self.lam)


class _Block:
    """All tasks' K-FAC terms of one module."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.A: list[torch.Tensor] = []
        self.G: list[torch.Tensor] = []
        self.W: list[torch.Tensor] = []  # anchors W̃* [out, in(+1)]
        self.low: list[tuple[LowRankFactor, LowRankFactor] | None] = []
        self.has_bias: bool | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.W[0].shape)  # type: ignore[return-value]


class _Group:
    """Blocks of one shape (e.g. the Q/K/V/O projections of every layer), evaluated with
    one pair of batched products ``[L·T, out, in]``: a handful of kernels per step for
    the whole model instead of a dozen per block, which is what a GPU step notices.
    ``low``: every task's factors of every block are in low-rank form (same rank)."""

    def __init__(self, blocks: list[_Block], low: bool) -> None:
        self.blocks = blocks
        self.low = low
        self._stacked: tuple | None = None
        self._key: tuple | None = None

    def stacked(self, ref: torch.Tensor, mm_dtype: torch.dtype) -> tuple:
        """(A, G, anchors ``[L, T, out, in]``), cached per device/dtype. Dense: A and G
        are ``[L·T, ·, ·]`` in the matmul dtype; low-rank: batched :class:`LowRankFactor`
        in the parameters' dtype."""
        key = (ref.device, ref.dtype, mm_dtype)
        if self._key != key:
            cv = lambda ts, dt: torch.stack([t.to(device=ref.device, dtype=dt) for t in ts])  # noqa: E731
            W = cv([w for b in self.blocks for w in b.W], ref.dtype)
            W = W.view(len(self.blocks), -1, *W.shape[1:])
            if self.low:
                # a low group has every task's factors in low-rank form: nothing is dropped here
                lows = [lr for b in self.blocks for lr in b.low if lr is not None]
                assert len(lows) == sum(len(b.low) for b in self.blocks)

                def batch(fs: list) -> LowRankFactor:
                    return LowRankFactor(
                        cv([f.U for f in fs], ref.dtype),
                        cv([f.s for f in fs], ref.dtype),
                        cv([f.rest for f in fs], ref.dtype),
                    )

                self._stacked = (batch([a for a, _ in lows]), batch([g for _, g in lows]), W)
            else:
                A = cv([a for b in self.blocks for a in b.A], mm_dtype)
                G = cv([g for b in self.blocks for g in b.G], mm_dtype)
                self._stacked = (A, G, W)
            self._key = key
        assert self._stacked is not None
        return self._stacked


class KFACPenalty(Penalty):
    """``(λ/2) Σ_tasks Σ_blocks tr(ΔWᵀ G ΔW A)`` plus diagonal EWC for parameters without a block."""

    def __init__(
        self,
        stats_list: Sequence[CurvatureStats],
        lam: float,
        matmul_dtype: torch.dtype | None = None,
        weights: Sequence[float] | None = None,
    ) -> None:
        self.lam = float(lam)
        self.matmul_dtype = matmul_dtype
        """dtype of the dense factor products; None = the parameters' dtype."""
        ws = _weights(weights, stats_list, "kfac")
        self.blocks: dict[str, _Block] = {}
        diag_terms: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        for t, st in enumerate(stats_list):
            covered: set[str] = set()
            for path, (A, G) in st.kfac.items():
                wname = f"{path}.weight" if path else "weight"
                bname = f"{path}.bias" if path else "bias"
                if wname not in st.anchors:
                    raise ElclError(f"kfac: task {t} curvature has a block for '{path}' but no anchor '{wname}'")
                W = st.anchors[wname]
                out = W.shape[0]
                d_in = W[0].numel()
                has_bias = A.shape[0] == d_in + 1
                if A.shape[0] not in (d_in, d_in + 1) or G.shape[0] != out:
                    raise ElclError(
                        f"kfac: task {t} block '{path}': factors {tuple(A.shape)}/{tuple(G.shape)} do not fit "
                        f"weight {tuple(W.shape)}"
                    )
                Wt = W.reshape(out, d_in).to(_F64)
                if has_bias:
                    if bname not in st.anchors:
                        raise ElclError(f"kfac: task {t} block '{path}' folds a bias but has no anchor '{bname}'")
                    Wt = torch.cat([Wt, st.anchors[bname].to(_F64).reshape(out, 1).to(Wt.device)], 1)
                    covered.add(bname)
                covered.add(wname)
                blk = self.blocks.setdefault(path, _Block(path))
                if blk.has_bias is not None and blk.has_bias != has_bias:
                    raise ElclError(f"kfac: block '{path}' folds a bias in some tasks and not in others")
                blk.has_bias = has_bias
                blk.A.append(_scaled(A, ws[t]))
                blk.G.append(G)
                blk.W.append(Wt)
                low = st.low_rank.get(path) if st.low_rank else None
                if low is not None and ws[t] != 1.0:
                    low = (LowRankFactor(low[0].U, low[0].s * ws[t], low[0].rest * ws[t]), low[1])
                blk.low.append(low)
            for name, anchor in st.anchors.items():
                if name in covered:
                    continue
                if name not in st.diag:
                    raise ElclError(
                        f"kfac: task {t} curvature has neither a K-FAC block nor a diagonal for parameter '{name}'"
                    )
                diag_terms.setdefault(name, []).append((_scaled(st.diag[name], ws[t]), anchor))
        self._q = _DiagQuadratic.from_terms(diag_terms, "kfac")
        by_kind: dict[tuple, list[_Block]] = {}
        for blk in self.blocks.values():
            ranks = {(lr[0].U.shape[1], lr[1].U.shape[1]) if lr is not None else None for lr in blk.low}
            common_rank = ranks.pop() if len(ranks) == 1 else None
            if common_rank is None:
                # dense, or low-rank for only some tasks (or at different ranks): those
                # tasks' factors join the dense products as their dense reconstruction
                for t, lr in enumerate(blk.low):
                    if lr is not None:
                        blk.A[t], blk.G[t] = lr[0].dense(), lr[1].dense()
            by_kind.setdefault((blk.shape, blk.has_bias, len(blk.A), common_rank), []).append(blk)
        self.groups = [_Group(bs, low=key[3] is not None) for key, bs in by_kind.items()]

    # -- helpers
    def _module_params(self, model: nn.Module, blk: _Block) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of a block's module, checked against the block's shape."""
        try:
            m = model.get_submodule(blk.path)
        except AttributeError:
            raise ElclError(f"kfac: the model has no module '{blk.path}' (curvature from another model?)") from None
        w = getattr(m, "weight", None)
        b = getattr(m, "bias", None) if blk.has_bias else None
        out = blk.W[0].shape[0]
        d_in = blk.W[0].shape[1] - (1 if blk.has_bias else 0)
        if (
            not isinstance(w, torch.Tensor)
            or w.shape[0] != out
            or w.numel() != out * d_in
            or (blk.has_bias and b is None)
        ):
            raise ElclError(f"kfac: module '{blk.path}' does not match its curvature block ([{out}, {d_in}] weight)")
        return w, b

    def _group_terms(self, grp: _Group, Wt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Σ_blocks Σ_t tr(ΔWᵀ G ΔW A), [Σ_t G ΔW A per block]) for ``Wt = [L, out, in]``.

        ``M = G (ΔW A)`` is both the gradient term and, through
        ``tr(ΔWᵀ G ΔW A) = <ΔW, M>``, the value: two products, not three.
        """
        mm = self.matmul_dtype or Wt.dtype
        A, G, Ws = grp.stacked(Wt, mm)
        L, T, out, d = Ws.shape
        dW = Wt.unsqueeze(1) - Ws  # [L, T, out, in], in the parameters' dtype
        flat = dW.reshape(L * T, out, d)
        if grp.low:
            M = G.left_mul(A.right_mul(flat))
        else:
            M = torch.bmm(G, torch.bmm(flat.to(mm), A)).to(Wt.dtype)
        M = M.view(L, T, out, d)
        return (dW * M).sum(), M.sum(1)

    def _stacked_params(self, model: nn.Module, blocks: Sequence[_Block]):
        """The blocks' modules' (weight, bias) and their ``[L, out, in(+1)]`` stack (one
        stack of weights, one of biases, one concatenation)."""
        params = [self._module_params(model, b) for b in blocks]
        out = blocks[0].W[0].shape[0]
        Ws = torch.stack([w.reshape(out, -1) for w, _ in params])
        if blocks[0].has_bias:
            # every block of the group folds a bias, and _module_params refused a missing one
            biases = [b for _, b in params if b is not None]
            Ws = torch.cat([Ws, torch.stack(biases).unsqueeze(-1)], -1)
        return params, Ws

    def value(self, model: nn.Module) -> torch.Tensor:
        total = self._q.value(model)
        for grp in self.groups:
            _, Ws = self._stacked_params(model, grp.blocks)
            v, _ = self._group_terms(grp, Ws)
            total = total.to(v) + v
        return 0.5 * self.lam * total

    @torch.no_grad()
    def add_grad_(self, model: nn.Module) -> torch.Tensor:
        total = self._q.add_grad_(model, self.lam)
        targets: list[torch.Tensor] = []
        grads: list[torch.Tensor] = []
        for grp in self.groups:
            params, Ws = self._stacked_params(model, grp.blocks)
            v, g = self._group_terms(grp, Ws)
            g = g.mul_(self.lam)  # [L, out, in(+1)]: one block per row, bias last
            d_in = g.shape[-1] - (1 if grp.blocks[0].has_bias else 0)
            for (w, b), gl in zip(params, g.unbind(0)):
                targets.append(w)
                grads.append(gl[:, :d_in].reshape(w.shape))
                if b is not None:
                    targets.append(b)
                    grads.append(gl[:, d_in])
            total = total.to(device=v.device, dtype=_F64) + v.to(_F64)
        _add_grads(targets, grads)
        return 0.5 * self.lam * total
