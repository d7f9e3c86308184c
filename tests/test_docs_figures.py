"""The docs' comparison tables carry the numbers of the committed reports they cite.

Those tables are written by hand after a benchmark grows (more cells, a new part); a row
left at an older report's figures would still read as a finding. Each table is found after
the command (or sentence) that produces it, and every row that names a method is checked
against that report's ``summary.json``: paired cells, mean forgetting and forgetting
reduction with their intervals, to the one decimal the page prints. The tables live on the
experiment pages of the docs site (``docs/experiments/``; they were in the README before it
was cut to an entry point).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from elcl.evaluation.render import fmt_interval
from elcl.evaluation.runs import load_run
from elcl.evaluation.stats import Interval

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "docs" / "experiments"

# Page label of a row -> (method, λ) in the report's comparison; None: its one entry not at λ `auto`.
ROWS: dict[str, tuple[str, str | None]] = {
    "EWC": ("ewc", None),
    "K-FAC": ("kfac", None),
    "online K-FAC": ("online_kfac", None),
    "K-FAC `lambda: auto`": ("kfac", "auto"),
    "joint": ("joint", None),
    "lr_control": ("lr_control", None),
    "replay": ("replay", None),
}
DIFFERENCES = {"K-FAC − EWC": ("kfac", "ewc")}

# (page under docs/experiments/, the text the table follows, the committed report it quotes)
TABLES = [
    ("context.md", "--out results/reproduce_cpu_context/report`", "reproduce_cpu_context/report"),
    ("reproduce-cpu.md", "Forgetting at the λ chosen on dev, CPU seeds", "reproduce_cpu/report"),
    ("reproduce-cpu.md", "--out results/reproduce_cpu/report_all`", "reproduce_cpu/report_all"),
    ("confirm.md", "--out results/reproduce_cpu_confirm/report`;", "reproduce_cpu_confirm/report"),
    (
        "full-data-tuning.md",
        "Against `single` on the same seed and order",
        "reproduce_bert_cpu_part_encoder_ncbi_first/report",
    ),
    (
        "full-data-tuning.md",
        "Both seeds at the one λ",
        "reproduce_bert_cpu_part_encoder_ncbi_first/report_lambda1e4",
    ),
    (
        "full-data-tuning.md",
        "Both seeds at λ 1e5",
        "reproduce_bert_cpu_part_encoder_ncbi_first/report_lambda1e5",
    ),
]


def _summary(report: str) -> dict:
    """The committed ``results/<report>/summary.json``."""
    return json.loads((ROOT / "results" / report / "summary.json").read_text(encoding="utf-8"))


def _prose(page: str) -> str:
    """A docs/experiments page with its whitespace collapsed, so a quoted sentence matches across line breaks."""
    return " ".join((EXPERIMENTS / page).read_text(encoding="utf-8").split())


def _table_after(text: str, anchor: str, header: str = "| method |") -> list[list[str]]:
    """The rows of the first Markdown table after ``anchor`` whose header starts with ``header``, cells stripped; a table
    indented under a list item counts too."""
    start = text.index(anchor)
    lines = [line.lstrip() for line in text[start:].splitlines()]
    first = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _fmt(iv: dict, sign: bool = False) -> str:
    """An interval as the report prints it (``fmt_interval``), in the docs' Unicode minus;
    a difference's point carries its sign."""
    text = fmt_interval(Interval(iv["point"], iv["lo"], iv["hi"])).replace("-", "−")
    return "+" + text if sign and not text.startswith("−") else text


def _same_lambda(cell: str, reported: str) -> bool:
    """A numeric λ cell ("1e5", "1e5 (both orders)") is the λ the report compared at; the others ("–" for naive's
    rows, "λ_t = 0.61" for `lambda: auto`) name no fixed λ to compare."""
    try:
        return float(cell.split()[0]) == float(reported)
    except (ValueError, IndexError):
        return True


def _method(comparison: dict, method: str, lam: str | None) -> dict:
    found = [
        m
        for m in comparison["methods"]
        if m["method"] == method and (m["lambda"] == lam if lam else m["lambda"] != "auto")
    ]
    assert len(found) == 1, f"{method} λ={lam}: {len(found)} entries in the report"
    return found[0]


