"""The reports committed under results/ are what ``elcl evaluate`` makes of the runs
committed beside them: a docs figure quoted from a report traces to its runs, and a
report left stale after runs were added (or after a change to the statistics) fails here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from elcl.evaluation import render
from elcl.evaluation.report import build_report

RESULTS = Path(__file__).resolve().parents[1] / "results"
KEYS = ("comparison", "frontier", "groups", "lambda_selection")


@pytest.mark.parametrize(
    ("report", "runs"),
    [
        ("quick/report", ["quick/runs"]),
        ("reproduce_cpu/report", ["reproduce_cpu/runs"]),
        ("reproduce_cpu/report_all", ["reproduce_cpu/runs", "reproduce_cpu/runs_h200"]),
        ("reproduce_cpu_context/report", ["reproduce_cpu_context/runs"]),
        ("reproduce_cpu_confirm/report", ["reproduce_cpu_confirm/runs"]),
    ],
)
def test_a_committed_report_is_rebuilt_from_its_committed_runs(report: str, runs: list[str]) -> None:
    committed = json.loads((RESULTS / report / "summary.json").read_text(encoding="utf-8"))
    text = json.dumps(render.summary_dict(build_report([RESULTS / r for r in runs])))
    rebuilt = json.loads(text.replace(f"{RESULTS.parent}/", ""))  # messages name files from the repository root
    assert rebuilt["n_runs"] == committed["n_runs"]
    for key in KEYS:
        assert rebuilt[key] == committed[key], f"results/{report}/summary.json '{key}' is not what its runs give"
