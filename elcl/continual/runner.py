"""Run a (sequence of) task(s) for one method, seed, λ and task order.

After each step the model is evaluated on every task of the order, its predictions
are stored, and the curvature of the task just learned is computed and stored; then
``run.json`` records the step as done. A crash therefore loses at most the step in
progress, and ``--resume`` restarts exactly there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import torch

from elcl.config import ExperimentConfig, resolve_data_dir
from elcl.continual.guard import TrainDataGuard
from elcl.continual.lifecycle import guarded_run
from elcl.continual.methods import (
    PENALTY_METHODS,
    ReplayMemory,
    curvature_approx,
    discriminative_groups,
)
from elcl.continual.rundir import RunDir, RunSpec, append_jsonl, read_jsonl, write_jsonl
from elcl.continual.share import adopt_first_step, adopted_train_log, find_sibling
from elcl.curvature.collect import collect_curvature
from elcl.curvature.penalty import build_penalty
from elcl.data.ontology import gold_coverage
from elcl.curvature.storage import DTYPES, load_curvature, save_curvature
from elcl.data.corpora import load_corpus
from elcl.errors import ElclError
from elcl.hardware import bf16_native, resolve_amp
from elcl.models.checkpoint import load_checkpoint, save_checkpoint
from elcl.models.linker import Linker, linker_logits_fn
from elcl.runtime import Runtime, barrier, seed_everything
from elcl.schemas import MetricRow
from elcl.training.batching import TokenCache, collate
from elcl.training.curves import Curves
from elcl.training.examples import LinkingExample
from elcl.training.loop import train_steps
from elcl.training.predict import evaluate_examples
from elcl.training.tasks import prepare_eval_task, sequence_train_removals


def expand_runs(cfg: ExperimentConfig) -> list[tuple[RunSpec, ExperimentConfig]]:
    """One run per (order, λ, seed); λ only varies for penalty methods."""
    method = cfg.method.name
    lambdas: list[float | None] = list(cfg.lambdas()) if method in PENALTY_METHODS else [None]
    out = []
    for oi, order in enumerate(cfg.task_orders()):
        for lam in lambdas:
            for seed in cfg.seeds:
                spec = RunSpec(cfg.name, method, lam, seed, tuple(order), oi)
                run_cfg = cfg.model_copy(deep=True)
                run_cfg.tasks = list(order)
                run_cfg.orders = None
                run_cfg.seeds = [seed]
                if lam is not None:
                    run_cfg.method.lambda_ = lam
                out.append((spec, run_cfg))
    return out


def build_linker(cfg: ExperimentConfig, rt: Runtime) -> Linker:
    return Linker(cfg.model).to(rt.device)


def _eval_splits(cfg: ExperimentConfig) -> list[str]:
    return [s for s in cfg.train.eval_splits if s in ("dev", "test")] or ["test"]


def evaluate_all(model: Linker, cache: TokenCache, cfg: ExperimentConfig, rd: RunDir | None, step: int, trained: str, tasks: Sequence[str], rt: Runtime) -> list[dict]:
    rows = []
    for task in tasks:
        data = prepare_eval_task(task, cfg)
        for split in _eval_splits(cfg):
            res = evaluate_examples(model, data.examples[split], cache)
            rows.append(MetricRow(
                step=step, trained_task=trained, eval_task=task, split=split,  # type: ignore[arg-type]
                acc1=res.acc1, acc5=res.acc5, n=res.n, n_unlinkable=data.n_unlinkable(split),
                # The retriever's own top-1 on the same mentions: the floor the linker must beat.
                tfidf_acc1=tfidf_top1(data.examples[split]),
            ).dump())
            if rd is not None and rt.is_main:
                write_jsonl(rd.predictions(step, trained, task, split), res.predictions)
    return rows


def tfidf_top1(examples: Sequence[LinkingExample]) -> float:
    return sum(bool(e.labels) and e.labels[0] for e in examples) / len(examples) if examples else 0.0


def compute_curvature(model: Linker, examples: Sequence[LinkingExample], cache: TokenCache, cfg: ExperimentConfig, approx: str, seed: int, rt: Runtime):
    """Fisher statistics on the task's own training data (one sequence per example text)."""
    cc = cfg.curvature
    usable = [e for e in examples if e.has_gold]
    if cc.max_examples is not None:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(usable), generator=gen)[: cc.max_examples].sort().values.tolist()
        usable = [usable[i] for i in idx]
    if len(usable) < rt.world:
        raise ElclError(f"curvature: {len(usable)} training examples cannot be shared by {rt.world} processes; raise curvature.max_examples or use fewer processes")
    shard = usable[rt.rank :: rt.world]
    batches = (collate(shard[i : i + cc.batch_size], cache, share=False, cross=model.head is not None) for i in range(0, len(shard), cc.batch_size))
    stats = collect_curvature(
        model, batches, linker_logits_fn, approx=approx, kind=cc.kind, n_samples=cc.n_samples, variant=cc.variant,
        generator=torch.Generator(device=rt.device).manual_seed(seed), progress=rt.is_main,
    )
    if rt.distributed:
        from elcl.curvature.distributed import all_reduce_stats

        stats = all_reduce_stats(stats)
    return stats


