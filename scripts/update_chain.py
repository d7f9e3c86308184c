"""Keeping a linker current without its old data, measured on the real corpora.

Per seed: v1 = NCBI Disease (``elcl train`` + ``elcl export``); v2 = v1 updated on
BC5CDR-disease (``elcl update``, no NCBI training data); v3 = v2 updated on
BC5CDR-chemical (MeSH). The same v1 per seed for every update method (naive, online
K-FAC, online EWC; paired seeds). After each version: NCBI's and BC5CDR-disease's test
acc@1 (``--eval``), and the exported curvature's tensor bytes. For the first seed, the
online K-FAC chain is also compared with the equivalent ``elcl train`` sequence
(NCBI → BC5CDR-disease → BC5CDR-chemical, same seed, one thread): largest weight
difference.

Settings: ``configs/quick.yaml``'s MiniLM bi-encoder and training settings with
``--mentions`` (default 100) training and evaluation mentions per task, one epoch per task
(quick's 300 mentions and 2 epochs did not fit the shared CPU: v1 alone took 20 min), one thread, λ 10000 and γ 0.9
for both online penalties (``configs/reproduce_cpu.yaml``'s online γ), curvature
``both`` (K-FAC blocks and a full diagonal, so one v1 serves both online methods).

    PYTHONPATH=. ELCL_DATA_DIR=/work/shared/corpora python scripts/update_chain.py

writes ``results/update_chain/summary.json`` and ``results/update_chain/README.md``
(runs and exports under ``runs/update_chain/``, not committed). It resumes: a version
already exported is not trained again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
EVAL = ("ncbi_disease:test", "bc5cdr_disease:test")
CHAIN = ("ncbi_disease", "bc5cdr_disease", "bc5cdr_chemical")
METHODS = ("naive", "online_kfac", "online_ewc")
LAMBDA = 10000.0
GAMMA = 0.9
EPOCHS = 1  # quick.yaml's 2 halved to fit the shared CPU


def elcl(*args: str, log: Path) -> None:
    """One `elcl` command, its output appended to ``log``; a failure stops the script."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ elcl {' '.join(args)}\n")
        fh.flush()
        rc = subprocess.run([sys.executable, "-m", "elcl", *args], stdout=fh, stderr=fh, env=env, cwd=ROOT).returncode
        fh.write(f"# rc {rc}, {time.time() - t0:.0f}s\n")
    if rc != 0:
        raise SystemExit(f"elcl {' '.join(args)} failed (exit {rc}); see {log}")


def config(work: Path, name: str, tasks: list[str], seed: int, mentions: int) -> Path:
    cfg = {
        "extends": str(ROOT / "configs" / "quick.yaml"),
        "name": name,
        "output_dir": str(work / "runs"),
        "tasks": tasks,
        "orders": None,
        "seeds": [seed],
        "train": {
            "max_train_mentions": mentions,
            "max_eval_mentions": mentions,
            "num_threads": 1,
            "epochs": EPOCHS,
            "eval_splits": ["test"],
        },
        "method": {
            "name": "online_kfac",
            "online_kfac": {"lambda": LAMBDA, "lambda_grid": None, "gamma": GAMMA},
            "online_ewc": {"lambda": LAMBDA, "lambda_grid": None, "gamma": GAMMA},
        },
        "curvature": {"approx": "both"},
    }
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def lineage(export: Path) -> dict:
    return json.loads((export / "lineage.json").read_text(encoding="utf-8"))


def scores(export: Path, before: bool = False) -> dict[str, float]:
    v = lineage(export)["versions"][-1]
    rows = v["metrics_before"] if before else v["metrics"]
    return {f"{r['task']}:{r['split']}": r["acc1"] for r in rows}


def curvature_bytes(export: Path) -> int | None:
    c = lineage(export)["curvature"]
    return None if c is None else int(c["bytes"])


def only_run(exp: Path) -> Path:
    runs = [p for p in exp.iterdir() if (p / "run.json").is_file()]
    if len(runs) != 1:
        raise SystemExit(f"{exp}: expected one run, found {len(runs)}")
    return runs[0]


def v1(work: Path, seed: int, mentions: int, log: Path) -> Path:
    out = work / "exports" / f"s{seed}-v1"
    if not out.is_dir():
        name = f"v1_s{seed}"
        elcl("train", "--config", str(config(work, name, [CHAIN[0]], seed, mentions)), log=log)
        elcl("export", str(only_run(work / "runs" / name)), "--out", str(out), log=log)
    return out


def update(work: Path, parent: Path, out: Path, task: str, method: str, log: Path) -> Path:
    if not out.is_dir():
        args = ["update", str(parent), "--task", task, "--method", method, "--out", str(out)]
        args += [a for e in EVAL for a in ("--eval", e)]
        if method == "naive":
            args += ["--set", "curvature.approx=none"]  # nothing to consolidate for naive
        elif method != "naive":
            args += ["--lambda", str(LAMBDA)]
        if method == "online_ewc":
            args += ["--set", "curvature.approx=diag"]
        elcl(*args, log=log)
    return out


