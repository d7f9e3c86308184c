"""Issue 12: bad input, interruption and concurrent use end in one line and a non-zero exit,
and nothing already written is lost. Everything is driven through the CLI on tiny fixtures."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file
from spies import train_task
from tiny_models import tiny_config
from typer.testing import CliRunner

from elcl.cli import app as app_mod
from elcl.cli.app import app
from elcl.data.corpora import clear_cache
from elcl.errors import (
    CheckpointError,
    ConfigError,
    CorpusFormatError,
    DivergedError,
    ElclError,
    RunLockedError,
)
from elcl.fileio import TEMP_PREFIX

runner = CliRunner()
AVX2_ONLY = {"ELCL_CPU_CAPABILITY": "AVX2", "ELCL_CPU_FLAGS": "sse4_2 avx avx2 fma"}
AVX512_BF16 = {"ELCL_CPU_CAPABILITY": "AVX512", "ELCL_CPU_FLAGS": "avx2 avx512f avx512_bf16"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """Synthetic corpora, a tiny BERT, a one-task config and one finished run of it."""
    root = tmp_path_factory.mktemp("loud")
    raw = tiny_config(root, "loud", ["ncbi_disease"], 5, train={"eval_splits": ["test"]}, method={"name": "naive"})
    data = Path(raw["data"]["data_dir"])
    cfg = root / "loud.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    old = os.umask(0o022)
    try:
        res = runner.invoke(app, ["train", "--config", str(cfg)])
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    return {"root": root, "data": data, "config": cfg, "raw": raw, "run": root / "runs" / "loud" / "naive-o0-s5"}


def write_cfg(world: dict, tmp_path: Path, **changes) -> Path:
    raw = json.loads(json.dumps(world["raw"]))
    raw["output_dir"] = str(tmp_path / "runs")
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            raw.setdefault(section, {})[sub] = value
        else:
            raw[section] = value
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def copy_run(world: dict, tmp_path: Path) -> Path:
    dst = tmp_path / "runs" / "loud" / world["run"].name
    shutil.copytree(world["run"], dst)
    return dst


def state(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def main_exit(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run the console entry point in-process: (exit code, stderr)."""
    monkeypatch.setattr(sys, "argv", ["elcl", *argv])
    with pytest.raises(SystemExit) as ex:
        app_mod.main()
    return int(ex.value.code or 0), capsys.readouterr().err


# 1. divergence -------------------------------------------------------------------------


def test_diverged_run_stops_is_failed_and_never_evaluated(world: dict, tmp_path: Path) -> None:
    cfg = write_cfg(world, tmp_path)
    res = runner.invoke(app, ["train", "--config", str(cfg), "--set", "train.lr=1e30"])
    assert isinstance(res.exception, DivergedError), res.output
    msg = str(res.exception)
    assert "\n" not in msg and "train ncbi_disease" in msg and "non-finite at step" in msg and "train.lr" in msg
    run = tmp_path / "runs" / "loud" / "naive-o0-s5"
    st = state(run)
    assert st["status"] == "failed" and "non-finite" in st["reason"] and st["steps_done"] == 0
    assert not (run / "metrics.jsonl").exists() and not (run / ".lock").exists()
    shown = runner.invoke(app, ["evaluate", str(run), "--include-partial"])
    assert "status 'failed'" in shown.stderr and "skipped" in shown.stderr
    assert isinstance(shown.exception, ElclError) and "no usable run" in str(shown.exception)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=.inf", "train.lr"),
        ("method.ewc.lambda=.nan", "method.ewc.lambda"),
        ("method.ewc.lambda_grid=[1, .inf]", "method.ewc.lambda_grid"),
    ],
)
def test_non_finite_config_values_are_refused(world: dict, override: str, key: str) -> None:
    res = runner.invoke(app, ["train", "--config", str(world["config"]), "--set", override])
    assert isinstance(res.exception, ConfigError) and f"config key '{key}" in str(res.exception)
    assert "Input should be a finite number" in str(res.exception)


