"""Size of curvature statistics relative to the parameters they cover, per layer and total.

    python scripts/bench_memory.py [--model minilm] [--bert-base/--no-bert-base]
        [--dtype float32] [--tasks 1,2,3,5,10] [--out results/bench_memory.json]

Shapes only: K-FAC blocks (Linear: A of in(+1), G of out; stored ``triu`` as d(d+1)/2
values or ``full`` as d²), diagonals for the rest (and for everything with EWC). The
BERT-base configuration is built from ``BertConfig()`` with random weights (no download).

``--tasks``: curvature kept after T tasks by ``kfac`` (every task's factors, diagonals and
anchor) and by ``online_kfac`` (one running set, folded T times with the method's own
``fold``), counted from the statistics objects as stored (``triu`` factors).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import build_linker, machine, print_cpu, table, write_json  # noqa: E402


def sizes(model: nn.Module, elem: int) -> dict:
    layers = []
    tot = {"params": 0, "kfac_triu": 0, "kfac_full": 0, "diag": 0}
    for name, m in model.named_modules():
        local = [(n, p) for n, p in m.named_parameters(recurse=False) if p.requires_grad]
        if not local:
            continue
        n_par = sum(p.numel() for _, p in local)
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            d_in = m.weight[0].numel() + (1 if m.bias is not None else 0)
            d_out = m.weight.shape[0]
            triu = d_in * (d_in + 1) // 2 + d_out * (d_out + 1) // 2
            full = d_in * d_in + d_out * d_out
            kind = "kfac"
        else:
            triu = full = n_par  # diagonal
            kind = "diag"
        tot["params"] += n_par
        tot["kfac_triu"] += triu
        tot["kfac_full"] += full
        tot["diag"] += n_par
        layers.append(
            {
                "layer": name,
                "kind": kind,
                "params": n_par,
                "param_bytes": n_par * elem,
                "kfac_triu_bytes": triu * elem,
                "kfac_full_bytes": full * elem,
                "ratio_triu": triu / n_par,
                "ratio_full": full / n_par,
            }
        )
    total = {
        "params": tot["params"],
        "param_bytes": tot["params"] * elem,
        "kfac_triu_bytes": tot["kfac_triu"] * elem,
        "kfac_full_bytes": tot["kfac_full"] * elem,
        "ewc_diag_bytes": tot["diag"] * elem,
        "ratio_triu": tot["kfac_triu"] / tot["params"],
        "ratio_full": tot["kfac_full"] / tot["params"],
        "ratio_ewc": 1.0,
    }
    return {"layers": layers, "total": total}


def stats_bytes(stats, elem: int) -> int:
    """Bytes of a CurvatureStats as stored: triu factors and diagonals in ``elem``-byte
    values, anchors in the parameters' dtype."""
    tri = sum(d * (d + 1) // 2 for A, G in stats.kfac.values() for d in (A.shape[0], G.shape[0]))
    diag = sum(F.numel() for F in stats.diag.values())
    anchors = sum(a.numel() * a.element_size() for a in stats.anchors.values())
    return (tri + diag) * elem + anchors


def one_task_stats(model: nn.Module):
    """Statistics shaped like one task's K-FAC result for ``model`` (identity factors,
    unit diagonals for parameters outside the blocks; the values do not matter here)."""
    from elcl.curvature.collect import CurvatureStats

    kfac, diag, anchors = {}, {}, {}
    for name, m in model.named_modules():
        local = [(n, p) for n, p in m.named_parameters(recurse=False) if p.requires_grad]
        if not local:
            continue
        prefix = f"{name}." if name else ""
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            d_in = m.weight[0].numel() + (1 if m.bias is not None else 0)
            kfac[name] = (torch.eye(d_in), torch.eye(m.weight.shape[0]))
        else:
            diag.update({prefix + n: torch.ones_like(p) for n, p in local})
        anchors.update({prefix + n: p.detach() for n, p in local})
    return CurvatureStats(kfac=kfac, diag=diag, anchors=anchors, meta={"approx": "kfac", "n_examples": 1})


def task_scaling(model: nn.Module, elem: int, tasks: list[int]) -> list[dict]:
    """Curvature bytes after T tasks: kfac (T per-task sets) vs online_kfac (one running set)."""
    from elcl.continual.methods.online_kfac import fold

    one = one_task_stats(model)
    rows, running, weight, folded = [], None, 0.0, 0
    for T in tasks:
        while folded < T:
            running, weight = fold(running, weight, one, 1.0, 0.9)
            folded += 1
        rows.append(
            {
                "tasks": T,
                "kfac_bytes": T * stats_bytes(one, elem),
                "online_kfac_bytes": stats_bytes(running, elem),
                "online_kfac_disk_bytes": min(T, 2) * stats_bytes(running, elem),
            }
        )
    return rows


def report_tasks(title: str, rows: list[dict]) -> None:
    mib = lambda b: f"{b / 2**20:.1f}"  # noqa: E731
    print(f"\n{title}")
    print(
        table(
            ["tasks", "kfac MiB", "online_kfac MiB (penalty)", "online_kfac MiB (disk, with the previous step)"],
            [
                [r["tasks"], mib(r["kfac_bytes"]), mib(r["online_kfac_bytes"]), mib(r["online_kfac_disk_bytes"])]
                for r in rows
            ],
        )
    )


def report(title: str, s: dict, show_layers: int) -> None:
    mib = lambda b: f"{b / 2**20:.2f}"  # noqa: E731
    print(f"\n{title}")
    kfac = [r for r in s["layers"] if r["kind"] == "kfac"]

    def row(label: str, kind: str, r: dict) -> list:
        return [
            label,
            kind,
            r["params"],
            mib(r["param_bytes"]),
            mib(r["kfac_triu_bytes"]),
            mib(r["kfac_full_bytes"]),
            f"{r['ratio_triu']:.3f}",
            f"{r['ratio_full']:.3f}",
        ]

    # one encoder layer is representative; the rest repeat
    rows = [row(r["layer"], r["kind"], r) for r in kfac[:show_layers]]
    rows.append(row("TOTAL (all params; diag for embeddings/LayerNorm)", "", s["total"]))
    print(table(["layer", "kind", "params", "param MiB", "triu MiB", "full MiB", "triu/param", "full/param"], rows))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="minilm")
    ap.add_argument(
        "--device", default="cpu", help="unused (sizes only); accepted for symmetry with the other benchmarks"
    )
    ap.add_argument("--bert-base", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "float64"])
    ap.add_argument("--layers", type=int, default=6, help="K-FAC layers to list before the total")
    ap.add_argument("--tasks", default="1,2,3,5,10", help="task counts for the kfac vs online_kfac table ('' to skip)")
    ap.add_argument("--out", default="results/bench_memory.json")
    args = ap.parse_args(argv)
    print_cpu()
    elem = torch.empty((), dtype=getattr(torch, args.dtype)).element_size()
    out: dict = {"args": vars(args), "machine": machine(), "models": {}}
    linker = build_linker(args.model, "cpu")
    s = sizes(linker, elem)
    out["models"][args.model] = s
    report(f"{args.model} linker, {args.dtype}", s, args.layers)
    tasks = [int(t) for t in args.tasks.split(",") if t.strip()]
    if tasks:
        out["tasks"] = {args.model: task_scaling(linker, elem, tasks)}
        report_tasks(
            f"{args.model} linker: curvature kept after T tasks (factors + diagonals + anchors, {args.dtype})",
            out["tasks"][args.model],
        )
    if args.bert_base:
        from transformers import BertConfig, BertModel

        bert = BertModel(BertConfig(), add_pooling_layer=False)
        s = sizes(bert, elem)
        out["models"]["bert-base (BertConfig())"] = s
        report(f"BERT-base (BertConfig(), random weights, no pooler), {args.dtype}", s, args.layers)
    write_json(args.out, out)
    return out


if __name__ == "__main__":
    main()
