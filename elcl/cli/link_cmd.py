"""`elcl link`: link the mentions of new documents with a trained run or an export."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from elcl.errors import ElclError


def link(
    source: Path | None = typer.Argument(
        None, help="A run directory (with run.json) or an export folder.", show_default=False
    ),
    model: Path | None = typer.Option(None, "--model", help="An export folder (`elcl export`); instead of SOURCE."),
    input_: str = typer.Option(
        "-", "--input", "-i", help="PubTator file, span TSV, or '-' for mention strings on stdin."
    ),
    fmt: str = typer.Option(
        "auto", "--format", help="auto (- = text, *.tsv = spans, else PubTator), pubtator, tsv or text."
    ),
    docs: Path | None = typer.Option(
        None, "--docs", help="Span TSV only: the documents' text (doc_id<TAB>text lines, or PubTator)."
    ),
    step: int | None = typer.Option(None, "--step", help="Step of the run (default: its last finished step)."),
    task: str | None = typer.Option(
        None, "--task", help="Whose ontology to link against (default: the step's trained task)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="JSONL output (default: stdout)."),
    pubtator_out: Path | None = typer.Option(
        None, "--pubtator-out", help="Also write the documents with predicted ids filled in."
    ),
    top_k: int = typer.Option(5, "--top-k", min=1, help="Candidates per mention in the output."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Texts per encoder batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
) -> None:
    """Link mentions: JSONL rows (mention, top-k ids, names, scores), optionally PubTator.

    When the input carries gold ids, acc@1/@5 over those mentions go to stderr; on a
    corpus split they are the numbers `elcl evaluate` shows for the same run and step.
    """
    from elcl.fileio import atomic_write_text
    from elcl.linking.inputs import read_input
    from elcl.linking.link import link_input, pubtator_text, write_jsonl
    from elcl.linking.source import input_id_rules, open_source
    from elcl.runtime import pick_device

    if (source is None) == (model is None):
        raise ElclError("give one linker: a run directory / export folder as SOURCE, or --model DIR")
    if device not in ("auto", "cpu", "cuda"):
        raise ElclError(f"--device: {device!r} is not one of auto, cpu, cuda")
    # A bad input file fails before the model loads; stdin is read once the model is ready.
    where = model if model is not None else source
    assert where is not None
    rules = input_id_rules(where, step=step, task=task)
    inp = read_input(input_, fmt, docs, rules) if input_ != "-" else None
    src = open_source(where, step=step, task=task, device=pick_device(device))
    if inp is None:
        inp = read_input(input_, fmt, docs, rules)
    if pubtator_out is not None and not inp.has_documents:
        raise ElclError(
            "--pubtator-out: the input has no documents (plain mention strings); give a PubTator file or a span TSV"
        )
    if src.run is not None and src.run.cfg.train.max_eval_mentions is not None:
        typer.echo(
            f"note: this run evaluated a subset of {src.run.cfg.train.max_eval_mentions} mentions per split "
            "(train.max_eval_mentions); accuracies over a whole corpus file differ from `elcl evaluate`'s",
            err=True,
        )
    top_k = min(top_k, src.candidates.k)
    res = link_input(src, inp, top_k=top_k, batch_size=batch_size)
    write_jsonl(res.rows, out if out is not None else sys.stdout)
    if pubtator_out is not None:
        atomic_write_text(pubtator_out, pubtator_text(inp.documents, res.rows))
    summary = f"linked {len(res.rows)} mention(s) with {src.label} against {src.task} ({len(src.ontology)} concepts)"
    if res.n_gold:
        summary += f"; acc@1 {res.acc1:.4f} acc@5 {res.acc5:.4f} over {res.n_gold} with gold ids"
    if res.n_unlinkable:
        summary += f" ({res.n_unlinkable} unlinkable, not scored)"
    typer.echo(summary, err=True)


def register(app: typer.Typer) -> None:
    """Add the `link` command to the `elcl` app."""
    app.command("link")(link)
