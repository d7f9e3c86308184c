"""Collect Fisher statistics (diagonal and K-FAC) of a model on one task's data.

Definitions (``N`` examples, per-example loss ``l_n = -log softmax(logits_n)[y_n]``):

* **Empirical** Fisher: ``y_n`` = gold label. **Sampled** ("true") Fisher: for each of
  ``n_samples`` draws ``y_n ~ softmax(logits_n)`` (``torch.multinomial`` with the
  given generator); statistics are averaged over the draws.
* **Diagonal** Fisher of every trainable parameter ``θ``:
  ``F = (1/N) Σ_n (∂l_n/∂θ)²`` — the mean squared *per-example* gradient, not the
  square of a batch gradient.
* **K-FAC** block of every ``nn.Linear`` / ``nn.Conv1d`` (Martens & Grosse 2015;
  Grosse & Martens 2016 for Conv1d): ``F_block ≈ A ⊗ G`` where ``a`` is the layer
  input (Conv1d: the unfolded patch) with a 1 appended when the layer has a trainable
  bias, and ``g = ∂l_n/∂(layer output)`` at a position. For a layer seeing ``R_n`` real
  positions of example ``n`` (Eschenhagen et al. 2023):

  - ``expand``: ``A = Σ_{n,r} a aᵀ / Σ_n R_n``,  ``G = Σ_{n,r} g gᵀ / N``
  - ``reduce``: ``ā_n = mean_r a_{n,r}``, ``ḡ_n = Σ_r g_{n,r}``;
    ``A = Σ_n ā ā ᵀ / N``,  ``G = Σ_n ḡ ḡᵀ / N``

  Both coincide when every example has one position, and then for a single example
  ``A ⊗ G = (a⊗g)(a⊗g)ᵀ = ∇l ∇lᵀ`` exactly.

**Vec convention.** With ``W̃ = [W, b]`` of shape ``[out, in(+1)]`` (Conv1d: ``W``
reshaped to ``[out, C*k]``, index ``c*k + j``), ``A ⊗ G`` is the Fisher of
``vec(W̃)`` in *column-stacking* (Fortran) order: ``vec(W̃) = W̃.T.reshape(-1)``,
i.e. all outputs of input column 0, then of column 1, ..., the bias column last.
Equivalently ``vec(ΔW)ᵀ (A⊗G) vec(ΔW) = tr(ΔWᵀ G ΔW A)``.

Embeddings, LayerNorm (and every non-Linear/Conv1d parameter) fall back to the
diagonal, so a ``'kfac'`` result also holds ``.diag`` for those.

Precision: per-batch products in ``promote(activation dtype, float32)``, accumulation
in float64 on the model's device; results are returned in ``dtype``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from elcl.curvature.hooks import CurvatureHooks
from elcl.curvature.layers import layer_kind, supported_names
from elcl.errors import ElclError

ModelT = TypeVar("ModelT", bound=nn.Module)
LogitsFn = Callable[[ModelT, Any], "tuple[torch.Tensor, torch.Tensor]"]
"""``logits_fn(model, batch) -> (logits, labels)`` for the model type it is given (a
function written for :class:`~elcl.models.linker.Linker` takes a Linker, not any module)."""


def _eigh64(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric eigendecomposition in float64 (ascending).

    On CPU it runs single-threaded: the multi-threaded LAPACK ``syevd`` behind
    ``torch.linalg.eigh`` (and NumPy's, once torch's OpenMP pool is busy) can be 20-40×
    slower on a loaded machine (measured for d = 1536 on 2 cores: 29 s vs 0.8 s).
    """
    M = M.detach().to(torch.float64)
    if M.device.type != "cpu":
        return torch.linalg.eigh(M)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.eigh(M)
    finally:
        torch.set_num_threads(n)


@dataclass
class LowRankFactor:
    """``M ≈ U diag(s) Uᵀ + rest · (I − U Uᵀ)``: top-r eigenpairs plus the mean of the others."""

    U: torch.Tensor  # [d, r]
    s: torch.Tensor  # [r]
    rest: torch.Tensor  # scalar

    @classmethod
    def from_matrix(cls, M: torch.Tensor, rank: int) -> LowRankFactor:
        d = M.shape[0]
        evals, evecs = _eigh64(M)
        r = min(rank, d)
        s = evals[-r:].flip(0)
        U = evecs[:, -r:].flip(1)
        rest = evals[: d - r].clamp_min(0).mean() if d > r else evals.new_zeros(())
        return cls(U.to(M.dtype), s.clamp_min(0).to(M.dtype), rest.to(M.dtype))

    def dense(self) -> torch.Tensor:
        d = self.U.shape[0]
        eye = torch.eye(d, dtype=self.U.dtype, device=self.U.device)
        return (self.U * (self.s - self.rest)) @ self.U.T + self.rest * eye

    def right_mul(self, X: torch.Tensor) -> torch.Tensor:
        """``X @ M`` for ``X [..., n, d]`` in O(r·d) per row. Also for a batch of factors
        (``U [N, d, r]``, ``s [N, r]``, ``rest [N]``) against ``X [N, n, d]``."""
        return (X @ self.U) * (self.s - self.rest[..., None])[..., None, :] @ self.U.mT + self.rest[..., None, None] * X

    def left_mul(self, X: torch.Tensor) -> torch.Tensor:
        """``M @ X`` for ``X [..., d, n]`` (M symmetric); batched like :meth:`right_mul`."""
        return (
            self.U @ ((self.s - self.rest[..., None])[..., :, None] * (self.U.mT @ X)) + self.rest[..., None, None] * X
        )


