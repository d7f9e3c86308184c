from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from elcl.curvature.collect import collect_curvature
from elcl.curvature.storage import load_curvature, pack_triu, read_meta, save_curvature, unpack_triu
from elcl.errors import CheckpointError


def _stats(approx="both"):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(7, 3), nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 3))
    model = model.double()
    ids = torch.randint(0, 7, (5, 2))
    y = torch.randint(0, 3, (5,))
    return collect_curvature(
        model, [(ids, y)], lambda m, b: (m(b[0]), b[1]), approx=approx, progress=False, dtype=torch.float64
    )


def test_triu_pack_roundtrip():
    M = torch.randn(5, 5)
    M = M + M.T
    v = pack_triu(M)
    assert v.shape == (15,)
    torch.testing.assert_close(unpack_triu(v), M)


@pytest.mark.parametrize("symmetric", ["full", "triu"])
def test_roundtrip(tmp_path, symmetric):
    st = _stats()
    save_curvature(st, tmp_path / "c", "abc123", dtype=torch.float64, symmetric=symmetric)
    assert not [p for p in (tmp_path / "c").iterdir() if p.name.startswith(".tmp")]
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert meta["symmetric_storage"] == symmetric and meta["dtype"] == "float64"
    assert meta["approximation"] == "both" and meta["fisher_kind"] == "empirical"
    assert meta["sequence_variant"] == "expand" and meta["n_examples"] == 5 and meta["n_samples"] == 1
    assert len(meta["factors_sha256"]) == 64 and meta["elcl_version"]
    back = load_curvature(tmp_path / "c", "abc123")
    assert set(back.kfac) == set(st.kfac) == {"2", "4"}
    for k, (A, G) in st.kfac.items():
        assert torch.equal(back.kfac[k][0], A) and torch.equal(back.kfac[k][1], G)
    assert set(back.diag) == set(st.diag)
    for k in st.diag:
        assert torch.equal(back.diag[k], st.diag[k])
    for k in st.anchors:
        assert torch.equal(back.anchors[k], st.anchors[k])
    assert back.meta["approx"] == "both" and back.meta["n_examples"] == 5


def test_float32_storage_and_file_size(tmp_path):
    st = _stats("kfac")
    save_curvature(st, tmp_path / "a", "h", dtype=torch.float32, symmetric="full")
    save_curvature(st, tmp_path / "b", "h", dtype=torch.float32, symmetric="triu")
    a, b = load_curvature(tmp_path / "a"), load_curvature(tmp_path / "b")
    for k in st.kfac:
        assert a.kfac[k][0].dtype == torch.float32
        torch.testing.assert_close(a.kfac[k][0], b.kfac[k][0])
        torch.testing.assert_close(a.kfac[k][0], st.kfac[k][0].float())
    assert b.anchors["2.weight"].dtype == torch.float64  # anchors keep the parameter dtype
    assert (tmp_path / "b" / "factors.safetensors").stat().st_size < (
        tmp_path / "a" / "factors.safetensors"
    ).stat().st_size


def test_tampered_file_refused(tmp_path):
    st = _stats()
    save_curvature(st, tmp_path, "h")
    f = tmp_path / "factors.safetensors"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"factors\.safetensors: sha256") as ei:
        load_curvature(tmp_path, "h")
    assert "\n" not in str(ei.value)


def test_corrupt_safetensors_refused(tmp_path):
    st = _stats()
    save_curvature(st, tmp_path, "h")
    f = tmp_path / "factors.safetensors"
    f.write_bytes(b"garbage bytes, not safetensors")
    meta = json.loads((tmp_path / "meta.json").read_text())
    import hashlib

    meta["factors_sha256"] = hashlib.sha256(f.read_bytes()).hexdigest()
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_curvature(tmp_path)


def test_wrong_model_hash_refused(tmp_path):
    save_curvature(_stats(), tmp_path, "model-A")
    with pytest.raises(CheckpointError, match="model-A"):
        load_curvature(tmp_path, "model-B")
    load_curvature(tmp_path, None)  # no expectation: accepted


def test_missing_files_refused(tmp_path):
    with pytest.raises(CheckpointError) as ei:
        load_curvature(tmp_path / "nope", "h")
    msg = str(ei.value)
    assert "meta.json" in msg and "not found" in msg and "\n" not in msg
    save_curvature(_stats(), tmp_path, "h")
    (tmp_path / "factors.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"factors\.safetensors: curvature tensor file not found"):
        load_curvature(tmp_path, "h")


def test_bad_meta_refused(tmp_path):
    save_curvature(_stats(), tmp_path, "h")
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_curvature(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"dtype": "float32"}))
    with pytest.raises(CheckpointError, match="missing key"):
        load_curvature(tmp_path)
    assert read_meta  # exported


def test_factor_size_table(tmp_path):
    from elcl.curvature.stats import factor_size_table, format_size_table

    st = _stats("kfac")
    rows = factor_size_table(st)
    by = {r.layer: r for r in rows}
    # Linear(6, 4): 28 params, A 7x7, G 4x4 packed: 28 + 10 values of 8 bytes
    assert by["2"].kind == "kfac" and by["2"].params == 28 and by["2"].factor_bytes == (28 + 10) * 8
    assert by["0.weight"].kind == "diag" and by["0.weight"].factor_bytes == 21 * 8
    assert rows[-1].layer == "TOTAL" and rows[-1].params == 21 + 28 + 15
    assert rows[-1].factor_bytes == sum(r.factor_bytes for r in rows[:-1])
    save_curvature(st, tmp_path, "h", dtype=torch.float32, symmetric="full")
    rows_f = factor_size_table(tmp_path)
    assert {r.layer: r for r in rows_f}["2"].factor_bytes == (49 + 16) * 4
    text = format_size_table(rows_f)
    assert "TOTAL" in text and "ratio" in text
