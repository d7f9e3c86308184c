"""The model card (README.md) of an export folder: what was trained, how, how well."""

from __future__ import annotations

from elcl import __version__
from elcl.config import ExperimentConfig
from elcl.continual import methods


def _fmt_lambda(lam: object) -> str:
    return "–" if lam is None else f"{float(lam):g}"  # type: ignore[arg-type]


def render_card(
    cfg: ExperimentConfig,
    state: dict,
    step: int,
    trained: str,
    task: str,
    metrics: list[dict],
    ontology_source: str,
    n_concepts: int,
) -> str:
    m = cfg.model
    order = list(state.get("order", []))
    method = state.get("method", cfg.method.name)
    cls = methods.REGISTRY.get(method)
    at_once = cls is not None and cls.all_tasks_at_once  # its one step trained on every task
    seq = " → ".join(f"**{t}**" if (i == step or at_once) else t for i, t in enumerate(order))
    kind = "ResCNN" if m.type == "cnn" else f"`{m.name}`"
    pooling = "masked max" if m.type == "cnn" else m.pooling
    mode = (
        "cross-encoder (mention [SEP] name, linear head)"
        if m.mode == "cross"
        else f"bi-encoder ({pooling} pooling, {m.scorer} / {m.temperature:g})"
    )
    lines = [
        f"# elcl linker: {task}",
        "",
        f"A medical entity linker trained by [elcl](https://pypi.org/project/elcl/) {__version__}: {kind}, {mode},",
        f"ranking the top-{cfg.candidates.k} TF-IDF candidates (char {cfg.candidates.ngram_min}–{cfg.candidates.ngram_max}-grams) "
        f"from {ontology_source} ({n_concepts} concepts, `ontology.jsonl.gz`).",
        "",
        "## Training",
        "",
        f"- sequence: {seq} (step {step + 1} of {len(order)}, trained on {trained})",
        f"- method: {method}, λ = {_fmt_lambda(state.get('lambda'))}, seed {state.get('seed')}",
        f"- curvature: {cfg.curvature.approx}, {cfg.curvature.kind} Fisher"
        if cls is not None and cls.curvature != "none"
        else "- curvature: not used",
        f"- data: ontology mode `{cfg.data.ontology}`, training mentions per task: {cfg.train.max_train_mentions or 'all'}, "
        f"{cfg.train.epochs:g} epoch(s), lr {cfg.train.lr:g}, batch {cfg.train.batch_size}" + _later(cfg),
        f"- mention text: max {m.max_length} tokens, {m.context_window} words of context each side"
        + (f", TF-IDF score weight {m.sparse_weight:g}" if m.sparse_weight else "")
        + (f", concept-prior weight {m.prior_weight:g} (training-annotation counts)" if m.prior_weight else ""),
        "",
        "## Accuracy after this step",
        "",
        "| task | split | acc@1 | acc@5 | mentions | TF-IDF acc@1 |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(
        metrics, key=lambda r: (order.index(r["eval_task"]) if r["eval_task"] in order else 99, r["split"])
    ):
        tf = r.get("tfidf_acc1")
        lines.append(
            f"| {r['eval_task']} | {r['split']} | {r['acc1']:.4f} | {r['acc5']:.4f} | {r['n']} | {'–' if tf is None else f'{tf:.4f}'} |"
        )
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "pip install elcl",
        "elcl link --model THIS_FOLDER -i documents.pubtator --out links.jsonl --pubtator-out linked.pubtator",
        "```",
        "",
    ]
    if m.type == "bert":
        pool = "hidden[:, 0]" if m.pooling == "cls" else "(hidden * mask).sum(1) / mask.sum(1)"
        norm = "\nvec = torch.nn.functional.normalize(vec, dim=-1)" if m.scorer == "cosine" else ""
        lines += [
            "Without elcl (the encoder; candidates and ranking are elcl's):",
            "",
            "```python",
            "import torch",
            "from transformers import AutoModel, AutoTokenizer",
            "tok = AutoTokenizer.from_pretrained(FOLDER)",
            "enc = AutoModel.from_pretrained(FOLDER).eval()",
            f"batch = tok(texts, truncation=True, max_length={m.max_length}, padding=True, return_tensors='pt')",
            "hidden = enc(**batch).last_hidden_state",
            "mask = batch['attention_mask'].unsqueeze(-1).float()",
            f"vec = {pool}{norm}",
            "```",
            "",
            "The pooler layer is not part of the linker: transformers reports it as newly initialised.",
        ]
        if m.mode == "bi":
            lines.append("The folder also loads with sentence-transformers (modules.json, 1_Pooling/).")
    else:
        lines.append(
            "The ResCNN encoder is in `cnn_encoder.safetensors` (layout: elcl's docs, guides/linking.md, section `elcl export`)."
        )
    lines += ["", f"elcl version: {__version__}", ""]
    return "\n".join(lines)


def _later(cfg: ExperimentConfig) -> str:
    """Tasks after the first trained differently (``train.later_lr_scale`` / ``later_epochs``)."""
    t = cfg.train
    if t.later_lr_scale == 1.0 and t.later_epochs is None:
        return ""
    return f"; tasks after the first: lr {t.lr_at(1):g}, {t.epochs_at(1):g} epoch(s)"
