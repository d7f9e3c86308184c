"""Forward / gradient hooks that turn one forward + backward into curvature statistics.

How a batch is processed (driven by :func:`elcl.curvature.collect.collect_curvature`):

1. ``start_batch``; the model's forward runs. A forward hook on every supported module
   (``nn.Linear``, ``nn.Conv1d``, ``nn.Embedding``, ``nn.LayerNorm``) with a trainable
   parameter saves the (detached) layer input and the current
   :class:`~elcl.models.sequence_context.SequenceInfo`, and registers a tensor hook on the
   output that stores ``dL/d(output)`` each time a backward pass reaches it. A module may
   run several times per forward (a shared encoder over a mention and its candidates):
   every call is its own *record*.
2. ``process_forward(batch_size, n_keep)``: for each record, the real positions
   (token mask) of examples ``< n_keep`` are selected, with the example (logits row)
   each one belongs to, and the input statistics (K-FAC ``A``) are accumulated.
3. For each label draw (one for the empirical Fisher, ``n_samples`` for the sampled
   one) the driver back-propagates the *sum* of the per-example losses and calls
   ``process_backward(weight)``. Because the losses are summed and examples do not
   interact, the gradient at a position of example ``n`` is exactly ``d loss_n /
   d output``; grouping positions by example therefore gives exact per-example
   gradients (diagonal Fisher) and the output statistics (K-FAC ``G``).

What a layer's positions and rows are depends on its kind (Linear, Conv1d, Embedding,
LayerNorm): one class per kind in :mod:`elcl.curvature.layers`, looked up once per module.
A context token mask ``[N_seq, T]`` is applied along the positions (only real positions
count, for A, G and the diagonal alike; a correctly masked model has zero gradient at
padded positions anyway). Without a context, each leading row is its own example and its
leading dim must equal the batch size.

Arithmetic: per-batch products run in ``promote(activation dtype, float32)``;
the running sums are float64 accumulators on the model's device. ``A`` and ``G`` are
summed as upper triangles in the compute dtype and folded into float64 every few batches
(:mod:`elcl.curvature.gram`); K-FAC modules fed the very same input tensor (the query,
key and value projections of an attention layer) share one ``A`` product per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from elcl.curvature.gram import ACC_DTYPE, GramSum
from elcl.curvature.layers import LayerKind, compute_dtype, layer_kind, supported_names
from elcl.errors import ElclError
from elcl.models.sequence_context import SequenceInfo, current_sequence_info


@dataclass
class _Record:
    inp: torch.Tensor
    info: SequenceInfo | None
    out_shape: torch.Size
    grads: list[torch.Tensor] = field(default_factory=list)
    live_inp: torch.Tensor | None = None  # the (non-detached) input when it requires grad
    # filled by process_forward
    idx: torch.Tensor | None = None  # flat indices of selected positions
    ex: torch.Tensor | None = None  # example index of each selected position
    full: bool = False  # every position is selected, in order (rows need no gather)


@dataclass
class _ModuleState:
    name: str
    module: nn.Module
    kind: LayerKind
    kfac: bool
    diag_params: list[str]  # local names ("weight", "bias") needing a diagonal
    records: list[_Record] = field(default_factory=list)
    # accumulators
    A: GramSum | None = None
    G: GramSum | None = None
    n_positions: int = 0
    diag: dict[str, torch.Tensor] = field(default_factory=dict)
    # per batch: selected inputs of each record ([P_r, d] each) and their layout
    a_parts: list[torch.Tensor] = field(default_factory=list)
    layout: Layout | None = None
    _a: torch.Tensor | None = None

    @property
    def has_bias(self) -> bool:
        b = getattr(self.module, "bias", None)
        return b is not None and b.requires_grad

    @property
    def a(self) -> torch.Tensor:
        """Selected inputs of all records ``[P, d]`` (concatenated only when a diagonal needs them)."""
        if self._a is None:
            parts = self.a_parts
            self._a = parts[0] if len(parts) == 1 else torch.cat(parts)
        return self._a


class Layout:
    """Where the kept positions of one module call pattern live, computed once per batch.

    Positions of all records of a module (concatenated) belong to examples ``ex [P]``.
    ``segment_sum(rows)`` gives per-example sums ``[n, d]`` (a one-hot GEMM, no Python
    loop and no serial scatter); ``padded(rows)`` lays rows out as ``[n, R_max, d]``
    (a gather) for per-example weight gradients.
    """

    def __init__(self, sel: list[torch.Tensor], ex: torch.Tensor, n: int) -> None:
        self.sel = sel
        self.ex = ex
        self.n = n
        self._onehot: dict[torch.dtype, torch.Tensor] = {}
        self._pad: tuple[torch.Tensor, int] | None = None
        self._max_count: int | None = None

    @property
    def n_positions(self) -> int:
        return int(self.ex.numel())

    def onehot(self, dtype: torch.dtype) -> torch.Tensor:
        E = self._onehot.get(dtype)
        if E is None:
            E = (self.ex[None, :] == torch.arange(self.n, device=self.ex.device)[:, None]).to(dtype)
            self._onehot[dtype] = E
        return E

    def segment_sum(self, rows: torch.Tensor) -> torch.Tensor:
        return self.onehot(rows.dtype) @ rows

    def counts(self, dtype: torch.dtype) -> torch.Tensor:
        return self.onehot(dtype).sum(1)

    def max_count(self) -> int:
        if self._max_count is None:
            c = torch.bincount(self.ex, minlength=self.n)
            self._max_count = int(c.max().item()) if self.ex.numel() else 0
        return self._max_count

    def padded(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows [P, d]`` as ``[n, R_max, d]`` grouped by example (zeros elsewhere)."""
        if self._pad is None:
            ex = self.ex
            P = ex.numel()
            order = torch.argsort(ex, stable=True)
            ex_s = ex[order]
            counts = torch.bincount(ex_s, minlength=self.n)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(P, device=ex.device) - starts[ex_s]
            r_max = max(self.max_count(), 1)
            src = torch.full((self.n * r_max,), P, dtype=torch.long, device=ex.device)
            src[ex_s * r_max + rank] = order
            self._pad = (src, r_max)
        src, r_max = self._pad
        ext = torch.cat([rows, rows.new_zeros(1, rows.shape[1])])
        return ext[src].view(self.n, r_max, rows.shape[1])


