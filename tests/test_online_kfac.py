"""Online K-FAC: the running factors against the per-task sum of Kronecker products."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_penalty import fake_stats, make_model, spd

from elcl.continual.methods.online_kfac import fold
from elcl.curvature.collect import CurvatureStats


def _run_fold(stats, omegas, gamma):
    running, W = None, 0.0
    for st, om in zip(stats, omegas):
        running, W = fold(running, W, st, om, gamma)
    return running, W


def _weights(omegas, gamma):
    T = len(omegas)
    return [gamma ** (T - 1 - t) * om for t, om in enumerate(omegas)]


@pytest.mark.parametrize(
    ("gamma", "omegas"), [(1.0, [1.0, 1.0, 1.0]), (0.7, [1.0, 1.0, 1.0]), (0.5, [40.0, 10.0, 25.0])]
)
def test_running_factors_against_the_per_task_sum(gamma: float, omegas: list[float]) -> None:
    """W·Ā⊗Ḡ = Σ_t w_t A_t⊗G_t − (1/2W) Σ_{r,s} w_r w_s (A_r−A_s)⊗(G_r−G_s), w_t = γ^{T−t} ω_t;
    the diagonal part is the exact running sum Σ_t w_t F_t."""
    model = make_model()
    stats = [fake_stats(model, s) for s in (1, 2, 3)]
    running, W = _run_fold(stats, omegas, gamma)
    w = _weights(omegas, gamma)
    assert W == pytest.approx(sum(w))
    for path in stats[0].kfac:
        A = [s.kfac[path][0] for s in stats]
        G = [s.kfac[path][1] for s in stats]
        exact = sum(wt * torch.kron(a, g) for wt, a, g in zip(w, A, G))
        approx = W * torch.kron(*running.kfac[path])
        err = -sum(w[r] * w[s] * torch.kron(A[r] - A[s], G[r] - G[s]) for r in range(3) for s in range(3)) / (2 * W)
        torch.testing.assert_close(approx, exact + err)
        rel = float((approx - exact).norm() / exact.norm())
        assert 0 < rel < 1  # random factors: a real, bounded error
    for name, F in running.diag.items():
        torch.testing.assert_close(F, sum(wt * s.diag[name] for wt, s in zip(w, stats)))
    assert running.anchors is not stats[-1].anchors and running.anchors.keys() == stats[-1].anchors.keys()


def test_exact_when_the_tasks_share_a_factor() -> None:
    model = make_model()
    g = torch.Generator().manual_seed(5)
    base = fake_stats(model, 1)
    stats = []
    for seed in (2, 3):  # same A per layer, different G
        st = fake_stats(model, seed)
        st.kfac = {p: (base.kfac[p][0], spd(G.shape[0], g)) for p, (_, G) in st.kfac.items()}
        stats.append(st)
    running, W = _run_fold(stats, [1.0, 1.0], 0.8)
    for path in base.kfac:
        exact = sum(wt * torch.kron(s.kfac[path][0], s.kfac[path][1]) for wt, s in zip([0.8, 1.0], stats))
        torch.testing.assert_close(W * torch.kron(*running.kfac[path]), exact)


def test_penalty_equals_kfac_sum_when_factors_and_anchors_agree(tmp_path: Path) -> None:
    """Same factors and anchor for every task: online K-FAC (γ = 1) = K-FAC over the tasks."""
    from test_methods import _ctx, _store

    from elcl.continual.methods import get

    model = make_model()
    st = fake_stats(model, 7)
    st.meta["n_examples"] = 10
    twice = [st, CurvatureStats(kfac=st.kfac, diag=st.diag, anchors=st.anchors, meta=st.meta)]
    _store(tmp_path, twice)
    ok = get("online_kfac")(get("online_kfac").Settings(**{"lambda": 2.0}), seed=0)
    ok.after_task(_ctx(tmp_path, model, 0), twice[0], guard=None)
    ok.after_task(_ctx(tmp_path, model, 1), twice[1], guard=None)
    online = ok.penalty(_ctx(tmp_path, model, 2)).value(model)
    per_task = (
        get("kfac")(get("kfac").Settings(**{"lambda": 2.0}), seed=0).penalty(_ctx(tmp_path, model, 2)).value(model)
    )
    torch.testing.assert_close(online, per_task)


def test_online_kfac_run_keeps_constant_curvature(tmp_path: Path) -> None:
    """Three tasks end to end: only the running state is kept (the last two steps'), and it
    is the same size after every task."""
    from tiny_models import tiny_config

    from elcl.config import config_from_dict
    from elcl.continual.runner import run_experiment
    from elcl.runtime import Runtime

    order = ["ncbi_disease", "bc5cdr_chemical", "bc5cdr_disease"]
    cfg = config_from_dict(
        tiny_config(
            tmp_path,
            "o",
            order,
            3,
            method={"name": "online_kfac", "online_kfac": {"lambda": "auto", "gamma": 0.5}},
            curvature={"max_examples": 16, "batch_size": 8},
        )
    )
    (path,) = run_experiment(cfg, Runtime(torch.device("cpu")))
    assert path.name == "online_kfac-lamauto-o0-s3"
    kept = sorted(p.name for p in (path / "curvature").iterdir())
    assert kept == ["_running"]
    running = sorted((path / "curvature" / "_running").iterdir())
    assert [p.name for p in running] == ["1_bc5cdr_chemical", "2_bc5cdr_disease"]
    sizes = [(p / "factors.safetensors").stat().st_size for p in running]
    assert sizes[0] == sizes[1]
    info = json.loads((running[-1] / "running.json").read_text())
    n = info["n_examples"]
    assert set(n) == set(order) and info["weight"] == pytest.approx(
        0.25 * n[order[0]] + 0.5 * n[order[1]] + n[order[2]]
    )
    state = json.loads((path / "run.json").read_text())
    assert state["status"] == "done" and state["lambda"] == "auto"
    assert set(state["lambda_t"]) == set(order[1:]) and set(state["lambda_t"][order[2]]) == set(order[:2])
    assert all(v > 0 for v in state["lambda_t"][order[2]].values())
