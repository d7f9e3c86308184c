"""Continual-learning metrics on hand-made accuracy matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest

from elcl.evaluation import metrics as M

R = np.array(
    [
        [0.90, 0.10, 0.20],
        [0.60, 0.80, 0.30],
        [0.50, 0.70, 0.95],
    ]
)


def test_final_and_average():
    assert M.final_accuracies(R).tolist() == [0.50, 0.70, 0.95]
    assert M.average_final_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_forgetting_vs_single():
    f = M.forgetting_vs_single(R, [0.85, 0.75, 0.90])
    assert f == pytest.approx([0.35, 0.05, -0.05])


def test_forgetting_vs_best_uses_steps_j_to_n_minus_2():
    f = M.forgetting_vs_best(R)
    assert f[0] == pytest.approx(0.40)  # max(0.9, 0.6) - 0.5
    assert f[1] == pytest.approx(0.10)  # 0.8 - 0.7
    assert math.isnan(f[2])  # last task: nothing earlier
    R2 = R.copy()
    R2[1, 0] = 0.95  # best accuracy after a later step, not on the diagonal
    R2[0, 1] = 0.99  # before task 1 was trained: ignored
    f2 = M.forgetting_vs_best(R2)
    assert f2[0] == pytest.approx(0.45)
    assert f2[1] == pytest.approx(0.10)


def test_forgetting_vs_best_partial_run():
    # two steps of a three-task order: only task 0 can have been forgotten
    f = M.forgetting_vs_best(R[:2])
    assert f[0] == pytest.approx(0.30)
    assert math.isnan(f[1]) and math.isnan(f[2])


def test_backward_transfer():
    assert M.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert math.isnan(M.backward_transfer(R[:1]))


def test_mean_std_ddof1():
    assert M.mean_std([0.1, 0.2, 0.3]) == pytest.approx((0.2, 0.1, 3))
    mean, std, n = M.mean_std([0.5])
    assert mean == 0.5 and math.isnan(std) and n == 1
    mean, std, n = M.mean_std([0.5, float("nan")])
    assert mean == 0.5 and math.isnan(std) and n == 1
    mean, std, n = M.mean_std([])
    assert math.isnan(mean) and n == 0


def test_select_lambda_max_mean_dev():
    choice = M.select_lambda({1.0: [0.6, 0.7], 10.0: [0.7, 0.8], 100.0: [0.9, float("nan")]})
    assert choice.chosen == 100.0
    assert choice.scores[10.0] == pytest.approx(0.75)
    assert choice.counts[100.0] == 1


def test_select_lambda_ties_and_single_value():
    assert M.select_lambda({10.0: [0.5], 1.0: [0.5]}).chosen == 1.0
    assert M.select_lambda({None: [0.4]}).chosen is None
    assert M.select_lambda({3.0: [float("nan")]}).chosen == 3.0
    nodev = M.select_lambda({3.0: [float("nan")], 1.0: [float("nan")]})
    assert nodev.chosen == 1.0 and "no dev" in nodev.reason


def test_match_baseline_by_seed_else_mean():
    cands = [
        M.Baseline(0, ("A", "B"), {"A": 0.8, "B": 0.7}),
        M.Baseline(1, ("A", "B"), {"A": 0.6, "B": 0.5}),
    ]
    vals, how = M.match_baseline(0, ("B", "A"), cands)
    assert vals == {"B": 0.7, "A": 0.8} and how == "seed 0"
    vals, how = M.match_baseline(7, ("A", "B"), cands)
    assert vals["A"] == pytest.approx(0.7) and vals["B"] == pytest.approx(0.6)
    assert how.startswith("mean of 2")
    # the same-seed run lacks task C: fall back to the mean for that task only
    cands.append(M.Baseline(2, ("C",), {"C": 0.9}))
    vals, _ = M.match_baseline(0, ("A", "C"), cands)
    assert vals == {"A": 0.8, "C": 0.9}
    vals, how = M.match_baseline(0, ("A",), [])
    assert math.isnan(vals["A"]) and how == "none"


def test_match_baseline_by_seed_and_order():
    naive = [
        M.Baseline(0, ("A", "B"), {"A": 0.4, "B": 0.0}),
        M.Baseline(0, ("B", "A"), {"A": 0.0, "B": 0.3}),
        M.Baseline(1, ("B", "A"), {"A": 0.0, "B": 0.5}),
    ]
    vals, how = M.match_baseline(0, ("B", "A"), naive, match_order=True)
    assert vals["B"] == 0.3 and how == "seed 0"
    vals, _ = M.match_baseline(5, ("B", "A"), naive, match_order=True)
    assert vals["B"] == pytest.approx(0.4)  # mean over the same order only
    vals, how = M.match_baseline(0, ("C", "A"), naive, match_order=True)
    assert vals["A"] == pytest.approx(0.2) and "other orders" in how