@pytest.mark.parametrize(("page", "anchor", "report"), TABLES, ids=[r for _, _, r in TABLES])
def test_a_docs_table_quotes_its_committed_report(page: str, anchor: str, report: str) -> None:
    text = (EXPERIMENTS / page).read_text(encoding="utf-8")
    comparison = _summary(report)["comparison"]
    rows = _table_after(text, anchor)
    checked = set()
    for label, lam, cells, forgetting, reduction, *_ in rows:
        reduction = reduction.replace("**", "")
        if label == "naive":
            entry, sign = comparison["naive"], False
            assert reduction == "ref.", report
        elif label in DIFFERENCES:
            a, b = DIFFERENCES[label]
            entry, sign = next(d for d in comparison["differences"] if (d["a"], d["b"]) == (a, b)), True
        else:
            entry, sign = _method(comparison, *ROWS[label]), False
            assert _same_lambda(lam, entry["lambda"]), (
                f"{report}: {label} λ {lam} is not the report's {entry['lambda']}"
            )
        assert int(cells.split()[0]) == entry["n_paired"], f"{report}: {label} paired cells"
        assert forgetting == _fmt(entry["mean_forgetting"]), f"{report}: {label} mean forgetting"
        if label != "naive":
            assert reduction == _fmt(entry["forgetting_reduction"], sign), f"{report}: {label} reduction"
        checked.add(label)
    assert {"naive", "EWC", "K-FAC"} <= checked, f"{report}: table lacks a core row"


