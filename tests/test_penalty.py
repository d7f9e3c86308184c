from __future__ import annotations

import pytest
import torch
from torch import nn

from elcl.curvature.collect import CurvatureStats, collect_curvature
from elcl.curvature.penalty import EWCPenalty, KFACPenalty, OnlineEWCPenalty
from elcl.errors import ElclError

DT = torch.float64


def make_model():
    torch.manual_seed(0)
    return nn.ModuleDict(
        {
            "lin": nn.Linear(4, 3),
            "nob": nn.Linear(3, 2, bias=False),
            "conv": nn.Conv1d(2, 3, 2),
            "emb": nn.Embedding(5, 3),
            "ln": nn.LayerNorm(3),
        }
    ).to(DT)


def spd(d, g):
    X = torch.randn(d, d + 2, generator=g, dtype=DT)
    return X @ X.T / d


def fake_stats(model, seed, scale=0.3):
    """Random SPD factors / positive diagonals around a perturbed anchor."""
    g = torch.Generator().manual_seed(seed)
    anchors = {n: p.detach() + scale * torch.randn(p.shape, generator=g, dtype=DT) for n, p in model.named_parameters()}
    kfac = {
        "lin": (spd(5, g), spd(3, g)),
        "nob": (spd(3, g), spd(2, g)),
        "conv": (spd(5, g), spd(3, g)),
    }
    diag = {n: torch.rand(p.shape, generator=g, dtype=DT) for n, p in model.named_parameters()}
    return CurvatureStats(kfac=kfac, diag=diag, anchors=anchors, meta={"approx": "both"})


def vec_cols(W, b=None):
    Wt = W.reshape(W.shape[0], -1)
    if b is not None:
        Wt = torch.cat([Wt, b[:, None]], 1)
    return Wt.T.reshape(-1)


def kron_reference(model, stats_list, lam):
    total = torch.zeros((), dtype=DT)
    for st in stats_list:
        for path, (A, G) in st.kfac.items():
            m = model[path]
            b = m.bias
            dW = vec_cols(
                m.weight.detach() - st.anchors[f"{path}.weight"],
                None if b is None else b.detach() - st.anchors[f"{path}.bias"],
            )
            total += dW @ torch.kron(A, G) @ dW
        for name in ("emb.weight", "ln.weight", "ln.bias"):
            p = dict(model.named_parameters())[name].detach()
            total += (st.diag[name] * (p - st.anchors[name]).square()).sum()
    return 0.5 * lam * total


def autograd_grads(model, pen):
    model.zero_grad(set_to_none=True)
    pen.value(model).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return ref


def check_add_grad(model, pen):
    ref = autograd_grads(model, pen)
    v = pen.add_grad_(model)
    torch.testing.assert_close(v.to(DT), pen.value(model).detach())
    for n, p in model.named_parameters():
        assert p.grad is not None, n
        torch.testing.assert_close(p.grad, ref[n], msg=n)
    # existing grads are added to
    v2 = pen.add_grad_(model)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, 2 * ref[n], msg=n)
    model.zero_grad(set_to_none=True)
    return v2


def test_kfac_penalty_equals_kron_quadratic_form_and_grad():
    model = make_model()
    stats = [fake_stats(model, 1), fake_stats(model, 2)]
    pen = KFACPenalty(stats, lam=3.0)
    torch.testing.assert_close(pen.value(model), kron_reference(model, stats, 3.0))
    check_add_grad(model, pen)
    # zero at the anchor of a single task
    st = fake_stats(model, 3, scale=0.0)
    assert abs(float(KFACPenalty([st], 1.0).value(model).detach())) < 1e-12


def test_kfac_penalty_on_collected_statistics():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randint(0, 2, (6,))
    st = collect_curvature(model, [(x, y)], lambda m, b: (m(b[0]), b[1]), approx="kfac", progress=False, dtype=DT)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pen = KFACPenalty([st], 2.0)
    ref = torch.zeros((), dtype=DT)
    for path in ("0", "2"):
        m = model.get_submodule(path)
        A, G = st.kfac[path]
        dW = vec_cols(m.weight.detach() - st.anchors[f"{path}.weight"], m.bias.detach() - st.anchors[f"{path}.bias"])
        ref += dW @ torch.kron(A, G) @ dW
    torch.testing.assert_close(pen.value(model), ref)
    ref_g = autograd_grads(model, pen)
    pen.add_grad_(model)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, ref_g[n])


def test_ewc_penalty_multi_task():
    model = make_model()
    stats = [fake_stats(model, 5), fake_stats(model, 6), fake_stats(model, 7)]
    pen = EWCPenalty(stats, lam=0.7)
    params = dict(model.named_parameters())
    ref = sum((st.diag[n] * (params[n].detach() - st.anchors[n]).square()).sum() for st in stats for n in params) * 0.35
    torch.testing.assert_close(pen.value(model), ref)
    check_add_grad(model, pen)
    pen1 = EWCPenalty(stats[:1], 1.0)
    torch.testing.assert_close(
        pen1.value(model),
        0.5 * sum((stats[0].diag[n] * (params[n].detach() - stats[0].anchors[n]).square()).sum() for n in params),
    )


