"""Run a (sequence of) task(s) for one method, seed, λ and task order.

After each step the model is evaluated on every task of the order, its predictions
are stored, and the curvature of the task just learned is computed and stored; then
``run.json`` records the step as done. A crash therefore loses at most the step in
progress, and ``--resume`` restarts exactly there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import torch

from elcl.config import ExperimentConfig, resolve_data_dir
from elcl.continual import methods
from elcl.continual.guard import TrainDataGuard
from elcl.continual.lifecycle import guarded_run
from elcl.continual.methods import Method, StepContext
from elcl.continual.methods.kfac import penalty_matmul_dtype  # noqa: F401 (re-exported: K-FAC's product dtype)
from elcl.continual.rundir import RunDir, RunSpec, append_jsonl, read_jsonl, write_jsonl
from elcl.continual.share import adopt_first_step, adopted_train_log, find_sibling
from elcl.curvature.collect import collect_curvature
from elcl.curvature.storage import DTYPES
from elcl.data.custom import load_task_corpus
from elcl.data.ontology import gold_coverage
from elcl.errors import ElclError
from elcl.models.checkpoint import load_checkpoint, save_checkpoint
from elcl.models.linker import Linker, linker_logits_fn
from elcl.provenance import describe as describe_environment
from elcl.provenance import environment
from elcl.runtime import RNG_FILE, Runtime, barrier, save_rng_state, seed_everything
from elcl.schemas import MetricRow
from elcl.training.batching import TokenCache, collate
from elcl.training.curves import Curves
from elcl.training.examples import LinkingExample
from elcl.training.loop import train_steps
from elcl.training.predict import evaluate_sets
from elcl.training.tasks import prepare_eval_task, sequence_train_removals


def expand_runs(cfg: ExperimentConfig) -> list[tuple[RunSpec, ExperimentConfig]]:
    """One run per (order, λ, seed); λ only varies for methods with a penalty."""
    method = cfg.method.name
    settings = cfg.method.settings
    # A run's config.yaml carries its custom tasks' definitions with the sha256 of every
    # file they read: resume, `elcl link` and `elcl evaluate` refuse data that has changed.
    pinned = {t: (ref if isinstance(ref, str) else ref.pinned()) for t in cfg.task_names() for ref in [cfg.task_ref(t)]}
    out = []
    for oi, order in enumerate(cfg.task_orders()):
        for lam in settings.lambdas():
            for seed in cfg.seeds:
                spec = RunSpec(cfg.name, method, lam, seed, tuple(order), oi)
                run_cfg = cfg.model_copy(deep=True)
                run_cfg.tasks = [pinned[t] for t in order]
                run_cfg.orders = None
                run_cfg.seeds = [seed]
                setattr(run_cfg.method, method, settings.for_run(lam))
                out.append((spec, run_cfg))
    return out


def curvature_approx(cfg: ExperimentConfig) -> str:
    """What to collect after each task: ``curvature.approx`` when set, else what the method needs."""
    if cfg.curvature.approx != "auto":
        return cfg.curvature.approx
    return methods.get(cfg.method.name).curvature


def build_linker(cfg: ExperimentConfig, rt: Runtime) -> Linker:
    """The configured linker on the runtime's device, its embeddings frozen when
    ``train.freeze_embeddings`` says so (here, so training, curvature and `elcl fisher`
    all see the same trainable parameters)."""
    model = Linker(cfg.model).to(rt.device)
    if cfg.train.freeze_embeddings:
        model.freeze_embeddings()
    return model


def _eval_splits(cfg: ExperimentConfig) -> list[str]:
    return [s for s in cfg.train.eval_splits if s in ("dev", "test")] or ["test"]


def evaluate_all(
    model: Linker,
    cache: TokenCache,
    cfg: ExperimentConfig,
    rd: RunDir | None,
    step: int,
    trained: str,
    tasks: Sequence[str],
    rt: Runtime,
) -> list[dict]:
    """Score every task's evaluation splits after step ``step``: one pass over all of them
    (each distinct text embedded once; the plan of texts and batches is built at the first
    step and reused, as the examples are), then one metric row and one predictions file
    per (task, split)."""
    rows = []
    data = {task: prepare_eval_task(task, cfg) for task in dict.fromkeys(tasks)}
    sets = {(task, split): data[task].examples[split] for task in data for split in _eval_splits(cfg)}
    results = evaluate_sets(model, sets, cache)
    for task in tasks:
        for split in _eval_splits(cfg):
            res = results[(task, split)]
            rows.append(
                MetricRow(
                    step=step,
                    trained_task=trained,
                    eval_task=task,
                    split=split,  # type: ignore[arg-type]
                    acc1=res.acc1,
                    acc5=res.acc5,
                    n=res.n,
                    n_unlinkable=data[task].n_unlinkable(split),
                    # The retriever's own top-1 on the same mentions: the floor the linker must beat.
                    tfidf_acc1=tfidf_top1(data[task].examples[split]),
                ).dump()
            )
            if rd is not None and rt.is_main:
                write_jsonl(rd.predictions(step, trained, task, split), res.predictions)
    return rows


def tfidf_top1(examples: Sequence[LinkingExample]) -> float:
    return sum(bool(e.labels) and e.labels[0] for e in examples) / len(examples) if examples else 0.0


def compute_curvature(
    model: Linker,
    examples: Sequence[LinkingExample],
    cache: TokenCache,
    cfg: ExperimentConfig,
    approx: str,
    seed: int,
    rt: Runtime,
):
    """Fisher statistics on the task's own training data (one sequence per example text)."""
    cc = cfg.curvature
    usable = [e for e in examples if e.has_gold]
    if cc.max_examples is not None:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(usable), generator=gen)[: cc.max_examples].sort().values.tolist()
        usable = [usable[i] for i in idx]
    if len(usable) < rt.world:
        raise ElclError(
            f"curvature: {len(usable)} training examples cannot be shared by {rt.world} processes; raise curvature.max_examples or use fewer processes"
        )
    shard = usable[rt.rank :: rt.world]
    batches = (
        collate(shard[i : i + cc.batch_size], cache, share=False, cross=model.head is not None)
        for i in range(0, len(shard), cc.batch_size)
    )
    stats = collect_curvature(
        model,
        batches,
        linker_logits_fn,
        approx=approx,
        kind=cc.kind,
        n_samples=cc.n_samples,
        variant=cc.variant,
        generator=torch.Generator(device=rt.device).manual_seed(seed),
        progress=rt.is_main,
    )
    if rt.distributed:
        from elcl.curvature.distributed import all_reduce_stats

        stats = all_reduce_stats(stats)
    return stats