def test_nan_checkpoint_is_refused_on_load(world: dict, tmp_path: Path) -> None:
    run = copy_run(world, tmp_path)
    ckpt = run / "steps" / "0_ncbi_disease" / "model.safetensors"
    meta = json.loads((run / "steps" / "0_ncbi_disease" / "model.meta.json").read_text())
    assert meta["format"] == "elcl-checkpoint/1" and len(meta["sha256"]) == 64
    # A changed byte: the checksum says so.
    original = ckpt.read_bytes()
    ckpt.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    res = runner.invoke(
        app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--out", str(tmp_path / "f"), "--force"]
    )
    assert isinstance(res.exception, CheckpointError) and "sha256" in str(res.exception)
    # NaN weights with a matching checksum (as a diverged writer would leave them): refused.
    ckpt.write_bytes(original)
    tensors = load_file(str(ckpt))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(ckpt), metadata={"model_config_hash": meta["model_config_hash"]})
    from elcl.fileio import sha256_file

    meta["sha256"] = sha256_file(ckpt)
    (run / "steps" / "0_ncbi_disease" / "model.meta.json").write_text(json.dumps(meta))
    res = runner.invoke(
        app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--out", str(tmp_path / "f"), "--force"]
    )
    assert isinstance(res.exception, CheckpointError) and "NaN" in str(res.exception) and name in str(res.exception)


# 2. resume overrides -------------------------------------------------------------------


def test_resume_refuses_experiment_overrides_and_allows_runtime_ones(world: dict, tmp_path: Path) -> None:
    run = copy_run(world, tmp_path)
    before = (run / "config.yaml").read_text()
    res = runner.invoke(app, ["train", "--resume", str(run), "--set", "train.lr=0.05", "--set", "method.name=ewc"])
    assert isinstance(res.exception, ConfigError), res.output
    msg = str(res.exception)
    assert "--resume cannot change" in msg and "train.lr (0.001 -> 0.05)" in msg and "method.name" in msg
    assert "train.device" in msg  # names what may change
    assert (run / "config.yaml").read_text() == before and state(run)["status"] == "done"
    ok = runner.invoke(
        app, ["train", "--resume", str(run), "--set", "train.num_threads=1", "--set", "train.device=cpu"]
    )
    assert ok.exit_code == 0, ok.output


# 3. lock and reruns --------------------------------------------------------------------


def test_live_and_stale_locks_are_refused_with_how_to_clear(world: dict, tmp_path: Path) -> None:
    run = copy_run(world, tmp_path)
    st = state(run)
    st.update(status="running", steps_done=0)
    (run / "run.json").write_text(json.dumps(st))
    lock = run / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    res = runner.invoke(app, ["train", "--resume", str(run)])
    assert isinstance(res.exception, RunLockedError) and f"pid {os.getpid()}" in str(res.exception)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "started": "then"}))
    res = runner.invoke(app, ["train", "--resume", str(run)])
    msg = str(res.exception)
    assert isinstance(res.exception, RunLockedError) and "stale lock" in msg and f"rm {lock}" in msg
    assert lock.exists() and state(run)["status"] == "running"  # reported, never broken silently


