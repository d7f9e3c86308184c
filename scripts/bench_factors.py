"""Throughput of curvature collection (K-FAC, diagonal, both) vs a plain forward+backward.

    python scripts/bench_factors.py [--model minilm] [--device cpu] [--batches 2]
        [--batch-size 16] [--cands 16] [--tokens 12] [--reduce] [--no-curvlinops]
        [--curvlinops-batches 1] [--target-examples 5000] [--out results/bench_factors.json]

A collection pays a fixed cost once (buffers, the first batch's functional-use check,
symmetrising and normalising the factors) and a cost per batch. With ``--batches`` of 4
or more, every case is also timed on the first half of the batches, and the script
prints the per-batch (marginal) ratio to a plain forward+backward and the ratio
extrapolated to ``--target-examples`` (the 5,000 examples a task's curvature uses:
fixed + n_batches x marginal), which is the figure issue 29's 1.3x target is about.

Each batch has ``batch-size`` examples of 1 mention + ``cands`` candidate sequences of
up to ``tokens`` tokens (17 sequences of ~12 tokens by default). When
``curvlinops-for-pytorch`` is importable, its ``KFACLinearOperator`` (empirical Fisher,
expand, bias folded) runs on the same model and full-length batches, and the factors
of every Linear layer are compared with ours (each factor normalised by its Frobenius
norm, since A ⊗ G is invariant to c·A ⊗ G/c); the scale ratios are printed: curvlinops
sums the loss over examples (G is N× ours) and normalises expand-A by examples x
tokens of one call rather than by all real positions (A is 17× ours with 17 sequences
per example).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build_linker, machine, print_cpu, synthetic_batch, table, timeit, write_json  # noqa: E402

from elcl.curvature.collect import collect_curvature  # noqa: E402
from elcl.models.linker import LinkerBatch, linker_logits_fn, multi_positive_loss  # noqa: E402

# --cases name -> (printed name, approx, variant) of collect_curvature
CASES = {
    "kfac": ("kfac expand", "kfac", "expand"),
    "reduce": ("kfac reduce", "kfac", "reduce"),
    "diag": ("diag", "diag", "expand"),
    "both": ("kfac+diag (both)", "both", "expand"),
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cands", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--reduce", action="store_true", help="also time K-FAC-reduce")
    ap.add_argument("--no-curvlinops", action="store_true")
    ap.add_argument("--curvlinops-batches", type=int, default=1)
    ap.add_argument("--target-examples", type=int, default=5000)
    ap.add_argument(
        "--examples",
        type=int,
        default=None,
        help="time a whole collection of this many examples (sets --batches to ceil(N / batch-size))",
    )
    ap.add_argument("--cases", default="kfac,diag,both", help="comma list of kfac, reduce, diag, both")
    ap.add_argument("--no-marginal", action="store_true", help="skip the half-batches timing (halves the run)")
    ap.add_argument(
        "--bracket",
        action="store_true",
        help="time the plain pass again after the last case; the whole-run ratios ('x fwd+bwd') use the mean of "
        "both plain times (the per-batch and extrapolated ones keep the first pass)",
    )
    ap.add_argument("--out", default="results/bench_factors.json")
    args = ap.parse_args(argv)
    if args.examples is not None:
        args.batches = -(-args.examples // args.batch_size)
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    if args.reduce and "reduce" not in wanted:
        wanted.insert(1, "reduce")
    bad = [c for c in wanted if c not in CASES]
    if bad or not wanted:
        ap.error(f"--cases: unknown {bad or 'empty list'}; expected a comma list of {', '.join(CASES)}")
    print_cpu(args.device)

    model = build_linker(args.model, args.device)
    batches = [
        synthetic_batch(model, args.batch_size, args.cands, args.tokens, s, device=args.device)
        for s in range(args.batches)
    ]
    n_ex = args.batches * args.batch_size

    def plain(bs: list):
        def run() -> None:
            model.eval()
            for b in bs:
                model.zero_grad(set_to_none=True)
                multi_positive_loss(model(b), b.labels).backward()

        return run

    def collect(approx: str, variant: str = "expand"):
        return lambda bs: (
            lambda: collect_curvature(model, bs, linker_logits_fn, approx=approx, variant=variant, progress=False)
        )

    cases = [("forward+backward", plain)] + [(CASES[c][0], collect(*CASES[c][1:])) for c in wanted]
    half = args.batches // 2 if args.batches >= 4 and not args.no_marginal else 0
    rows, res = [], {}
    base = base_half = None
    for name, fn in cases:
        if name == "forward+backward":
            plain(batches[:2])()  # warm-up (allocator, kernels) on a couple of batches, not the whole set
        t = min(timeit(fn(batches), args.repeat, warmup=0, device=args.device))
        base = t if base is None else base
        entry = {"seconds": t, "examples_per_s": n_ex / t, "ratio_vs_fwd_bwd": t / base}
        row = [name, t, n_ex / t, t / base]
        if half:
            t_half = min(timeit(fn(batches[:half]), args.repeat, warmup=0, device=args.device))
            base_half = t_half if base_half is None else base_half
            per_batch = (t - t_half) / (args.batches - half)
            per_batch_plain = (base - base_half) / (args.batches - half)
            fixed = t - args.batches * per_batch
            n_target = -(-args.target_examples // args.batch_size)
            at_target = (fixed + n_target * per_batch) / (n_target * per_batch_plain)
            entry.update(
                seconds_half=t_half,
                seconds_per_batch=per_batch,
                fixed_seconds=fixed,
                marginal_ratio_vs_fwd_bwd=per_batch / per_batch_plain,
                ratio_at_target_examples=at_target,
            )
            row += [per_batch / per_batch_plain, fixed, at_target]
        rows.append(row)
        res[name] = entry
    if args.bracket:
        # the machine can drift over a long run: a second plain pass after the last case
        # brackets the collections, and every ratio is taken against the mean plain time
        t_after = min(timeit(plain(batches), args.repeat, warmup=0, device=args.device))
        base_mean = (base + t_after) / 2
        res["forward+backward"].update(seconds_after=t_after, seconds_mean=base_mean)
        for row, entry in zip(rows, res.values()):
            entry["ratio_vs_fwd_bwd"] = entry["seconds"] / base_mean
            row[3] = entry["ratio_vs_fwd_bwd"]
        print(f"plain forward+backward before / after the collections: {base:.2f} s / {t_after:.2f} s")
    print(
        f"curvature collection, {args.model}, {args.batches} batches x {args.batch_size} examples x "
        f"{args.cands + 1} sequences x <= {args.tokens} tokens, device {args.device}"
    )
    head = ["case", "seconds", "examples/s", "x fwd+bwd"]
    if half:
        head += ["x per batch", "fixed s", f"x at {args.target_examples} ex"]
    print(table(head, rows))
    if half:
        print(
            f"marginal ratios from {half} vs {args.batches} batches; 'x at {args.target_examples} ex' = "
            f"(fixed + {-(-args.target_examples // args.batch_size)} batches x per-batch) / plain, extrapolated"
        )
    out = {"args": vars(args), "machine": machine(), "results": res}

    if not args.no_curvlinops:
        out["curvlinops"] = compare_curvlinops(model, args)
    write_json(args.out, out)
    return out


def compare_curvlinops(model, args) -> dict:
    try:
        from curvlinops import KFACLinearOperator
    except Exception as exc:  # noqa: BLE001
        print(f"curvlinops not installed ({type(exc).__name__}); skipping the comparison")
        return {"status": "curvlinops not installed"}
    import time

    from torch import nn

    # full-length sequences: curvlinops counts every position as real
    batches = [
        synthetic_batch(model, args.batch_size, args.cands, args.tokens, 100 + s, device=args.device)
        for s in range(args.curvlinops_batches)
    ]
    for b in batches:
        b.mention_mask.fill_(1)
        b.cand_mask.fill_(1)
        b.mention_ids.clamp_min_(1000 if len(model.tokenizer) > 2000 else 5)
        b.cand_ids.clamp_min_(1000 if len(model.tokenizer) > 2000 else 5)

    class Wrapped(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, X):
            return self.inner(LinkerBatch(**X))

    wrapped = Wrapped(model).eval()
    linears = {n: m for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    params = [p for m in linears.values() for p in (m.weight, m.bias) if p is not None]
    data = [(dict(b.__dict__), b.first_label) for b in batches]
    n = args.curvlinops_batches * args.batch_size
    t0 = time.perf_counter()
    op = KFACLinearOperator(
        wrapped,
        nn.CrossEntropyLoss(reduction="sum"),
        params,
        data,
        check_deterministic=False,
        fisher_type="empirical",
        kfac_approx="expand",
        separate_weight_and_bias=False,
        num_per_example_loss_terms=1,
        num_data=n,
        batch_size_fn=lambda X: X["labels"].shape[0],
    )
    op.compute_kronecker_factors()
    t_cl = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = collect_curvature(model, batches, linker_logits_fn, approx="kfac", progress=False)
    t_ours = time.perf_counter() - t0
    worst_a = worst_g = 0.0
    scales_a, scales_g, scales_p = [], [], []
    for name, mod in linears.items():
        if not mod.weight.requires_grad:
            continue
        A, G = ours.kfac[name]
        pname = f"inner.{name}"
        Ac, Gc = op._input_covariances[pname], op._gradient_covariances[pname]
        rel = lambda x, y: float((x / x.norm() - y / y.norm()).norm())  # noqa: E731
        worst_a = max(worst_a, rel(A.double(), Ac.double()))
        worst_g = max(worst_g, rel(G.double(), Gc.double()))
        scales_a.append(float(Ac.double().norm() / A.double().norm()))
        scales_g.append(float(Gc.double().norm() / G.double().norm()))
        scales_p.append(scales_a[-1] * scales_g[-1])
    # the scale split between A and G is a convention (c·A ⊗ G/c); the shapes must agree
    ok = max(worst_a, worst_g) < 1e-4
    print(
        f"curvlinops KFACLinearOperator: {t_cl:.2f}s, elcl: {t_ours:.2f}s (elcl/curvlinops time ratio {t_ours / t_cl:.2f}); "
        f"max rel. diff of normalised A {worst_a:.2e}, G {worst_g:.2e} -> {'agree' if ok else 'DISAGREE'} (tol 1e-4); "
        f"scale curvlinops/elcl: A x{min(scales_a):.4g}..{max(scales_a):.4g}, G x{min(scales_g):.4g}..{max(scales_g):.4g}, "
        f"A(x)G x{min(scales_p):.4g}..{max(scales_p):.4g}"
    )
    return {
        "status": "ok",
        "seconds_curvlinops": t_cl,
        "seconds_elcl": t_ours,
        "time_ratio_elcl_over_curvlinops": t_ours / t_cl,
        "max_rel_diff_A": worst_a,
        "max_rel_diff_G": worst_g,
        "scale_A_curvlinops_over_elcl": [min(scales_a), max(scales_a)],
        "scale_G_curvlinops_over_elcl": [min(scales_g), max(scales_g)],
        "scale_AG_curvlinops_over_elcl": [min(scales_p), max(scales_p)],
        "agree_1e-4": ok,
    }


if __name__ == "__main__":
    main()