class CurvatureHooks:
    """Hooks on the supported modules of a model; see the module docstring."""

    def __init__(
        self, model: nn.Module, kfac_modules: set[str], diag_params: dict[str, list[str]], variant: str
    ) -> None:
        if variant not in ("expand", "reduce"):
            raise ElclError(f"curvature: variant must be 'expand' or 'reduce', got {variant!r}")
        self.variant = variant
        self.states: dict[str, _ModuleState] = {}
        self.handles: list[torch.utils.hooks.RemovableHandle] = []
        self.n_examples = 0
        self._batch_size = 0
        self._n_keep = 0
        self._active = False
        self._sel_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor, bool]] = {}
        self._layouts: dict[tuple, Layout] = {}
        for name, module in model.named_modules():
            if name in kfac_modules or diag_params.get(name):
                kind = layer_kind(module)
                if kind is None:
                    raise ElclError(
                        f"curvature: module '{name}' is a {type(module).__name__}; supported: {supported_names()}"
                    )
                st = _ModuleState(name, module, kind, name in kfac_modules, list(diag_params.get(name, [])))
                self.states[name] = st
                self.handles.append(module.register_forward_hook(self._make_forward_hook(st)))

    # ------------------------------------------------------------------ hooks
    def _make_forward_hook(self, st: _ModuleState) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not self._active or not torch.is_grad_enabled():
                return
            if not isinstance(output, torch.Tensor) or not output.requires_grad:
                return
            x = inputs[0]
            rec = _Record(
                inp=x.detach(),
                info=current_sequence_info(),
                out_shape=output.shape,
                live_inp=x if (isinstance(x, torch.Tensor) and x.requires_grad) else None,
            )
            st.records.append(rec)
            output.register_hook(lambda g, rec=rec: rec.grads.append(g.detach()))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def start_batch(self) -> None:
        self._clear_batch()
        self._active = True

    def _clear_batch(self) -> None:
        for st in self.states.values():
            st.records.clear()
            st.a_parts = []
            st._a = None
            st.layout = None
        self._sel_cache.clear()
        self._layouts.clear()

    def end_batch(self) -> None:
        self._active = False
        self._clear_batch()
        self.n_examples += self._n_keep

    def grad_targets(self) -> list[torch.Tensor]:
        """Cheap tensors whose gradients make a backward pass reach every hooked output.

        Differentiating w.r.t. these (instead of all parameters) lets autograd skip the
        weight-gradient products, which the statistics never need: per module a trainable
        bias, else the layer inputs that require grad, else the weight itself.
        """
        out: dict[int, torch.Tensor] = {}
        for st in self.states.values():
            if not st.records:
                continue
            b = getattr(st.module, "bias", None)
            if isinstance(b, torch.Tensor) and b.requires_grad:
                out[id(b)] = b
                continue
            live = [r.live_inp for r in st.records if r.live_inp is not None]
            if len(live) == len(st.records):
                for t in live:
                    out[id(t)] = t
                continue
            w = getattr(st.module, "weight", None)
            if isinstance(w, torch.Tensor) and w.requires_grad:
                out[id(w)] = w
            for t in live:
                out[id(t)] = t
        return list(out.values())

    def n_positions(self) -> dict[str, int]:
        """Real positions seen per K-FAC module (the expand normaliser of ``A``)."""
        return {name: st.n_positions for name, st in self.states.items() if st.kfac}

    def called(self, name: str) -> bool:
        return bool(self.states[name].records)

    # ------------------------------------------------------------- positions
    def _select(self, st: _ModuleState, rec: _Record, n_rows: int, n_pos: int) -> None:
        """Indices (into ``[n_rows * n_pos]``) and example ids of the kept real positions.

        Cached per batch by (context, shape): every layer of an encoder call shares one
        selection, so the mask work and its host syncs happen once per call, not per layer.
        """
        key = (id(rec.info), n_rows, n_pos, rec.inp.device)
        hit = self._sel_cache.get(key)
        if hit is None:
            self._select_uncached(st, rec, n_rows, n_pos)
            assert rec.idx is not None and rec.ex is not None
            self._sel_cache[key] = (rec.idx, rec.ex, rec.full)
        else:
            rec.idx, rec.ex, rec.full = hit

    def _select_uncached(self, st: _ModuleState, rec: _Record, n_rows: int, n_pos: int) -> None:
        dev = rec.inp.device
        info = rec.info
        mask = None
        ex_seq = None
        expected = None
        if info is not None and info.example_index is not None:
            expected = info.example_index.shape[0]
        elif info is not None and info.token_mask is not None:
            expected = info.token_mask.shape[0]
        elif info is None:
            expected = self._batch_size
        if n_rows == 1 and expected is not None and expected > 1:
            raise ElclError(
                f"curvature: layer '{st.name}' got an input with leading dim 1 broadcast over {expected} sequences "
                "(e.g. BERT position embeddings fed position_ids [1, T]); per-example gradients are not available. "
                "Pass inputs of shape [N, T] (e.g. position_ids expanded to the batch) or freeze the layer with "
                "requires_grad=False"
            )
        if info is not None and info.example_index is not None:
            ex_seq = info.example_index.to(dev)
            if ex_seq.shape != (n_rows,):
                raise ElclError(
                    f"curvature: layer '{st.name}' got an input with leading dim {n_rows} but the sequence_context "
                    f"example_index has shape {tuple(ex_seq.shape)} (expected [{n_rows}])"
                )
            if ex_seq.numel() and (int(ex_seq.min()) < 0 or int(ex_seq.max()) >= self._batch_size):
                raise ElclError(
                    f"curvature: layer '{st.name}': sequence_context example_index out of range [0, {self._batch_size})"
                )
        if info is not None and info.token_mask is not None:
            tm = info.token_mask.to(dev)
            if tm.shape[0] != n_rows:
                raise ElclError(
                    f"curvature: layer '{st.name}' got an input with leading dim {n_rows} but the sequence_context "
                    f"token_mask has {tm.shape[0]} sequences"
                )
            if n_pos > 1 or tm.shape[1] == n_pos:
                if tm.shape[1] != n_pos:
                    raise ElclError(
                        f"curvature: layer '{st.name}' sees {n_pos} positions per sequence but the sequence_context "
                        f"token_mask has length {tm.shape[1]}"
                    )
                mask = tm
        if ex_seq is None:
            if n_rows != self._batch_size:
                raise ElclError(
                    f"curvature: layer '{st.name}' got an input with leading dim {n_rows} but the batch has "
                    f"{self._batch_size} examples; wrap the encoder call in "
                    "elcl.models.sequence_context.sequence_context(token_mask=..., example_index=...)"
                )
            ex_seq = torch.arange(n_rows, device=dev)
        ex_pos = ex_seq[:, None].expand(n_rows, n_pos)
        keep = ex_pos < self._n_keep
        if mask is not None:
            keep = keep & mask
        idx = keep.reshape(-1).nonzero().squeeze(1)
        rec.idx = idx
        rec.ex = ex_pos.reshape(-1)[idx]
        rec.full = idx.numel() == n_rows * n_pos

    # -------------------------------------------------------------- forward
    def process_forward(self, batch_size: int, n_keep: int) -> None:
        self._batch_size = batch_size
        self._n_keep = n_keep
        rows_cache: dict[tuple, list[torch.Tensor]] = {}
        share_keys: dict[str, tuple] = {}
        for st in self.states.values():
            if not st.records:
                continue
            exs, keys = [], []
            rkey = self._rows_key(st)
            cached = rows_cache.get(rkey) if rkey is not None else None
            fill = cached is None
            parts: list[torch.Tensor] = [] if cached is None else cached
            for rec in st.records:
                f, n, n_pos = st.kind.input_rows(st.name, st.module, rec.inp)
                self._select(st, rec, n, n_pos)
                assert rec.idx is not None and rec.ex is not None
                exs.append(rec.ex)
                keys.append((id(rec.info), n, n_pos))
                if fill:
                    parts.append(f if rec.full else f.index_select(0, rec.idx))
            if rkey is not None:
                rows_cache[rkey] = parts
                if st.kfac:
                    share_keys[st.name] = (rkey, st.has_bias)
            key = tuple(keys)
            lay = self._layouts.get(key)
            if lay is None:
                lay = Layout(
                    [r.idx for r in st.records if r.idx is not None],
                    exs[0] if len(exs) == 1 else torch.cat(exs),
                    n_keep,
                )
                self._layouts[key] = lay
            st.layout = lay
            st.a_parts = parts
        # one A product per batch for K-FAC modules fed the same input (attention Q/K/V)
        users: dict[tuple, int] = {}
        for k in share_keys.values():
            users[k] = users.get(k, 0) + 1
        shared: dict[tuple, torch.Tensor] = {}
        for st in self.states.values():
            if st.kfac and st.records:
                sk = share_keys.get(st.name)
                self._accumulate_A(st, shared, sk if sk is not None and users[sk] > 1 else None)

    @staticmethod
    def _rows_key(st: _ModuleState) -> tuple | None:
        """Identity of a module's input rows this batch, when its kind's rows depend on the input alone."""
        if not st.kind.rows_from_input_only:
            return None
        return (type(st.kind),) + tuple(
            (r.inp.data_ptr(), tuple(r.inp.shape), r.inp.stride(), r.inp.dtype, r.inp.device, id(r.info))
            for r in st.records
        )

    def _accumulate_A(self, st: _ModuleState, shared: dict[tuple, torch.Tensor], key: tuple | None) -> None:
        lay = st.layout
        assert lay is not None and st.a_parts
        d = st.a_parts[0].shape[1]
        if st.A is None:
            st.A = GramSum(d, st.has_bias)
        st.n_positions += sum(int(p.shape[0]) for p in st.a_parts)
        if self.variant == "reduce":
            a = st.a
            st.A.add_(lay.segment_sum(a) / lay.counts(a.dtype).clamp_min(1)[:, None])
        elif key is None:
            for part in st.a_parts:
                st.A.add_(part)
        else:
            contrib = shared.get(key)
            if contrib is None:
                contrib = shared[key] = st.A.gram(st.a_parts)
            st.A.add_matrix_(contrib)

    # ------------------------------------------------------------- backward
    def process_backward(self, weight: float) -> None:
        """Consume the gradients of the latest backward pass; ``weight`` = 1/n_samples."""
        for st in self.states.values():
            if not any(r.grads for r in st.records):
                continue
            parts: list[torch.Tensor | None] = []
            for r in st.records:
                assert r.idx is not None  # set by process_forward
                if r.grads:
                    g = r.grads.pop()
                    parts.append(st.kind.grad_rows(st.module, g.to(compute_dtype(g)), None if r.full else r.idx))
                else:  # this call's output did not reach the loss: zero gradient
                    parts.append(None)
                r.grads.clear()
            if st.kfac:
                self._accumulate_G(st, parts, weight)
            if st.diag_params:
                self._accumulate_diag(st, self._cat_grads(st, parts), weight)

    def _cat_grads(self, st: _ModuleState, parts: list[torch.Tensor | None]) -> torch.Tensor:
        """Gradient rows of all records ``[P, d_out]`` (zeros for a call the loss never reached)."""
        full = []
        for r, p in zip(st.records, parts):
            if p is None:
                assert r.idx is not None
                width = st.kind.out_width(st.module, r.out_shape)
                p = torch.zeros(r.idx.numel(), width, dtype=compute_dtype(r.inp), device=r.inp.device)
            full.append(p)
        return full[0] if len(full) == 1 else torch.cat(full)

    def _accumulate_G(self, st: _ModuleState, parts: list[torch.Tensor | None], weight: float) -> None:
        assert st.layout is not None
        live = [p for p in parts if p is not None]
        if st.G is None:
            st.G = GramSum(live[0].shape[1], append_one=False)
        if self.variant == "reduce":
            st.G.add_(st.layout.segment_sum(self._cat_grads(st, parts)), alpha=weight)
        else:
            for g in live:
                st.G.add_(g, alpha=weight)

    def _add_diag(self, st: _ModuleState, pname: str, value: torch.Tensor, weight: float) -> None:
        """Add ``weight · value`` in float64, in place; a sparse ``value`` adds only its rows."""
        cur = st.diag.get(pname)
        if cur is None:
            cur = st.diag[pname] = torch.zeros(value.shape, dtype=ACC_DTYPE, device=value.device)
        if value.is_sparse:
            cur.index_add_(0, value._indices()[0], value._values().to(ACC_DTYPE), alpha=weight)
        else:
            cur.add_(value.to(ACC_DTYPE), alpha=weight)

    def _accumulate_diag(self, st: _ModuleState, g: torch.Tensor, weight: float) -> None:
        assert st.layout is not None
        for pname, value in st.kind.diag(st.module, st.diag_params, g, st.a, st.layout):
            self._add_diag(st, pname, value, weight)

    # --------------------------------------------------------------- result
    def results(self) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], dict[str, torch.Tensor]]:
        """Normalised K-FAC blocks ``{module: (A, G)}`` and diagonals ``{param name: F}`` (float64)."""
        n = max(self.n_examples, 1)
        kfac: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        diag: dict[str, torch.Tensor] = {}
        for name, st in self.states.items():
            prefix = f"{name}." if name else ""
            if st.kfac:
                d_in, d_out = st.kind.factor_dims(st.module, st.has_bias)
                dev = next(st.module.parameters()).device
                a_norm = max(st.n_positions, 1) if self.variant == "expand" else n
                A = (
                    st.A.result(dev, a_norm)
                    if st.A is not None
                    else torch.zeros(d_in, d_in, dtype=ACC_DTYPE, device=dev)
                )
                G = st.G.result(dev, n) if st.G is not None else torch.zeros(d_out, d_out, dtype=ACC_DTYPE, device=dev)
                kfac[name] = (A, G)
            for pname in st.diag_params:
                p = getattr(st.module, pname)
                v = st.diag.get(pname)
                if v is None:
                    v = torch.zeros(p.shape, dtype=ACC_DTYPE, device=p.device)
                diag[prefix + pname] = v.div_(n)  # the accumulator is read once
        return kfac, diag