def _penalty(method: str, rd: RunDir, done_tasks: Sequence[str], model: Linker, cfg: ExperimentConfig, rt: Runtime):
    if method not in PENALTY_METHODS or not done_tasks:
        return None
    stats = [load_curvature(rd.curvature(t), model.config_hash, device=rt.device) for t in done_tasks]
    if cfg.curvature.rank is not None and method == "kfac":
        stats = [s.to_low_rank(cfg.curvature.rank) for s in stats]
    return build_penalty(method, stats, float(cfg.method.lambda_), cfg.method.gamma, penalty_matmul_dtype(cfg, rt.device))


def penalty_matmul_dtype(cfg: ExperimentConfig, device: torch.device | str | None = None) -> torch.dtype | None:
    """``method.penalty_dtype`` resolved: ``auto`` is bfloat16 when training runs in bf16
    on a device that computes bfloat16 natively (see :mod:`elcl.hardware`), else float32."""
    choice = cfg.method.penalty_dtype
    if choice == "auto":
        native = bf16_native(device)
        choice = "bfloat16" if native and resolve_amp(cfg.train.amp, device) == "bf16" else "float32"
    return torch.bfloat16 if choice == "bfloat16" else None


def _ddp_wrap(rt: Runtime):
    if not rt.distributed:
        return None

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None, find_unused_parameters=True)

    return wrap


def run_sequence(spec: RunSpec, cfg: ExperimentConfig, path: Path, rt: Runtime, resume: bool = False) -> Path:
    """Train and evaluate one run under its lock; resumes at the first unfinished step."""
    with guarded_run(RunDir(path), spec, cfg.to_dict(), rt, resume):
        return _run_sequence(spec, cfg, path, rt, resume)


