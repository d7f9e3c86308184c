"""scripts/interval_widths.py: its rows are the report's own intervals over prefixes of the seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from script_loader import load_script

from elcl.errors import ElclError

RUNS = Path(__file__).resolve().parents[1] / "results" / "reproduce_cpu_confirm"
widths = load_script("interval_widths")


def test_seed_prefixes_take_whole_seeds_in_ascending_order() -> None:
    seed_of = {Path("naive-o1-s7"): 7, Path("kfac-o0-s3"): 3, Path("naive-o0-s7"): 7, Path("naive-o0-s3"): 3}
    got = widths.seed_prefixes(seed_of, start=1)
    assert [s for s, _ in got] == [[3], [3, 7]]
    assert got[0][1] == [Path("kfac-o0-s3"), Path("naive-o0-s3")]
    assert got[1][1] == sorted(seed_of)
    with pytest.raises(ElclError, match="--start 3: the runs hold 2 seed"):
        widths.seed_prefixes(seed_of, start=3)


def test_the_all_seeds_row_is_the_committed_reports_width(capsys: pytest.CaptureFixture[str]) -> None:
    summary = json.loads((RUNS / "report" / "summary.json").read_text(encoding="utf-8"))["comparison"]
    n_seeds = len({p.name.rsplit("-s", 1)[1] for p in (RUNS / "runs").iterdir() if p.is_dir()})
    assert widths.main([str(RUNS / "runs"), "--start", str(n_seeds), "--project", "100"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row, estimate = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:4])
    n_cells = summary["methods"][0]["n_paired"]
    assert row[0] == str(n_cells) and estimate[0] == "100 (estimate)"
    for m in summary["methods"]:
        iv = m["forgetting_reduction"]
        w = (iv["hi"] - iv["lo"]) / 2 * 100
        col = header.index(f"{m['method']} ±")
        assert row[col] == f"{w:.1f}"
        assert estimate[col] == f"{w * math.sqrt(n_cells / 100):.1f}"
    for d in summary["differences"]:
        iv = d["forgetting_reduction"]
        assert row[header.index(f"{d['a']} − {d['b']} ±")] == f"{(iv['hi'] - iv['lo']) / 2 * 100:.1f}"
