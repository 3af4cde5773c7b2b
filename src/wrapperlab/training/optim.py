"""The optimiser every run trains with, and the divergence guard: a non-finite loss, gradient or weight stops a run
before it is applied or stored."""

from __future__ import annotations

import math

import torch
from torch import nn

from wrapperlab.errors import DivergedError
from wrapperlab.training.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW decays only matrices (minGPT's rule: no decay on biases, norms, embeddings); SGD+momentum
    (the paper's choice for compiled Tracr models, where adaptive optimisers were unstable) decays none.
    Frozen parameters (``requires_grad=False``) are left out."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=cfg.momentum)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:  # a tied unembedding is the embedding: no decay, listed once
                continue
            seen.add(id(p))
            (decay if isinstance(module, nn.Linear) and name == "weight" else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def check_step(step: int, loss: torch.Tensor, grad_norm: torch.Tensor, lr: float, run: str = "") -> float:
    """The divergence guard, before an optimiser step: the loss and the gradient norm must be finite (one host sync
    for both). Returns the loss; raises :class:`DivergedError` naming the step otherwise, so no update with a NaN
    is ever applied."""
    loss_value, norm_value = torch.stack([loss.detach().float(), grad_norm.detach().float()]).tolist()
    return check_values(step, loss_value, norm_value, lr, run)


def check_values(step: int, loss: float, grad_norm: float, lr: float, run: str = "") -> float:
    """:func:`check_step` on numbers already on the host (a stack reads all its runs' in one sync)."""
    if not math.isfinite(loss):
        raise DivergedError(step, "loss", loss, lr, run)
    if not math.isfinite(grad_norm):
        raise DivergedError(step, "gradient norm", grad_norm, lr, run)
    return loss


def check_weights(model: nn.Module, step: int, lr: float, run: str = "") -> None:
    """Before a checkpoint or the final weights are written: every weight finite (finite steps can still overflow
    a weight), so a stored checkpoint is always a good one to resume from."""
    for name, p in model.named_parameters():
        bad = ~torch.isfinite(p.detach())
        if bad.any():
            raise DivergedError(step, f"weight {name}", float(p.detach()[bad][0]), lr, run)
