"""Running sums of Gram matrices ``xᵀx`` (K-FAC's ``A`` and ``G``) at about half their cost.

Why this is its own piece: for a transformer the two products per layer and batch are
about as many FLOPs as the forward pass itself, so how they are formed decides what a
collection costs next to a plain forward+backward (``scripts/bench_factors.py``).

* Only the upper triangle is computed. ``torch`` has no ``syrk``; on CPU the columns are
  cut into ``k`` blocks and block ``i`` computes ``x_iᵀ x[:, i:]``, which is ``(k+1)/(2k)``
  of the full product (62.5% for ``k = 4``) with each piece still a large GEMM. On other
  devices one full product is cheaper than several launches, so ``k = 1`` there.
* Products are summed in the compute dtype (float32 for float32/bfloat16 models) straight
  into a preallocated buffer (``addmm_`` with ``beta = 1``: no temporary, no conversion),
  and that buffer is folded into the float64 accumulator every :data:`FLUSH_EVERY` adds.
  Rounding so stays that of one float32 GEMM plus a sum of at most ``FLUSH_EVERY`` terms,
  while the float64 pass over the matrix happens once per ``FLUSH_EVERY`` batches instead
  of every batch (for MiniLM it cost about 15% of the products themselves).
"""

from __future__ import annotations

import torch

ACC_DTYPE = torch.float64
FLUSH_EVERY = 16
MIN_BLOCK = 96  # narrower column blocks make GEMMs too thin to run at full speed
MAX_BLOCKS = 8  # 1536-wide factors (MiniLM's FFN): 8 blocks cost 56% of a full product, 4 cost 62.5%


def column_blocks(d: int, device: torch.device) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` column blocks for the upper-triangle product of width ``d``."""
    k = max(1, min(MAX_BLOCKS, d // MIN_BLOCK)) if device.type == "cpu" else 1
    size = -(-d // k) if d else 1
    return [(i, min(i + size, d)) for i in range(0, d, size)]


def add_upper_gram_(out: torch.Tensor, x: torch.Tensor, alpha: float = 1.0, beta: float = 1.0) -> torch.Tensor:
    """``out[:d, :d] ← beta·out + alpha·xᵀx`` on the upper triangle (and the diagonal blocks).

    ``x [P, d]``. Entries strictly below the diagonal blocks are left as they are; read the
    result through :func:`symmetrize`.
    """
    d = x.shape[1]
    for i, j in column_blocks(d, x.device):
        out[i:j, i:d].addmm_(x[:, i:j].T, x[:, i:], beta=beta, alpha=alpha)
    return out


def symmetrize(M: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose upper triangle is that of ``M``."""
    return M.triu() + M.triu(1).T


def symmetrize_(M: torch.Tensor) -> torch.Tensor:
    """:func:`symmetrize` in place (one temporary instead of three): for the accumulators,
    which are square matrices up to 1537 × 1537 in float64 and are read once."""
    lower = M.triu(1).T
    return M.triu_().add_(lower)


class GramSum:
    """``Σ alpha·x̃ᵀx̃`` over adds, ``x̃ = [x, 1]`` when ``append_one`` (a folded bias).

    The ones column is never materialised: its row/column are ``Σ x`` and the corner is
    the number of rows. Buffers are allocated on the first add, on that add's device.
    """

    def __init__(self, d: int, append_one: bool) -> None:
        self.d = d
        self.append_one = append_one
        self.buf: torch.Tensor | None = None  # compute dtype, upper triangle
        self.acc: torch.Tensor | None = None  # float64, upper triangle (None when buf is float64)
        self.pending = 0

    @property
    def size(self) -> int:
        return self.d + (1 if self.append_one else 0)

    def _buffer(self, like: torch.Tensor) -> torch.Tensor:
        if self.buf is None:
            n = self.size
            self.buf = torch.zeros(n, n, dtype=like.dtype, device=like.device)
            if like.dtype != ACC_DTYPE:
                self.acc = torch.zeros(n, n, dtype=ACC_DTYPE, device=like.device)
        return self.buf

    def add_(self, x: torch.Tensor, alpha: float = 1.0) -> None:
        """Add the Gram matrix of the rows ``x [P, d]``."""
        buf = self._buffer(x)
        x = x.to(buf.dtype)
        add_upper_gram_(buf, x, alpha=alpha)
        if self.append_one:
            d = self.d
            buf[:d, d].add_(x.sum(0), alpha=alpha)
            buf[d, d] += alpha * x.shape[0]
        self._tick()

    def add_matrix_(self, contrib: torch.Tensor) -> None:
        """Add a contribution already formed by :meth:`gram` (shared by several modules)."""
        self._buffer(contrib).add_(contrib)
        self._tick()

    def gram(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """The contribution of ``parts`` (rows of one batch) as a fresh upper-triangle matrix."""
        first = parts[0]
        n, d = self.size, self.d
        dtype = self._buffer(first).dtype
        out = torch.zeros(n, n, dtype=dtype, device=first.device)
        for x in parts:
            x = x.to(dtype)
            add_upper_gram_(out, x)
            if self.append_one:
                out[:d, d] += x.sum(0)
                out[d, d] += x.shape[0]
        return out

    def _tick(self) -> None:
        self.pending += 1
        if self.pending >= FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.acc is not None and self.buf is not None and self.pending:
            self.acc.add_(self.buf)
            self.buf.zero_()
        self.pending = 0

    def result(self, device: torch.device, divisor: float = 1.0) -> torch.Tensor:
        """The full symmetric sum in float64 over ``divisor`` (zeros when nothing was added).

        Consumes the accumulator: it is symmetrised and divided in place, so call it once,
        after the last add (it is paid once per collection, but for MiniLM it was about
        0.85 s of copies, a noticeable share of a short collection).
        """
        self.flush()
        M = self.acc if self.acc is not None else self.buf
        if M is None:
            return torch.zeros(self.size, self.size, dtype=ACC_DTYPE, device=device)
        M = symmetrize_(M.to(ACC_DTYPE))
        self.acc = self.buf = None
        return M.div_(divisor) if divisor != 1.0 else M


__all__ = ["ACC_DTYPE", "FLUSH_EVERY", "GramSum", "add_upper_gram_", "column_blocks", "symmetrize", "symmetrize_"]
