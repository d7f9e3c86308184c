"""Rebuild ``metrics.jsonl`` of runs whose metrics survive only in their ``log.txt``.

    python scripts/metrics_from_logs.py --reference RUNS_WITH_METRICS --check
    python scripts/metrics_from_logs.py --reference RUNS_WITH_METRICS --runs LOG_ONLY_RUNS --out DIR

Why: runs trained on a leased GPU came back with their ``log.txt``, ``run.json`` and
``config.yaml`` but without their metrics and prediction files (the lease's working tree
was wiped before they were packed). The trainer logs every evaluation as
``step i (task) -> eval_task split: acc@1 a acc@5 b (n=N)``; with four decimals and
N ≈ 400 that is the exact count of correct mentions, so acc@1 and acc@5 are recovered
exactly. A first step adopted from a sibling run (``adopted from NAME``) is not logged
again: its rows are the sibling's, which is what adoption copies. The two remaining
fields, ``tfidf_acc1`` and ``n_unlinkable``, belong to the data (the retriever's own top-1
and the unlinkable count on the same fixed mentions), not to the run: they are taken from
the reference runs, after checking that every reference run agrees on them.

``--check`` rebuilds every reference run from its own log and compares with its real
``metrics.jsonl`` (exits 1 on any difference): the recovery is trusted only as far as
that check goes. Recovered runs get ``metrics_recovered_from: log.txt`` in ``run.json``
and no prediction files, so a report over them bootstraps over seeds and orders only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

from elcl.continual.rundir import read_jsonl, write_jsonl
from elcl.fileio import atomic_write_text
from elcl.schemas import MetricRow

LINE = re.compile(
    r"^step (\d+) \((\S+)\) -> (\S+) (dev|test): acc@1 ([0-9.]+) acc@5 ([0-9.]+) \(n=(\d+)\)$", re.MULTILINE
)
ADOPTED = re.compile(r"^step 0 \((\S+)\) adopted from (\S+):", re.MULTILINE)


def _count(value: str, n: int) -> float:
    """The fraction the trainer printed to 4 decimals, as the exact k/n it came from."""
    k = round(float(value) * n)
    if abs(k / n - float(value)) > 5e-5 + 1e-12:
        raise ValueError(f"{value} is no k/{n}")
    return k / n


def data_constants(reference: list[Path]) -> dict[tuple[str, str], tuple[float | None, int]]:
    """(eval_task, split) -> (tfidf_acc1, n_unlinkable), the same in every reference run."""
    seen: dict[tuple[str, str], tuple[float | None, int]] = {}
    for run in reference:
        for row in read_jsonl(run / "metrics.jsonl"):
            key, val = (row["eval_task"], row["split"]), (row.get("tfidf_acc1"), row["n_unlinkable"])
            if seen.setdefault(key, val) != val:
                raise SystemExit(f"{run}: {key} has {val}, other runs {seen[key]}: not a property of the data")
    return seen


def rows_from_log(run: Path, constants: dict[tuple[str, str], tuple[float | None, int]]) -> list[dict]:
    text = (run / "log.txt").read_text(encoding="utf-8")
    rows: dict[tuple[int, str, str], dict] = {}
    adopted = ADOPTED.search(text)
    if adopted:
        sibling = run.parent / adopted.group(2)
        rows.update(
            {(r["step"], r["eval_task"], r["split"]): r for r in rows_from_log(sibling, constants) if r["step"] == 0}
        )
    for m in LINE.finditer(text):
        step, trained, task, split, a1, a5, n = m.groups()
        tfidf, unlinkable = constants[(task, split)]
        row = {
            "acc1": _count(a1, int(n)),
            "acc5": _count(a5, int(n)),
            "eval_task": task,
            "n": int(n),
            "n_unlinkable": unlinkable,
            "split": split,
            "step": int(step),
            "tfidf_acc1": tfidf,
            "trained_task": trained,
        }
        rows[(int(step), task, split)] = row  # last wins, as the report reads a resumed run
    state = json.loads((run / "run.json").read_text(encoding="utf-8"))
    ctx = {"order": state["order"], "method": state["method"]}
    out = [MetricRow.model_validate(r, context=ctx).model_dump(mode="json") for r in rows.values()]
    return sorted(out, key=lambda r: (r["step"], r["split"], state["order"].index(r["eval_task"])))


def _key(rows: list[dict]) -> dict[tuple, dict]:
    return {(r["step"], r["eval_task"], r["split"]): r for r in rows}


def check(reference: list[Path], constants) -> int:
    bad = 0
    for run in reference:
        real, got = _key(read_jsonl(run / "metrics.jsonl")), _key(rows_from_log(run, constants))
        diff = [
            k
            for k in real.keys() | got.keys()
            if k not in real
            or k not in got
            or any(abs(real[k][f] - got[k][f]) > 1e-9 for f in ("acc1", "acc5"))
            or any(real[k][f] != got[k][f] for f in ("n", "n_unlinkable", "trained_task", "tfidf_acc1"))
        ]
        if diff:
            bad += 1
            print(f"{run.name}: {len(diff)} row(s) differ, e.g. {sorted(diff)[0]}")
    print(f"checked {len(reference)} runs: {len(reference) - bad} rebuilt exactly from log.txt, {bad} differ")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reference", required=True, type=Path, help="experiment dir of runs with metrics.jsonl")
    ap.add_argument("--runs", type=Path, help="experiment dir of runs with log.txt, run.json, config.yaml only")
    ap.add_argument("--out", type=Path, help="where the rebuilt runs go (one folder per run)")
    ap.add_argument("--check", action="store_true", help="rebuild the reference runs and compare")
    ap.add_argument("--only-done", action="store_true", help="skip runs whose run.json is not 'done'")
    args = ap.parse_args(argv)
    reference = sorted(p.parent for p in args.reference.glob("*/metrics.jsonl"))
    constants = data_constants(reference)
    if args.check:
        return check(reference, constants)
    if not (args.runs and args.out):
        ap.error("--runs and --out (or --check)")
    n = 0
    for run in sorted(p.parent for p in args.runs.glob("*/log.txt")):
        state = json.loads((run / "run.json").read_text(encoding="utf-8"))
        if args.only_done and state.get("status") != "done":
            continue
        dest = args.out / run.name
        dest.mkdir(parents=True, exist_ok=True)
        for name in ("config.yaml", "log.txt"):
            shutil.copyfile(run / name, dest / name)
        write_jsonl(dest / "metrics.jsonl", rows_from_log(run, constants))  # the trainer's own writer
        state["metrics_recovered_from"] = "log.txt"
        atomic_write_text(dest / "run.json", json.dumps(state, indent=2, sort_keys=True) + "\n")
        n += 1
    print(f"rebuilt {n} runs under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
