"""The layer-kind registry: which class says how a module's calls become curvature rows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from elcl.curvature import layers
from elcl.curvature.layers import LAYER_KINDS, layer_kind
from elcl.errors import ElclError


def test_each_supported_type_has_its_kind_and_subclasses_inherit_it() -> None:
    assert {t.__name__: type(k).__name__ for t, k in LAYER_KINDS.items()} == {
        "Linear": "Linear",
        "Conv1d": "Conv1d",
        "Embedding": "Embedding",
        "LayerNorm": "LayerNorm",
    }
    # MultiheadAttention's out_proj is a Linear subclass: it must be treated as a Linear.
    out_proj = nn.MultiheadAttention(4, 2).out_proj
    assert type(out_proj) is not nn.Linear and layer_kind(out_proj) is LAYER_KINDS[nn.Linear]
    assert layer_kind(nn.GRU(3, 3)) is None
    assert [t.__name__ for t, k in LAYER_KINDS.items() if k.kfac] == ["Linear", "Conv1d"]


def test_factor_dims_fold_the_bias_into_A() -> None:
    conv = nn.Conv1d(3, 4, 2)
    assert layer_kind(conv).factor_dims(conv, has_bias=True) == (3 * 2 + 1, 4)
    lin = nn.Linear(5, 2, bias=False)
    assert layer_kind(lin).factor_dims(lin, has_bias=False) == (5, 2)
    with pytest.raises(ElclError, match="no Kronecker block"):
        layer_kind(nn.LayerNorm(3)).factor_dims(nn.LayerNorm(3), has_bias=True)


def test_rows_of_each_kind() -> None:
    x = torch.randn(2, 3, 5)
    rows, n, n_pos = layers.Linear().input_rows("l", nn.Linear(5, 4), x)
    assert (n, n_pos) == (2, 3) and torch.equal(rows, x.reshape(6, 5))
    conv = nn.Conv1d(5, 4, 3, padding=1)
    rows, n, n_pos = layers.Conv1d().input_rows("c", conv, x.transpose(1, 2))
    # a patch times the reshaped weight is the convolution's output at that step (bias aside)
    out = conv(x.transpose(1, 2)) - conv.bias[None, :, None]
    torch.testing.assert_close(rows @ conv.weight.reshape(4, -1).T, out.transpose(1, 2).reshape(6, 4))
    ids = torch.tensor([[1, 2, 0], [3, 3, 3]])
    rows, n, n_pos = layers.Embedding().input_rows("e", nn.Embedding(4, 2), ids)
    assert (n, n_pos) == (2, 3) and rows.tolist() == [1, 2, 0, 3, 3, 3]
    ln = nn.LayerNorm(5)
    rows, n, n_pos = layers.LayerNorm().input_rows("n", ln, x)
    torch.testing.assert_close(rows, nn.functional.layer_norm(x, (5,)).reshape(6, 5))
    g = torch.randn(2, 4, 3)  # a Conv1d output gradient [N, out, L_out]
    picked = layers.Conv1d().grad_rows(conv, g, torch.tensor([0, 4]))
    assert torch.equal(picked, torch.stack([g[0, :, 0], g[1, :, 1]]))


def test_kind_checks_refuse_what_the_rows_would_get_wrong() -> None:
    with pytest.raises(ElclError, match="stride 2"):
        layers.Conv1d().check("c", nn.Conv1d(2, 2, 3, stride=2))
    with pytest.raises(ElclError, match="scale_grad_by_freq"):
        layers.Embedding().check("e", nn.Embedding(3, 2, scale_grad_by_freq=True))