def _ddp_wrap(rt: Runtime):
    if not rt.distributed:
        return None

    def wrap(model: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(
            model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None, find_unused_parameters=True
        )

    return wrap


def run_sequence(spec: RunSpec, cfg: ExperimentConfig, path: Path, rt: Runtime, resume: bool = False) -> Path:
    """Train and evaluate one run under its lock; resumes at the first unfinished step."""
    if resume and (path / "config.yaml").is_file():
        _check_stored_data(path)
    with guarded_run(RunDir(path), spec, cfg.to_dict(), rt, resume):
        return _run_sequence(spec, cfg, path, rt, resume)


def _check_stored_data(path: Path) -> None:
    """A resumed run's custom task files are the ones it started with (one line naming a
    changed file, before the config comparison that would only say ``tasks`` differs)."""
    from elcl.config import load_run_config
    from elcl.data.task_config import CustomTaskConfig, check_pinned

    try:
        stored = load_run_config(path)
    except ElclError:
        return  # guarded_run reports an unreadable config.yaml
    for task in stored.tasks:
        if isinstance(task, CustomTaskConfig):
            check_pinned(task)


def _run_sequence(spec: RunSpec, cfg: ExperimentConfig, path: Path, rt: Runtime, resume: bool) -> Path:
    rd = RunDir(path)
    method: Method = methods.get(cfg.method.name)(cfg.method.settings, spec.seed)
    steps = method.steps(spec.order)
    n_steps = len(steps)
    steps_done = 0
    extra: dict = {}
    earlier_environments: list[dict] = []
    if resume and rd.run_json.is_file():
        state = rd.read_state()
        steps_done = int(state.get("steps_done", 0))
        extra = {k: state[k] for k in ("lambda_t",) if k in state}
        earlier_environments = state.get("environments") or []
        if state.get("status") == "done":
            return path
        if rt.is_main:
            # Rows of a step that did not finish are recomputed, not duplicated.
            write_jsonl(rd.metrics, [r for r in read_jsonl(rd.metrics) if int(r["step"]) < steps_done])
    elif rd.run_json.is_file() and rd.read_state().get("status") == "done" and not resume:
        raise ElclError(
            f"{path}: a finished run is already there; pass --resume to skip it or choose another output_dir"
        )
    curves = Curves(cfg.train.log_to, rd.path) if rt.is_main else None
    # No document in two tasks: another task's dev/test abstracts leave this task's training data.
    removals = sequence_train_removals(spec.order, cfg)
    rd.state_extra["train_documents_removed"] = {t: r.to_json() for t, r in removals.items()}
    if rt.is_main:
        env = environment(rt.device, steps_done, rt.world)
        rd.state_extra["environments"] = [*earlier_environments, env]
        rd.write_config(cfg.to_dict())
        rd.write_state(spec, "running", steps_done, extra)
        for r in removals.values():
            rd.log(r.summary())
        rd.log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} start {spec.dirname} at step {steps_done}")
        rd.log(describe_environment(env))
    seed_everything(spec.seed)
    model = build_linker(cfg, rt)
    if rt.is_main and cfg.train.freeze_embeddings:
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        rd.log(f"train.freeze_embeddings: {frozen:,} of {total:,} parameters frozen (the embedding tables)")
    cache = TokenCache(model.tokenizer, cfg.model.max_length)
    approx = curvature_approx(cfg) if method.collects_curvature() else "none"
    guard = TrainDataGuard.for_config(cfg, spec.method, removals)

    for step, st in enumerate(steps):
        guard.begin(st.label)
        if step < steps_done:
            method.restore(st, guard)
            continue
        if method.fresh_model(step):
            seed_everything(spec.seed)
            model = build_linker(cfg, rt)
        elif step > 0 and steps_done == step:
            prev = steps[step - 1].label
            load_checkpoint(model, rd.checkpoint(step - 1, prev))
        splits = [guard.train_examples(t) for t in st.tasks]
        current = [e for sp in splits for e in sp]
        if rt.is_main and st.tasks == (st.label,):
            ontology, stt = prepare_eval_task(st.label, cfg).ontology, splits[0].stats
            rd.log(
                f"{st.label}: ontology {ontology.source} ({len(ontology)} concepts); {len(current)} training examples, "
                f"{stt.gold_inserted} with the gold candidate inserted, {stt.gold_not_in_ontology} skipped (gold not in the ontology), "
                f"{stt.unlinkable} unlinkable"
            )
            corpus = load_task_corpus(cfg.task_ref(st.label), resolve_data_dir(cfg.data.data_dir))
            for part in ("train", "dev", "test"):
                rd.log(f"{st.label} {part}: {gold_coverage(corpus.mentions(part), ontology).summary()}")
        examples = method.train_examples(st, current)
        lr, groups = method.optimiser(model, cfg.train.lr_at(step), step)
        ctx = StepContext(
            rd=rd,
            order=spec.order,
            step=step,
            task=st.label,
            model=model,
            config_hash=model.config_hash,
            device=rt.device,
            curvature_rank=cfg.curvature.rank,
            curvature_dtype=DTYPES[cfg.curvature.dtype],
            amp=cfg.train.amp,
            n_examples=sum(1 for e in examples if e.has_gold),
            is_main=rt.is_main,
        )
        sibling = (
            find_sibling(rd, spec, cfg.to_dict())
            if (step == 0 and cfg.train.share_first_task and method.shares_first_step())
            else None
        )
        if sibling is not None:
            load_checkpoint(model, sibling.checkpoint(0, st.label))
            if rt.is_main:
                adopted_rows = adopt_first_step(sibling, rd, st.label)
                append_jsonl(rd.metrics, adopted_rows)
                adopted_log = [
                    {k: v for k, v in e.items() if k != "task"} for e in adopted_train_log(sibling, st.label)
                ]
                if curves is not None:
                    for e in adopted_log:
                        curves.train_entry(st.label, e)
                    curves.train_log(st.label, adopted_log)
                    curves.evaluation(adopted_rows)
                rd.log(
                    f"step 0 ({st.label}) adopted from {sibling.path.name}: same data, model, training settings, seed and order"
                )
            barrier(rt)
        else:
            penalty = method.penalty(ctx)
            if ctx.record.get("lambda_t") and rt.is_main:
                extra.setdefault("lambda_t", {})[st.label] = ctx.record["lambda_t"]
                rd.log(
                    f"{st.label}: penalty λ_t " + ", ".join(f"{t} {v:.6g}" for t, v in ctx.record["lambda_t"].items())
                )
            _train(
                model,
                examples,
                cache,
                cfg,
                lr,
                cfg.train.epochs_at(step),
                groups,
                spec.seed + step,
                st.label,
                rt,
                rd,
                penalty=penalty,
                curves=curves,
            )
            _finish_step(model, cache, cfg, rd, step, st.label, spec, rt, curves)
        stats = None
        if approx != "none":
            stats = compute_curvature(model, guard.train_examples(st.label), cache, cfg, approx, spec.seed + step, rt)
        method.after_task(ctx, stats, guard)
        if rt.is_main:
            # Where the generators stand once the step is done: `elcl update` from an export
            # of this step continues with the dropout masks this run draws next.
            save_rng_state(rd.step_dir(step, st.label) / RNG_FILE)
            rd.write_state(spec, "running" if step + 1 < n_steps else "done", step + 1, extra)
        barrier(rt)
    if curves is not None:
        curves.close()
    return path


