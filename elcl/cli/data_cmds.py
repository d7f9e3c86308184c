"""`elcl data ...`: fetch corpora, print statistics, evaluate candidate recall."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args

import typer
from rich.console import Console
from rich.table import Table

from elcl.candidates.tfidf import default_cache_dir
from elcl.config import resolve_data_dir
from elcl.data.task_config import task_name
from elcl.errors import ElclError

if TYPE_CHECKING:
    from elcl.candidates.abbrev import AbbreviationStyle
    from elcl.config import ExperimentConfig
    from elcl.data.task_config import TaskRef
    from elcl.data.types import Corpus

app = typer.Typer(help="Corpora: fetch, statistics, candidate recall.", no_args_is_help=True)

_DATA_DIR = typer.Option(None, "--data-dir", help="Corpora root (default: $ELCL_DATA_DIR, ../shared/corpora, data/).")


def _console() -> Console:
    return Console(width=120)


@app.command()
def fetch(
    name: str = typer.Argument(
        ..., help="ncbi_disease, bc5cdr, biored, medmentions, medic, mesh, gene_info (task names work too)."
    ),
    mirror: Path | None = typer.Option(
        None,
        "--mirror",
        help="Copy from this directory instead of downloading (default: ../shared/corpora when present).",
    ),
    data_dir: Path | None = _DATA_DIR,
    download: bool = typer.Option(
        False, "--download", help="Download from the official site even when a mirror exists."
    ),
    force: bool = typer.Option(False, "--force", help="Replace files that are already present and valid."),
) -> None:
    """Install a corpus or ontology under the data dir (checksummed, atomic)."""
    from elcl.data.fetch import default_mirror
    from elcl.data.fetch import fetch as do_fetch

    target = Path(data_dir) if data_dir is not None else Path(os.environ.get("ELCL_DATA_DIR") or "data")
    src = mirror if mirror is not None else (None if download else default_mirror())
    if src is not None and not Path(src).is_dir():
        raise ElclError(f"--mirror {src}: not a directory")
    for path, action in do_fetch(name, target, mirror=src, force=force):
        typer.echo(f"{path}: {action}")


_CONFIG = typer.Option(
    None, "--config", "-c", help="An experiment config: its tasks (built-in and custom) and its data settings."
)


def _resolve_tasks(names: list[str], config: Path | None) -> tuple[list[TaskRef], ExperimentConfig | None]:
    """Task arguments as tasks: built-in names, task YAML files, or (with --config) the
    names of the config's tasks; no arguments with --config: all of them."""
    from elcl.config import load_config
    from elcl.data.task_config import read_task_spec

    cfg = load_config(config) if config is not None else None
    if not names:
        return ([cfg.task_ref(t) for t in cfg.task_names()] if cfg is not None else []), cfg
    out: list[TaskRef] = []
    for n in names:
        if cfg is not None and n in cfg.task_names():
            out.append(cfg.task_ref(n))
        else:
            out.append(read_task_spec(n))
    return out, cfg


