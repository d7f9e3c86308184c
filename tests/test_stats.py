"""Paired statistics and the frontier on hand-made accuracies (exact references)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elcl.evaluation import stats as S
from elcl.evaluation.frontier import FrontierPoint, interpolate, matched_plasticity


def test_ratio_of_means_keeps_a_seed_without_naive_forgetting():
    # two cells (seeds), two earlier tasks; seed 1: naive forgets nothing
    single = np.array([[0.80, 0.70], [0.80, 0.70]])
    naive = np.array([[0.40, 0.50], [0.80, 0.70]])
    kfac = np.array([[0.70, 0.65], [0.78, 0.70]])
    F = S.mean_forgetting(single, np.stack([naive, kfac]))
    assert F == pytest.approx([(0.40 + 0.20) / 4, (0.10 + 0.05 + 0.02) / 4])
    red = S.reduction(F[1], F[0])
    assert red == pytest.approx(1 - 0.17 / 0.60)
    # the mean of per-seed ratios would have dropped seed 1 (0/0) and said 1 - 0.15/0.60
    assert red != pytest.approx(1 - 0.15 / 0.60)


def test_reduction_undefined_when_naive_does_not_forget():
    assert math.isnan(S.reduction(0.1, 0.0))
    assert S.reduction(np.array([0.1, 0.2]), np.array([0.2, -0.1]))[0] == pytest.approx(0.5)
    assert math.isnan(S.reduction(np.array([0.1, 0.2]), np.array([0.2, -0.1]))[1])


def test_nan_entries_leave_only_their_arm():
    single = np.array([[0.8, 0.7]])
    final = np.array([[[0.4, math.nan]], [[0.6, 0.6]]])
    assert S.mean_forgetting(single, final) == pytest.approx([0.4, 0.15])


def test_bootstrap_over_cells_only_has_the_cell_means_as_extremes():
    single = np.array([[0.8, 0.7], [0.8, 0.7]])
    naive = np.array([[0.4, 0.5], [0.4, 0.5]])  # 0.30 in both seeds
    ewc = np.array([[0.6, 0.6], [0.68, 0.6]])  # 0.15 and 0.11
    boot = S.bootstrap_mean_forgetting(single, np.stack([naive, ewc]), n_boot=4000, seed=1)
    assert boot.shape == (4000, 2)
    assert np.allclose(boot[:, 0], 0.30)
    assert set(np.round(boot[:, 1], 6)) == {0.15, 0.13, 0.11}
    red = S.reduction(boot[:, 1], boot[:, 0])
    iv = S.percentile_interval(float(S.reduction(0.13, 0.30)), red)
    assert iv.lo == pytest.approx(0.5) and iv.hi == pytest.approx(1 - 0.11 / 0.30)
    assert iv.excludes_zero


def _reference_bootstrap(single, final, blocks, n_boot, seed):
    """The same estimator written as plain loops, drawing from the rng in the same order."""
    rng = np.random.default_rng(seed)
    K, C, J = final.shape
    draws = []
    for block in blocks:
        M = block.correct.shape[0]
        draws.append(rng.multinomial(M, np.full(M, 1.0 / M), size=n_boot))
    cells = rng.multinomial(C, np.full(C, 1.0 / C), size=n_boot)
    out = np.zeros((n_boot, K))
    for b in range(n_boot):
        acc_s = single.copy()
        acc_f = final.copy()
        for block, counts in zip(blocks, draws, strict=True):
            idx = np.repeat(np.arange(len(counts[b])), counts[b])
            for v, (k, c, j) in enumerate(block.targets):
                value = block.correct[idx, v].mean()
                if k < 0:
                    acc_s[c, j] = value
                else:
                    acc_f[k, c, j] = value
        for k in range(K):
            num = den = 0.0
            for c in range(C):
                for j in range(J):
                    num += cells[b, c] * (acc_s[c, j] - acc_f[k, c, j])
                    den += cells[b, c]
            out[b, k] = num / den
    return out


def test_bootstrap_with_mentions_matches_a_loop_reference():
    rng = np.random.default_rng(0)
    M, C = 40, 3
    corr = rng.random((M, 3 * C)) < np.array([0.8, 0.5, 0.7] * C)  # single, naive, kfac
    single = np.zeros((C, 1))
    final = np.zeros((2, C, 1))
    targets = []
    for c in range(C):
        for slot, k in enumerate((-1, 0, 1)):
            v = 3 * c + slot
            targets.append((k, c, 0))
            if k < 0:
                single[c, 0] = corr[:, v].mean()
            else:
                final[k, c, 0] = corr[:, v].mean()
    blocks = [S.MentionBlock(corr.astype(float), targets)]
    got = S.bootstrap_mean_forgetting(single, final, blocks, n_boot=300, seed=5)
    want = _reference_bootstrap(single, final, blocks, 300, 5)
    assert got == pytest.approx(want)
    # the point estimate sits inside its interval, and the interval has width
    point = S.mean_forgetting(single, final)
    for k in range(2):
        iv = S.percentile_interval(float(point[k]), got[:, k])
        assert iv.lo < iv.point < iv.hi


def test_mentions_give_an_interval_even_with_one_seed():
    n = 200
    single = np.ones(n)
    naive = np.r_[np.ones(100), np.zeros(100)]  # forgets 0.5
    kfac = np.r_[np.ones(180), np.zeros(20)]  # forgets 0.1
    blocks = [S.MentionBlock(np.stack([single, naive, kfac], 1), [(-1, 0, 0), (0, 0, 0), (1, 0, 0)])]
    final = np.array([[[0.5]], [[0.9]]])
    boot = S.bootstrap_mean_forgetting(np.array([[1.0]]), final, blocks, n_boot=2000, seed=3)
    iv = S.percentile_interval(0.1 - 0.5, boot[:, 1] - boot[:, 0])
    assert iv.hi < 0 and iv.excludes_zero
    # binomial standard error of the paired difference: sqrt(0.4 * 0.6 / 200) ≈ 0.035
    assert (iv.hi - iv.lo) / 2 == pytest.approx(1.96 * math.sqrt(0.4 * 0.6 / n), rel=0.15)


def test_mentions_only_holds_the_cells_fixed():
    """Two cells forgetting 0.1 and 0.3 with no mention-level spread (every column constant):
    resampling cells gives width, mentions alone give none; with mention spread and the cells
    held fixed, every replicate is the loop reference's with cell weights of one."""
    single = np.array([[0.9], [0.9]])
    final = np.array([[[0.8], [0.6]]])
    cells = S.bootstrap_mean_forgetting(single, final, None, n_boot=400, seed=1)
    fixed = S.bootstrap_mean_forgetting(single, final, None, n_boot=400, seed=1, cells=False)
    assert cells.min() == pytest.approx(0.1) and cells.max() == pytest.approx(0.3)
    assert fixed == pytest.approx(np.full((400, 1), 0.2))
    rng = np.random.default_rng(2)
    corr = (rng.random((60, 4)) < 0.7).astype(float)
    blocks = [S.MentionBlock(corr, [(-1, 0, 0), (0, 0, 0), (-1, 1, 0), (0, 1, 0)])]
    single = np.array([[corr[:, 0].mean()], [corr[:, 2].mean()]])
    final = np.array([[[corr[:, 1].mean()], [corr[:, 3].mean()]]])
    got = S.bootstrap_mean_forgetting(single, final, blocks, n_boot=200, seed=4, cells=False)
    draws = np.random.default_rng(4).multinomial(60, np.full(60, 1 / 60), size=200) @ corr / 60
    want = ((draws[:, 0] - draws[:, 1]) + (draws[:, 2] - draws[:, 3])) / 2
    assert got[:, 0] == pytest.approx(want)
    acc = S.bootstrap_mean_accuracy(np.array([[0.5], [0.7]]), None, n_boot=50, seed=0, cells=False)
    assert acc == pytest.approx(np.full(50, 0.6))