def _train(
    model,
    examples,
    cache,
    cfg,
    lr,
    epochs,
    groups,
    seed,
    task,
    rt: Runtime,
    rd: RunDir,
    penalty=None,
    curves: Curves | None = None,
) -> None:
    train_cfg = cfg.train.model_copy(update={"lr": lr, "epochs": epochs})
    t0 = time.perf_counter()
    log = train_steps(
        model,
        examples,
        cache,
        train_cfg,
        seed=seed,
        param_groups=groups,
        penalty=penalty,
        fast_grad=getattr(cfg.method.settings, "fast_grad", True),
        desc=f"train {task}",
        wrap=_ddp_wrap(rt),
        shard=(rt.rank, rt.world),
        on_step=(lambda e: _on_step(e, task, t0, rd, curves)) if rt.is_main else None,
    )
    if rt.is_main and curves is not None:
        curves.train_log(task, log)
    if rt.is_main:
        rd.log(
            f"trained {task}: {len(examples)} examples, {time.perf_counter() - t0:.1f}s, final loss {log[-1]['loss'] if log else float('nan'):.4f}"
        )


def _on_step(entry: dict, task: str, t0: float, rd: RunDir, curves: Curves | None) -> None:
    rd.log(
        f"  {task} step {entry['step']}: loss {entry['loss']:.4f} penalty {entry['penalty']:.4f} ({time.perf_counter() - t0:.0f}s)"
    )
    if curves is not None:
        curves.train_entry(task, entry)


