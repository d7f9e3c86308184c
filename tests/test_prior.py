"""The concept prior (`model.prior_weight`): counting rule, leave-own-document-out, logits."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from script_loader import load_script

from elcl.candidates.prior import ConceptPrior, PriorRecord, build_prior
from elcl.config import ModelConfig
from elcl.data.ontology import Ontology
from elcl.data.types import Document, Mention
from elcl.models.linker import Linker, model_config_hash
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample, build_examples
from elcl.training.predict import evaluate_examples, ranking, score_examples

# D1 carries OMIM:1 as an alt id; OMIM:1 is also its own concept (a corpus dictionary entry).
ONTO = Ontology(
    {"D1": ["cirrhosis", "liver cirrhosis"], "D2": ["cirrhosis", "fibrosis"], "OMIM:1": ["c9 deficiency"]},
    {"D1": frozenset({"OMIM:1"})},
)


def _m(doc: str, ids: tuple[str, ...], text: str = "cirrhosis") -> Mention:
    return Mention(doc, 0, len(text), text, "Disease", ids)


def test_counts_follow_the_scoring_rule_and_leave_out_the_own_document() -> None:
    mentions = [
        _m("a", ("D1",)),
        _m("a", ("D1",)),
        _m("b", ("OMIM:1",)),  # right for OMIM:1 and for D1 (its alt id)
        _m("b", ("D1", "D2"), "cirrhosis and fibrosis"),  # composite: once for each concept
        Mention("c", 0, 3, "xyz", "Disease", (), unlinkable=True),
    ]
    prior = build_prior(mentions, ONTO)
    assert prior.mentions == 4
    # OMIM:1 is an alt id of D1, so predicting either is right for a mention annotated with either
    assert dict(prior.counts) == {"D1": 4, "OMIM:1": 4, "D2": 1}
    assert [prior.count("D1", d) for d in ("a", "b", "new")] == [2, 2, 4]
    assert prior.count("D2", "b") == 0 and prior.count("unseen") == 0
    assert prior.feature(["D1", "D2", "zzz"], "a") == (math.log1p(2), math.log1p(1), 0.0)
    # what an export stores: totals only (new documents are never training documents)
    back = ConceptPrior.from_record(PriorRecord.model_validate(json.loads(prior.record().model_dump_json())))
    assert dict(back.counts) == dict(prior.counts) and back.count("D1", "a") == 4


class _Retriever:
    """Both 'cirrhosis' concepts at the same TF-IDF score: only the prior can tell them apart."""

    def top_k(self, texts, k):
        from types import SimpleNamespace

        return [[SimpleNamespace(concept_id=c, name="cirrhosis", score=1.0) for c in ("D2", "D1")] for _ in texts]

    def pair_scores(self, texts, names):
        return [1.0] * len(texts)


def test_examples_carry_the_prior_outside_their_document() -> None:
    train = [_m("a", ("D1",)), _m("a", ("D1",)), _m("b", ("D1",))]
    prior = build_prior(train, ONTO)
    docs = {d: Document(d, "cirrhosis", "", ()) for d in ("a", "b", "t")}
    exs, _ = build_examples([*train, _m("t", ("D1",))], docs, _Retriever(), ONTO, 2, training=True, prior=prior)
    assert [e.cand_prior for e in exs] == [
        (0.0, math.log1p(1)),  # doc a: its own two mentions left out, doc b's one counts
        (0.0, math.log1p(1)),
        (0.0, math.log1p(2)),
        (0.0, math.log1p(3)),  # a new document sees every training mention
    ]
    plain, _ = build_examples(train, docs, _Retriever(), ONTO, 2, training=True)
    assert all(e.cand_prior == () for e in plain)


def test_prior_weight_adds_to_logits_and_breaks_a_name_tie(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    m = _m("t", ("D1",))
    ex = LinkingExample(
        m, "cirrhosis", ("D2", "D1"), ("cirrhosis", "cirrhosis"), (1.0, 1.0), (False, True), "", (0.0, 1.5)
    )
    plain = Linker(ModelConfig(name=str(tiny_bert), max_length=16)).eval()
    prior = Linker(ModelConfig(name=str(tiny_bert), max_length=16, prior_weight=2.0)).eval()
    prior.load_state_dict(plain.state_dict())
    cache = TokenCache(plain.tokenizer, 16)
    batch = collate([ex], cache)
    with torch.no_grad():
        torch.testing.assert_close(prior(batch) - plain(batch), 2.0 * batch.cand_prior)
    for a, b in zip(score_examples(prior, [ex], cache), score_examples(plain, [ex], cache)):
        torch.testing.assert_close(a - b, torch.tensor([0.0, 3.0]), atol=1e-5, rtol=1e-5)
    # identical names tie under the encoder; the stable sort keeps the first (wrong) one ...
    assert evaluate_examples(plain, [ex], cache).acc1 == 0.0
    # ... and the concept the training annotations chose wins with the prior
    assert evaluate_examples(prior, [ex], cache).acc1 == 1.0


def test_prior_weight_at_its_default_keeps_older_checkpoints_hash() -> None:
    cfg = ModelConfig(name="x")
    dump = cfg.model_dump(mode="json")
    del dump["prior_weight"]
    before = hashlib.sha256(json.dumps({"model": dump, "vocab_size": 7}, sort_keys=True).encode()).hexdigest()[:16]
    assert model_config_hash(cfg, 7) == before
    assert model_config_hash(ModelConfig(name="x", prior_weight=0.5), 7) != before


def test_rescoring_adds_the_weighted_prior_to_stored_scores() -> None:
    mod = load_script("prior_sweep")
    from elcl.schemas import PredictionRow

    prior = build_prior([_m("a", ("D1",)), _m("b", ("D1",))], ONTO)
    row = PredictionRow(
        doc_id="t",
        start=0,
        end=9,
        mention="cirrhosis",
        gold=["D1"],
        predicted=[("D2", 5.0), ("D1", 4.0)],
        correct=False,
    )
    assert mod.rescored_accuracy([row], prior, ONTO, 0.0) == 0.0
    assert mod.rescored_accuracy([row], prior, ONTO, 0.5) == 0.0  # 4 + 0.5·log 3 = 4.55 < 5
    assert mod.rescored_accuracy([row], prior, ONTO, 1.0) == 1.0  # 4 + log 3 = 5.10 > 5
    # a training document's own annotations do not count for its mentions
    own = row.model_copy(update={"doc_id": "a"})
    assert mod.rescored_accuracy([own], prior, ONTO, 1.0) == 0.0  # 4 + log 2 = 4.69 < 5


def test_ranking_keeps_candidate_order_on_ties_and_the_sweep_uses_it() -> None:
    assert ranking(torch.tensor([1.0, 2.0, 2.0, 0.0])) == [1, 2, 0, 3]
    mod = load_script("prior_sweep")
    from elcl.schemas import PredictionRow

    # equal stored scores: the stored (ranked) order decides, as it did in the run
    row = PredictionRow(
        doc_id="t", start=0, end=9, mention="cirrhosis", gold=["D2"], predicted=[("D2", 4.0), ("D1", 4.0)], correct=True
    )
    assert mod.rescored_accuracy([row], build_prior([], ONTO), ONTO, 1.0) == 1.0
    swapped = row.model_copy(update={"predicted": [("D1", 4.0), ("D2", 4.0)]})
    assert mod.rescored_accuracy([swapped], build_prior([], ONTO), ONTO, 1.0) == 0.0