def train_sequence_diff(work: Path, seed: int, mentions: int, chain_v3: Path, log: Path) -> dict:
    """Largest |Δw| between the online K-FAC update chain and `elcl train` of the sequence."""
    from safetensors.torch import load_file

    from elcl.models.export import load_exported

    name = f"sequence_s{seed}"
    exp = work / "runs" / name
    if not exp.is_dir() or not any((p / "run.json").is_file() for p in exp.iterdir()):
        elcl("train", "--config", str(config(work, name, list(CHAIN), seed, mentions)), log=log)
    run = only_run(exp)
    ckpt = load_file(str(run / "steps" / f"{len(CHAIN) - 1}_{CHAIN[-1]}" / "model.safetensors"))
    chain = load_exported(chain_v3).model.state_dict()
    diffs = {k: float((ckpt[k].float() - chain[k].float()).abs().max()) for k in ckpt}
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = {
        f"{r['eval_task']}:{r['split']}": r["acc1"]
        for r in rows
        if r["step"] == len(CHAIN) - 1 and r["split"] == "test"
    }
    return {
        "seed": seed,
        "method": "online_kfac",
        "tensors": len(diffs),
        "max_abs_weight_diff": max(diffs.values()),
        "train_sequence_test_acc1": {e: last.get(e) for e in EVAL},
        "update_chain_test_acc1": {e: scores(chain_v3).get(e) for e in EVAL},
    }


def render(summary: dict) -> str:
    lines = [
        "# Keeping a linker current: the update chain on the real corpora",
        "",
        f"Command: `{summary['command']}` ({summary['cpu']}, torch {summary['torch']}, one thread;"
        f" {summary['mentions']} training / evaluation mentions per task, {summary['epochs']} epoch per task,"
        f" λ {LAMBDA:g}, γ {GAMMA:g}).",
        "",
        "v1 = NCBI Disease; v2 = v1 updated on BC5CDR-disease without NCBI's training data;"
        " v3 = v2 updated on BC5CDR-chemical (MeSH). Test acc@1, mean over seeds"
        f" {', '.join(str(s) for s in summary['seeds'])} (per seed in `summary.json`).",
        "",
        "| update method | version | NCBI test | BC5CDR-disease test | curvature bytes |",
        "|---|---|---:|---:|---:|",
    ]
    for method in METHODS:
        rows = summary["chains"].get(method)
        if not rows:
            continue
        for ver in ("v1", "v2", "v3"):
            cells = [r[ver] for r in rows if ver in r]
            if not cells:
                continue

            def mean(key: str, cells: list = cells) -> str:
                vals = [c["acc1"][key] for c in cells if c["acc1"].get(key) is not None]
                return f"{100 * sum(vals) / len(vals):.1f}" if vals else "–"

            b = {c["curvature_bytes"] for c in cells}
            shown = ", ".join("–" if x is None else f"{x:,}" for x in sorted(b, key=lambda x: x or 0))
            lines.append(f"| {method} | {ver} | {mean(EVAL[0])} | {mean(EVAL[1])} | {shown} |")
    eq = summary.get("equality")
    if eq:
        lines += [
            "",
            f"Update chain vs `elcl train` of the sequence ({eq['method']}, seed {eq['seed']}, one thread):"
            f" largest |Δw| over {eq['tensors']} tensors = {eq['max_abs_weight_diff']:.3g};"
            f" test acc@1 train sequence {eq['train_sequence_test_acc1']} vs chain {eq['update_chain_test_acc1']}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[13, 17])
    ap.add_argument("--mentions", type=int, default=100)
    ap.add_argument("--work", type=Path, default=None, help="default: runs/update_chain/m<mentions>")
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "update_chain")
    ap.add_argument("--no-equality", action="store_true", help="skip the elcl train sequence")
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = (args.work or ROOT / "runs" / "update_chain" / f"m{args.mentions}").resolve()
    out = args.out
    (work / "exports").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    log = work / "log.txt"
    summary: dict = {
        "command": "PYTHONPATH=. ELCL_DATA_DIR=/work/shared/corpora python scripts/update_chain.py"
        + ("" if args.seeds == [13, 17] else f" --seeds {' '.join(map(str, args.seeds))}")
        + ("" if args.mentions == 100 else f" --mentions {args.mentions}"),
        "cpu": f"CPU {torch.backends.cpu.get_cpu_capability()}",
        "torch": torch.__version__,
        "seeds": args.seeds,
        "mentions": args.mentions,
        "epochs": EPOCHS,
        "lambda": LAMBDA,
        "gamma": GAMMA,
        "chains": {m: [] for m in METHODS},
    }
    print(f"update chain on {summary['cpu']}, seeds {args.seeds}, {args.mentions} mentions", flush=True)

    def save() -> None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        (out / "README.md").write_text(render(summary))

    for i, seed in enumerate(args.seeds):
        first = v1(work, seed, args.mentions, log)
        base = {"acc1": {}, "curvature_bytes": curvature_bytes(first)}
        for method in ("online_kfac", "naive", "online_ewc"):
            v2 = update(work, first, work / "exports" / f"s{seed}-{method}-v2", CHAIN[1], method, log)
            v3 = update(work, v2, work / "exports" / f"s{seed}-{method}-v3", CHAIN[2], method, log)
            row = {
                "seed": seed,
                "v1": base | {"acc1": scores(v2, before=True)},
                "v2": {"acc1": scores(v2), "curvature_bytes": curvature_bytes(v2)},
                "v3": {"acc1": scores(v3), "curvature_bytes": curvature_bytes(v3)},
            }
            summary["chains"][method].append(row)
            print(f"seed {seed} {method}: " + json.dumps({v: row[v]["acc1"] for v in ("v1", "v2", "v3")}), flush=True)
            save()
            if i == 0 and method == "online_kfac" and not args.no_equality:
                summary["equality"] = train_sequence_diff(work, seed, args.mentions, v3, log)
                print("equality: " + json.dumps(summary["equality"]), flush=True)
                save()
    print(render(summary), flush=True)


if __name__ == "__main__":
    main()