def _finish_step(
    model: Linker,
    cache: TokenCache,
    cfg: ExperimentConfig,
    rd: RunDir,
    step: int,
    trained: str,
    spec: RunSpec,
    rt: Runtime,
    curves: Curves | None = None,
) -> None:
    if rt.is_main:
        save_checkpoint(model, rd.checkpoint(step, trained))
    rows = evaluate_all(model, cache, cfg, rd, step, trained, spec.order, rt)
    if rt.is_main:
        append_jsonl(rd.metrics, rows)
        if curves is not None:
            curves.evaluation(rows)
        for r in rows:
            rd.log(
                f"step {step} ({trained}) -> {r['eval_task']} {r['split']}: acc@1 {r['acc1']:.4f} acc@5 {r['acc5']:.4f} (n={r['n']})"
            )


def run_experiment(
    cfg: ExperimentConfig, rt: Runtime, resume: bool = False, exp_dir: Path | None = None, orders: Sequence[int] = ()
) -> list[Path]:
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
        load_task_corpus(cfg.task_ref(task), data_dir)
    paths = []
    for spec, run_cfg in expand_runs(cfg):
        if orders and spec.order_index not in orders:
            continue
        paths.append(run_sequence(spec, run_cfg, exp / spec.dirname, rt, resume=resume))
    return paths