def test_the_confirm_widths_table_ends_at_the_committed_report() -> None:
    """The widths table (``scripts/interval_widths.py``) is pasted by hand too: its row at the
    report's cell count, and the estimate scaled from it, carry that report's half-widths."""
    text = (EXPERIMENTS / "confirm.md").read_text(encoding="utf-8")
    comparison = _summary("reproduce_cpu_confirm/report")["comparison"]
    start = text.index("results/reproduce_cpu_confirm/runs --start")
    lines = [line.strip() for line in text[start:].splitlines()]
    first = next(i for i, line in enumerate(lines) if line.startswith("| cells |"))
    header = [c.strip() for c in lines[first].strip("|").split("|")]
    rows = {}
    for line in lines[first + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    n = comparison["naive"]["n_paired"]
    estimate = next(k for k in rows if k.endswith("(estimate)"))
    scale = (n / int(estimate.split()[0])) ** 0.5
    entries = {m["method"]: m for m in comparison["methods"]}
    entries.update({f"{d['a']} − {d['b']}": d for d in comparison["differences"]})
    for col, name in enumerate(header[2:], start=2):
        iv = entries[name.removesuffix(" ±")]["forgetting_reduction"]
        half = (iv["hi"] - iv["lo"]) / 2 * 100
        assert rows[str(n)][col] == f"{half:.1f}", f"widths table, {n} cells, {name}"
        assert rows[estimate][col] == f"{half * scale:.1f}", f"widths table, {estimate}, {name}"


def test_the_make_quick_table_quotes_the_committed_quick_report() -> None:
    """The `make quick` table (docs/experiments/quick.md): each penalty's λ, mean forgetting and forgetting reduction
    (with its interval) are those of results/quick/report/summary.json."""
    text = (EXPERIMENTS / "quick.md").read_text(encoding="utf-8")
    comparison = _summary("quick/report")["comparison"]
    rows = {r[0]: r for r in _table_after(text, "# `make quick`")}
    for label, method in (("EWC", "ewc"), ("K-FAC", "kfac")):
        _, lam, _acc, _ncbi, forgetting, reduction = rows[label]
        entry = _method(comparison, method, None)
        assert float(lam) == float(entry["lambda"]), f"quick: {label} λ"
        assert forgetting == f"{entry['mean_forgetting']['point'] * 100:.1f}", f"quick: {label} mean forgetting"
        assert reduction == _fmt(entry["forgetting_reduction"]), f"quick: {label} reduction"


TUNING_TASKS = {
    "NCBI Disease": "ncbi_disease",
    "BC5CDR disease": "bc5cdr_disease",
    "BC5CDR chemical": "bc5cdr_chemical",
}


def _own_task_rows(run_dir: Path) -> dict:
    """``{(task, split): MetricRow}`` of a committed run, each task at the step that trained it."""
    return {(r.eval_task, r.split): r for r in load_run(run_dir).rows if r.trained_task == r.eval_task}


def _tuning_run(run_dir: Path, task: str = "ncbi_disease") -> tuple[dict, dict[str, str]]:
    """A committed single-task tuning run: its config, and the page's cells for it (``tfidf`` test TF-IDF top-1,
    ``test`` and ``dev`` acc@1, in points) at the step that trained ``task``."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    own = _own_task_rows(run_dir)
    test, dev = own[(task, "test")], own[(task, "dev")]
    return cfg, {
        "tfidf": f"{test.tfidf_acc1 * 100:.1f}",
        "tfidf_dev": f"{dev.tfidf_acc1 * 100:.1f}",
        "test": f"{test.acc1 * 100:.1f}",
        "dev": f"{dev.acc1 * 100:.1f}",
    }


def test_the_full_data_tuning_table_quotes_the_committed_tuning_run() -> None:
    """The result table of docs/experiments/full-data-tuning.md: each task's TF-IDF top-1 and tuned acc@1, test (dev),
    are those of the committed run's metrics.jsonl at the step that trained that task (the claim "beats TF-IDF on every
    task" rests on them)."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    own = _own_task_rows(ROOT / "results/tune_bert/runs/full_tuned/single-o0-s13")
    table = {row[0]: row for row in _table_after(text, "## Result", header="| task |")}
    for label, task in TUNING_TASKS.items():
        _, tfidf, tuned, _time = table[label]
        test, dev = own[(task, "test")], own[(task, "dev")]
        assert tfidf == f"{test.tfidf_acc1 * 100:.1f} ({dev.tfidf_acc1 * 100:.1f})", f"tuning: {label} TF-IDF"
        assert tuned == f"**{test.acc1 * 100:.1f}** ({dev.acc1 * 100:.1f})", f"tuning: {label} tuned linker"
        assert test.acc1 > test.tfidf_acc1 and dev.acc1 > dev.tfidf_acc1, f"tuning: {label} below TF-IDF"


# Page label of a row of the scaled CPU part's table -> (method, λ) in the committed report.
CPU_PART_ROWS: dict[str, tuple[str, float | None]] = {
    "naive": ("naive", None),
    "EWC λ 1e5": ("ewc", 1e5),
    "K-FAC λ 1e4": ("kfac", 1e4),
}


def _pp(x: float, sign: bool = False) -> str:
    """A difference in points as the page prints it: one decimal, a Unicode minus, "+" only where asked."""
    s = f"{x * 100:+.1f}" if sign else f"{x * 100:.1f}"
    s = s.replace("-", "−")
    return "0.0" if s in ("−0.0", "+0.0") else s


# (anchor of the table on full-data-tuning.md, committed report, page label -> method, seed) of each scaled CPU part.
CPU_PARTS = [
    ("configs/reproduce_bert_cpu_part.yaml", "reproduce_bert_cpu_part", CPU_PART_ROWS, 13),
    (
        "sweep configs/reproduce_bert_cpu_part_encoder.yaml",
        "reproduce_bert_cpu_part_encoder",
        {"naive": ("naive", None)},
        13,
    ),
    (
        "sweep configs/reproduce_bert_cpu_part_encoder_ncbi_first.yaml",
        "reproduce_bert_cpu_part_encoder_ncbi_first",
        {
            "naive": ("naive", None),
            "EWC λ 1e4": ("ewc", 1e4),
            "EWC λ 1e5": ("ewc", 1e5),
            "K-FAC λ 1e4": ("kfac", 1e4),
            "K-FAC λ 1e5": ("kfac", 1e5),
        },
        13,
    ),
    (
        "The same part on seed 17",
        "reproduce_bert_cpu_part_encoder_ncbi_first",
        {
            "naive": ("naive", None),
            "EWC λ 1e4": ("ewc", 1e4),
            "K-FAC λ 1e4": ("kfac", 1e4),
            "EWC λ 1e5": ("ewc", 1e5),
            "K-FAC λ 1e5": ("kfac", 1e5),
        },
        17,
    ),
]


@pytest.mark.parametrize(
    ("anchor", "report", "labels", "seed"), CPU_PARTS, ids=[f"{r}-s{s}" for _, r, _, s in CPU_PARTS]
)
def test_a_scaled_cpu_part_table_quotes_its_committed_accuracy_matrices(
    anchor: str, report: str, labels: dict, seed: int
) -> None:
    """The scaled CPU parts' tables (full-data-tuning.md) are the only full-scale forgetting elcl has measured; each
    row's per-step accuracies, forgetting vs best earlier, BWT and average final accuracy (with the report's interval
    where the group is that one run) must be those of the committed accuracy_matrices.json for that seed, so a rerun
    that changes them breaks here."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    report_dir = ROOT / "results" / report / "report"
    matrices = json.loads((report_dir / "accuracy_matrices.json").read_text(encoding="utf-8"))
    summary = json.loads((report_dir / "summary.json").read_text(encoding="utf-8"))
    runs = {(r["method"], r["lambda"]): r["acc1"] for r in matrices["runs"] if r["seed"] == seed}
    groups = {(g["method"], g["lambda"]): g for g in summary["groups"]}
    rows = [r for r in _table_after(text, anchor) if r[0] in labels]
    assert [r[0] for r in rows] == list(labels), f"{report}: one row per method"
    for label, acc_ci, first, second, best, bwt in rows:
        r = runs[labels[label]]
        avg = sum(r[2]) / len(r[2])
        assert acc_ci.split(" [")[0] == f"{avg * 100:.1f}", f"{report}: {label} avg acc@1"
        if "[" in acc_ci:  # an interval is printed only where the group is this one run
            assert groups[labels[label]]["seeds"] == [seed], f"{report}: {label} interval of a pooled group"
            assert acc_ci == _fmt(groups[labels[label]]["avg_final_acc1_interval"]), f"{report}: {label} interval"
        assert first == f"{r[0][0] * 100:.1f} → {r[2][0] * 100:.1f}", f"{report}: {label} first task"
        assert second == f"{r[1][1] * 100:.1f} → {r[2][1] * 100:.1f}", f"{report}: {label} second task"
        forget = [max(r[i][j] for i in range(j, 2)) - r[2][j] for j in (0, 1)]
        assert best == f"{_pp(forget[0])}, {_pp(forget[1])} pp", f"{report}: {label} forgetting vs best earlier"
        bwt_value = sum(r[2][j] - r[j][j] for j in (0, 1)) / 2
        want = _pp(bwt_value, sign=True)
        assert bwt in (f"{want} pp", f"{want.lstrip('+')} pp"), f"{report}: {label} BWT"


def test_the_full_size_evaluation_table_quotes_its_committed_benchmark() -> None:
    """The evaluation-speed page's full dev+test table and its 5x reasoning are the figures of
    results/bench_eval_full_avx2.json (a re-run that is not committed beside the page fails)."""
    b = json.loads((ROOT / "results/bench_eval_full_avx2.json").read_text())
    page = (ROOT / "docs/guides/evaluation-speed.md").read_text()
    rows = {r[0]: r[1:] for r in _table_after(page, "### The full dev+test sets", header="| path |")}
    n = b["mentions"]
    for name, secs, texts in [
        ("old (per split)", b["old_s"], b["texts_old"]),
        ("new (one pass)", b["new_s"], b["texts_new"]),
        ("encoder only (floor)", b["encoder_floor_s"], b["texts_new"]),
    ]:
        assert rows[name] == [f"{secs:.1f}", f"{n / secs:.1f}", str(texts)], name
    assert f"**{b['speedup']:.1f}×**" in page
    assert f"{b['padded_tokens_new']:,} padded tokens" in page
    assert f"about {b['encoder_gflop']:,.0f} GFLOP" in page and f"at {b['encoder_gflop_per_s']:.0f} GFLOP/s" in page
    assert b["acc_identical"] is True and f"{n:,} of {n:,} mentions" in page


def test_the_whole_collection_table_quotes_its_committed_benchmark() -> None:
    b = json.loads((ROOT / "results/bench_factors_5000.json").read_text())
    page = (ROOT / "docs/guides/curvature-speed.md").read_text()
    plain, kfac = b["results"]["forward+backward"], b["results"]["kfac expand"]
    rows = {r[0]: r[1:] for r in _table_after(page, "### A whole collection", header="| |")}
    assert rows["K-FAC expand collection"][0] == f"{kfac['seconds']:.1f}"
    assert rows["K-FAC expand collection"][2] == f"**{kfac['ratio_vs_fwd_bwd']:.2f}**"
    assert rows["plain forward+backward, before"][0] == f"{plain['seconds']:.1f}"
    assert rows["plain forward+backward, after"][0] == f"{plain['seconds_after']:.1f}"
    assert b["args"]["batches"] * b["args"]["batch_size"] >= 5000
    assert f"({kfac['ratio_vs_fwd_bwd']:.2f}× measured)" in page


def test_the_learning_rate_table_quotes_the_committed_ncbi_runs() -> None:
    """Each row of the tuning page's learning-rate table (NCBI alone, float32) is the committed run of that lr:
    its config's lr, and its test and dev acc@1 at the step that trained NCBI."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    rows = _table_after(text, "### Learning rate", header="| lr |")
    assert len(rows) >= 3
    for lr, test_cell, dev_cell, where in rows:
        assert f"ncbi_lr{lr}" in where
        cfg, cells = _tuning_run(ROOT / f"results/tune_bert/runs/ncbi_lr{lr}/single-o0-s13")
        assert cfg["train"]["lr"] == float(lr), lr
        assert test_cell.strip("*") == cells["test"], lr
        assert dev_cell.strip("*") == cells["dev"], lr


def test_the_bc5cdr_learning_rate_table_quotes_the_committed_runs() -> None:
    """Each row of the tuning page's BC5CDR learning-rate table is the committed single-task run of that (task, lr):
    its config trains that task alone at that lr, and its TF-IDF top-1, test and dev acc@1 are the run's own."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    rows = _table_after(text, "### Learning rate (BC5CDR tasks", header="| task | lr |")
    assert {r[0] for r in rows} == {"BC5CDR disease", "BC5CDR chemical"}
    for label, lr, tfidf_cell, test_cell, dev_cell, where in rows:
        task = TUNING_TASKS[label]
        assert where == f"`results/tune_bert/runs/{task}_lr{lr}`", where
        cfg, cells = _tuning_run(ROOT / where.strip("`") / "single-o0-s13", task)
        assert cfg["tasks"] == [task] and cfg["train"]["lr"] == float(lr), where
        assert tfidf_cell == f"{cells['tfidf']} ({cells['tfidf_dev']})", where
        assert test_cell.strip("*") == cells["test"], where
        assert dev_cell.strip("*") == cells["dev"], where


def test_the_dictionary_table_quotes_the_committed_ncbi_runs() -> None:
    """The tuning page's `auto` against `auto+mentions` table (NCBI alone): each row is the committed run whose config
    has that data.ontology, with its TF-IDF top-1 and its acc@1 at the step that trained NCBI."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    rows = _table_after(text, "### Dictionary", header="| `data.ontology` |")
    assert [r[0] for r in rows] == ["`auto`", "`auto+mentions`"]
    for ontology, tfidf_cell, test_cell, dev_cell, where in rows:
        cfg, cells = _tuning_run(ROOT / where.strip("`") / "single-o0-s13")
        assert cfg["data"]["ontology"] == ontology.strip("`"), where
        assert tfidf_cell == cells["tfidf"], where
        assert test_cell.strip("*") == cells["test"], where
        assert dev_cell.strip("*") == cells["dev"], where


@pytest.mark.parametrize("part", ["reproduce_bert_cpu_part_encoder", "reproduce_bert_cpu_part_encoder_ncbi_first"])
def test_an_encoder_part_quotes_each_task_against_its_tfidf_floor(part: str) -> None:
    """An encoder part's sentence "TASK acc (dev acc) against TF-IDF (dev TF-IDF)" per task is the committed naive
    run's figures at the step that trained that task; the claim that the encoder carries points over TF-IDF rests on it."""
    text = _prose("full-data-tuning.md")
    own = _own_task_rows(ROOT / f"results/{part}/runs/naive-o0-s13")
    for label, task in TUNING_TASKS.items():
        test, dev = own[(task, "test")], own[(task, "dev")]
        want = (
            f"{label} {test.acc1 * 100:.1f} (dev {dev.acc1 * 100:.1f}) against "
            f"{test.tfidf_acc1 * 100:.1f} ({dev.tfidf_acc1 * 100:.1f})"
        )
        assert want in text, want


def test_the_epochs_table_quotes_the_committed_ncbi_runs() -> None:
    """The tuning page's epochs table (NCBI alone, bf16): each row is a committed run whose config trains that many
    epochs, with its test and dev acc@1 at the step that trained NCBI."""
    text = (EXPERIMENTS / "full-data-tuning.md").read_text(encoding="utf-8")
    rows = _table_after(text, "### Epochs", header="| epochs |")
    assert [r[0] for r in rows] == ["1", "2"]
    for epochs, test_cell, dev_cell, where in rows:
        cfg, cells = _tuning_run(ROOT / where.strip("`") / "single-o0-s13")
        assert cfg["train"]["epochs"] == float(epochs), where
        assert test_cell.strip("*") == cells["test"], where
        assert dev_cell.strip("*") == cells["dev"], where


# (page, the text the table follows, committed report) of the tables that give every λ a part ran, not only the chosen.
ALL_LAMBDA_TABLES = [
    (
        "full-data-tuning.md",
        "Every λ this part ran",
        "reproduce_bert_cpu_part_encoder_ncbi_first/report",
    ),
]
ALL_LAMBDA_LABELS = {"naive": "naive", "EWC": "ewc", "K-FAC": "kfac", "single": "single"}


def _group(groups: list[dict], method: str, lam: str) -> dict:
    """The report's group of ``method`` at the page's λ cell ("–": a method without λ)."""
    found = [
        g
        for g in groups
        if g["method"] == method and (g["lambda"] is None if lam == "–" else g["lambda"] == float(lam))
    ]
    assert len(found) == 1, f"{method} λ {lam}: {len(found)} groups in the report"
    return found[0]


@pytest.mark.parametrize(("page", "anchor", "report"), ALL_LAMBDA_TABLES, ids=[r for _, _, r in ALL_LAMBDA_TABLES])
def test_an_every_lambda_table_quotes_its_committed_groups(page: str, anchor: str, report: str) -> None:
    """The prose that says which λ dev chose, and by how much, and what a λ dev did not choose would have given, rests
    on these rows: each (method, λ) group's seeds, dev and test average acc@1, mean forgetting, forgetting reduction
    with its interval, and whether the report chose it, as in the committed summary.json; every group has its row."""
    text = (EXPERIMENTS / page).read_text(encoding="utf-8")
    summary = _summary(report)
    rows = _table_after(text, anchor, header="| method | λ | seeds |")
    for label, lam, seeds, dev, test, forgetting, reduction, chosen in rows:
        g = _group(summary["groups"], ALL_LAMBDA_LABELS[label], lam)
        m = g["metrics"]
        assert seeds == ", ".join(map(str, g["seeds"])), f"{report}: {label} {lam} seeds"
        assert dev == f"{m['avg_final_dev_acc1']['mean'] * 100:.1f}", f"{report}: {label} {lam} dev acc@1"
        assert test == _fmt(g["avg_final_acc1_interval"]), f"{report}: {label} {lam} test acc@1"
        assert forgetting == _pp(m["mean_forgetting"]["mean"]), f"{report}: {label} {lam} mean forgetting"
        if label in ("naive", "single"):
            assert reduction == ("ref." if label == "naive" else "–"), f"{report}: {label} reduction"
        else:
            assert reduction == _fmt(g["forgetting_reduction"]), f"{report}: {label} {lam} reduction"
        assert (chosen == "yes") == (g["chosen"] and lam != "–"), f"{report}: {label} {lam} chosen"
    assert len(rows) == len(summary["groups"]), f"{report}: a group has no row"


def test_the_ncbi_first_matched_plasticity_sentence_quotes_its_committed_report() -> None:
    """ "At matched plasticity EWC forgets less" is the part of the NCBI-first verdict that takes λ out of the
    comparison; its range of newest-task accuracies, its margin and which method it favours are the report's."""
    text = _prose("full-data-tuning.md")
    summary = _summary("reproduce_bert_cpu_part_encoder_ncbi_first/report")
    (m,) = [m for m in summary["matched_plasticity"] if (m["a"], m["b"]) == ("kfac", "ewc")]
    assert m["mean_difference"] > 0, "the report no longer has K-FAC forgetting more at matched plasticity"
    acc = m["newest_task_acc1"]
    want = (
        f"they share, {min(acc) * 100:.1f}–{max(acc) * 100:.1f}%) has EWC forgetting "
        f"{m['mean_difference'] * 100:.1f} points less"
    )
    assert want in text, want


def test_the_ncbi_first_seed_13_reductions_quote_the_seed_13_report() -> None:
    """The seed-13 sentences of the NCBI-first verdict (each penalty at the dev-chosen λ and at both λ, the K-FAC − EWC
    difference) are results/…/report_seed13's, the report of the six seed-13 runs alone."""
    text = _prose("full-data-tuning.md")
    summary = _summary("reproduce_bert_cpu_part_encoder_ncbi_first/report_seed13")
    red = {
        (g["method"], g["lambda"]): g["forgetting_reduction"]["point"] * 100
        for g in summary["groups"]
        if g["forgetting_reduction"]["point"] is not None
    }
    chosen = {m["method"]: float(m["lambda"]) for m in summary["comparison"]["methods"]}
    diff = next(d for d in summary["comparison"]["differences"] if (d["a"], d["b"]) == ("kfac", "ewc"))
    assert chosen == {"ewc": 1e5, "kfac": 1e4}
    want = (
        f"K-FAC reduces it by {red[('kfac', 1e4)]:.1f}% and EWC by {red[('ewc', 1e5)]:.1f}%, a "
        f"+{diff['forgetting_reduction']['point'] * 100:.1f}-point difference"
    )
    assert want in text, want
    both = (
        f"(1e4: {red[('ewc', 1e4)]:.1f}% against {red[('kfac', 1e4)]:.1f}%; "
        f"1e5: {red[('ewc', 1e5)]:.1f}% against {red[('kfac', 1e5)]:.1f}%;"
    )
    assert both in text, both


def test_the_ncbi_first_dev_margins_quote_the_committed_report() -> None:
    """ "The lead is the λ dev chose" rests on how little separated each penalty's two λ on dev; the margins and the
    dev means the verdict quotes are the committed report's, and the λ it says dev picked are the chosen groups."""
    text = _prose("full-data-tuning.md")
    summary = _summary("reproduce_bert_cpu_part_encoder_ncbi_first/report")
    dev = {(g["method"], g["lambda"]): g["metrics"]["avg_final_dev_acc1"]["mean"] * 100 for g in summary["groups"]}
    chosen = {g["method"]: g["lambda"] for g in summary["groups"] if g["chosen"] and g["lambda"] is not None}
    assert chosen == {"ewc": 1e5, "kfac": 1e4}
    ewc = dev[("ewc", 1e5)] - dev[("ewc", 1e4)]
    kfac = dev[("kfac", 1e4)] - dev[("kfac", 1e5)]
    want = (
        f"dev picked EWC 1e5 over 1e4 by {ewc:.2f} points of average dev acc@1 ({dev[('ewc', 1e5)]:.2f} against "
        f"{dev[('ewc', 1e4)]:.2f}) and K-FAC 1e4 over 1e5 by {kfac:.2f} ({dev[('kfac', 1e4)]:.2f} against "
        f"{dev[('kfac', 1e5)]:.2f})"
    )
    assert want in text, want
    assert f"dev's margins of {ewc:.2f} and {kfac:.2f} points" in text
