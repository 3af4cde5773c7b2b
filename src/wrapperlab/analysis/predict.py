"""Greedy predictions of any model in batches, in eval mode, leaving the model's mode as it was."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from wrapperlab.analysis.rng import in_eval_mode
from wrapperlab.training.loop import answer_logits


@torch.no_grad()
@in_eval_mode
def batched_argmax(
    model: nn.Module, samples, logits: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] = answer_logits,
    batch_size: int = 512,
) -> np.ndarray:
    """Greedy prediction per sample, ``(n,)``: ``logits(model, tokens, answer_pos)`` in eval mode, batched."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(samples), batch_size):
        tokens = torch.from_numpy(samples.tokens[i : i + batch_size]).to(device)
        pos = torch.from_numpy(samples.answer_pos[i : i + batch_size]).to(device)
        out.append(logits(model, tokens, pos).argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)