@dataclass
class CurvatureStats:
    """Curvature of one task.

    ``kfac``: ``{module path: (A, G)}``; ``diag``: ``{parameter name: F}`` (same shape
    as the parameter); ``anchors``: ``{parameter name: θ*}`` (a clone, in the
    parameter's own dtype); ``meta``: ``approx, kind, variant, n_examples, n_samples``.
    ``low_rank`` (optional): ``{module path: (LowRankFactor A, LowRankFactor G)}``
    replacing the dense blocks in penalties when set.
    """

    kfac: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    diag: dict[str, torch.Tensor] = field(default_factory=dict)
    anchors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    low_rank: dict[str, tuple[LowRankFactor, LowRankFactor]] | None = None

    @property
    def approx(self) -> str:
        return str(self.meta.get("approx", ""))

    @property
    def n_examples(self) -> int:
        return int(self.meta.get("n_examples", 0))

    def to_low_rank(self, rank: int) -> CurvatureStats:
        """A copy whose K-FAC factors are replaced by top-``rank`` eigenpairs + a scalar.

        The scalar is the mean of the dropped eigenvalues (so the trace is preserved);
        penalties then cost O(r·d_in·d_out) per block instead of O(d_in·d_out·(d_in+d_out)).
        """
        if rank < 1:
            raise ElclError(f"curvature: low-rank rank must be >= 1, got {rank}")
        lr = {
            k: (LowRankFactor.from_matrix(A, rank), LowRankFactor.from_matrix(G, rank))
            for k, (A, G) in self.kfac.items()
        }
        meta = dict(self.meta)
        meta["rank"] = rank
        return CurvatureStats(
            kfac=dict(self.kfac), diag=dict(self.diag), anchors=dict(self.anchors), meta=meta, low_rank=lr
        )


def _plan(model: nn.Module, approx: str) -> tuple[set[str], dict[str, list[str]]]:
    """Which modules get a K-FAC block and which parameters a diagonal."""
    want_kfac = approx in ("kfac", "both")
    want_diag_all = approx in ("diag", "both")
    owner: dict[int, str] = {}
    kfac_modules: set[str] = set()
    diag: dict[str, list[str]] = {}
    for mname, module in model.named_modules():
        local = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not local:
            continue
        prefix = f"{mname}." if mname else ""
        for n, p in local:
            if id(p) in owner:
                raise ElclError(
                    f"curvature: parameter '{prefix}{n}' is shared with '{owner[id(p)]}'; tied parameters are not "
                    "supported (set requires_grad=False on one of them to skip it)"
                )
            owner[id(p)] = prefix + n
        kind = layer_kind(module)
        if kind is None:
            n0 = local[0][0]
            raise ElclError(
                f"curvature: trainable parameter '{prefix}{n0}' belongs to a {type(module).__name__}, which the "
                f"curvature hooks do not support (supported: {supported_names()}); "
                "freeze it with requires_grad=False to skip it"
            )
        kind.check(mname, module)
        names = [n for n, _ in local]
        block = want_kfac and kind.kfac and module.weight.requires_grad
        if block:
            kfac_modules.add(mname)
        if want_diag_all or not block:
            diag[mname] = names
    return kfac_modules, diag


