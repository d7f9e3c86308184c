"""Sequential runs end to end on a synthetic corpus pair with a tiny local BERT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spies import train_task
from synthetic import write_synthetic_corpora
from tiny_models import tiny_config, write_tiny_bert

from elcl.config import config_from_dict
from elcl.continual import runner as runner_mod
from elcl.continual.guard import OldDataAccessError, TrainDataGuard
from elcl.continual.methods import ReplayMemory, discriminative_groups, get
from elcl.continual.rundir import read_jsonl
from elcl.continual.runner import expand_runs, run_experiment
from elcl.runtime import Runtime

ORDER = ["ncbi_disease", "bc5cdr_chemical"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cont")
    return write_synthetic_corpora(root / "data"), write_tiny_bert(root / "tinybert")


def make_cfg(setup, tmp_path: Path, method: str, **extra) -> object:
    raw = tiny_config(
        tmp_path,
        "t",
        ORDER,
        3,
        inputs=setup,
        method={"name": method, **({"lambda": 10.0} if get(method).penalised() else {})},
        curvature={"max_examples": 16, "batch_size": 8},
        **extra,
    )
    return config_from_dict(raw)


CPU = Runtime(torch.device("cpu"))


@pytest.mark.parametrize("method", ["naive", "kfac", "ewc", "online_ewc", "replay", "lr_control", "single", "joint"])
def test_every_method_runs_and_writes_its_run_directory(setup, tmp_path: Path, method: str) -> None:
    cfg = make_cfg(setup, tmp_path, method)
    (path,) = run_experiment(cfg, CPU)
    state = json.loads((path / "run.json").read_text())
    assert state["status"] == "done" and state["order"] == ORDER
    rows = read_jsonl(path / "metrics.jsonl")
    steps = 1 if method == "joint" else 2
    assert {r["step"] for r in rows} == set(range(steps))
    # After every step the model is evaluated on every task, dev and test.
    assert len(rows) == steps * len(ORDER) * 2
    assert all(0.0 <= r["acc1"] <= r["acc5"] <= 1.0 for r in rows)
    has_curv = method in ("kfac", "ewc", "online_ewc")
    for task in ORDER:
        assert (path / "curvature" / task / "factors.safetensors").is_file() == has_curv
    trained = "joint" if method == "joint" else ORDER[-1]
    preds = read_jsonl(path / "predictions" / f"{steps - 1}_{trained}" / f"{ORDER[0]}.test.jsonl")
    assert preds and {"doc_id", "start", "end", "mention", "gold", "predicted"} <= set(preds[0])


def test_lambda_grid_seeds_and_orders_expand() -> None:
    cfg = config_from_dict(
        {
            "method": {"name": "kfac", "lambda_grid": [1, 10]},
            "seeds": [1, 2],
            "orders": [["ncbi_disease", "bc5cdr_disease"], ["bc5cdr_disease", "ncbi_disease"]],
        }
    )
    runs = expand_runs(cfg)
    assert len(runs) == 8
    assert len({spec.dirname for spec, _ in runs}) == 8
    assert all(c.seeds == [s.seed] and c.method.settings.lambda_ == s.lam and c.tasks == list(s.order) for s, c in runs)
    naive = expand_runs(config_from_dict({"method": {"name": "naive", "kfac": {"lambda_grid": [1, 10]}}}))
    assert len(naive) == 1 and naive[0][0].lam is None


def test_guard_refuses_old_training_data() -> None:
    guard = TrainDataGuard(lambda t: [t], "kfac")
    guard.begin("a")
    assert guard.train_examples("a") == ["a"]
    guard.begin("b")
    with pytest.raises(OldDataAccessError, match="may not read training data of task 'a'"):
        guard.train_examples("a")
    joint = TrainDataGuard(lambda t: [t], "joint")
    joint.begin("joint")
    assert joint.train_examples("a") == ["a"]


@pytest.mark.parametrize("method", ["naive", "kfac", "replay"])
def test_runner_reads_only_the_current_tasks_training_data(setup, tmp_path: Path, method: str, monkeypatch) -> None:
    seen: list[tuple[str | None, str]] = []
    original = TrainDataGuard.train_examples

    def spy(self, task):
        seen.append((self.current, task))
        return original(self, task)

    monkeypatch.setattr(TrainDataGuard, "train_examples", spy)
    run_experiment(make_cfg(setup, tmp_path, method), CPU)
    assert seen and all(current == task for current, task in seen)
    assert {t for _, t in seen} == set(ORDER)


def _reachable(obj, seen=None):
    """Every object reachable from ``obj`` through dataclass fields and containers."""
    import dataclasses

    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        children = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    else:
        children = []
    for child in children:
        yield from _reachable(child, seen)


def test_evaluation_tasks_carry_no_training_data(setup, tmp_path: Path) -> None:
    from elcl.data.corpora import load_corpus
    from elcl.data.types import Corpus, Document, Mention
    from elcl.training.tasks import EvalTask, TrainSplit, load_train_split, prepare_eval_task

    cfg = make_cfg(setup, tmp_path, "kfac")
    for task in ORDER:
        train_docs = {d.doc_id for d in load_corpus(task, setup[0]).splits["train"]}
        ev = prepare_eval_task(task, cfg)
        assert isinstance(ev, EvalTask) and set(ev.examples) == {"dev", "test"} and all(ev.examples.values())
        reached = list(_reachable(ev))
        assert not [o for o in reached if isinstance(o, (Corpus, Document, TrainSplit))]
        mentions = [o for o in reached if isinstance(o, Mention)]
        assert mentions and not [m for m in mentions if m.doc_id in train_docs]
        # The same task's training split is non-empty, so the check above could fail.
        assert all(e.mention.doc_id in train_docs for e in load_train_split(task, cfg))


def test_training_on_train_and_dev_leaves_dev_out_of_evaluation(setup, tmp_path: Path) -> None:
    """BioSyn's protocol: retrain on train + dev, score on test only; dev is refused as a score."""
    from elcl.data.corpora import load_corpus
    from elcl.errors import ConfigError
    from elcl.training.tasks import load_train_split

    task = ORDER[0]
    splits = load_corpus(task, setup[0]).splits
    cfg = make_cfg(setup, tmp_path, "naive", data={"train_splits": ["train", "dev"]}, train={"eval_splits": ["test"]})
    trained_on = {e.mention.doc_id for e in load_train_split(task, cfg)}
    assert trained_on == {d.doc_id for s in ("train", "dev") for d in splits[s] if d.mentions}
    assert {e.mention.doc_id for e in load_train_split(task, make_cfg(setup, tmp_path, "naive"))} < trained_on
    (path,) = run_experiment(cfg.model_copy(update={"tasks": [task]}), CPU)
    rows = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines()]
    assert rows and {r["split"] for r in rows} == {"test"}
    from typer.testing import CliRunner

    from elcl.cli.app import app

    res = CliRunner().invoke(app, ["evaluate", str(path), "--out", str(tmp_path / "report")])
    assert res.exit_code == 0, res.output
    assert "test" in (tmp_path / "report" / "report.md").read_text()
    with pytest.raises(ConfigError, match="train.eval_splits"):
        make_cfg(setup, tmp_path, "naive", data={"train_splits": ["train", "dev"]})


