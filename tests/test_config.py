"""Config validation: unknown keys and bad values are one-line errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from elcl.config import apply_overrides, config_from_dict, load_config
from elcl.errors import ConfigError


def test_defaults_and_lambda_grid() -> None:
    cfg = config_from_dict({"method": {"name": "kfac", "lambda_grid": [1, 10]}})
    assert cfg.lambdas() == [1.0, 10.0]
    assert cfg.task_orders() == [["ncbi_disease"]]


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"method": {"lamda": 1}}, "config key 'method.lamda': unknown key; allowed keys here:"),
        ({"model": {"type": "rnn"}}, "config key 'model.type': invalid value 'rnn'"),
        ({"train": {"epochs": -1}}, "config key 'train.epochs'"),
        ({"method": {"lambda": [-1]}}, "config key 'method.lambda'"),
        ({"candidates": {"ngram_min": 3, "ngram_max": 2}}, "ngram_max"),
        ({"bogus": 1}, "config key 'bogus': unknown key"),
        (
            {"method": {"name": "kfac", "penalty_dtype": "fp8"}},
            "config key 'method.penalty_dtype': invalid value 'fp8'",
        ),
    ],
)
def test_bad_config_is_one_line_error(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(raw, "x.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("x.yaml: ")
    assert needle in msg


def test_overrides_are_yaml_values(tmp_path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("method: {name: ewc}\ntrain: {epochs: 1}\n")
    cfg = load_config(p, ["train.epochs=2.5", "method.lambda_grid=[1, 100]", "model.cnn.blocks=3"])
    assert cfg.train.epochs == 2.5 and cfg.lambdas() == [1.0, 100.0] and cfg.model.cnn.blocks == 3


def test_override_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="expected KEY.SUB=VALUE"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"train": 3}, ["train.epochs=1"])


def test_missing_and_malformed_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: not a valid YAML file"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_shipped_configs_validate() -> None:
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


@pytest.mark.parametrize(
    ("variant", "differences"),
    [
        (
            "reproduce_cpu_confirm",
            {"train.max_eval_mentions": (400, 1000), "train.eval_splits": (["dev", "test"], ["test"])},
        ),
        ("reproduce_cpu_context", {"model.context_window": (0, 16), "model.max_length": (16, 64)}),
        ("quick", {"train.max_train_mentions": (500, 300), "train.max_eval_mentions": (400, 300)}),
    ],
)
def test_benchmark_variants_differ_from_reproduce_cpu_only_where_they_say(variant, differences) -> None:
    """The confirmatory, context and quick configs extend reproduce_cpu.yaml and must stay variants
    of it: a setting one of them overrides beyond what it says would make them different
    experiments silently, and the confirm run's fixed λ was chosen under reproduce_cpu's."""
    from pathlib import Path

    from elcl.evaluation.comparable import defining_config

    root = Path(__file__).resolve().parents[1] / "configs"
    base = defining_config(load_config(root / "reproduce_cpu.yaml").to_dict())
    other = defining_config(load_config(root / f"{variant}.yaml").to_dict())
    assert {
        k: (base.get(k), other.get(k)) for k in base.keys() | other.keys() if base.get(k) != other.get(k)
    } == differences


@pytest.mark.parametrize(
    ("amp", "choice", "native", "expected"),
    [
        ("bf16", "auto", True, "bfloat16"),
        ("bf16", "auto", False, None),
        ("none", "auto", True, None),
        ("fp16", "auto", True, None),
        ("none", "bfloat16", False, "bfloat16"),
        ("bf16", "float32", True, None),
    ],
)
def test_penalty_dtype_follows_amp_unless_set(monkeypatch, amp: str, choice: str, native: bool, expected) -> None:
    """``auto`` takes bfloat16 products only under bf16 training on a CPU/GPU that computes
    bfloat16 natively (emulated bf16 is many times slower); the CPU is stubbed so the
    test means the same on an AVX2-only machine as on one with AVX512-BF16."""
    import torch

    import elcl.hardware
    from elcl.continual.methods.kfac import penalty_matmul_dtype

    monkeypatch.setattr(elcl.hardware, "bf16_native", lambda device=None: native)
    cfg = config_from_dict({"train": {"amp": amp}, "method": {"name": "kfac", "penalty_dtype": choice}})
    assert penalty_matmul_dtype(cfg) == (getattr(torch, expected) if expected else None)


def test_runs_from_before_the_abbreviations_key_read_as_schwartz_hearst() -> None:
    """A run made before candidates.abbreviations existed resumes, links and compares as made."""
    from pathlib import Path

    import yaml

    from elcl.config import upgrade_run_config
    from elcl.evaluation.comparable import defining_config

    root = Path(__file__).resolve().parent.parent
    committed = yaml.safe_load((root / "results/reproduce_cpu/runs/naive-o0-s13/config.yaml").read_text())
    assert "abbreviations" not in committed["candidates"]
    assert config_from_dict(upgrade_run_config(committed)).candidates.abbreviations == "schwartz_hearst"
    shipped = load_config(root / "configs/reproduce_cpu.yaml")
    # the benchmark config pins the rule its committed runs used, so they stay one comparable group
    assert defining_config(shipped.to_dict()) == defining_config(committed)
    raw = shipped.to_dict()
    raw["candidates"].pop("abbreviations")
    today = config_from_dict(raw)
    assert today.candidates.abbreviations == "initials"
    assert (
        defining_config(today.to_dict())["candidates.abbreviations"]
        != defining_config(committed)["candidates.abbreviations"]
    )


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_a_config_extends_another_and_overrides_only_what_it_states(tmp_path) -> None:
    """Sections merge key by key, lists and values replace, null restores the default, and
    --set applies to the merged result; a base in another folder is found relative to the file."""
    (tmp_path / "base").mkdir()
    _write(
        tmp_path / "base" / "bench.yaml",
        "name: bench\nseeds: [1, 2, 3]\ntrain: {epochs: 3, lr: 0.001, max_eval_mentions: 400}\n"
        "method: {name: kfac, kfac: {lambda_grid: [10, 100]}, replay: {replay_size: 50}}\n",
    )
    variant = _write(
        tmp_path / "variant.yaml",
        "extends: base/bench.yaml\nname: variant\nseeds: [7]\ntrain: {max_eval_mentions: 900}\n"
        "method: {kfac: {lambda: 5, lambda_grid: null}}\n",
    )
    cfg = load_config(variant, ["train.lr=0.01"])
    assert cfg.name == "variant"
    assert cfg.seeds == [7]
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.max_eval_mentions) == (3, 0.01, 900)
    assert cfg.lambdas() == [5.0]
    replay = load_config(variant, ["method.name=replay"])
    assert replay.to_dict()["method"]["replay"]["replay_size"] == 50
    chained = _write(tmp_path / "chained.yaml", "extends: variant.yaml\nname: chained\ntrain: {epochs: 1}\n")
    cfg = load_config(chained)
    assert (cfg.train.epochs, cfg.train.max_eval_mentions, cfg.seeds) == (1, 900, [7])
    # a one-line variant named on the command line
    bare = _write(tmp_path / "bare.yaml", "extends: variant.yaml\n")
    assert load_config(bare, ["name=other"]).name == "other"


@pytest.mark.parametrize(
    ("base_text", "variant_text", "needle"),
    [
        ("name: b\n", "extends: [b.yaml]\nname: v\n", "v.yaml: config key 'extends': expected the path"),
        ("name: b\n", "extends: missing.yaml\nname: v\n", "v.yaml: config key 'extends': 'missing.yaml' not found"),
        ("name: b\n", "extends: b.yaml\n", "v.yaml: config key 'name': a config that extends 'b.yaml' must name"),
        ("train: {epochs: 2}\n", "extends: b.yaml\n", "v.yaml: config key 'name': a config that extends"),
        ("name: b\n", "extends: b.yaml\nname: b\n", "must name its own experiment"),
        ("extends: v.yaml\nname: b\n", "extends: b.yaml\nname: v\n", "extend each other in a cycle"),
        (
            "name: b\ntrain: {epohcs: 2}\n",
            "extends: b.yaml\nname: v\n",
            "b.yaml: config key 'train.epohcs': unknown key",
        ),
        ("name: b\n", "extends: b.yaml\nname: v\ntrain: {lr: -1}\n", "v.yaml: config key 'train.lr'"),
    ],
)
def test_a_bad_extends_is_one_line_naming_the_file_at_fault(tmp_path, base_text, variant_text, needle) -> None:
    _write(tmp_path / "b.yaml", base_text)
    variant = _write(tmp_path / "v.yaml", variant_text)
    with pytest.raises(ConfigError) as err:
        load_config(variant)
    msg = str(err.value)
    assert "\n" not in msg
    assert needle in msg


def test_quick_uses_each_penalty_s_dev_chosen_lambda_and_says_where_it_came_from() -> None:
    """make quick runs each penalty at the λ the benchmark's dev selection chose for it in
    every order (results/reproduce_cpu/report), and its config names that source."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    chosen: dict[str, set[float]] = {}
    for line in (root / "results/reproduce_cpu/report/report.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 7 and cells[0] in ("ewc", "kfac") and cells[-1] == "yes":
            chosen.setdefault(cells[0], set()).add(float(cells[2]))
    assert chosen == {"ewc": {100000.0}, "kfac": {10000.0}}
    for method, (lam,) in chosen.items():
        settings = load_config(root / "configs/quick.yaml", [f"method.name={method}"]).method.settings
        assert settings.lambda_ == lam
        assert "results/reproduce_cpu/report" in (settings.lambda_source or "")


def _penalty_config(tmp_path: Path) -> Path:
    base = tmp_path / "base.yaml"
    base.write_text(
        "name: base\ntasks: [ncbi_disease]\nmethod:\n  name: ewc\n  ewc:\n    lambda: 100000\n"
        "    lambda_source: dev-selected in the benchmark\n  kfac:\n    lambda: 10000\n"
        "    lambda_source: dev-selected in the benchmark\n",
        encoding="utf-8",
    )
    return base


def test_a_lambda_set_on_the_command_line_drops_the_source_of_the_lambda_it_replaces(tmp_path) -> None:
    """lambda_source names where one λ came from; carried over to a λ given with --set it would be printed beside that
    λ in every report as its provenance, falsely. The other method's note, and a note given with the λ, stay."""
    base = _penalty_config(tmp_path)
    kept = load_config(base).method
    assert kept.ewc.lambda_source == kept.kfac.lambda_source == "dev-selected in the benchmark"
    changed = load_config(base, ["method.ewc.lambda=10000"]).method
    assert changed.ewc.lambda_ == 10000 and changed.ewc.lambda_source is None
    assert changed.kfac.lambda_source == "dev-selected in the benchmark"
    told = load_config(base, ["method.ewc.lambda=10000", "method.ewc.lambda_source=K-FAC's dev choice"]).method.ewc
    assert told.lambda_source == "K-FAC's dev choice"
    # an override of another key of the section keeps the note
    assert load_config(base, ["method.ewc.fast_grad=false"]).method.ewc.lambda_source == "dev-selected in the benchmark"


def test_a_variant_that_changes_a_lambda_drops_the_base_s_source_of_it(tmp_path) -> None:
    variant = tmp_path / "variant.yaml"
    variant.write_text(
        f"extends: {_penalty_config(tmp_path).name}\nname: variant\nmethod:\n  kfac:\n    lambda: 100000\n",
        encoding="utf-8",
    )
    m = load_config(variant).method
    assert m.kfac.lambda_ == 100000 and m.kfac.lambda_source is None
    assert m.ewc.lambda_source == "dev-selected in the benchmark"