def collect_curvature(
    model: ModelT,
    batches: Iterable[Any],
    logits_fn: LogitsFn[ModelT],
    approx: str = "kfac",
    kind: str = "empirical",
    n_samples: int = 1,
    variant: str = "expand",
    max_examples: int | None = None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
) -> CurvatureStats:
    """Fisher statistics of ``model`` over ``batches`` (see the module docstring).

    ``logits_fn(model, batch) -> (logits [B, K], labels [B])``; masked-out candidates
    carry ``-inf`` or a large negative score. One forward per batch; one backward of the
    summed per-example losses per label draw. ``approx``: ``'kfac'`` (blocks for
    Linear/Conv1d, diagonal for the rest), ``'diag'`` (diagonal everywhere) or
    ``'both'``. ``max_examples`` truncates (the last batch is cut by rows).
    The model is put in eval mode during collection and restored afterwards.
    """
    if approx not in ("kfac", "diag", "both"):
        raise ElclError(f"curvature: approx must be 'kfac', 'diag' or 'both', got {approx!r}")
    if kind not in ("empirical", "sampled"):
        raise ElclError(f"curvature: kind must be 'empirical' or 'sampled', got {kind!r}")
    if variant not in ("expand", "reduce"):
        raise ElclError(f"curvature: variant must be 'expand' or 'reduce', got {variant!r}")
    if n_samples < 1:
        raise ElclError(f"curvature: n_samples must be >= 1, got {n_samples}")
    if max_examples is not None and max_examples < 1:
        raise ElclError(f"curvature: max_examples must be >= 1, got {max_examples}")
    draws = n_samples if kind == "sampled" else 1

    kfac_modules, diag_plan = _plan(model, approx)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ElclError("curvature: the model has no trainable parameters")
    hooks = CurvatureHooks(model, kfac_modules, diag_plan, variant)
    was_training = model.training
    model.eval()
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=max_examples, desc="fisher", unit="ex", leave=False, disable=None)
        except Exception:  # pragma: no cover - tqdm missing
            bar = None
    seen = 0
    checked = False
    try:
        for batch in batches:
            if max_examples is not None and seen >= max_examples:
                break
            hooks.start_batch()
            with torch.enable_grad():
                logits, labels = logits_fn(model, batch)
                if logits.dim() != 2:
                    raise ElclError(f"curvature: logits_fn must return logits [B, K], got shape {tuple(logits.shape)}")
                B = logits.shape[0]
                n_keep = B if max_examples is None else min(B, max_examples - seen)
                hooks.process_forward(B, n_keep)
                logp = torch.log_softmax(logits[:n_keep], dim=-1)
                if kind == "empirical":
                    ys = [labels[:n_keep].to(logits.device).long()]
                else:
                    probs = torch.softmax(logits[:n_keep].detach().to(torch.float64), dim=-1)
                    gen_dev = generator.device if generator is not None else probs.device
                    drawn = torch.multinomial(probs.to(gen_dev), draws, replacement=True, generator=generator)
                    ys = [drawn[:, s].to(logits.device) for s in range(draws)]
                for s, y in enumerate(ys):
                    loss = -logp.gather(1, y[:, None]).sum()
                    if not torch.isfinite(loss):
                        raise ElclError(
                            "curvature: non-finite loss (a gold label points at a masked-out candidate, or the model "
                            "produced NaN/inf)"
                        )
                    retain = s < len(ys) - 1
                    # only what reaches every hooked output (no weight-gradient GEMMs); the
                    # first pass adds the parameters of modules whose hook never ran, to
                    # catch functionally used modules
                    targets = hooks.grad_targets()
                    unseen = [] if checked else _unseen_params(hooks, named)
                    if targets or unseen:
                        grads = torch.autograd.grad(
                            loss, targets + [p for _, p, _ in unseen], retain_graph=retain, allow_unused=True
                        )
                        _check_reached(unseen, grads[len(targets) :])
                        del grads
                    checked = True
                    hooks.process_backward(1.0 / len(ys))
            hooks.end_batch()
            seen += n_keep
            if bar is not None:
                bar.update(n_keep)
        if seen == 0:
            raise ElclError("curvature: no examples to collect statistics on (empty data)")
        kfac64, diag64 = hooks.results()
    finally:
        hooks.remove()
        model.train(was_training)
        if bar is not None:
            bar.close()
    out = CurvatureStats(
        kfac={k: (A.to(dtype), G.to(dtype)) for k, (A, G) in kfac64.items()},
        diag={k: v.to(dtype) for k, v in diag64.items()},
        anchors={n: p.detach().clone() for n, p in named},
        meta={
            "approx": approx,
            "kind": kind,
            "variant": variant,
            "n_examples": seen,
            "n_samples": draws,
            # real positions per K-FAC module (the expand normaliser of A); lets
            # distributed.all_reduce_stats un-normalise and merge shards exactly
            "n_positions": hooks.n_positions(),
        },
    )
    return out


def _unseen_params(hooks: CurvatureHooks, named: list) -> list[tuple[str, torch.Tensor, str]]:
    """``(name, parameter, module type)`` of the hooked modules whose forward hook did not run this batch."""
    by_name = dict(named)
    out = []
    for mname, st in hooks.states.items():
        if hooks.called(mname):
            continue
        for local in ("weight", "bias"):
            full = f"{mname}.{local}" if mname else local
            if full in by_name:
                out.append((full, by_name[full], type(st.module).__name__))
    return out


def _check_reached(unseen: list[tuple[str, torch.Tensor, str]], grads: tuple) -> None:
    """A hooked module whose parameters got a gradient but whose forward hook never ran
    was used functionally (``F.linear(x, m.weight)``): its statistics would be wrong."""
    for (full, _, kind), g in zip(unseen, grads):
        if g is not None and bool((g != 0).any()):
            raise ElclError(
                f"curvature: parameter '{full}' received a gradient but its {kind} module "
                "was never called (used functionally?); its curvature cannot be collected"
            )


__all__ = ["CurvatureStats", "LowRankFactor", "collect_curvature"]
