"""The optimiser every run trains with, and the divergence guard: a non-finite loss, gradient or weight stops a run
before it is applied or stored."""

from __future__ import annotations

import math
from typing import Sequence

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


def check_values(step: int, loss: float, grad_norm: float, lr: float, run: str = "") -> float:
    """One run's loss and gradient norm, read on the host, must be finite: returns the loss; raises
    :class:`DivergedError` naming the step otherwise (:class:`Guard` calls it, eagerly or at its check)."""
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


class Guard:
    """The divergence guard of one step of N runs (one alone, or a stack), eager or deferred.

    Eager (the CPU): the losses and gradient norms read on the host every step (one sync for all runs), a
    non-finite one raising :class:`DivergedError` before the update. A sync costs nothing on a CPU, and the error
    comes at the step itself.

    Deferred (an accelerator): a sync per step stalls the device while the host waits, and at the paper's model size
    a step is a few milliseconds, so the guard keeps its state on the device — whether each run is still finite, the
    first step and value where it was not — and :meth:`step` returns the mask of runs whose gradients may apply
    (a diverged run's are zeroed, so no NaN ever reaches a weight); :meth:`check`, at every evaluation, checkpoint and
    the end (where the loop syncs anyway), raises the same error, naming the first non-finite step. The last good
    checkpoint is the one left either way: a check runs before anything is stored."""

    def __init__(self, names: Sequence[str], device: torch.device, deferred: bool | None = None):
        self.names, self.device = list(names), device
        self.deferred = device.type != "cpu" if deferred is None else deferred
        n = len(self.names)
        self.ok = torch.ones(n, dtype=torch.bool, device=device)
        self.first = torch.full((n,), -1, dtype=torch.long, device=device)
        self.values = torch.zeros(n, 2, device=device)  # loss and gradient norm at the first non-finite step
        self.lrs = torch.zeros(n, device=device)

    def step(self, step: int, losses: torch.Tensor, norms: torch.Tensor, lrs: Sequence[float]) -> torch.Tensor | None:
        """Guard step ``step`` (1-based) of every run: ``losses`` and ``norms`` ``(N,)``. Eager: raises or returns
        None. Deferred: the ``(N,)`` mask of runs still finite (multiply their gradients by it, :func:`masked`)."""
        pair = torch.stack([losses.detach().float(), norms.detach().float()], 1)
        if not self.deferred:
            for i, (loss, norm) in enumerate(pair.tolist()):
                check_values(step, loss, norm, lrs[i], self.names[i])
            return None
        finite = torch.isfinite(pair).all(1)
        newly = self.ok & ~finite
        self.first = torch.where(newly, step, self.first)
        self.values = torch.where(newly[:, None], pair, self.values)
        self.lrs = torch.where(newly, torch.tensor(list(lrs), dtype=torch.float32, device=self.device), self.lrs)
        self.ok &= finite
        return self.ok

    def check(self) -> None:
        """Deferred: raise :class:`DivergedError` for the first run that was not finite (one host sync)."""
        if not self.deferred or bool(self.ok.all()):
            return
        i = int((~self.ok).nonzero()[0, 0])
        loss, norm = self.values[i].tolist()
        check_values(int(self.first[i]), loss, norm, float(self.lrs[i]), self.names[i])


def masked(grads: Sequence[torch.Tensor], ok: torch.Tensor) -> None:
    """Zero, in place, the gradients of the runs ``ok`` marks diverged (``ok`` ``(N,)`` for gradients stacked
    ``(N, ...)``; one element for a single run's): a select, not a product, since NaN times 0 is NaN."""
    for g in grads:
        keep = ok.view(-1, *[1] * (g.dim() - 1)) if g.dim() and len(ok) > 1 else ok.reshape([])
        g.copy_(torch.where(keep, g, torch.zeros((), dtype=g.dtype, device=g.device)))
