"""train.log_to: TensorBoard curves (when tensorboard is installed) and the message without it."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
import yaml
from tiny_models import tiny_config
from typer.testing import CliRunner

from elcl.cli.app import app
from elcl.errors import ConfigError

runner = CliRunner()


def _config(root: Path, log_to: list[str]) -> Path:
    cfg = tiny_config(
        root,
        "curves",
        ["ncbi_disease", "bc5cdr_disease"],
        2,
        train={"log_to": log_to},
        method={"name": "ewc", "lambda": 100.0},
        curvature={"max_examples": 8, "batch_size": 4},
    )
    path = root / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tensorboard_receives_the_documented_tags(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = runner.invoke(app, ["train", "--config", str(_config(tmp_path, ["jsonl", "tensorboard"]))])
    assert res.exit_code == 0, res.output
    run = tmp_path / "runs" / "curves" / "ewc-lam100-o0-s2"
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for task in ("ncbi_disease", "bc5cdr_disease"):
        for key in ("loss", "penalty", "lr", "grad_norm"):
            assert f"train/{task}/{key}" in tags
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    for task in ("ncbi_disease", "bc5cdr_disease"):
        for split in ("dev", "test"):
            events = acc.Scalars(f"{split}_acc1/{task}")
            want = [r["acc1"] for r in metrics if r["eval_task"] == task and r["split"] == split]
            assert [e.step for e in events] == [0, 1]
            assert [e.value for e in events] == pytest.approx(want, abs=1e-7)
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    second = [e for e in log if e["task"] == "bc5cdr_disease"]
    assert [e.value for e in acc.Scalars("train/bc5cdr_disease/penalty")] == pytest.approx(
        [e["penalty"] for e in second]
    )
    assert second[-1]["penalty"] > 0 and second[-1]["grad_norm"] > 0
    assert [e.value for e in acc.Scalars("train/ncbi_disease/penalty")] == [0.0]


def test_missing_tensorboard_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    res = runner.invoke(app, ["train", "--config", str(_config(tmp_path, ["tensorboard"]))])
    assert isinstance(res.exception, ConfigError)
    assert "pip install 'elcl[tensorboard]'" in str(res.exception) and "\n" not in str(res.exception)
    assert not (tmp_path / "runs" / "curves" / "ewc-lam100-o0-s2" / "run.json").exists()


def test_log_to_rejects_unknown_sinks(tmp_path):
    res = runner.invoke(app, ["train", "--config", str(_config(tmp_path, ["wandb"]))])
    assert isinstance(res.exception, ConfigError) and "train.log_to" in str(res.exception)