def _run_sequence(spec: RunSpec, cfg: ExperimentConfig, path: Path, rt: Runtime, resume: bool) -> Path:
    rd = RunDir(path)
    method = spec.method
    n_steps = 1 if method == "joint" else len(spec.order)
    steps_done = 0
    if resume and rd.run_json.is_file():
        state = rd.read_state()
        steps_done = int(state.get("steps_done", 0))
        if state.get("status") == "done":
            return path
        if rt.is_main:
            # Rows of a step that did not finish are recomputed, not duplicated.
            write_jsonl(rd.metrics, [r for r in read_jsonl(rd.metrics) if int(r["step"]) < steps_done])
    elif rd.run_json.is_file() and rd.read_state().get("status") == "done" and not resume:
        raise ElclError(f"{path}: a finished run is already there; pass --resume to skip it or choose another output_dir")
    curves = Curves(cfg.train.log_to, rd.path) if rt.is_main else None
    # No document in two tasks: another task's dev/test abstracts leave this task's training data.
    removals = sequence_train_removals(spec.order, cfg)
    rd.state_extra["train_documents_removed"] = {t: r.to_json() for t, r in removals.items()}
    if rt.is_main:
        rd.write_config(cfg.to_dict())
        rd.write_state(spec, "running", steps_done)
        for r in removals.values():
            rd.log(r.summary())
        rd.log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} start {spec.dirname} at step {steps_done}")
    seed_everything(spec.seed)
    model = build_linker(cfg, rt)
    cache = TokenCache(model.tokenizer, cfg.model.max_length)
    approx = curvature_approx(cfg)
    guard = TrainDataGuard.for_config(cfg, method, removals)
    memory = ReplayMemory(cfg.method.replay_size, spec.seed) if method == "replay" else None

    if method == "joint":
        guard.begin("joint")
        examples = [e for t in spec.order for e in guard.train_examples(t)]
        _train(model, examples, cache, cfg, cfg.train.lr, None, spec.seed, "joint", rt, rd, curves=curves)
        _finish_step(model, cache, cfg, rd, 0, "joint", spec, rt, curves)
        if rt.is_main:
            rd.write_state(spec, "done", 1)
            curves.close()
        return path

    for step, task in enumerate(spec.order):
        guard.begin(task)
        if step < steps_done:
            if memory is not None:
                memory.add_task(task, guard.train_examples(task))
            continue
        if method == "single":
            seed_everything(spec.seed)
            model = build_linker(cfg, rt)
        elif step > 0 and steps_done == step:
            prev = spec.order[step - 1]
            load_checkpoint(model, rd.checkpoint(step - 1, prev))
        split = guard.train_examples(task)
        examples = list(split)
        if rt.is_main:
            ontology, st = prepare_eval_task(task, cfg).ontology, split.stats
            rd.log(
                f"{task}: ontology {ontology.source} ({len(ontology)} concepts); {len(examples)} training examples, "
                f"{st.gold_inserted} with the gold candidate inserted, {st.gold_not_in_ontology} skipped (gold not in the ontology), "
                f"{st.unlinkable} unlinkable"
            )
            corpus = load_corpus(task, resolve_data_dir(cfg.data.data_dir))
            for part in ("train", "dev", "test"):
                rd.log(f"{task} {part}: {gold_coverage(corpus.mentions(part), ontology).summary()}")
        if memory is not None and len(memory):
            examples = examples + memory.examples()
        lr = cfg.train.lr
        groups = None
        if method == "lr_control" and step > 0:
            lr = cfg.train.lr * cfg.method.lr_scale
            groups = discriminative_groups(model, lr, cfg.method.layer_decay)
        sibling = find_sibling(rd, spec, cfg.to_dict()) if (step == 0 and cfg.train.share_first_task) else None
        if sibling is not None:
            load_checkpoint(model, sibling.checkpoint(0, task))
            if rt.is_main:
                adopted_rows = adopt_first_step(sibling, rd, task)
                append_jsonl(rd.metrics, adopted_rows)
                adopted_log = [{k: v for k, v in e.items() if k != "task"} for e in adopted_train_log(sibling, task)]
                for e in adopted_log:
                    curves.train_entry(task, e)
                curves.train_log(task, adopted_log)
                curves.evaluation(adopted_rows)
                rd.log(f"step 0 ({task}) adopted from {sibling.path.name}: same data, model, training settings, seed and order")
            barrier(rt)
        else:
            penalty = _penalty(method, rd, spec.order[:step], model, cfg, rt)
            _train(model, examples, cache, cfg, lr, groups, spec.seed + step, task, rt, rd, penalty=penalty, curves=curves)
            _finish_step(model, cache, cfg, rd, step, task, spec, rt, curves)
        if approx != "none" and method != "single":
            stats = compute_curvature(model, guard.train_examples(task), cache, cfg, approx, spec.seed + step, rt)
            if rt.is_main:
                save_curvature(stats, rd.curvature(task), model.config_hash, dtype=DTYPES[cfg.curvature.dtype])
        if memory is not None:
            memory.add_task(task, guard.train_examples(task))
        if rt.is_main:
            rd.write_state(spec, "running" if step + 1 < n_steps else "done", step + 1)
        barrier(rt)
    if curves is not None:
        curves.close()
    return path