def test_online_ewc_penalty():
    model = make_model()
    stats = [fake_stats(model, 8), fake_stats(model, 9), fake_stats(model, 10)]
    gamma = 0.5
    pen = OnlineEWCPenalty.from_stats(stats, lam=2.0, gamma=gamma)
    params = dict(model.named_parameters())
    ref = 0
    for n, p in params.items():
        Ft = gamma**2 * stats[0].diag[n] + gamma * stats[1].diag[n] + stats[2].diag[n]
        ref = ref + (Ft * (p.detach() - stats[2].anchors[n]).square()).sum()
    torch.testing.assert_close(pen.value(model), ref)
    check_add_grad(model, pen)


def test_penalty_errors():
    # which method builds which penalty: tests/test_methods.py
    model = make_model()
    stats = [fake_stats(model, 11)]
    kfac_only = CurvatureStats(
        kfac=dict(stats[0].kfac),
        diag={
            "emb.weight": stats[0].diag["emb.weight"],
            "ln.weight": stats[0].diag["ln.weight"],
            "ln.bias": stats[0].diag["ln.bias"],
        },
        anchors=dict(stats[0].anchors),
        meta={"approx": "kfac"},
    )
    with pytest.raises(ElclError, match="diagonal"):
        EWCPenalty([kfac_only], 1.0)
    KFACPenalty([kfac_only], 1.0).value(model)
    other = make_model()
    other["lin"] = nn.Linear(5, 3).to(DT)
    with pytest.raises(ElclError, match="module 'lin' does not match"):
        KFACPenalty([kfac_only], 1.0).value(other)
    del other["emb"]
    with pytest.raises(ElclError, match="no parameter 'emb.weight'"):
        KFACPenalty([kfac_only], 1.0).add_grad_(other)


def test_low_rank_penalty():
    model = make_model()
    st = fake_stats(model, 12)
    full = st.to_low_rank(10)  # rank >= every dim: exact
    torch.testing.assert_close(KFACPenalty([full], 1.5).value(model), KFACPenalty([st], 1.5).value(model))
    low = st.to_low_rank(1)
    dense = CurvatureStats(
        kfac={k: (a.dense(), g.dense()) for k, (a, g) in low.low_rank.items()},
        diag=st.diag,
        anchors=st.anchors,
        meta=st.meta,
    )
    pen = KFACPenalty([low, fake_stats(model, 13)], 1.5)
    ref = KFACPenalty([dense, fake_stats(model, 13)], 1.5)
    torch.testing.assert_close(pen.value(model), ref.value(model))
    check_add_grad(model, pen)
    # trace preserved by the scalar for the dropped eigenvalues
    A = st.kfac["lin"][0]
    torch.testing.assert_close(torch.trace(low.low_rank["lin"][0].dense()), torch.trace(A))


def test_grouped_blocks_equal_one_by_one():
    """Blocks of one shape are batched (lin and conv are both [3, 4+1]); dense and
    low-rank groups give the penalty of the dense reconstruction of each block."""
    model = make_model()
    stats = [fake_stats(model, 21), fake_stats(model, 22)]
    pen = KFACPenalty(stats, 2.0)
    assert sorted(len(g.blocks) for g in pen.groups) == [1, 2]
    torch.testing.assert_close(pen.value(model), kron_reference(model, stats, 2.0))
    low = [s.to_low_rank(2) for s in stats]
    dense = [
        CurvatureStats(
            kfac={k: (a.dense(), g.dense()) for k, (a, g) in s.low_rank.items()},
            diag=s.diag,
            anchors=s.anchors,
            meta=s.meta,
        )
        for s in low
    ]
    pen = KFACPenalty(low, 2.0)
    assert all(g.low for g in pen.groups) and sum(len(g.blocks) for g in pen.groups) == len(pen.blocks)
    torch.testing.assert_close(pen.value(model), kron_reference(model, dense, 2.0))
    check_add_grad(model, pen)


def test_kfac_penalty_bf16_products_stay_within_a_percent():
    """bf16 factor products (fp32 accumulation) against the float64 penalty: value and
    gradient of every K-FAC block within 1%, and really computed in bf16 (not equal)."""
    model = make_model()
    stats = [fake_stats(model, 1), fake_stats(model, 2)]
    exact = KFACPenalty(stats, lam=3.0)
    fast = KFACPenalty(stats, 3.0, matmul_dtype=torch.bfloat16)
    assert fast.matmul_dtype == torch.bfloat16
    ref = autograd_grads(model, exact)
    v = fast.add_grad_(model)
    assert abs(float(v) / float(exact.value(model).detach()) - 1) < 1e-2
    for name in ("lin.weight", "lin.bias", "nob.weight", "conv.weight", "conv.bias"):
        p = dict(model.named_parameters())[name]
        rel = float((p.grad - ref[name]).norm() / ref[name].norm())
        assert 0 < rel < 1e-2, (name, rel)
    for name in ("emb.weight", "ln.weight"):  # diagonal terms are untouched by the option
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, ref[name])
    model.zero_grad(set_to_none=True)
    # autograd through the bf16 products agrees with the closed form
    fast.value(model).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    fast.add_grad_(model)
    for n, p in model.named_parameters():
        assert float((p.grad - grads[n]).norm() / grads[n].norm()) < 2e-2, n
