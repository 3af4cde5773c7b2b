"""The losses a run trains on: the answer token's or the whole sequence's cross-entropy, the position loss of
compiled Tracr models, and the forget/retain loss of gradient-ascent unlearning. Every one takes (model, batch,
device, cfg), so the loop never asks which one it trains."""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wrapperlab.training.config import TrainConfig

PAD_ID = 0  # "<pad>" is token 0 in every wrapperlab vocabulary


class BatchLike(Protocol):
    tokens: np.ndarray  # (b, L) token ids
    answer_pos: np.ndarray  # (b,) index of the answer token


def to_device(batch: BatchLike, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's tokens and answer positions on ``device`` (:func:`array_to`)."""
    return array_to(batch.tokens, device), array_to(batch.answer_pos, device)


def array_to(array: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """A host array on ``device``; to a GPU through pinned memory, so the copy is asynchronous (from pageable
    memory, ``non_blocking`` copies wait for the transfer) and the next step's kernels queue behind it."""
    device = torch.device(device)
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


def answer_logits(model: nn.Module, tokens: torch.Tensor, answer_pos: torch.Tensor,
                  length: int | None = None) -> torch.Tensor:
    """Logits ``(b, vocab)`` predicting each sequence's answer token.

    The answer token itself is replaced by padding in the input, so that a bidirectional model
    cannot read the answer it is asked for (a causal model never sees it anyway). The input is cut after
    ``length`` tokens (default: the last answer's position; under ``vmap`` the caller computes it, since a
    tensor's value cannot size a slice there).
    """
    rows = torch.arange(len(tokens), device=tokens.device)
    inputs = tokens.clone()
    inputs[rows, answer_pos] = PAD_ID
    return model(inputs[:, : int(answer_pos.max()) if length is None else length], logits_at=answer_pos - 1)


def compute_loss(model: nn.Module, tokens: torch.Tensor, answer_pos: torch.Tensor, cfg: TrainConfig,
                 length: int | None = None) -> torch.Tensor:
    """The loss ``cfg.loss`` names; ``length``: see :func:`answer_logits`."""
    rows = torch.arange(len(tokens), device=tokens.device)
    if cfg.loss == "answer":
        return F.cross_entropy(answer_logits(model, tokens, answer_pos, length).float(), tokens[rows, answer_pos])
    logits = model(tokens[:, :-1]).float()
    targets = tokens[:, 1:]
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD_ID)
    if cfg.answer_weight:
        at = answer_pos - 1
        loss = loss + cfg.answer_weight * F.cross_entropy(logits[rows, at], targets[rows, at])
    return loss


def position_loss(model: nn.Module, batch, device: torch.device, cfg: TrainConfig) -> torch.Tensor:
    """Cross-entropy of the logits at ``batch.answer_pos`` against ``batch.targets`` (class indices).

    For models whose outputs are their own classes, not next tokens (Tracr-compiled programs answer
    in an output space of their own, at a fixed position, with every input token visible).
    """
    tokens, answer_pos = to_device(batch, device)
    targets = torch.from_numpy(batch.targets).to(device)
    return F.cross_entropy(model(tokens, logits_at=answer_pos).float(), targets)


def token_loss(model: nn.Module, batch, device: torch.device, cfg: TrainConfig) -> torch.Tensor:
    tokens, answer_pos = to_device(batch, device)
    # the cut length read from the host array: from the device tensor it was a host sync every step
    return compute_loss(model, tokens, answer_pos, cfg, int(batch.answer_pos.max()))


LossFn = Callable[[nn.Module, BatchLike, torch.device, TrainConfig], torch.Tensor]


def forget_retain_loss(weight: float, cap: float) -> LossFn:
    """Gradient ascent on a batch's forget rows with the ordinary loss on its retain rows (the "GA + retain"
    unlearning baseline): ``CE(retain) - weight * min(CE(forget), cap)``, each CE a mean over its rows' tokens.
    Why the cap: plain ascent has no bottom (the forget loss can grow without end and drags every weight with it);
    past ``cap`` nats per token the forget term has no gradient and only the retain loss trains. The batch carries
    ``n_forget``: its first rows are the forget set. The logged loss is this difference (negative while ascending)."""

    def loss(model: nn.Module, batch, device: torch.device, cfg: TrainConfig) -> torch.Tensor:
        tokens, _ = to_device(batch, device)
        targets = tokens[:, 1:]
        ce = F.cross_entropy(model(tokens[:, :-1]).float().transpose(1, 2), targets, ignore_index=PAD_ID,
                             reduction="none")  # (rows, positions)
        counted = (targets != PAD_ID).float()
        per_row = (ce * counted).sum(1) / counted.sum(1).clamp(min=1)
        forget, retain = per_row[: batch.n_forget].mean(), per_row[batch.n_forget :].mean()
        return retain - weight * torch.clamp(forget, max=cap)

    return loss
