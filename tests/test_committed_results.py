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
        ("reproduce_bert_cpu_part/report", ["reproduce_bert_cpu_part/runs"]),
        ("reproduce_bert_cpu_part_encoder/report", ["reproduce_bert_cpu_part_encoder/runs"]),
        ("reproduce_bert_cpu_part_encoder_ncbi_first/report", ["reproduce_bert_cpu_part_encoder_ncbi_first/runs"]),
        (
            "reproduce_bert_cpu_part_encoder_ncbi_first/report_seed13",
            [
                f"reproduce_bert_cpu_part_encoder_ncbi_first/runs/{run}-o0-s13"
                for run in ("naive", "single", "ewc-lam10000", "ewc-lam100000", "kfac-lam10000", "kfac-lam100000")
            ],
        ),
        (
            "reproduce_bert_cpu_part_encoder_ncbi_first/report_lambda1e4",
            [
                f"reproduce_bert_cpu_part_encoder_ncbi_first/runs/{run}-o0-s{seed}"
                for run in ("naive", "single", "ewc-lam10000", "kfac-lam10000")
                for seed in (13, 17)
            ],
        ),
        (
            "reproduce_bert_cpu_part_encoder_ncbi_first/report_lambda1e5",
            [
                f"reproduce_bert_cpu_part_encoder_ncbi_first/runs/{run}-o0-s{seed}"
                for run in ("naive", "single", "ewc-lam100000", "kfac-lam100000")
                for seed in (13, 17)
            ],
        ),
    ],
)
def test_a_committed_report_is_rebuilt_from_its_committed_runs(report: str, runs: list[str]) -> None:
    committed = json.loads((RESULTS / report / "summary.json").read_text(encoding="utf-8"))
    text = json.dumps(render.summary_dict(build_report([RESULTS / r for r in runs])))
    rebuilt = json.loads(text.replace(f"{RESULTS.parent}/", ""))  # messages name files from the repository root
    assert rebuilt["n_runs"] == committed["n_runs"]
    for key in KEYS:
        assert rebuilt[key] == committed[key], f"results/{report}/summary.json '{key}' is not what its runs give"


def test_summary_json_names_where_each_fixed_lambda_came_from() -> None:
    """The scaled CPU part fixes EWC's and K-FAC's λ from the benchmark's dev choice; its summary.json (written by the
    same summary_dict) must say so per (method, λ), not only report.md, so a reader of the JSON alone sees λ was not
    tuned on this part."""
    committed = json.loads((RESULTS / "reproduce_bert_cpu_part/report/summary.json").read_text(encoding="utf-8"))
    rebuilt = render.summary_dict(build_report([RESULTS / "reproduce_bert_cpu_part/runs"]))
    assert rebuilt["lambda_sources"] == committed["lambda_sources"]
    assert [(s["method"], s["lambda"]) for s in committed["lambda_sources"]] == [("ewc", "100000"), ("kfac", "10000")]
    assert all(
        "dev-selected" in s["source"] and "results/reproduce_cpu/report" in s["source"]
        for s in committed["lambda_sources"]
    )
