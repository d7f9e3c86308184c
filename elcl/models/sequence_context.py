"""Tells curvature hooks which token positions are real and which example owns them.

A bi-encoder linker runs its shared encoder over the mention *and* over every
candidate name of an example, each padded to a common length. A Linear layer inside
the encoder therefore sees inputs of shape ``[N_seq, T, d]`` where several sequences
belong to one training example and padded positions carry no gradient. K-FAC
(expand/reduce) and per-example diagonal Fisher need both facts, which the layer
itself cannot know, so the model announces them around each encoder call::

    with sequence_context(token_mask=attention_mask.bool(), example_index=owner):
        hidden = encoder(input_ids, attention_mask)

Hooks read :func:`current_sequence_info` at forward time. Outside any context each
leading row of a layer input is its own example and every position is real.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_CURRENT: contextvars.ContextVar[SequenceInfo | None] = contextvars.ContextVar("elcl_sequence_info", default=None)


@dataclass(frozen=True)
class SequenceInfo:
    token_mask: torch.Tensor | None
    """``[N_seq, T]`` bool, True at real (non-padding) positions."""
    example_index: torch.Tensor | None
    """``[N_seq]`` long, index of the training example (row of the logits) owning each sequence."""


@contextmanager
def sequence_context(
    token_mask: torch.Tensor | None = None, example_index: torch.Tensor | None = None
) -> Iterator[SequenceInfo]:
    info = SequenceInfo(
        token_mask=None if token_mask is None else token_mask.bool(),
        example_index=None if example_index is None else example_index.long(),
    )
    token = _CURRENT.set(info)
    try:
        yield info
    finally:
        _CURRENT.reset(token)


def current_sequence_info() -> SequenceInfo | None:
    return _CURRENT.get()