def _train(model, examples, cache, cfg, lr, groups, seed, task, rt: Runtime, rd: RunDir, penalty=None, curves: Curves | None = None) -> None:
    train_cfg = cfg.train.model_copy(update={"lr": lr})
    t0 = time.perf_counter()
    log = train_steps(
        model, examples, cache, train_cfg, seed=seed, param_groups=groups,
        penalty=penalty, fast_grad=cfg.method.fast_grad, desc=f"train {task}", wrap=_ddp_wrap(rt), shard=(rt.rank, rt.world),
        on_step=(lambda e: _on_step(e, task, t0, rd, curves)) if rt.is_main else None,
    )
    if rt.is_main and curves is not None:
        curves.train_log(task, log)
    if rt.is_main:
        rd.log(f"trained {task}: {len(examples)} examples, {time.perf_counter() - t0:.1f}s, final loss {log[-1]['loss'] if log else float('nan'):.4f}")


def _on_step(entry: dict, task: str, t0: float, rd: RunDir, curves: Curves | None) -> None:
    rd.log(f"  {task} step {entry['step']}: loss {entry['loss']:.4f} penalty {entry['penalty']:.4f} ({time.perf_counter() - t0:.0f}s)")
    if curves is not None:
        curves.train_entry(task, entry)


def _finish_step(model: Linker, cache: TokenCache, cfg: ExperimentConfig, rd: RunDir, step: int, trained: str, spec: RunSpec, rt: Runtime,
                 curves: Curves | None = None) -> None:
    if rt.is_main:
        save_checkpoint(model, rd.checkpoint(step, trained))
    rows = evaluate_all(model, cache, cfg, rd, step, trained, spec.order, rt)
    if rt.is_main:
        append_jsonl(rd.metrics, rows)
        if curves is not None:
            curves.evaluation(rows)
        for r in rows:
            rd.log(f"step {step} ({trained}) -> {r['eval_task']} {r['split']}: acc@1 {r['acc1']:.4f} acc@5 {r['acc5']:.4f} (n={r['n']})")


def run_experiment(cfg: ExperimentConfig, rt: Runtime, resume: bool = False, exp_dir: Path | None = None, orders: Sequence[int] = ()) -> list[Path]:
    """Every run of the config, or only those of the given order indices (a part of the grid
    that another process or machine can run beside this one: run names keep the index)."""
    n_orders = len(cfg.task_orders())
    bad = [o for o in orders if not 0 <= o < n_orders]
    if bad:
        raise ElclError(f"--order {bad[0]}: the config has {n_orders} task order(s), indices 0..{n_orders - 1}")
    exp = Path(exp_dir) if exp_dir else Path(cfg.output_dir) / cfg.name
    # Every task's corpus is read before anything is trained: a missing or truncated file
    # fails now, not after hours of training on the tasks before it.
    data_dir = resolve_data_dir(cfg.data.data_dir)
    for task in dict.fromkeys(t for order in cfg.task_orders() for t in order):
        load_corpus(task, data_dir)
    paths = []
    for spec, run_cfg in expand_runs(cfg):
        if orders and spec.order_index not in orders:
            continue
        paths.append(run_sequence(spec, run_cfg, exp / spec.dirname, rt, resume=resume))
    return paths
