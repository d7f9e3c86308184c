"""Curvature statistics against exact references computed example by example.

Vec convention under test: for W̃ = [W, b] ([out, in+1]), A ⊗ G is the Fisher of
vec(W̃) = W̃.T.reshape(-1) (column stacking, bias column last).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from elcl.curvature.collect import collect_curvature
from elcl.errors import ElclError
from elcl.models.sequence_context import sequence_context

DT = torch.float64
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def vec_cols(W: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    Wt = W.reshape(W.shape[0], -1)
    if b is not None:
        Wt = torch.cat([Wt, b[:, None]], dim=1)
    return Wt.T.reshape(-1)


def per_example_grads(model, logits, labels, params):
    """[N, P_total] per-example gradients from one batch forward (examples do not interact)."""
    logp = torch.log_softmax(logits, -1)
    rows = []
    for n in range(logits.shape[0]):
        gs = torch.autograd.grad(-logp[n, labels[n]], params, retain_graph=True, allow_unused=True)
        rows.append([torch.zeros_like(p) if g is None else g for g, p in zip(gs, params)])
    return rows


def simple_fn(model, batch):
    x, y = batch
    return model(x), y


# --------------------------------------------------------------------------- K-FAC exactness
def test_kfac_one_example_equals_exact_fisher_block():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).to(DT)
    x = torch.randn(1, 4, dtype=DT)
    y = torch.tensor([2])
    stats = collect_curvature(model, [(x, y)], simple_fn, approx="kfac", progress=False, dtype=DT)
    assert set(stats.kfac) == {"0", "2"}
    assert stats.diag == {}
    for name in ("0", "2"):
        lin = model.get_submodule(name)

        def loss_of(W, b, lin=lin, name=name):
            def f(mod_x):
                return mod_x

            out = torch.func.functional_call(model, {f"{name}.weight": W, f"{name}.bias": b}, (x,))
            return -torch.log_softmax(out, -1)[0, y[0]]

        gW, gb = torch.func.grad(loss_of, argnums=(0, 1))(lin.weight.detach(), lin.bias.detach())
        v = vec_cols(gW, gb)
        exact = torch.outer(v, v)
        A, G = stats.kfac[name]
        assert A.shape == (lin.in_features + 1,) * 2
        torch.testing.assert_close(torch.kron(A, G), exact, atol=1e-10, rtol=1e-6)


def test_kfac_conv1d_single_position_matches_unfolding_order():
    """One example, one output position: A ⊗ G is the exact Fisher of vec(W.reshape(out, C*k) | b)."""
    torch.manual_seed(1)
    conv = nn.Conv1d(3, 4, kernel_size=3, dilation=2, padding=0).to(DT)
    head = nn.Linear(4, 3).to(DT)
    head.weight.requires_grad_(False)
    head.bias.requires_grad_(False)
    model = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), head)
    x = torch.randn(1, 3, 5, dtype=DT)  # L_out = 5 - 2*2 = 1
    y = torch.tensor([1])
    stats = collect_curvature(model, [(x, y)], simple_fn, approx="kfac", progress=False, dtype=DT)
    logits = model(x)
    gW, gb = torch.autograd.grad(-torch.log_softmax(logits, -1)[0, 1], [conv.weight, conv.bias])
    v = vec_cols(gW, gb)
    A, G = stats.kfac["0"]
    torch.testing.assert_close(torch.kron(A, G), torch.outer(v, v), atol=1e-10, rtol=1e-6)


def test_sampled_fisher_converges_to_true_fisher():
    """Rows of a batch draw labels independently, so R copies of N examples give R·S
    draws per example at the cost of S backward passes."""
    torch.manual_seed(2)
    K, d, N, R = 4, 3, 5, 200
    model = nn.Linear(d, K).to(DT)
    x = torch.randn(N, d, dtype=DT)
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    xt = torch.cat([x, torch.ones(N, 1, dtype=DT)], 1)
    # exact ("true") Fisher of example n: (x̃x̃ᵀ) ⊗ (diag p - p pᵀ); its diagonal for W:
    Gs = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    exact_diag_W = (x.square().T @ (p - p.square())).T / N  # [K, d]
    xs = x.repeat(R, 1)
    ys = torch.zeros(N * R, dtype=torch.long)
    errs = []
    for S in (1, 8, 128):
        gen = torch.Generator().manual_seed(123)
        stats = collect_curvature(
            model,
            [(xs, ys)],
            simple_fn,
            approx="both",
            kind="sampled",
            n_samples=S,
            generator=gen,
            progress=False,
            dtype=DT,
        )
        assert stats.meta["n_samples"] == S
        errs.append(float((stats.diag["weight"] - exact_diag_W).norm() / exact_diag_W.norm()))
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.02, errs
    # one example (repeated): the K-FAC block converges to the exact Fisher block
    gen = torch.Generator().manual_seed(7)
    stats = collect_curvature(
        model,
        [(x[:1].repeat(1000, 1), ys[:1000])],
        simple_fn,
        approx="kfac",
        kind="sampled",
        n_samples=64,
        generator=gen,
        progress=False,
        dtype=DT,
    )
    A, G = stats.kfac[""]
    ex1 = torch.kron(torch.outer(xt[0], xt[0]), Gs[0])
    assert float((torch.kron(A, G) - ex1).norm() / ex1.norm()) < 0.02


# --------------------------------------------------------------------------- diagonal exactness
class BiEncoder(nn.Module):
    """Embedding → LayerNorm → Linear → tanh → masked mean pool; mention and candidate
    sequences encoded in separate calls (two records per layer per forward)."""

    def __init__(self, V=11, d=6, h=5, one_call=False):
        super().__init__()
        self.emb = nn.Embedding(V, d, padding_idx=0)
        self.ln = nn.LayerNorm(d)
        self.lin = nn.Linear(d, h)
        self.proj = nn.Linear(h, h)
        self.one_call = one_call

    def encode(self, ids, mask, owner):
        with sequence_context(token_mask=mask, example_index=owner):
            hdn = torch.tanh(self.lin(self.ln(self.emb(ids))))
        m = mask.to(hdn.dtype)[..., None]
        return (hdn * m).sum(1) / m.sum(1)

    def forward(self, batch):
        m_ids, m_mask, c_ids, c_mask = batch  # [B,T], [B,K,T]
        B, K, T = c_ids.shape
        own_m = torch.arange(B)
        own_c = torch.arange(B).repeat_interleave(K)
        if self.one_call:
            Tm = max(m_ids.shape[1], T)
            pad = lambda t: F.pad(t, (0, Tm - t.shape[1]))  # noqa: E731
            ids = torch.cat([pad(m_ids), pad(c_ids.reshape(B * K, T))])
            mask = torch.cat([pad(m_mask), pad(c_mask.reshape(B * K, T))])
            vecs = self.encode(ids, mask, torch.cat([own_m, own_c]))
            mv, cv = vecs[:B], vecs[B:]
        else:
            mv = self.encode(m_ids, m_mask, own_m)
            cv = self.encode(c_ids.reshape(B * K, T), c_mask.reshape(B * K, T), own_c)
        mv = self.proj(mv)  # outside any context: one row per example
        return torch.einsum("bh,bkh->bk", mv, cv.reshape(B, K, -1))


def make_seq_batch(B=4, K=3, T=5, V=11, seed=0, extra_pad=0):
    g = torch.Generator().manual_seed(seed)

    def seqs(n):
        lens = torch.randint(1, T + 1, (n,), generator=g)
        ids = torch.randint(1, V, (n, T), generator=g)
        mask = torch.arange(T)[None] < lens[:, None]
        ids = ids * mask
        return ids, mask

    m_ids, m_mask = seqs(B)
    c_ids, c_mask = seqs(B * K)
    y = torch.randint(0, K, (B,), generator=g)
    if extra_pad:
        junk = lambda n: torch.randint(1, V, (n, extra_pad), generator=g)  # noqa: E731
        m_ids = torch.cat([m_ids, junk(B)], 1)
        m_mask = torch.cat([m_mask, torch.zeros(B, extra_pad, dtype=torch.bool)], 1)
        c_ids = torch.cat([c_ids, junk(B * K)], 1)
        c_mask = torch.cat([c_mask, torch.zeros(B * K, extra_pad, dtype=torch.bool)], 1)
    return (m_ids, m_mask, c_ids.reshape(B, K, -1), c_mask.reshape(B, K, -1)), y


def bi_fn(model, batch):
    inputs, y = batch
    return model(inputs), y


def exact_diag(model, batches, fn):
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    acc = [torch.zeros_like(p) for p in params]
    N = 0
    for batch in batches:
        logits, labels = fn(model, batch)
        for row in per_example_grads(model, logits, labels, params):
            for a, g in zip(acc, row):
                a += g.square()
            N += 1
    return {n: a / N for n, a in zip(names, acc)}


@pytest.mark.parametrize("one_call", [False, True])
def test_diag_exact_sequence_model(one_call):
    torch.manual_seed(3)
    model = BiEncoder(one_call=one_call).to(DT)
    batches = [make_seq_batch(seed=s) for s in range(2)]
    stats = collect_curvature(model, batches, bi_fn, approx="diag", progress=False, dtype=DT)
    ref = exact_diag(model, batches, bi_fn)
    assert set(stats.diag) == set(ref)
    assert stats.meta["n_examples"] == 8
    for n in ref:
        assert ref[n].abs().sum() > 0, n
        torch.testing.assert_close(stats.diag[n], ref[n], rtol=1e-8, atol=1e-12, msg=n)
    # 'kfac' keeps the diagonal for Embedding / LayerNorm, blocks for the Linears
    st2 = collect_curvature(model, batches, bi_fn, approx="kfac", progress=False, dtype=DT)
    assert set(st2.kfac) == {"lin", "proj"}
    assert set(st2.diag) == {"emb.weight", "ln.weight", "ln.bias"}
    for n in st2.diag:
        torch.testing.assert_close(st2.diag[n], ref[n], rtol=1e-8, atol=1e-12)


class ConvNet(nn.Module):
    def __init__(self, V=9, d=4, c=5, K=3):
        super().__init__()
        self.emb = nn.Embedding(V, d, padding_idx=0)
        self.c1 = nn.Conv1d(d, c, 3, padding=1)
        self.c2 = nn.Conv1d(c, c, 3, padding=2, dilation=2, bias=False)
        self.c3 = nn.Conv1d(c, c, 2, padding="same")
        self.out = nn.Linear(c, K)

    def forward(self, ids, mask):
        m = mask.to(self.out.weight.dtype)[:, None, :]
        with sequence_context(token_mask=mask):
            x = self.emb(ids).transpose(1, 2) * m
            x = torch.tanh(self.c1(x)) * m
            x = (x + torch.tanh(self.c2(x))) * m
            x = torch.tanh(self.c3(x)) * m
        pooled = x.sum(2) / m.sum(2)
        return self.out(pooled)


def conv_fn(model, batch):
    ids, mask, y = batch
    return model(ids, mask), y


def make_conv_batch(B=5, T=7, V=9, K=3, seed=0, extra_pad=0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(2, T + 1, (B,), generator=g)
    mask = torch.arange(T)[None] < lens[:, None]
    ids = torch.randint(1, V, (B, T), generator=g) * mask
    y = torch.randint(0, K, (B,), generator=g)
    if extra_pad:
        ids = torch.cat([ids, torch.randint(1, V, (B, extra_pad), generator=g)], 1)
        mask = torch.cat([mask, torch.zeros(B, extra_pad, dtype=torch.bool)], 1)
    return ids, mask, y


def test_diag_exact_conv1d_model():
    torch.manual_seed(4)
    model = ConvNet().to(DT)
    batches = [make_conv_batch(seed=s) for s in range(2)]
    stats = collect_curvature(model, batches, conv_fn, approx="both", progress=False, dtype=DT)
    ref = exact_diag(model, batches, conv_fn)
    assert set(stats.diag) == set(ref)
    for n in ref:
        torch.testing.assert_close(stats.diag[n], ref[n], rtol=1e-8, atol=1e-12, msg=n)
    assert set(stats.kfac) == {"c1", "c2", "c3", "out"}
    assert stats.kfac["c2"][0].shape == (15, 15)  # no bias: C*k
    assert stats.kfac["c1"][0].shape == (13, 13)  # C*k + 1


def test_kfac_expand_reduce_definitions_conv():
    """A and G of a Conv1d equal the expand / reduce formulas computed here from
    independently unfolded patches and output gradients (retain_grad)."""
    torch.manual_seed(5)
    model = ConvNet().to(DT)
    ids, mask, y = make_conv_batch(seed=3)
    outs = {}

    def grab(m, i, o):
        o.retain_grad()
        outs["o"], outs["x"] = o, i[0]

    hook = model.c1.register_forward_hook(grab)
    logits = model(ids, mask)
    hook.remove()
    (-torch.log_softmax(logits, -1).gather(1, y[:, None]).sum()).backward()
    x, g = outs["x"].detach(), outs["o"].grad.transpose(1, 2)  # [B, T, out]
    xp = F.pad(x, (1, 1))
    patches = torch.stack([xp[:, :, t : t + 3].reshape(x.shape[0], -1) for t in range(x.shape[2])], 1)
    a = torch.cat([patches, torch.ones(*patches.shape[:2], 1, dtype=DT)], -1)  # [B, T, 13]
    B = x.shape[0]
    A_exp = sum(torch.outer(a[n, t], a[n, t]) for n in range(B) for t in range(7) if mask[n, t]) / mask.sum()
    G_exp = sum(torch.outer(g[n, t], g[n, t]) for n in range(B) for t in range(7) if mask[n, t]) / B
    abar = torch.stack([a[n][mask[n]].mean(0) for n in range(B)])
    gbar = torch.stack([g[n][mask[n]].sum(0) for n in range(B)])
    A_red, G_red = abar.T @ abar / B, gbar.T @ gbar / B
    model.zero_grad()
    for variant, (Ar, Gr) in (("expand", (A_exp, G_exp)), ("reduce", (A_red, G_red))):
        st = collect_curvature(
            model, [(ids, mask, y)], conv_fn, approx="kfac", variant=variant, progress=False, dtype=DT
        )
        A, G = st.kfac["c1"]
        torch.testing.assert_close(A, Ar, rtol=1e-8, atol=1e-12)
        torch.testing.assert_close(G, Gr, rtol=1e-8, atol=1e-12)


# --------------------------------------------------------------------------- expand / reduce / masking
class SeqClassifier(nn.Module):
    """One sequence per example: Linear over [B, T, d] → tanh → masked mean → Linear."""

    def __init__(self, d=4, h=5, K=3):
        super().__init__()
        self.lin = nn.Linear(d, h)
        self.out = nn.Linear(h, K)

    def forward(self, x, mask):
        with sequence_context(token_mask=mask):
            hdn = torch.tanh(self.lin(x))
        m = mask.to(x.dtype)[..., None]
        return self.out((hdn * m).sum(1) / m.sum(1))


def seq_fn(model, batch):
    x, mask, y = batch
    return model(x, mask), y


def test_expand_reduce_agree_on_length_one_and_differ_otherwise():
    torch.manual_seed(6)
    model = SeqClassifier().to(DT)
    for T, same in ((1, True), (4, False)):
        x = torch.randn(6, T, 4, dtype=DT)
        mask = torch.ones(6, T, dtype=torch.bool)
        mask[0, 1:] = False
        batches = [(x, mask, torch.randint(0, 3, (6,)))]
        e = collect_curvature(model, batches, seq_fn, approx="kfac", variant="expand", progress=False, dtype=DT)
        r = collect_curvature(model, batches, seq_fn, approx="kfac", variant="reduce", progress=False, dtype=DT)
        A_e, G_e = e.kfac["lin"]
        A_r, G_r = r.kfac["lin"]
        if same:
            torch.testing.assert_close(A_e, A_r)
            torch.testing.assert_close(G_e, G_r)
        else:
            assert not torch.allclose(A_e, A_r) and not torch.allclose(G_e, G_r)
        # the head sees one position per example under both variants
        torch.testing.assert_close(e.kfac["out"][0], r.kfac["out"][0])
        torch.testing.assert_close(e.kfac["out"][1], r.kfac["out"][1])


@pytest.mark.parametrize("variant", ["expand", "reduce"])
def test_padding_does_not_change_statistics(variant):
    torch.manual_seed(7)
    model = BiEncoder().to(DT)
    plain = [make_seq_batch(seed=2)]
    padded = [make_seq_batch(seed=2, extra_pad=3)]
    a = collect_curvature(model, plain, bi_fn, approx="both", variant=variant, progress=False, dtype=DT)
    b = collect_curvature(model, padded, bi_fn, approx="both", variant=variant, progress=False, dtype=DT)
    for k in a.kfac:
        torch.testing.assert_close(a.kfac[k][0], b.kfac[k][0])
        torch.testing.assert_close(a.kfac[k][1], b.kfac[k][1])
    for k in a.diag:
        torch.testing.assert_close(a.diag[k], b.diag[k])
    cm = ConvNet().to(DT)
    ids, mask, y = make_conv_batch(seed=4)
    ids2, mask2, _ = make_conv_batch(seed=4, extra_pad=3)
    assert torch.equal(ids2[:, :7], ids)
    a = collect_curvature(cm, [(ids, mask, y)], conv_fn, approx="both", variant=variant, progress=False, dtype=DT)
    b = collect_curvature(cm, [(ids2, mask2, y)], conv_fn, approx="both", variant=variant, progress=False, dtype=DT)
    for k in a.kfac:
        torch.testing.assert_close(a.kfac[k][0], b.kfac[k][0])
        torch.testing.assert_close(a.kfac[k][1], b.kfac[k][1])
    for k in a.diag:
        torch.testing.assert_close(a.diag[k], b.diag[k])


# --------------------------------------------------------------------------- behaviour
def test_max_examples_truncates_and_restores_mode():
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 3)).to(DT)
    x = torch.randn(10, 3, dtype=DT)
    y = torch.randint(0, 3, (10,))
    model.train()
    st = collect_curvature(
        model, [(x[:4], y[:4]), (x[4:], y[4:])], simple_fn, approx="diag", max_examples=6, progress=False, dtype=DT
    )
    assert model.training
    ref = collect_curvature(model, [(x[:6], y[:6])], simple_fn, approx="diag", progress=False, dtype=DT)
    assert st.meta["n_examples"] == 6
    for k in ref.diag:
        torch.testing.assert_close(st.diag[k], ref.diag[k])


def test_masked_candidates_with_neg_inf():
    model = nn.Linear(3, 4).to(DT)
    x = torch.randn(2, 3, dtype=DT)

    def fn(m, b):
        logits = m(b)
        return logits.masked_fill(torch.tensor([[False, False, True, True]] * 2), float("-inf")), torch.tensor([0, 1])

    st = collect_curvature(model, [x], fn, approx="both", progress=False, dtype=DT)
    assert torch.isfinite(st.diag["weight"]).all()
    assert st.diag["weight"][2:].abs().max() == 0


def test_unsupported_module_and_escape():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.s = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.s

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    x, y = torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(ElclError, match=r"'1\.s'.*Scale"):
        collect_curvature(model, [(x, y)], simple_fn, progress=False)
    model[1].s.requires_grad_(False)
    st = collect_curvature(model, [(x, y)], simple_fn, progress=False)
    assert set(st.kfac) == {"0"} and "1.s" not in st.anchors


def test_leading_dim_mismatch_is_clear_error():
    model = nn.Linear(3, 2)

    def fn(m, b):
        out = m(torch.randn(6, 3))  # 6 rows, 3 examples, no context
        return out.reshape(3, 4), torch.zeros(3, dtype=torch.long)

    with pytest.raises(ElclError, match="sequence_context"):
        collect_curvature(model, [None], fn, progress=False)

    def fn2(m, b):
        with sequence_context(example_index=torch.tensor([0, 1])):
            out = m(torch.randn(3, 3))
        return out, torch.zeros(3, dtype=torch.long)

    with pytest.raises(ElclError, match="example_index"):
        collect_curvature(model, [None], fn2, progress=False)


def test_broadcast_input_is_refused_with_escape():
    class PosEmb(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = nn.Embedding(6, 3)
            self.out = nn.Linear(3, 2)

        def forward(self, x, position_ids):
            with sequence_context(token_mask=torch.ones(x.shape[:2], dtype=torch.bool)):
                h = x + self.pos(position_ids)
            return self.out(h.mean(1))

    model = PosEmb().to(DT)
    x = torch.randn(4, 5, 3, dtype=DT)
    y = torch.zeros(4, dtype=torch.long)
    pid = torch.arange(5)[None]
    fn = lambda m, b: (m(x, b), y)  # noqa: E731
    with pytest.raises(ElclError, match="broadcast"):
        collect_curvature(model, [pid], fn, approx="diag", progress=False)
    st = collect_curvature(model, [pid.expand(4, 5)], fn, approx="diag", progress=False, dtype=DT)
    ref = exact_diag(model, [pid.expand(4, 5)], fn)
    torch.testing.assert_close(st.diag["pos.weight"], ref["pos.weight"])


def test_inplace_activation_after_linear():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(3, 6), nn.ReLU(inplace=True), nn.Linear(6, 3)).to(DT)
    x, y = torch.randn(7, 3, dtype=DT), torch.randint(0, 3, (7,))
    st = collect_curvature(model, [(x, y)], simple_fn, approx="diag", progress=False, dtype=DT)
    ref = exact_diag(model, [(x, y)], simple_fn)
    for n in ref:
        torch.testing.assert_close(st.diag[n], ref[n], msg=n)