def test_fisher_into_a_locked_run_is_refused_and_writes_nothing(world: dict, tmp_path: Path) -> None:
    run = copy_run(world, tmp_path)
    lock = run / ".lock"
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    res = runner.invoke(app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--force"])
    assert isinstance(res.exception, RunLockedError) and f"pid {os.getpid()}" in str(res.exception)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before and lock.exists()
    # --out elsewhere does not touch the run directory, so it needs no lock.
    res = runner.invoke(
        app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--out", str(tmp_path / "f"), "--force"]
    )
    assert res.exit_code == 0, res.output
    lock.unlink()
    res = runner.invoke(app, ["fisher", "--run", str(run), "--task", "ncbi_disease", "--force"])
    assert res.exit_code == 0, res.output
    assert not lock.exists()


def test_plain_rerun_over_an_unfinished_run_refuses(world: dict, tmp_path: Path) -> None:
    run = copy_run(world, tmp_path)
    st = state(run)
    st.update(status="interrupted", steps_done=0)
    (run / "run.json").write_text(json.dumps(st))
    rows = (run / "metrics.jsonl").read_text()
    cfg = write_cfg(world, tmp_path)
    res = runner.invoke(app, ["train", "--config", str(cfg)])
    assert isinstance(res.exception, ElclError) and "unfinished run (status 'interrupted'" in str(res.exception)
    assert f"--resume {run}" in str(res.exception)
    assert (run / "metrics.jsonl").read_text() == rows


# 4. Ctrl-C -----------------------------------------------------------------------------


def test_ctrl_c_exits_130_saying_what_was_kept_and_resume_finishes(
    world: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    from elcl.continual import runner as runner_mod

    cfg = write_cfg(world, tmp_path, tasks=["ncbi_disease", "bc5cdr_disease"])
    original = runner_mod._train
    calls: list[str] = []

    def interrupted(*args, **kw):
        task = train_task(args, kw)
        calls.append(task)
        if task == "bc5cdr_disease":
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(runner_mod, "_train", interrupted)
    code, err = main_exit(["train", "--config", str(cfg)], monkeypatch, capsys)
    run = tmp_path / "runs" / "loud" / "naive-o0-s5"
    assert code == 130
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert lines == [
        f"interrupted: {run} keeps 1 finished step(s) (ncbi_disease), status 'interrupted'; resume with: elcl train --resume {run}"
    ]
    assert state(run)["status"] == "interrupted" and not (run / ".lock").exists()
    monkeypatch.setattr(runner_mod, "_train", original)
    res = runner.invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0, res.output
    assert state(run)["status"] == "done" and calls == ["ncbi_disease", "bc5cdr_disease"]


def test_sigterm_marks_the_run_interrupted_exits_143_and_resume_finishes(
    world: dict, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A kill (or a scheduler's time limit) must not leave a run 'running' with its lock held."""
    import os
    import signal

    from elcl.continual import runner as runner_mod

    cfg = write_cfg(world, tmp_path, tasks=["ncbi_disease", "bc5cdr_disease"])
    original = runner_mod._train

    def killed(*args, **kw):
        if train_task(args, kw) == "bc5cdr_disease":
            os.kill(os.getpid(), signal.SIGTERM)  # delivered here, in the main thread
        return original(*args, **kw)

    previous = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(runner_mod, "_train", killed)
    try:
        code, err = main_exit(["train", "--config", str(cfg)], monkeypatch, capsys)
    finally:
        signal.signal(signal.SIGTERM, previous)
    run = tmp_path / "runs" / "loud" / "naive-o0-s5"
    assert code == 143, err
    assert f"interrupted: {run} keeps 1 finished step(s) (ncbi_disease)" in err
    assert state(run)["status"] == "interrupted" and not (run / ".lock").exists()
    monkeypatch.setattr(runner_mod, "_train", original)
    res = runner.invoke(app, ["train", "--resume", str(run)])
    assert res.exit_code == 0, res.output
    assert state(run)["status"] == "done"


def test_ctrl_c_in_a_data_command_exits_130(world: dict, monkeypatch, capsys) -> None:
    from elcl.candidates.tfidf import TfidfCandidateGenerator

    def stop(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(TfidfCandidateGenerator, "fit", stop)
    code, err = main_exit(
        ["data", "candidates", "ncbi_disease", "--ontology", "mentions", "--data-dir", str(world["data"])],
        monkeypatch,
        capsys,
    )
    assert code == 130 and "interrupted: every file already written is complete" in err


# 5. truncated and empty corpora --------------------------------------------------------


def _corrupt_copy(world: dict, tmp_path: Path, edit) -> Path:
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    edit(data / "ncbi_disease")
    clear_cache()
    return write_cfg(world, tmp_path, data__data_dir=str(data))


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        # cut mid-abstract: the last line has no newline
        (
            lambda d: (d / "NCBIdevelopset_corpus.txt").write_text(
                (d / "NCBIdevelopset_corpus.txt").read_text()[:-150].rstrip("\n")
            ),
            "NCBIdevelopset_corpus.txt:",
        ),
        # cut inside the last id, then a newline added by an editor: the id is too short
        (
            lambda d: (d / "NCBIdevelopset_corpus.txt").write_text(
                (d / "NCBIdevelopset_corpus.txt").read_text().rstrip("\n")[:-4] + "\n"
            ),
            "has the wrong number of digits",
        ),
        (lambda d: (d / "NCBItestset_corpus.txt").write_text(""), "the test split has no documents"),
    ],
    ids=["cut-mid-line", "cut-inside-id", "empty-split"],
)
def test_truncated_or_empty_corpus_fails_before_training(world: dict, tmp_path: Path, edit, needle: str) -> None:
    cfg = _corrupt_copy(world, tmp_path, edit)
    res = runner.invoke(app, ["train", "--config", str(cfg)])
    assert isinstance(res.exception, CorpusFormatError) and needle in str(res.exception), res.output
    assert "\n" not in str(res.exception)
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written
    clear_cache()


def test_cut_mid_line_names_the_file_and_line(world: dict, tmp_path: Path) -> None:
    text = (world["data"] / "ncbi_disease" / "NCBIdevelopset_corpus.txt").read_text()
    cut = text[: len(text) // 2]
    cut = cut if not cut.endswith("\n") else cut[:-1]
    cfg = _corrupt_copy(world, tmp_path, lambda d: (d / "NCBIdevelopset_corpus.txt").write_text(cut))
    res = runner.invoke(app, ["data", "stats", "ncbi_disease", "--data-dir", str(tmp_path / "data")])
    assert cfg.is_file()
    line = cut.count("\n") + 1
    assert isinstance(res.exception, CorpusFormatError)
    assert str(res.exception).startswith(f"{tmp_path / 'data' / 'ncbi_disease' / 'NCBIdevelopset_corpus.txt'}:{line}: ")
    assert "truncated" in str(res.exception)
    clear_cache()


# 6. everything else --------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"not gzip at all\n", "cut"], ids=["fake-gz", "truncated-gz"])
def test_bad_gz_ontology_is_one_line(world: dict, tmp_path: Path, content) -> None:
    data = tmp_path / "data"
    shutil.copytree(world["data"], data)
    onto = data / "ontologies" / "CTD_diseases.tsv.gz"
    onto.parent.mkdir()
    if content == "cut":
        full = gzip.compress(b"".join(b"Disease %d\tMESH:D%06d\t\t\t\t\t\t\t\n" % (i, i) for i in range(2000)))
        content = full[: len(full) // 2]
    onto.write_bytes(content)
    clear_cache()
    res = runner.invoke(app, ["data", "candidates", "ncbi_disease", "--data-dir", str(data)])
    assert isinstance(res.exception, CorpusFormatError), res.output
    assert str(res.exception).startswith(str(onto)) and "truncated or not a gzip file" in str(res.exception)
    clear_cache()


def test_yaml_bomb_is_refused_fast_with_a_short_message(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        levels.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels[:-1]) + "\nname: " + levels[-1].split(": ", 1)[1] + "\n")
    res = runner.invoke(app, ["train", "--config", str(bomb)])
    assert isinstance(res.exception, ConfigError) and "YAML aliases" in str(res.exception)
    assert len(str(res.exception)) < 300


def test_huge_value_is_not_echoed_back(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("name: [" + ",".join(["x"] * 5000) + "]\n")
    res = runner.invoke(app, ["train", "--config", str(p)])
    assert isinstance(res.exception, ConfigError) and "config key 'name'" in str(res.exception)
    assert len(str(res.exception)) < 300


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("tasks=[ncbi_disease, ncbi_disease]", "'ncbi_disease' is listed twice"),
        ("orders=[[ncbi_disease, bc5cdr_disease, ncbi_disease]]", "order 0: task 'ncbi_disease' is listed twice"),
        ("seeds=[]", "config key 'seeds'"),
        ("orders=[[]]", "order 0 is empty"),
        ("orders=[]", "at least one task order"),
        ("tasks=[ncbi_disease, no_such_task]", "unknown task 'no_such_task'"),
        ("name=../../x", "config key 'name'"),
        ("name=/abs", "plain directory name"),
    ],
)
def test_whole_config_is_validated_before_anything_is_trained(
    world: dict, tmp_path: Path, override: str, needle: str
) -> None:
    cfg = write_cfg(world, tmp_path)
    res = runner.invoke(app, ["train", "--config", str(cfg), "--set", override])
    assert isinstance(res.exception, ConfigError) and needle in str(res.exception), res.output
    assert "\n" not in str(res.exception)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "x").exists()


def test_unwritable_output_and_cache_directories_are_one_line(world: dict, tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    res = runner.invoke(app, ["train", "--config", str(world["config"]), "--output-dir", str(blocker / "runs")])
    assert isinstance(res.exception, RunLockedError) and "cannot write the run directory" in str(res.exception)
    monkeypatch.setenv("ELCL_CACHE_DIR", str(blocker / "cache"))
    code, err = main_exit(
        ["data", "candidates", "ncbi_disease", "--ontology", "mentions", "--data-dir", str(world["data"])],
        monkeypatch,
        capsys,
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert (
        code == 2
        and len(lines) == 1
        and "cannot write the candidate cache" in lines[0]
        and "ELCL_CACHE_DIR" in lines[0]
    )


def test_killed_writes_leave_no_temp_files_and_files_follow_the_umask(world: dict, tmp_path: Path) -> None:
    run = world["run"]
    for name in ("run.json", "metrics.jsonl", "config.yaml"):
        assert (run / name).stat().st_mode & 0o777 == 0o644, name  # written under umask 022
    assert (run / "steps" / "0_ncbi_disease" / "model.safetensors").stat().st_mode & 0o777 == 0o644
    copy = copy_run(world, tmp_path)
    st = state(copy)
    st.update(status="interrupted")
    (copy / "run.json").write_text(json.dumps(st))
    leftover = copy / "steps" / "0_ncbi_disease" / f"{TEMP_PREFIX}model.safetensors.abc.safetensors"
    leftover.write_bytes(b"x" * 1000)
    res = runner.invoke(app, ["train", "--resume", str(copy)])
    assert res.exit_code == 0, res.output
    assert not leftover.exists()


# 7. bfloat16 follows the hardware ------------------------------------------------------


def test_auto_dtypes_choose_bfloat16_only_where_native(monkeypatch) -> None:
    from elcl.config import config_from_dict
    from elcl.continual.runner import penalty_matmul_dtype
    from elcl.hardware import cpu_info, resolve_amp

    bf16 = config_from_dict({"train": {"amp": "bf16"}, "method": {"name": "kfac"}})
    auto = config_from_dict({"train": {"amp": "auto"}, "method": {"name": "kfac"}})
    for k, v in AVX2_ONLY.items():
        monkeypatch.setenv(k, v)
    assert cpu_info().capability == "AVX2" and not cpu_info().native_bf16
    assert resolve_amp("auto", "cpu") == "none"
    assert penalty_matmul_dtype(bf16, "cpu") is None and penalty_matmul_dtype(auto, "cpu") is None
    for k, v in AVX512_BF16.items():
        monkeypatch.setenv(k, v)
    assert resolve_amp("auto", "cpu") == "bf16"
    assert penalty_matmul_dtype(bf16, "cpu") == torch.bfloat16 and penalty_matmul_dtype(auto, "cpu") == torch.bfloat16


def test_explicit_bf16_on_an_emulating_cpu_warns_once(world: dict, tmp_path: Path, monkeypatch) -> None:
    for k, v in AVX2_ONLY.items():
        monkeypatch.setenv(k, v)
    cfg = write_cfg(world, tmp_path)
    res = runner.invoke(app, ["train", "--config", str(cfg), "--set", "train.amp=bf16"])
    assert res.exit_code == 0, res.output
    warnings = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1
    assert (
        "train.amp: bf16" in warnings[0]
        and "AVX2" in warnings[0]
        and "slower" in warnings[0]
        and "train.amp: none" in warnings[0]
    )
    for k, v in AVX512_BF16.items():
        monkeypatch.setenv(k, v)
    again = runner.invoke(
        app, ["train", "--config", str(cfg), "--set", "train.amp=bf16", "--output-dir", str(tmp_path / "native")]
    )
    assert again.exit_code == 0 and "warning:" not in again.stderr


def test_console_exit_code_is_2_for_a_diverged_run(world: dict, tmp_path: Path) -> None:
    cfg = write_cfg(world, tmp_path)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "elcl", "train", "--config", str(cfg), "--set", "train.lr=1e30"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "non-finite" in errors[0]
