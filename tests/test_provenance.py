"""Where runs computed: recorded per start in run.json, counted by the report."""

from __future__ import annotations

import json

import numpy as np
import torch
from test_report import write_run

from elcl.evaluation import render
from elcl.evaluation.report import build_report
from elcl.provenance import describe, environment, machine_counts
from elcl.schemas import Environment


def _env(cap: str, from_step: int = 0, gpu: str | None = None) -> dict:
    return {
        "from_step": from_step,
        "elcl": "0.1.0",
        "commit": None,
        "torch": "2.13.0+cpu",
        "python": "3.12.0",
        "device": "cuda" if gpu else "cpu",
        "gpu": gpu,
        "processes": 1,
        "threads": 1,
        "cpu_capability": cap,
        "native_bf16": cap == "AVX512",
    }


def test_this_process_environment_validates_against_the_run_json_schema(monkeypatch) -> None:
    monkeypatch.setenv("ELCL_CPU_CAPABILITY", "AVX2")
    monkeypatch.setenv("ELCL_CPU_FLAGS", "avx2 fma")
    env = environment(torch.device("cpu"), 3)
    assert Environment.model_validate(env).dump() == env
    assert (env["from_step"], env["device"], env["cpu_capability"], env["native_bf16"]) == (3, "cpu", "AVX2", False)
    assert describe(env).startswith("environment from step 3: elcl ")
    assert "CPU (AVX2, emulated bfloat16)" in describe(env)


def test_machine_counts_group_runs_by_hardware_and_name_resumes_elsewhere() -> None:
    counts = machine_counts(
        [
            [_env("AVX512")],
            [_env("AVX512"), _env("AVX512", from_step=2)],  # resumed on the same kind: one label
            [_env("AVX2")],
            [_env("AVX512"), _env("AVX2", from_step=1)],
            None,
            [_env("AVX2", gpu="NVIDIA H200")],
        ]
    )
    assert counts == {
        "CPU AVX512, torch 2.13.0+cpu": 2,
        "CPU AVX2, torch 2.13.0+cpu": 1,
        "CPU AVX512, torch 2.13.0+cpu then CPU AVX2, torch 2.13.0+cpu": 1,
        "NVIDIA H200, torch 2.13.0+cpu": 1,
        "not recorded (older elcl)": 1,
    }


def test_the_report_says_what_its_runs_computed_on(tmp_path) -> None:
    R = np.array([[0.8, 0.5, 0.4], [0.7, 0.9, 0.5], [0.6, 0.8, 0.9]])
    write_run(tmp_path, "naive-a", "naive", None, 1, R)
    write_run(tmp_path, "naive-b", "naive", None, 2, R)
    path = tmp_path / "naive-a" / "run.json"
    state = json.loads(path.read_text())
    state["environments"] = [_env("AVX2")]
    path.write_text(json.dumps(state))
    report = build_report([tmp_path])
    assert report.machines == {"CPU AVX2, torch 2.13.0+cpu": 1, "not recorded (older elcl)": 1}
    assert (
        "- computed on: CPU AVX2, torch 2.13.0+cpu (1 run); not recorded (older elcl) (1 run)"
        in render.report_markdown(report)
    )
    assert render.summary_dict(report)["machines"] == report.machines


def test_an_interrupted_run_keeps_its_facts_for_the_resume(tmp_path) -> None:
    """Marking a run interrupted or failed rewrites run.json: the finished steps' λ_t (which
    a resume reads back and extends) and the environments must survive it."""
    from elcl.continual.lifecycle import _mark
    from elcl.continual.rundir import RunDir, RunSpec

    rd = RunDir(tmp_path / "run")
    spec = RunSpec("exp", "kfac", "auto", 1, ("a", "b", "c"), 0)
    rd.write_state(spec, "running", 2, {"lambda_t": {"b": {"a": 3.0}}, "environments": [_env("AVX2")]})
    _mark(rd, spec, "interrupted", "SIGTERM")
    state = rd.read_state()
    assert (state["status"], state["steps_done"], state["reason"]) == ("interrupted", 2, "SIGTERM")
    assert state["lambda_t"] == {"b": {"a": 3.0}}
    assert state["environments"] == [_env("AVX2")]