def test_only_the_guard_loads_training_splits() -> None:
    import elcl

    root = Path(elcl.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "load_train_split" in p.read_text())
    assert users == ["continual/guard.py", "training/tasks.py"]


def test_guard_keeps_only_what_may_still_be_read() -> None:
    loads: list[str] = []
    guard = TrainDataGuard(lambda t: loads.append(t) or [t], "kfac")
    guard.begin("a")
    guard.train_examples("a")
    guard.train_examples("a")
    assert loads == ["a"]  # loaded once while current
    guard.begin("b")
    assert "a" not in guard._loaded


def test_replay_memory_is_bounded_and_shared() -> None:
    mem = ReplayMemory(10, seed=0)
    mem.add_task("a", list(range(100)))
    assert len(mem) == 10
    mem.add_task("b", list(range(100, 200)))
    assert len(mem) == 10 and len(mem.per_task["a"]) == 5


def test_discriminative_groups_decay_with_depth(setup) -> None:
    from elcl.config import ModelConfig
    from elcl.models.linker import Linker

    model = Linker(ModelConfig(name=str(setup[1])))
    groups = discriminative_groups(model, 1.0, 0.5)
    lrs = sorted({g["lr"] for g in groups}, reverse=True)
    assert lrs == [1.0, 0.5, 0.25]  # top layer, layer below, embeddings
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_resume_after_crash_redoes_only_unfinished_steps(setup, tmp_path: Path, monkeypatch) -> None:
    cfg = make_cfg(setup, tmp_path, "kfac")
    trained: list[str] = []
    original_train = runner_mod._train

    def counting_train(*args, **kw):
        task = train_task(args, kw)
        trained.append(task)
        if task == ORDER[1] and len(trained) == 2:
            raise KeyboardInterrupt("simulated crash")
        return original_train(*args, **kw)

    monkeypatch.setattr(runner_mod, "_train", counting_train)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(cfg, CPU)
    (run_dir,) = [p for p in (tmp_path / "runs" / "t").iterdir()]
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "interrupted" and state["steps_done"] == 1
    assert not (run_dir / ".lock").exists()  # released on the way out
    first_ckpt = (run_dir / "steps" / f"0_{ORDER[0]}" / "model.safetensors").stat().st_mtime_ns
    first_curv = (run_dir / "curvature" / ORDER[0] / "factors.safetensors").stat().st_mtime_ns

    run_experiment(cfg, CPU, resume=True)
    assert trained == [ORDER[0], ORDER[1], ORDER[1]]
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "done" and state["steps_done"] == 2
    # Each start leaves where it computed, from the step it began at.
    envs = state["environments"]
    assert [e["from_step"] for e in envs] == [0, 1]
    assert {e["device"] for e in envs} == {"cpu"} and all(e["torch"] == torch.__version__ for e in envs)
    log = (run_dir / "log.txt").read_text()
    assert "environment from step 0: elcl " in log and "environment from step 1: elcl " in log
    assert (run_dir / "steps" / f"0_{ORDER[0]}" / "model.safetensors").stat().st_mtime_ns == first_ckpt
    assert (run_dir / "curvature" / ORDER[0] / "factors.safetensors").stat().st_mtime_ns == first_curv
    rows = read_jsonl(run_dir / "metrics.jsonl")
    keys = [(r["step"], r["eval_task"], r["split"]) for r in rows]
    assert len(keys) == len(set(keys)) == 8
    # A finished run is skipped on resume and refused without it.
    run_experiment(cfg, CPU, resume=True)
    assert trained == [ORDER[0], ORDER[1], ORDER[1]]
    from elcl.errors import ElclError

    with pytest.raises(ElclError, match="already there"):
        run_experiment(cfg, CPU)


