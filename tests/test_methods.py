"""The method registry: each method's moments, settings, λ auto and run records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_penalty import DT, fake_stats, make_model, vec_cols

from elcl.config import config_from_dict, load_run_config
from elcl.continual import methods
from elcl.continual.methods import StepContext, get
from elcl.continual.rundir import RunDir, RunSpec
from elcl.continual.runner import expand_runs
from elcl.curvature.penalty import EWCPenalty, KFACPenalty, OnlineEWCPenalty
from elcl.curvature.storage import save_curvature
from elcl.errors import ConfigError, ElclError

ORDER = ("t0", "t1", "t2")


def test_registry_is_the_one_list() -> None:
    from elcl.config import ExperimentConfig
    from elcl.evaluation.runs import METHODS

    assert methods.NAMES == METHODS
    assert set(methods.NAMES) <= set(ExperimentConfig.model_fields["method"].annotation.model_fields)
    assert [m for m in methods.NAMES if get(m).penalised()] == ["ewc", "online_ewc", "kfac", "online_kfac"]
    assert [m for m in methods.NAMES if get(m).reference] == ["joint", "single"]
    assert {m: get(m).curvature for m in methods.NAMES if get(m).curvature != "none"} == {
        "ewc": "diag",
        "online_ewc": "diag",
        "kfac": "kfac",
        "online_kfac": "kfac",
    }
    assert get("joint").step_labels(ORDER) == ["joint"] and get("single").step_labels(ORDER) == list(ORDER)
    with pytest.raises(ElclError, match="unknown method 'si'; known methods: naive"):
        get("si")


def test_report_roles_come_from_the_classes(monkeypatch) -> None:
    assert methods.role("baseline") == "naive"
    assert methods.role("forgetting_reference") == "single"
    # online_kfac extends kfac but does not inherit its place in the headline pair
    assert methods.headline() == ("kfac", "ewc")
    monkeypatch.setattr(get("replay"), "baseline", True)
    with pytest.raises(ElclError, match="exactly one method must be the baseline.*'naive', 'replay'"):
        methods.role("baseline")
    monkeypatch.setattr(get("online_kfac"), "headline", True)
    with pytest.raises(ElclError, match="exactly two methods must be the headline pair"):
        methods.headline()


def _ctx(tmp_path: Path, model, step: int, n_examples: int = 0) -> StepContext:
    return StepContext(
        rd=RunDir(tmp_path),
        order=ORDER,
        step=step,
        task=ORDER[step],
        model=model,
        config_hash="h",
        device=torch.device("cpu"),
        n_examples=n_examples,
    )


def _store(tmp_path: Path, stats) -> None:
    for t, st in zip(ORDER, stats):
        save_curvature(st, RunDir(tmp_path).curvature(t), "h", dtype=DT)


def _stats(model, seeds=(1, 2), n=(40, 10)):
    out = []
    for s, k in zip(seeds, n):
        st = fake_stats(model, s)
        st.meta["n_examples"] = k
        out.append(st)
    return out


def _method(name: str, **settings):
    cls = get(name)
    return cls(cls.Settings(**settings), seed=0)


def test_each_method_builds_its_penalty(tmp_path: Path) -> None:
    model = make_model()
    _store(tmp_path, _stats(model))
    want = {"ewc": EWCPenalty, "online_ewc": OnlineEWCPenalty, "kfac": KFACPenalty}
    for name, cls in want.items():
        assert isinstance(_method(name).penalty(_ctx(tmp_path, model, 2)), cls)
        assert _method(name).penalty(_ctx(tmp_path, model, 0)) is None  # nothing learned before
    for name in ("naive", "lr_control", "replay", "joint", "single"):
        assert _method(name).penalty(_ctx(tmp_path, model, 2)) is None


def _laplace(model, stats, weights, anchors_from=None) -> torch.Tensor:
    """Σ_t w_t/2 · Δθᵀ F_t Δθ with explicit Kronecker products (blocks) and diagonals (rest)."""
    params = dict(model.named_parameters())
    total = torch.zeros((), dtype=DT)
    for st, w in zip(stats, weights):
        anchors = (anchors_from or st).anchors
        covered = set()
        for path, (A, G) in st.kfac.items():
            m = model[path]
            dW = vec_cols(
                m.weight.detach() - anchors[f"{path}.weight"],
                None if m.bias is None else m.bias.detach() - anchors[f"{path}.bias"],
            )
            total += w / 2 * (dW @ torch.kron(A, G) @ dW)
            covered |= {f"{path}.weight", f"{path}.bias"}
        for name, F in st.diag.items():
            if name not in covered:
                total += w / 2 * (F * (params[name].detach() - anchors[name]).square()).sum()
    return total


def _diag_only(st):
    return type(st)(diag=st.diag, anchors=st.anchors, meta=st.meta)


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_lambda_auto_is_the_laplace_quadratic_form(tmp_path: Path, scale: float) -> None:
    """λ_t = scale · N_t / N: the penalty equals Σ_t (λ_t/2) Δθᵀ F_t Δθ computed with
    torch.kron, for EWC, online EWC, K-FAC and online K-FAC."""
    model = make_model()
    stats = _stats(model, n=(40, 10))
    _store(tmp_path, stats)
    N = 25
    lam_t = [scale * 40 / N, scale * 10 / N]
    ctx = _ctx(tmp_path, model, 2, n_examples=N)

    pen = _method("kfac", **{"lambda": "auto", "lambda_scale": scale}).penalty(ctx)
    torch.testing.assert_close(pen.value(model), _laplace(model, stats, lam_t))
    assert ctx.record["lambda_t"] == pytest.approx({"t0": lam_t[0], "t1": lam_t[1]})

    pen = _method("ewc", **{"lambda": "auto", "lambda_scale": scale}).penalty(ctx)
    torch.testing.assert_close(pen.value(model), _laplace(model, [_diag_only(s) for s in stats], lam_t))

    gamma = 0.5
    pen = _method("online_ewc", **{"lambda": "auto", "lambda_scale": scale, "gamma": gamma}).penalty(ctx)
    ref = _laplace(model, [_diag_only(s) for s in stats], [gamma * lam_t[0], lam_t[1]], anchors_from=stats[1])
    torch.testing.assert_close(pen.value(model), ref)

    # online K-FAC: one earlier task is exact
    ok = _method("online_kfac", **{"lambda": "auto", "lambda_scale": scale})
    ok.after_task(_ctx(tmp_path, model, 0), stats[0], guard=None)
    pen = ok.penalty(_ctx(tmp_path, model, 1, n_examples=N))
    torch.testing.assert_close(pen.value(model), _laplace(model, stats[:1], lam_t[:1]))


def test_numeric_lambda_records_one_value_per_task(tmp_path: Path) -> None:
    model = make_model()
    _store(tmp_path, _stats(model))
    ctx = _ctx(tmp_path, model, 2, n_examples=7)
    pen = _method("kfac", **{"lambda": 3.0}).penalty(ctx)
    torch.testing.assert_close(pen.value(model), _laplace(model, _stats(model), [3.0, 3.0]))
    assert ctx.record["lambda_t"] == {"t0": 3.0, "t1": 3.0}


def test_settings_are_validated_per_method() -> None:
    bad = {
        "kfac gamma": ({"name": "kfac", "gamma": 0.9}, "config key 'method.gamma': unknown key"),
        "ewc replay": ({"name": "ewc", "ewc": {"replay_size": 5}}, "config key 'method.ewc.replay_size': unknown key"),
        "grid as lambda": ({"name": "ewc", "lambda": [1, 10]}, "list several under lambda_grid"),
        "both": ({"name": "ewc", "ewc": {"lambda": 1, "lambda_grid": [1]}}, "not both"),
        "scale without auto": ({"name": "ewc", "lambda": 1, "lambda_scale": 2}, "lambda_scale multiplies lambda: auto"),
        "bad auto": ({"name": "kfac", "lambda": "automatic"}, "config key 'method.lambda'"),
        "naive lambda": ({"name": "naive", "lambda": 1}, "config key 'method.lambda': unknown key"),
    }
    for what, (method, needle) in bad.items():
        with pytest.raises(ConfigError) as err:
            config_from_dict({"method": method}, "c.yaml")
        assert needle in str(err.value) and "\n" not in str(err.value), what
    # sections of other methods may sit in the same config (one config, several methods)
    cfg = config_from_dict({"method": {"name": "replay", "replay": {"replay_size": 7}, "online_ewc": {"gamma": 0.5}}})
    assert cfg.method.settings.replay_size == 7 and cfg.method.online_ewc.gamma == 0.5
    assert cfg.to_dict()["method"] == {"name": "replay", "replay": {"replay_size": 7}}


def test_auto_runs_and_their_directory_names() -> None:
    cfg = config_from_dict(
        {"method": {"name": "online_kfac", "online_kfac": {"lambda_grid": [100, "auto"], "lambda_scale": 10}}}
    )
    runs = expand_runs(cfg)
    assert [s.dirname for s, _ in runs] == ["online_kfac-lam100-o0-s13", "online_kfac-lamauto10-o0-s13"]
    numeric, auto = (c.method.settings for _, c in runs)
    assert numeric.lambda_ == 100.0 and numeric.lambda_scale == 1.0 and numeric.lambda_grid is None
    assert auto.lambda_ == "auto" and auto.lambda_scale == 10.0
    assert RunSpec("e", "ewc", "auto", 1, ("a",), 0).dirname == "ewc-lamauto-o0-s1"


OLD_CONFIG = {  # a run's config.yaml as elcl wrote it before per-method sections
    "name": "quick",
    "tasks": ["ncbi_disease", "bc5cdr_disease"],
    "seeds": [13],
    "method": {
        "name": "ewc",
        "lambda": 1000.0,
        "gamma": 1.0,
        "replay_size": 500,
        "lr_scale": 0.5,
        "layer_decay": 0.8,
        "fast_grad": True,
        "penalty_dtype": "auto",
    },
}


def test_old_run_directories_still_load(tmp_path: Path) -> None:
    run = tmp_path / "ewc-lam1000-o0-s13"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump(OLD_CONFIG))
    cfg = load_run_config(run)
    assert cfg.method.name == "ewc" and cfg.method.settings.lambda_ == 1000.0 and cfg.lambdas() == [1000.0]
    naive = {**OLD_CONFIG, "method": {**OLD_CONFIG["method"], "name": "naive", "lambda": [100, 1000]}}
    (run / "config.yaml").write_text(yaml.safe_dump(naive))
    assert load_run_config(run).lambdas() == [None]
    broken = {**OLD_CONFIG, "method": {**OLD_CONFIG["method"], "lambda": "lots"}}
    (run / "config.yaml").write_text(yaml.safe_dump(broken))
    with pytest.raises(ConfigError, match=r"config.yaml: config key 'method.lambda': invalid value 'lots'"):
        load_run_config(run)


def test_run_json_lambda_forms(tmp_path: Path) -> None:
    from elcl.evaluation.runs import load_run

    for lam, want in ((10, 10.0), ("auto", "auto"), ("auto10", "auto10"), (None, None)):
        d = tmp_path / str(lam)
        d.mkdir()
        (d / "run.json").write_text(
            json.dumps(
                {
                    "experiment": "e",
                    "method": "ewc" if lam is not None else "naive",
                    "lambda": lam,
                    "seed": 1,
                    "order": ["a"],
                    "order_index": 0,
                    "status": "done",
                    "steps_done": 1,
                }
            )
        )
        (d / "metrics.jsonl").write_text("")
        assert load_run(d).lam == want
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(
        json.dumps(
            {
                "experiment": "e",
                "method": "ewc",
                "lambda": "autox",
                "seed": 1,
                "order": ["a"],
                "order_index": 0,
                "status": "done",
                "steps_done": 1,
            }
        )
    )
    with pytest.raises(ElclError, match=r"run.json: key 'lambda' = 'autox', expected a non-negative number, 'auto"):
        load_run(bad)


def _run_two_tasks(tmp_path: Path, method: dict, monkeypatch=None, unit_curvature: bool = False):
    """Weights after the second task minus those after the first (the anchor), per parameter."""
    from safetensors.torch import load_file
    from tiny_models import tiny_config

    from elcl.continual import runner
    from elcl.curvature.collect import CurvatureStats
    from elcl.runtime import Runtime

    if unit_curvature:

        def unit(model, examples, cache, cfg, approx, seed, rt):
            named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
            kfac = {
                n: (torch.eye(m.weight.shape[1] + 1), torch.eye(m.weight.shape[0]))
                for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and m.bias is not None
            }
            covered = {f"{n}.{w}" for n in kfac for w in ("weight", "bias")}
            return CurvatureStats(
                kfac=kfac,
                diag={n: torch.ones_like(p) for n, p in named if n not in covered},
                anchors={n: p.detach().clone() for n, p in named},
                meta={"approx": approx, "n_examples": 8},
            )

        monkeypatch.setattr(runner, "compute_curvature", unit)
    order = ["bc5cdr_chemical", "ncbi_disease"]  # a short first task (its Fisher is not saturated), a longer second
    cfg = config_from_dict(
        tiny_config(
            tmp_path,
            "p",
            order,
            3,
            train={"epochs": 3, "batch_size": 2, "share_first_task": False},
            method=method,
            curvature={"max_examples": 16, "batch_size": 8},
        )
    )
    (path,) = runner.run_experiment(cfg, Runtime(torch.device("cpu")))
    before = load_file(str(path / "steps" / f"0_{order[0]}" / "model.safetensors"))
    after = load_file(str(path / "steps" / f"1_{order[1]}" / "model.safetensors"))
    return {k: after[k].double() - before[k].double() for k in before}, path


@pytest.fixture(scope="module")
def naive_delta(tmp_path_factory):
    return _run_two_tasks(tmp_path_factory.mktemp("naive"), {"name": "naive"})[0]


def test_a_huge_lambda_keeps_the_weights_at_the_anchor(tmp_path: Path, monkeypatch, naive_delta) -> None:
    """Unit curvature (every parameter penalised alike) and λ = 1e6: the second task's
    training leaves every weight within a couple of learning-rate steps of the anchor,
    where naive fine-tuning moves them many steps away."""
    naive = naive_delta
    held, _ = _run_two_tasks(tmp_path / "k", {"name": "kfac", "lambda": 1e6}, monkeypatch, unit_curvature=True)
    max_naive = max(float(d.abs().max()) for d in naive.values())
    max_held = max(float(d.abs().max()) for d in held.values())

    def norm(ds) -> float:
        return float(torch.cat([d.flatten() for d in ds.values()]).norm())

    assert max_naive > 5e-3  # 1e-3 learning rate, dozens of steps
    assert max_held < 2.5e-3 and max_held < max_naive / 4, (max_held, max_naive)
    assert norm(held) < norm(naive) / 10, (norm(held), norm(naive))


def test_kfac_weights_stay_closer_to_the_anchor_than_naive(tmp_path: Path, naive_delta) -> None:
    """With the curvature the run itself collects, K-FAC's second-task weights are closer
    to the first task's optimum in that curvature's norm (the quantity it penalises)."""
    from elcl.curvature.penalty import KFACPenalty
    from elcl.curvature.storage import load_curvature

    naive = naive_delta
    kfac, path = _run_two_tasks(tmp_path / "k", {"name": "kfac", "lambda": 1e4})
    stats = load_curvature(path / "curvature" / "bc5cdr_chemical")

    def fisher_norm(delta) -> float:
        model = torch.nn.Module()
        shifted = {n: (stats.anchors[n].double() + delta[n]) for n in stats.anchors}
        for n, v in shifted.items():  # a module tree mirroring the parameter names
            *mods, leaf = n.split(".")
            m = model
            for part in mods:
                if not hasattr(m, part):
                    m.add_module(part, torch.nn.Module())
                m = getattr(m, part)
            m.register_parameter(leaf, torch.nn.Parameter(v))
        return float(KFACPenalty([stats], 2.0).value(model).detach())

    f_naive, f_kfac = fisher_norm(naive), fisher_norm(kfac)
    assert f_naive > 0 and f_kfac < 0.5 * f_naive, (f_kfac, f_naive)


def test_report_lists_auto_runs_beside_the_grid(tmp_path: Path) -> None:
    """Runs with λ auto are their own group (λ 'auto10'), compared beside the grid's dev-chosen
    λ rather than chosen over it (the rule replaces the grid), and stay off the numeric λ axis
    of the accuracy-vs-λ plot."""
    from test_report import SINGLE, seq, write_run

    from elcl.evaluation import render
    from elcl.evaluation.report import build_report, write_report

    exp = tmp_path / "exp"
    for s in (0, 1):
        sA, sB, sC = SINGLE[s]
        write_run(exp, f"single_s{s}", "single", None, s, [[sA, 0.1, 0.1], [0.1, sB, 0.1], [0.1, 0.1, sC]])
        write_run(exp, f"naive_s{s}", "naive", None, s, seq(s, sA - 0.40, sB - 0.20))
        write_run(exp, f"ok1_s{s}", "online_kfac", 1.0, s, seq(s, sA - 0.30, sB - 0.15))
        write_run(exp, f"ok10_s{s}", "online_kfac", 10.0, s, seq(s, sA - 0.20, sB - 0.10))
        write_run(exp, f"okauto_s{s}", "online_kfac", "auto10", s, seq(s, sA - 0.08, sB - 0.08), dev_offset=0.05)
    rep = build_report([exp])
    lams = [g.lam for g in rep.groups if g.method == "online_kfac"]
    assert lams == [1.0, 10.0, "auto10"]
    assert next(g for g in rep.groups if g.chosen and g.method == "online_kfac").lam in (1.0, 10.0)
    assert "| online_kfac | auto10 |" in render.main_table_markdown(rep)
    written = {p.name for p in write_report(rep, tmp_path / "out")}
    assert "acc_vs_lambda_online_kfac.png" in written  # from the two numeric λ
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "auto10" in [g["lambda"] for g in summary["groups"]]
