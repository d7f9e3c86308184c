"""Choose ``model.prior_weight`` on dev without retraining: rescore a run's stored rankings.

    python scripts/prior_sweep.py RUN_DIR [--step N] [--task TASK] [--weights 0 0.25 0.5 1 2]

A run trained without the concept prior (``prior_weight: 0``) stores every candidate's
logit in its prediction files; adding ``w · log(1 + n(c))`` (the task's training-annotation
counts, :mod:`elcl.candidates.prior`) is exactly what that linker scores with
``prior_weight: w`` at inference. The script prints acc@1 per split and weight and the
weight best on dev (ties: the smaller); test is printed for the record, never for the
choice. Training with the prior can move the best weight (docs/experiments/pretraining.md measures both).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from elcl.candidates.prior import ConceptPrior
from elcl.continual.rundir import RunDir, read_jsonl
from elcl.data.ontology import Ontology
from elcl.errors import ElclError
from elcl.linking.source import default_task, run_step
from elcl.schemas import PredictionRow
from elcl.training.predict import ranking
from elcl.training.tasks import annotation_prior, task_ontology


def rescored_accuracy(rows: list[PredictionRow], prior: ConceptPrior, ontology: Ontology, weight: float) -> float:
    """acc@1 over ``rows`` with ``weight · log(1 + n)`` added to each stored score.

    Stored candidates are in the run's ranked order, so ``ranking``'s stable ties over
    that order are the run's own tie rule.
    """
    hits = 0
    scored = [r for r in rows if r.gold]
    for r in scored:
        ids = [cid for cid, _ in r.predicted]
        s = torch.tensor([score for _, score in r.predicted], dtype=torch.float64)
        s += weight * torch.tensor(prior.feature(ids, r.doc_id), dtype=torch.float64)
        hits += ontology.matches(r.predicted[ranking(s)[0]][0], r.gold)
    return hits / len(scored) if scored else 0.0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--step", type=int, default=None)
    ap.add_argument("--task", default=None, help="evaluated task (default: the step's trained task)")
    ap.add_argument("--weights", type=float, nargs="+", default=[0, 0.25, 0.5, 1, 1.5, 2, 3, 4])
    args = ap.parse_args(argv)
    rs = run_step(args.run, args.step)
    if rs.cfg.model.prior_weight:
        raise ElclError(
            f"{args.run}: trained with model.prior_weight {rs.cfg.model.prior_weight:g}; its stored scores "
            "already hold a prior, so rescoring would count it twice (sweep a run trained without it)"
        )
    task = default_task(rs, args.task)
    corpus, ontology = task_ontology(task, rs.cfg)
    prior = annotation_prior(task, corpus, ontology, rs.cfg.data.train_splits)
    out: dict = {"run": str(args.run), "step": rs.step, "task": task, "acc1": {}}
    for split in rs.cfg.train.eval_splits:
        path = RunDir(args.run).predictions(rs.step, rs.trained_task, task, split)
        if not path.is_file():
            raise ElclError(f"{path}: no predictions for {task} {split} at step {rs.step}")
        rows = [PredictionRow.model_validate(r) for r in read_jsonl(path)]
        out["acc1"][split] = {w: rescored_accuracy(rows, prior, ontology, w) for w in args.weights}
    print(f"{task}, step {rs.step}: acc@1 with prior_weight w added to the stored scores")
    print("| w | " + " | ".join(out["acc1"]) + " |")
    print("|---|" + "---|" * len(out["acc1"]))
    for w in args.weights:
        print(f"| {w:g} | " + " | ".join(f"{out['acc1'][s][w]:.4f}" for s in out["acc1"]) + " |")
    if "dev" in out["acc1"]:
        dev = out["acc1"]["dev"]
        out["best_on_dev"] = max(args.weights, key=lambda w: (dev[w], -w))
        print(f"best on dev: w = {out['best_on_dev']:g}")
    return out


if __name__ == "__main__":
    try:
        main()
    except ElclError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
