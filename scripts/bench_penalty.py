"""Cost of the curvature penalties in a training step (forward + backward + AdamW step).

    python scripts/bench_penalty.py [--model minilm] [--device cpu] [--tasks 2]
        [--batch-size 16] [--cands 16] [--tokens 12] [--rank 32] [--repeat 2]
        [--config configs/reproduce_bert.yaml --task ncbi_disease --batches 4 [--set KEY=VALUE]]
        [--out results/bench_penalty.json]

Without ``--config`` a step is one synthetic batch (``--batch-size`` examples x
``--cands`` distinct candidate sequences x ``--tokens`` tokens). With ``--config`` and
``--task`` it is a real training step of that config: its model, batch size,
``max_length``, ``amp`` and ``grad_clip``, on ``--batches`` shuffled training batches of
the task (candidate names shared within a batch, padded to the batch's longest), so the
ratio is the one a run of that config sees. Either way a step is
``elcl.training.loop.train_step`` with the loop's optimiser. The corpus comes from ``data.data_dir`` or
``$ELCL_DATA_DIR``.

Earlier tasks' statistics are synthetic (random SPD factors / positive diagonals,
anchors = weights + noise): the cost depends only on the shapes. Reports one step
without a penalty, with K-FAC (fast path ``add_grad_``; float32 and bfloat16 factor
products, ``method.penalty_dtype``), with K-FAC in low-rank form, with EWC, and the penalty operations alone (``add_grad_`` and autograd ``value()`` +
backward, and the non-view aten operators one ``add_grad_`` dispatches: about one kernel
launch each on a GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build_linker, count_ops, machine, print_cpu, synthetic_batch, table, timeit, write_json  # noqa: E402

from elcl.config import TrainConfig  # noqa: E402
from elcl.curvature.collect import CurvatureStats  # noqa: E402
from elcl.curvature.penalty import EWCPenalty, KFACPenalty  # noqa: E402
from elcl.hardware import bf16_native, precision_warning  # noqa: E402
from elcl.models.linker import Linker  # noqa: E402
from elcl.training.loop import make_optimizer, train_step  # noqa: E402


def fake_stats(model: nn.Module, seed: int, approx: str) -> CurvatureStats:
    g = torch.Generator().manual_seed(seed)
    kfac, diag, anchors = {}, {}, {}
    covered = set()
    if approx == "kfac":
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and m.weight.requires_grad:
                d_in = m.in_features + (1 if m.bias is not None else 0)

                def spd(d: int) -> torch.Tensor:
                    X = torch.randn(d, min(d, 64), generator=g)
                    return X @ X.T / X.shape[1] + 1e-3 * torch.eye(d)

                kfac[name] = (spd(d_in), spd(m.out_features))
                covered |= {f"{name}.weight", f"{name}.bias"}
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Drawn on the CPU (the generator's device), then moved beside the weights.
        anchors[n] = p.detach() + (1e-3 * torch.randn(p.shape, generator=g)).to(p.device)
        if n not in covered:
            diag[n] = torch.rand(p.shape, generator=g).to(p.device)
    device = next(model.parameters()).device
    kfac = {k: (A.to(device), G.to(device)) for k, (A, G) in kfac.items()}
    return CurvatureStats(kfac=kfac, diag=diag, anchors=anchors, meta={"approx": approx, "n_examples": 1})


def real_batches(config: str, task: str, n: int, device: str, overrides: list[str] = ()):
    """The config's linker and ``n`` of its shuffled training batches of ``task``."""
    import random

    from elcl.config import load_config
    from elcl.continual.guard import TrainDataGuard
    from elcl.training.batching import TokenCache, collate

    cfg = load_config(Path(config), [f"train.device={device}", *overrides])
    warning = precision_warning(cfg, device)
    if warning:
        print(warning, flush=True)
    guard = TrainDataGuard.for_config(cfg, "naive")
    guard.begin(task)
    examples = [e for e in guard.train_examples(task) if e.has_gold]
    random.Random(0).shuffle(examples)
    torch.manual_seed(0)
    model = Linker(cfg.model).to(device).train()
    cache = TokenCache(model.tokenizer, cfg.model.max_length)
    bs = cfg.train.batch_size
    batches = [
        collate(examples[i * bs : (i + 1) * bs], cache, share=True, cross=model.head is not None) for i in range(n)
    ]
    seqs = [b.mention_ids.shape[0] + b.cand_ids.shape[0] for b in batches]
    width = [(b.mention_ids.numel() + b.cand_ids.numel()) / s for b, s in zip(batches, seqs)]
    shape = {"batch_size": bs, "sequences": sum(seqs) / n, "width": sum(width) / n, "task": task, "batches": n}
    return model, [b.to(device) for b in batches], cfg.train, shape


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cands", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--config", default=None, help="experiment config whose real training step is timed")
    ap.add_argument("--task", default="ncbi_disease", help="task of --config whose training batches are used")
    ap.add_argument("--batches", type=int, default=4, help="real batches per timed step (--config)")
    ap.add_argument("--set", action="append", default=[], dest="overrides", help="config override KEY=VALUE (--config)")
    ap.add_argument("--out", default="results/bench_penalty.json")
    args = ap.parse_args(argv)
    print_cpu(args.device)

    train_cfg = TrainConfig(amp="none", grad_clip=0.0)
    if args.config:
        model, batches, train_cfg, shape = real_batches(
            args.config, args.task, args.batches, args.device, args.overrides
        )
        args.model, args.batch_size = f"{args.config}:{model.cfg.name}", shape["batch_size"]
    else:
        model = build_linker(args.model, args.device).train()
        batches = [
            synthetic_batch(model, args.batch_size, args.cands, args.tokens, 0, per_example=False, device=args.device)
        ]
        shape = {"batch_size": args.batch_size, "sequences": args.batch_size * (args.cands + 1), "width": args.tokens}
    if not bf16_native(args.device):
        print(
            "note: bfloat16 is emulated on this device; the 'kfac bf16 products' case is expected to be far slower than float32",
            flush=True,
        )
    kstats = [fake_stats(model, t, "kfac") for t in range(args.tasks)]
    dstats = [fake_stats(model, 10 + t, "diag") for t in range(args.tasks)]
    import time as _time

    t0 = _time.perf_counter()
    low = [s.to_low_rank(args.rank) for s in kstats]
    t_low = _time.perf_counter() - t0
    print(f"to_low_rank({args.rank}) of {args.tasks} tasks' factors: {t_low:.2f}s")
    penalties = {
        "kfac": KFACPenalty(kstats, 1.0),
        "kfac bf16 products": KFACPenalty(kstats, 1.0, torch.bfloat16),
        f"kfac low-rank r={args.rank}": KFACPenalty(low, 1.0),
        "ewc": EWCPenalty(dstats, 1.0),
    }
    train_cfg = train_cfg.model_copy(update={"lr": 0.0})  # lr 0: weights stay put
    opt = make_optimizer([{"params": [p for p in model.parameters() if p.requires_grad]}], train_cfg)

    def step(pen=None):
        def run() -> None:
            for batch in batches:  # the training loop's own step
                train_step(model, batch, opt, train_cfg, penalty=pen)

        return run

    def with_grads(fn):
        def run() -> None:
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
            fn()

        return run

    # round-robin over the cases so background load hits them alike; the minimum counts
    cases = {"plain": step(), **{name: step(pen) for name, pen in penalties.items()}}
    for fn in cases.values():
        fn()  # warm-up (optimizer state, allocator)
    best = {k: float("inf") for k in cases}
    for _ in range(args.repeat):
        for k, fn in cases.items():
            best[k] = min(best[k], timeit(fn, 1, warmup=0, device=args.device)[0])
    base = best["plain"]
    rows = [["step, no penalty", base, 1.0, 1.0, "", "", ""]]
    res: dict = {"step_plain": {"seconds": base}}
    for name, pen in penalties.items():
        t_step = best[name]
        t_add = min(timeit(with_grads(lambda pen=pen: pen.add_grad_(model)), 3, device=args.device))
        t_val = min(timeit(with_grads(lambda pen=pen: pen.value(model).backward()), 2, device=args.device))
        # plain step + the penalty operations it adds: free of the step-to-step noise
        est = 1 + len(batches) * t_add / base
        ops = count_ops(with_grads(lambda pen=pen: pen.add_grad_(model))) - count_ops(with_grads(lambda: None))
        rows.append([f"step + {name} (add_grad_)", t_step, t_step / base, est, t_add, t_val, ops])
        res[name] = {
            "step_seconds": t_step,
            "ratio_vs_plain": t_step / base,
            "ratio_plain_plus_add_grad": est,
            "add_grad_ops": ops,
            "add_grad_seconds": t_add,
            "value_backward_seconds": t_val,
            "add_grad_over_plain_step": len(batches) * t_add / base,
        }
    print(
        f"{len(batches)} training step(s), {args.model}, batch {shape['batch_size']}: {shape['sequences']:.0f} sequences "
        f"x {shape['width']:.1f} padded tokens (mean), amp {train_cfg.amp}, {args.tasks} earlier tasks, device {args.device}"
    )
    print(
        table(
            [
                "case",
                "step s",
                "x plain",
                "x plain (plain + add_grad_)",
                "add_grad_ s",
                "value()+backward s",
                "add_grad_ ops",
            ],
            rows,
        )
    )
    res["to_low_rank_seconds"] = t_low
    res["batch_shape"] = shape
    out = {"args": vars(args), "machine": machine(), "results": res}
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
