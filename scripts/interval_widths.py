"""How the report's intervals narrow as seeds are added: one report per prefix of the seeds.

    python scripts/interval_widths.py results/reproduce_cpu_confirm/runs --start 3 --parts --project 28

Why: the interval aim of a benchmark (e.g. at most ±15 points on a reduction) is met by
adding (seed, order) cells, and how many more cells it takes is read off the widths so
far. Each row is the forgetting report (``build_report``, the same resampling and
bootstrap seed as ``elcl evaluate``) over the runs of the first k seeds in ascending order,
so a row is reproduced by ``elcl evaluate`` over those runs. A half-width is (hi − lo)/2 of
a forgetting reduction, in points. ``--parts`` adds the last row's widths with cells alone
and test mentions alone resampled (the seed-to-seed part and the part a larger evaluation
sample shrinks); ``--project N`` scales the last widths by √(cells/N), the width N cells
would give if the spread stayed the same (an estimate, not a measurement).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from elcl.errors import ElclError
from elcl.evaluation.report import Report, build_report
from elcl.evaluation.runs import discover_runs
from elcl.evaluation.stats import DEFAULT_BOOTSTRAP, Interval


def half_width(iv: Interval) -> float:
    """Half the interval's width in points (NaN when the interval is not computable)."""
    return (iv.hi - iv.lo) / 2 * 100


def widths(report: Report) -> tuple[int, dict[str, float]]:
    """The paired cells, and the reduction half-widths of every compared method and penalty
    difference (``a − b``)."""
    c = report.comparison
    if c is None:
        raise ElclError("no paired comparison: the runs need the baseline and the reference method on the same cells")
    out = {arm.method: half_width(arm.reduction) for arm in c.arms}
    out.update({f"{d.a} − {d.b}": half_width(d.reduction) for d in c.diffs})
    return c.n_cells, out


def seed_prefixes(seed_of: dict[Path, int], start: int) -> list[tuple[list[int], list[Path]]]:
    """(seeds, their run directories) for the first k seeds in ascending order, k = start … all."""
    seeds = sorted(set(seed_of.values()))
    if not 1 <= start <= len(seeds):
        raise ElclError(f"--start {start}: the runs hold {len(seeds)} seed(s)")
    return [(seeds[:k], sorted(p for p, s in seed_of.items() if s in seeds[:k])) for k in range(start, len(seeds) + 1)]


def table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    """Markdown: cells, seeds (the first k in ascending order), then one column per method/difference (columns of the first row)."""
    cols = list(rows[0][2])
    lines = ["| cells | seeds | " + " | ".join(f"{c} ±" for c in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for label, seeds, w in rows:
        lines.append(f"| {label} | {seeds} | " + " | ".join(f"{w.get(c, math.nan):.1f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, help="experiment directory (e.g. results/<experiment>/runs)")
    ap.add_argument("--start", type=int, default=1, help="first row: this many seeds (default 1)")
    ap.add_argument("--bootstrap", type=int, default=DEFAULT_BOOTSTRAP, help="resamples per interval")
    ap.add_argument("--parts", action="store_true", help="also the last row with cells / mentions alone resampled")
    ap.add_argument("--project", type=int, default=None, help="scale the last widths to this many cells")
    args = ap.parse_args(argv)
    try:
        runs, _, _ = discover_runs([args.runs])
        rows: list[tuple[str, str, dict[str, float]]] = []
        dirs: list[Path] = []
        label = ""
        full: dict[str, float] = {}
        n_cells = 0
        for seeds, dirs in seed_prefixes({r.path: r.seed for r in runs}, args.start):
            n_cells, full = widths(build_report(dirs, n_boot=args.bootstrap))
            label = ", ".join(map(str, seeds)) if len(seeds) <= 3 else f"{seeds[0]} … {seeds[-1]} ({len(seeds)})"
            rows.append((str(n_cells), label, full))
            shown = ", ".join(f"{k} ±{v:.1f}" for k, v in full.items())
            print(f"{n_cells} cells (seeds to {seeds[-1]}): {shown}", file=sys.stderr, flush=True)
        if args.parts:
            for mode in ("cells", "mentions-only"):
                _, part = widths(build_report(dirs, n_boot=args.bootstrap, resample=mode))
                rows.append((f"{n_cells}, {mode} resampled", label, part))
        if args.project:
            scale = math.sqrt(n_cells / args.project)
            estimate = {k: v * scale for k, v in full.items()}
            rows.append(
                (f"{args.project} (estimate)", f"√({n_cells}/{args.project}) × the {n_cells}-cell row", estimate)
            )
    except ElclError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