def test_first_task_is_adopted_from_an_identical_sibling(setup, tmp_path: Path) -> None:
    naive = make_cfg(setup, tmp_path, "naive")
    (first,) = run_experiment(naive, CPU)
    kfac = make_cfg(setup, tmp_path, "kfac")
    (second,) = run_experiment(kfac, CPU)
    assert "adopted from naive-o0-s3" in (second / "log.txt").read_text()
    step0 = lambda p: [r for r in read_jsonl(p / "metrics.jsonl") if r["step"] == 0]  # noqa: E731
    assert step0(second) == step0(first)
    assert (second / "curvature" / ORDER[0] / "meta.json").is_file()
    # Training it again gives the same step (CPU runs are deterministic): adoption changes nothing.
    alone = make_cfg(setup, tmp_path / "alone", "kfac", train={"share_first_task": False})
    (third,) = run_experiment(alone, CPU)
    assert "adopted" not in (third / "log.txt").read_text()
    assert read_jsonl(third / "metrics.jsonl") == read_jsonl(second / "metrics.jsonl")
    # A different training setting is never adopted.
    other = make_cfg(setup, tmp_path, "ewc", train={"lr": 5e-4})
    (fourth,) = run_experiment(other, CPU)
    assert "adopted" not in (fourth / "log.txt").read_text()


def test_a_sibling_written_before_a_setting_existed_is_still_adopted(setup, tmp_path: Path) -> None:
    import yaml

    (first,) = run_experiment(make_cfg(setup, tmp_path, "naive"), CPU)
    # as an older elcl wrote it: no train.freeze_embeddings key (its default, false, applied)
    cfg_file = first / "config.yaml"
    raw = yaml.safe_load(cfg_file.read_text())
    assert raw["train"].pop("freeze_embeddings") is False
    cfg_file.write_text(yaml.safe_dump(raw))
    (second,) = run_experiment(make_cfg(setup, tmp_path, "kfac"), CPU)
    assert "adopted from naive-o0-s3" in (second / "log.txt").read_text()
    # a setting that does change the first step still keeps them apart
    (third,) = run_experiment(make_cfg(setup, tmp_path, "ewc", train={"freeze_embeddings": True}), CPU)
    assert "adopted" not in (third / "log.txt").read_text()


@pytest.mark.parametrize("method", ["naive", "lr_control", "single"])
def test_later_tasks_get_their_own_lr_and_epochs(setup, tmp_path: Path, method: str, monkeypatch) -> None:
    """train.later_lr_scale / later_epochs apply from the second task of the order on, before
    the method's own scaling (lr_control's lr_scale), and to single's later models too."""
    seen: list[tuple[str, float, float]] = []
    real = runner_mod.train_steps

    def spy(model, examples, cache, cfg, **kw):
        seen.append((kw["desc"], cfg.lr, cfg.epochs))
        return real(model, examples, cache, cfg, **kw)

    monkeypatch.setattr(runner_mod, "train_steps", spy)
    cfg = make_cfg(setup, tmp_path, method, train={"later_lr_scale": 3.0, "later_epochs": 2})
    if method == "lr_control":
        cfg.method.settings.lr_scale = 0.5
    run_experiment(cfg, CPU)
    later = 1e-3 * 3.0 * (0.5 if method == "lr_control" else 1.0)
    assert seen == [
        ("train ncbi_disease", pytest.approx(1e-3), 1),
        ("train bc5cdr_chemical", pytest.approx(later), 2),
    ]