def test_accuracy_interval_over_seeds_and_mentions():
    # seeds only: a replicate draws whole runs, so its extremes are the lowest and highest
    # run means (0.65: the run whose first task has no metric; 0.80)
    acc = np.array([[0.80, 0.60], [0.90, 0.70], [np.nan, 0.65]])
    boot = S.bootstrap_mean_accuracy(acc, n_boot=4000, seed=1)
    assert boot.min() == pytest.approx(0.65) and boot.max() == pytest.approx(0.80)
    assert S.percentile_interval(float(np.nanmean(acc)), boot).lo < np.nanmean(acc)
    # one run of 400 mentions at 90%: the interval is the binomial one, ±1.96·sqrt(.09/400)
    n = 400
    corr = np.r_[np.ones(360), np.zeros(40)][:, None]
    boot = S.bootstrap_mean_accuracy(np.array([[0.9]]), [S.MentionBlock(corr, [(-1, 0, 0)])], n_boot=4000, seed=2)
    iv = S.percentile_interval(0.9, boot)
    assert (iv.hi - iv.lo) / 2 == pytest.approx(1.96 * math.sqrt(0.9 * 0.1 / n), rel=0.1)
    assert iv.lo < 0.9 < iv.hi


def test_interval_words():
    assert "excludes 0 (above 0)" in S.Interval(0.3, 0.1, 0.5).words("kfac − ewc")
    assert "includes 0: not separated" in S.Interval(0.3, -0.1, 0.5).words("x")
    assert "excludes 0 (below 0)" in S.Interval(-0.3, -0.5, -0.1).words("x")
    assert S.Interval(0.2, math.nan, math.nan).words("x").endswith("(no interval)")
    assert not S.Interval(0.2, math.nan, math.nan).excludes_zero


def _pts(method, xy):
    return [FrontierPoint(method, float(i), x, y, 0.5, 3) for i, (x, y) in enumerate(xy)]


def test_interpolate_inside_range_only_and_averages_ties():
    got = interpolate([0.5, 0.7, 0.7, 0.6], [0.1, 0.3, 0.5, 0.2], np.array([0.4, 0.55, 0.7, 0.8]))
    assert math.isnan(got[0]) and math.isnan(got[3])
    assert got[1] == pytest.approx(0.15) and got[2] == pytest.approx(0.4)


def test_matched_plasticity_on_a_hand_made_grid():
    kfac = _pts("kfac", [(0.50, 0.10), (0.60, 0.20), (0.70, 0.30)])
    ewc = _pts("ewc", [(0.55, 0.25), (0.65, 0.35), (0.75, 0.45)])
    m = matched_plasticity(kfac, ewc)
    assert m is not None and (m.a, m.b) == ("kfac", "ewc")
    assert m.at == pytest.approx([0.55, 0.60, 0.65, 0.70])
    assert m.forgetting_a == pytest.approx([0.15, 0.20, 0.25, 0.30])
    assert m.forgetting_b == pytest.approx([0.25, 0.30, 0.35, 0.40])
    assert m.mean_diff == pytest.approx(-0.10)
    words = m.words()
    assert "kfac forgets less than ewc" in words and "10.0 points" in words
    assert "55.0–70.0%" in words


def test_matched_plasticity_needs_overlap():
    assert matched_plasticity(_pts("kfac", [(0.5, 0.1), (0.6, 0.2)]), _pts("ewc", [(0.7, 0.1), (0.8, 0.2)])) is None
