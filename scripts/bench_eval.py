"""Evaluation speed: the per-split reference path against the one-pass evaluator.

Builds the evaluation examples of a config's tasks once (dev + test, at most
``--max-mentions`` per split), then scores them with the same model twice: the old path
(``elcl.training.predict_reference``, one call per (task, split), as the runner did) and
the new one (``elcl.training.predict.evaluate_sets``, one pass over all splits). Prints
mentions/s of each, whether the predictions agree, the pure encoder time of the distinct
texts (the floor of any evaluator that embeds them), the device and CPU capability.

    python scripts/bench_eval.py --max-mentions 300 --out results/bench_eval.json

The last line reads ``speed-up: N.N×``.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_common import machine, print_cpu, table, write_json

from elcl.config import load_config
from elcl.models.linker import Linker
from elcl.training.batching import TokenCache
from elcl.training.eval_plan import build_plan
from elcl.training.predict import _encode_rows, evaluate_plan
from elcl.training.predict_reference import reference_evaluate_examples
from elcl.training.tasks import prepare_eval_task


def _agreement(old: list[dict], new: list[dict]) -> dict:
    same_ids = same_rounded = n_scores = 0
    worst = 0.0
    for a, b in zip(old, new):
        same_ids += [c for c, _ in a["predicted"]] == [c for c, _ in b["predicted"]]
        sa, sb = dict(a["predicted"]), dict(b["predicted"])
        for c, s in sa.items():
            n_scores += 1
            same_rounded += s == sb[c]
            worst = max(worst, abs(s - sb[c]))
    return {
        "mentions": len(old),
        "same_ranked_ids": same_ids,
        "scores": n_scores,
        "same_rounded_scores": same_rounded,
        "max_abs_diff": worst,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/reproduce_bert.yaml")
    ap.add_argument("--model", default=None, help="model.name override (default: the config's, MiniLM)")
    ap.add_argument("--max-mentions", type=int, default=None, help="at most this many mentions per split")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--set", action="append", default=[], help="extra config overrides key=value")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print_cpu(args.device)
    overrides = [f"train.device={args.device}", *args.set]
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.max_mentions:
        overrides.append(f"train.max_eval_mentions={args.max_mentions}")
    cfg = load_config(args.config, overrides)
    t0 = time.perf_counter()
    sets = {}
    for task in dict.fromkeys(cfg.tasks):
        data = prepare_eval_task(task, cfg)
        for split in ("dev", "test"):
            sets[(task, split)] = data.examples[split]
    t_examples = time.perf_counter() - t0
    n = sum(len(v) for v in sets.values())
    print(f"{n} mentions in {len(sets)} splits; examples built in {t_examples:.1f}s (once per run)", flush=True)
    torch.manual_seed(0)
    model = Linker(cfg.model).to(args.device).eval()
    cache = TokenCache(model.tokenizer, cfg.model.max_length)
    cross = model.head is not None
    for exs in sets.values():  # a run's cache is warm after its first step: tokenisation is not timed
        cache.ids([e.query for e in exs] + [c for e in exs for c in e.cand_names])
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    sync()
    t0 = time.perf_counter()
    old = {k: reference_evaluate_examples(model, exs, cache) for k, exs in sets.items()}
    sync()
    t_old = time.perf_counter() - t0

    t0 = time.perf_counter()
    plan = build_plan(sets, cache, cross=cross)
    t_plan = time.perf_counter() - t0
    sync()
    t0 = time.perf_counter()
    new = evaluate_plan(model, plan)
    sync()
    t_new = time.perf_counter() - t0

    sync()
    t0 = time.perf_counter()
    with torch.inference_mode():
        _encode_rows(model, plan)
    sync()
    t_floor = time.perf_counter() - t0

    agree = {f"{k[0]}/{k[1]}": _agreement(old[k].predictions, new[k].predictions) for k in sets}
    acc_same = all((old[k].acc1, old[k].acc5) == (new[k].acc1, new[k].acc5) for k in sets)
    per_split = sum(len({e.query for e in exs}) + len({c for e in exs for c in e.cand_names}) for exs in sets.values())
    rows = [
        ["old (per split)", t_old, n / t_old, per_split],
        ["new (one pass)", t_new, n / t_new, plan.n_rows],
        ["encoder only (floor)", t_floor, n / t_floor, plan.n_rows],
    ]
    print(table(["path", "seconds", "mentions/s", "texts encoded"], rows))
    ids = sum(a["same_ranked_ids"] for a in agree.values())
    rounded = sum(a["same_rounded_scores"] for a in agree.values())
    scores = sum(a["scores"] for a in agree.values())
    worst = max((a["max_abs_diff"] for a in agree.values()), default=0.0)
    print(f"plan built in {t_plan:.2f}s (once per run); acc@1/acc@5 of every split identical: {acc_same}")
    print(
        f"ranked ids identical for {ids}/{n} mentions; rounded scores identical {rounded}/{scores}; "
        f"max |Δscore| {worst:.2e} (float32 rounding of different batch shapes)"
    )
    # the floor is the encoder's arithmetic: ~2 FLOPs per Linear weight per padded token
    # (attention's T x T products, small at these lengths, left out)
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    gflop = 2 * linear_weights * plan.n_tokens / 1e9
    print(
        f"encoder: {plan.n_tokens} padded tokens x {linear_weights / 1e6:.1f}M Linear weights ~ {gflop:.0f} GFLOP, "
        f"{gflop / t_floor:.0f} GFLOP/s in the floor pass"
    )
    speedup = t_old / t_new
    if args.out:
        write_json(
            args.out,
            {
                "config": args.config,
                "model": cfg.model.name,
                "device": args.device,
                "machine": machine(),
                "mentions": n,
                "splits": len(sets),
                "examples_s": t_examples,
                "plan_s": t_plan,
                "old_s": t_old,
                "new_s": t_new,
                "encoder_floor_s": t_floor,
                "texts_old": per_split,
                "texts_new": plan.n_rows,
                "padded_tokens_new": plan.n_tokens,
                "linear_weights": linear_weights,
                "encoder_gflop": gflop,
                "encoder_gflop_per_s": gflop / t_floor,
                "acc_identical": acc_same,
                "agreement": agree,
                "speedup": speedup,
            },
        )
    print(f"speed-up: {speedup:.1f}×")


if __name__ == "__main__":
    main()