@app.command()
def stats(
    names: list[str] | None = typer.Argument(
        None,
        help="Tasks: built-in names or task YAML files (default: every built-in task whose files are present, "
        "or the tasks of --config).",
    ),
    config: Path | None = _CONFIG,
    data_dir: Path | None = _DATA_DIR,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Documents, mentions, concepts, unlinkable/composite mentions and warnings per split;
    for custom tasks also their ontology and the gold ids it lacks."""
    from elcl.data.corpora import TASKS
    from elcl.data.custom import load_task_corpus
    from elcl.data.stats import corpus_stats

    tasks, cfg = _resolve_tasks(list(names or []), config)
    root = resolve_data_dir(str(data_dir) if data_dir else (cfg.data.data_dir if cfg is not None else None))
    explicit = bool(tasks)
    chosen: list[TaskRef] = tasks if explicit else list(TASKS)
    out: dict[str, object] = {}
    coverage: dict[str, dict[str, Any]] = {}
    for task in chosen:
        name = task_name(task)
        try:
            corpus = load_task_corpus(task, root)
        except ElclError as exc:
            if explicit:  # asked for explicitly: a missing corpus is an error
                raise
            if "not found" not in str(exc):
                raise
            continue
        out[name] = corpus_stats(corpus)
        if not isinstance(task, str):
            coverage[name] = _ontology_coverage(task, corpus, cfg)
    if as_json:
        # A custom task's entry holds its ontology coverage beside the splits.
        as_dict = {n: {**cast(dict, v), **({"ontology": coverage[n]} if n in coverage else {})} for n, v in out.items()}
        typer.echo(json.dumps(as_dict, indent=2))
        return
    _print_stats(out, root if any(isinstance(t, str) for t in chosen) else None)
    for name, cov in coverage.items():
        typer.echo(f"{name}: ontology {cov['source']} ({cov['concepts']} concepts, {cov['names']} names)")
        for split, row in cov["splits"].items():
            typer.echo(f"{name} {split}: {row['summary']}")


def _ontology_coverage(task: TaskRef, corpus: Corpus, cfg: ExperimentConfig | None) -> dict[str, Any]:
    """The task's ontology as training would use it, and its gold coverage per split."""
    from elcl.data.custom import task_ontology_of
    from elcl.data.ontology import gold_coverage

    mode = cfg.data.ontology if cfg is not None else "auto"
    splits = tuple(cfg.data.dictionary_splits) if cfg is not None else ("train",)
    onto = task_ontology_of(task, None, corpus, mode=mode, dictionary_splits=splits)
    rows = {}
    for split in ("train", "dev", "test"):
        cov = gold_coverage(corpus.mentions(split), onto)
        rows[split] = {
            "linkable": cov.linkable,
            "gold_absent": cov.absent,
            "gold_absent_ids": dict(cov.absent_ids),
            "summary": cov.summary(),
        }
    return {"source": onto.source, "concepts": len(onto), "names": onto.num_names(), "splits": rows}


def _print_stats(out: dict[str, object], root: Path | None) -> None:
    table = Table(title=f"corpora in {root}" if root is not None else "corpora")
    cols = ("documents", "mentions", "concepts", "unlinkable", "composite", "warnings")
    table.add_column("corpus")
    table.add_column("split")
    for c in cols:
        table.add_column(c, justify="right")
    for name, per_split in out.items():
        for split, row in per_split.items():  # type: ignore[attr-defined]
            table.add_row(name, split, *(str(row[c]) for c in cols))
    _console().print(table)
    _print_types(out)  # type: ignore[arg-type]


def _print_types(out: dict[str, dict[str, dict]]) -> None:
    """Mentions per entity type, for corpora with more than one (BioRED has six)."""
    mixed = {
        name: per_split
        for name, per_split in out.items()
        if len({t for row in per_split.values() for t in row["types"]}) > 1
    }
    if not mixed:
        return
    by_type = Table(title="mentions per entity type")
    by_type.add_column("corpus")
    by_type.add_column("type")
    for split in ("train", "dev", "test"):
        by_type.add_column(split, justify="right")
    for name, per_split in mixed.items():
        for t in sorted({t for row in per_split.values() for t in row["types"]}):
            by_type.add_row(
                name, t, *(str(per_split.get(s, {}).get("types", {}).get(t, 0)) for s in ("train", "dev", "test"))
            )
    _console().print(by_type)


@app.command()
def candidates(
    name: str = typer.Argument(
        ..., help="Task: a built-in name (ncbi_disease), a task YAML file, or a task of --config."
    ),
    k: list[int] = typer.Option([1, 5, 20, 64], "--k", help="Cut-offs for recall@k (repeatable)."),
    split: list[str] = typer.Option(["dev", "test"], "--split", help="Splits to evaluate (repeatable)."),
    ontology: str = typer.Option(
        "auto",
        "--ontology",
        help="auto (ontology file when present), mentions (training-mention dictionary) or auto+mentions (both).",
    ),
    dictionary_split: list[str] = typer.Option(
        ["train"], "--dictionary-split", help="Splits whose mentions build the dictionary."
    ),
    abbreviations: str = typer.Option(
        "initials",
        "--abbreviations",
        help="Short forms defined in the abstract: initials (default), schwartz_hearst or off (as candidates.abbreviations).",
    ),
    data_dir: Path | None = _DATA_DIR,
    config: Path | None = _CONFIG,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    dense: str | None = typer.Option(
        None,
        "--dense",
        help="Also rank by this encoder's embeddings (HF id or folder, e.g. an `elcl pretrain` output): rows for dense, merged and union.",
    ),
    dense_k: int | None = typer.Option(
        None, "--dense-k", help="Slots of k given to dense candidates in the merged list (default k//2)."
    ),
    dense_max_length: int = typer.Option(
        25, "--dense-max-length", help="Tokens per name/mention for the dense encoder."
    ),
    dense_pool: int | None = typer.Option(
        None,
        "--dense-pool",
        help="Index only the names TF-IDF returns in its top-N for the evaluated mentions (dense then re-ranks TF-IDF's top N; cheap on a slow CPU) instead of every ontology name.",
    ),
    dense_amp: str = typer.Option(
        "none", "--dense-amp", help="none or bf16 (autocast while embedding names; faster on CPUs with AVX512-BF16)."
    ),
) -> None:
    """Recall@k of TF-IDF candidates per split, with the ontology used and the time taken.

    With --dense: also the encoder's nearest names (R@1 = zero-shot acc@1), the merged
    list (TF-IDF's first k−dense_k, then dense; see elcl/models/dense_candidates.py) and the
    union of both top-k lists (up to 2k candidates).
    """
    from elcl.candidates.abbrev import AbbreviationStyle, query_texts
    from elcl.candidates.recall import recall_at_k
    from elcl.candidates.tfidf import TfidfCandidateGenerator
    from elcl.data.custom import load_task_corpus, task_ontology_of
    from elcl.data.ontology import gold_coverage
    from elcl.data.types import SPLITS

    for s in split:
        if s not in SPLITS:
            raise ElclError(f"--split {s!r}: expected one of {', '.join(SPLITS)}")
    if abbreviations not in get_args(AbbreviationStyle):
        raise ElclError(f"--abbreviations {abbreviations!r}: expected one of {', '.join(get_args(AbbreviationStyle))}")
    style = cast(AbbreviationStyle, abbreviations)
    if any(x < 1 for x in k):
        raise ElclError("--k values must be >= 1")
    (task,), cfg = _resolve_tasks([name], config)
    name = task_name(task)
    root = resolve_data_dir(str(data_dir) if data_dir else (cfg.data.data_dir if cfg is not None else None))
    t0, c0 = time.perf_counter(), time.process_time()
    corpus = load_task_corpus(task, root)
    onto = task_ontology_of(task, root, corpus, mode=ontology, dictionary_splits=tuple(dictionary_split))
    gen = TfidfCandidateGenerator(onto, cache_dir=default_cache_dir()).fit()
    t_fit = time.perf_counter() - t0
    # CPU seconds beside wall seconds: on a shared machine only the former says what the command costs.
    fit_cpu = round(time.process_time() - c0, 3)
    rows: dict[str, dict] = {}
    result: dict[str, object] = {
        "task": name,
        "ontology": onto.source,
        "concepts": len(onto),
        "names": gen.num_names,
        "fit_seconds": round(t_fit, 3),
        "fit_cpu_seconds": fit_cpu,
        "index_cache_hit": gen.cache_hit,
        "splits": rows,
    }
    dense_gen = None
    if dense is not None:
        from elcl.models.dense_candidates import DenseCandidateGenerator

        t2 = time.perf_counter()
        if dense_amp not in ("none", "bf16"):
            raise ElclError(f"--dense-amp {dense_amp!r}: expected none or bf16")
        index_onto = onto
        if dense_pool is not None:
            if dense_pool < 1:
                raise ElclError("--dense-pool must be >= 1")
            index_onto = _tfidf_pool(gen, corpus, split, dense_pool, style)
        dense_gen = DenseCandidateGenerator(
            index_onto, dense, max_length=dense_max_length, cache_dir=default_cache_dir(), amp=dense_amp
        ).fit()
        result["dense"] = {
            "encoder": dense,
            "fit_seconds": round(time.perf_counter() - t2, 3),
            "index_cache_hit": dense_gen.cache_hit,
            "indexed_names": dense_gen.num_names,
            "pool": dense_pool,
        }
    ks = tuple(sorted(set(k)))
    for s in split:
        t1, c1 = time.perf_counter(), time.process_time()
        docs = corpus.documents(s)
        mentions = [m for d in docs for m in d.mentions]
        texts = query_texts(docs, style)
        cands = gen.top_k(texts, max(k))
        rec = recall_at_k(mentions, cands, onto, ks=ks)
        cov = gold_coverage(mentions, onto)
        row: dict[str, Any] = {
            "mentions": len(mentions),
            "linkable": cov.linkable,
            "recall": {str(kk): round(v, 4) for kk, v in rec.items()},
            "seconds": round(time.perf_counter() - t1, 3),
            "cpu_seconds": round(time.process_time() - c1, 3),
            # Gold ids the ontology lacks (retired or out of scope): no linker can get these right.
            "gold_absent": cov.absent,
            "gold_absent_ids": dict(cov.absent_ids),
        }
        if dense_gen is not None:
            row.update(_dense_recalls(dense_gen, texts, mentions, cands, onto, ks, dense_k))
        rows[s] = row
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    table = Table(
        title=f"{name}: TF-IDF candidates against {onto.source} ({len(onto)} concepts, {gen.num_names} names)"
    )
    table.add_column("split")
    table.add_column("linkable", justify="right")
    for kk in sorted(set(k)):
        table.add_column(f"R@{kk}", justify="right")
    table.add_column("gold absent", justify="right")
    table.add_column("seconds", justify="right")
    for s, row in rows.items():
        label = f"{s} tfidf" if dense_gen is not None else s
        table.add_row(
            label,
            str(row["linkable"]),
            *(f"{row['recall'][str(kk)]:.4f}" for kk in sorted(set(k))),
            str(row["gold_absent"]),
            f"{row['seconds']:.2f}",
        )
        for kind in ("dense", "merged", "union"):
            if f"recall_{kind}" in row:
                table.add_row(
                    f"{s} {kind}",
                    str(row["linkable"]),
                    *(f"{row[f'recall_{kind}'][str(kk)]:.4f}" for kk in sorted(set(k))),
                    "",
                    "",
                )
    _console().print(table)
    for s, row in rows.items():
        if row["gold_absent"]:
            top = ", ".join(f"{i} ({n})" for i, n in list(row["gold_absent_ids"].items())[:8])
            typer.echo(
                f"{s}: {row['gold_absent']} linkable mentions have gold ids absent from the ontology (retired or out of scope): {top}"
            )
    typer.echo(
        f"ontology + index: {t_fit:.2f}s wall, {fit_cpu:.2f}s CPU ({'cache hit' if gen.cache_hit else 'fitted'}); "
        + ", ".join(f"{s} {row['cpu_seconds']:.2f}s CPU" for s, row in rows.items())
    )


def _dense_recalls(dense_gen, texts, mentions, sparse, onto, ks, dense_k) -> dict[str, object]:
    """Recall@k of the dense list, of the merged list at each budget k, and of the union of both top-k."""
    from elcl.candidates.recall import recall_at_k
    from elcl.models.dense_candidates import merge_candidates, union_candidates

    t = time.perf_counter()
    dense = dense_gen.top_k(texts, max(ks))
    out: dict[str, object] = {
        "recall_dense": {str(kk): round(v, 4) for kk, v in recall_at_k(mentions, dense, onto, ks=ks).items()}
    }
    merged: dict[str, float] = {}
    union: dict[str, float] = {}
    for kk in ks:
        nd = None if dense_k is None else min(dense_k, kk)
        m = [merge_candidates(s[:kk], d[:kk], kk, nd) for s, d in zip(sparse, dense)]
        merged[str(kk)] = round(recall_at_k(mentions, m, onto, ks=(kk,))[kk], 4)
        u = [union_candidates(s[:kk], d[:kk]) for s, d in zip(sparse, dense)]
        union[str(kk)] = round(recall_at_k(mentions, u, onto, ks=(2 * kk,))[2 * kk], 4)
    out["recall_merged"] = merged
    out["recall_union"] = union
    out["dense_seconds"] = round(time.perf_counter() - t, 3)
    return out


def _tfidf_pool(gen, corpus, splits, n: int, style: AbbreviationStyle):
    """The names TF-IDF retrieves in its top-n for the mentions of ``splits``: a small dense index."""
    from elcl.candidates.abbrev import query_texts
    from elcl.data.ontology import Ontology

    texts: list[str] = []
    for s in splits:
        docs = corpus.documents(s)
        texts += query_texts(docs, style)
    names: dict[str, list[str]] = {}
    for cands in gen.top_k(list(dict.fromkeys(texts)), n):
        for c in cands:
            cur = names.setdefault(c.concept_id, [])
            if c.name not in cur:
                cur.append(c.name)
    return Ontology(names, {}, f"TF-IDF top-{n} names of {gen.ontology.source}")
