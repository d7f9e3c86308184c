"""The one-pass evaluator ranks and scores exactly as the training forward does.

The reference of a score is ``model(collate([example]))``: the logits training computes.
Models run in float64 here, so batch shapes (which change float32 results in the last
bits) cannot hide a real difference and the 5-decimal rounding compares exactly. The one
exception is the reference path's exact ties: it encodes a repeated name once per row, and
on some CPUs (seen on an AVX-512 AMD EPYC) two rows of one batch differ in the last bit even
in float64, so its ranking of two identical names can flip. The comparisons read scores equal
to 1e-9 (per example) or to the rows' 5 decimals (whole rows) as ties in candidate order, the
stable ranking of the one-pass path, which encodes a name (or a pair) once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elcl.config import ModelConfig
from elcl.data.types import Mention
from elcl.models.linker import Linker
from elcl.training.batching import TokenCache, collate
from elcl.training.eval_plan import build_plan
from elcl.training.examples import LinkingExample
from elcl.training.predict import evaluate_plan, evaluate_sets
from elcl.training.predict_reference import reference_evaluate_examples

NAMES = ["heart attack", "lung cancer", "breast cancer", "diabetes", "asthma", "breast cancer", "lung cancer"]
IDS = ["C0", "C1", "C2", "C3", "C4", "C5", "C6"]


def _examples(task: str, shift: int) -> list[LinkingExample]:
    """Mentions with 3-7 candidates: composite gold, an unlinkable one, two candidates with
    the same name (their scores tie exactly), a mention that is also a candidate name."""
    queries = ["heart attack", "lung tumour", "breast tumor", "diabetic", "asthmatic breast", "unknown thing"]
    out = []
    for i, q in enumerate(queries):
        k = 3 + (i + shift) % 5
        names, ids = tuple(NAMES[:k]), tuple(IDS[:k])
        gold = ("C2", "C5") if i == 4 else ((f"C{i}",) if i < 5 else ())
        m = Mention(task, i, i + len(q), q, "Disease", gold, unlinkable=not gold)
        scores = tuple(round(0.9 - 0.1 * j + 0.01 * i, 3) for j in range(k))
        prior = tuple(float(j % 3) for j in range(k)) if i % 2 == 0 else ()
        out.append(LinkingExample(m, q, ids, names, scores, tuple(c in gold for c in ids), task, prior))
    return out


def _stable_order(scores: torch.Tensor) -> list[int]:
    """The reference ranking with last-bit float64 noise (far below 1e-9) read as a tie."""
    return sorted(range(len(scores)), key=lambda i: (-round(float(scores[i]), 9), i))


def _ties_in_candidate_order(rows: list[dict], examples: list[LinkingExample]) -> list[dict]:
    """Rows with equal (rounded) scores put in candidate order: the stable ranking of an exact tie."""
    out = []
    for row, e in zip(rows, examples):
        pos = {c: i for i, c in enumerate(e.cand_ids)}
        out.append({**row, "predicted": sorted(row["predicted"], key=lambda cs: (-cs[1], pos[cs[0]]))})
    return out


def _model(tiny_bert: Path, mode: str, sparse: float, prior: float) -> Linker:
    torch.manual_seed(3)
    cfg = ModelConfig(name=str(tiny_bert), mode=mode, max_length=12, sparse_weight=sparse, prior_weight=prior)
    return Linker(cfg).double().eval()


def _forward(model: Linker, e: LinkingExample, cache: TokenCache) -> torch.Tensor:
    with torch.no_grad():
        return model(collate([e], cache, cross=model.head is not None))[0, : len(e.cand_ids)]


@pytest.mark.parametrize("mode", ["bi", "cross"])
@pytest.mark.parametrize(("sparse", "prior"), [(0.0, 0.0), (2.0, 0.5)])
def test_one_pass_equals_the_forward_of_each_example(tiny_bert: Path, mode: str, sparse: float, prior: float) -> None:
    model = _model(tiny_bert, mode, sparse, prior)
    cache = TokenCache(model.tokenizer, 12)
    sets = {("a", "dev"): _examples("a", 0), ("a", "test"): _examples("a", 2), ("b", "test"): _examples("b", 4)}
    results = evaluate_sets(model, sets, cache, batch_size=3)
    for key, exs in sets.items():
        res = results[key]
        linkable = [e for e in exs if e.mention.linkable]
        assert res.n == len(linkable) == 5
        for e, pred in zip(exs, res.predictions):
            ref = _forward(model, e, cache)
            order = _stable_order(ref)
            assert [c for c, _ in pred["predicted"]] == [e.cand_ids[i] for i in order]
            assert [s for _, s in pred["predicted"]] == [round(float(ref[i]), 5) for i in order]
            assert pred["correct"] == (bool(e.labels[order[0]]) if e.mention.linkable else None)
        # and the whole rows (schema, accuracies) equal the per-split reference path's
        ref_res = reference_evaluate_examples(model, exs, cache)
        assert res.predictions == _ties_in_candidate_order(ref_res.predictions, exs)
        assert (res.acc1, res.acc5, res.n) == (ref_res.acc1, ref_res.acc5, ref_res.n)


def test_identical_names_tie_and_keep_candidate_order(tiny_bert: Path) -> None:
    model = _model(tiny_bert, "bi", 0.0, 0.0)
    cache = TokenCache(model.tokenizer, 12)
    e = _examples("a", 2)[2]  # 7 candidates: "breast cancer" at 2 and 5, "lung cancer" at 1 and 6
    pred = evaluate_sets(model, {0: [e]}, cache)[0].predictions[0]["predicted"]
    pos = {c: i for i, (c, _) in enumerate(pred)}
    score = dict(pred)
    assert score["C2"] == score["C5"] and pos["C2"] < pos["C5"]
    assert score["C1"] == score["C6"] and pos["C1"] < pos["C6"]


def test_each_distinct_text_is_one_row_of_the_plan(tiny_bert: Path) -> None:
    """Mentions and names of every set share one table: a text in two sets, or a mention
    that is also a name, is encoded once per pass."""
    model = _model(tiny_bert, "bi", 0.0, 0.0)
    cache = TokenCache(model.tokenizer, 12)
    sets = {"x": _examples("a", 0), "y": _examples("b", 3)}
    plan = build_plan(sets, cache, batch_size=4, max_tokens=40)
    texts = {e.query for exs in sets.values() for e in exs} | {
        n for exs in sets.values() for e in exs for n in e.cand_names
    }
    assert plan.n_rows == len(texts)
    rows = torch.cat([b.rows for b in plan.batches])
    assert sorted(rows.tolist()) == list(range(plan.n_rows))
    lengths = [int(n) for b in plan.batches for n in b.mask.sum(1)]
    assert lengths == sorted(lengths)  # token-length order
    assert all(b.ids.shape[0] <= 4 and b.ids.numel() <= 40 for b in plan.batches)
    assert evaluate_plan(model, plan)["y"].predictions == evaluate_sets(model, {"y": sets["y"]}, cache)["y"].predictions


def test_float32_scores_match_the_forward_to_rounding(tiny_bert: Path) -> None:
    """In float32 the batch shapes differ from the forward's, so scores agree to float
    rounding, not bit for bit; the ranking agrees wherever scores are not within it."""
    torch.manual_seed(3)
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=12, sparse_weight=1.0)).eval()
    cache = TokenCache(model.tokenizer, 12)
    exs = _examples("a", 1)
    res = evaluate_sets(model, {0: exs}, cache)[0]
    for e, pred in zip(exs, res.predictions):
        ref = _forward(model, e, cache)
        got = dict(pred["predicted"])
        for c, r in zip(e.cand_ids, ref.tolist()):
            assert abs(got[c] - r) < 1e-4
