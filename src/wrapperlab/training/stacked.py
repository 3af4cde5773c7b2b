"""Many small runs trained as one: the same architecture and step count, each run with its own weights, data
stream, learning rate and seed, stacked along a leading axis and stepped together.

Why: the paper's grids hold dozens of tiny runs (seeds x C_Tr x priors x lrs). One such run leaves a GPU idle and
pays Python and kernel-launch overhead per small matmul on a CPU; ``torch.func.vmap`` over stacked parameters turns
N runs' matmuls into batched ones. Each run must come out as it would have trained alone, so the optimiser here is
AdamW written out with the same arithmetic as ``torch.optim.AdamW`` (decay on ``nn.Linear`` weights only, as in
:func:`~wrapperlab.training.loop.make_optimizer`), with each run's own lr and its own gradient-norm clip.
``tests/test_stacked.py`` checks a stacked run against the same run trained alone by :func:`train`.

This module is the stepping core (forward, backward, optimiser); evaluation, checkpoints and run directories stay
with :func:`~wrapperlab.training.loop.train` until the run store drives stacks (docs/performance.md says where
stacking wins).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from wrapperlab.training.config import TrainConfig
from wrapperlab.training.loop import BatchLike, compute_loss
from wrapperlab.training.schedule import lr_at

#: settings every run of a stack must share (the lr, and what feeds it, may differ)
SHARED = ("iters", "batch_size", "optimizer", "betas", "weight_decay", "loss", "answer_weight", "grad_clip",
          "precision", "warmup_frac", "min_lr_frac")


def check_stackable(models: Sequence[nn.Module], cfgs: Sequence[TrainConfig]) -> None:
    """Runs stack only where they are the same computation up to weights, data and lr: say which setting differs."""
    if not models or len(models) != len(cfgs):
        raise ValueError(f"a stack needs one config per model (got {len(models)} models, {len(cfgs)} configs)")
    shapes = [{n: tuple(p.shape) for n, p in m.named_parameters()} for m in models]
    if any(s != shapes[0] for s in shapes[1:]):
        raise ValueError("stacked runs need one architecture: the models' parameter names or shapes differ")
    for key in SHARED:
        values = {repr(getattr(c, key)) for c in cfgs}
        if len(values) > 1:
            raise ValueError(f"stacked runs must share train.{key} (got {sorted(values)})")
    if cfgs[0].optimizer != "adamw":
        raise ValueError("stacked training implements AdamW only (Tracr's SGD runs train alone)")


def _decays(model: nn.Module) -> dict[str, bool]:
    """Which parameters AdamW decays: ``nn.Linear`` weights (make_optimizer's rule), by parameter name."""
    out = {}
    for prefix, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            out[f"{prefix}.{name}" if prefix else name] = isinstance(module, nn.Linear) and name == "weight"
    return out


class Stack:
    """N runs' weights and AdamW state, stacked: ``step(batches, lrs)`` trains every run one step."""

    def __init__(self, models: Sequence[nn.Module], cfgs: Sequence[TrainConfig], device: str | torch.device = "cpu"):
        check_stackable(models, cfgs)
        self.cfgs, self.device = list(cfgs), torch.device(device)
        self.template = models[0].to(self.device)
        named = [dict(m.named_parameters()) for m in models]
        self.params = {n: torch.stack([p[n].detach().to(self.device) for p in named]).requires_grad_(True)
                       for n in named[0]}
        decays = _decays(self.template)
        self.decay = {n: decays[n] for n in self.params}
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.steps = 0
        cfg = cfgs[0]

        self._cfg = cfg
        self._length = 0  # the answer loss's input length, set per step outside vmap (see answer_logits)

        def one(params: dict[str, torch.Tensor], tokens: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
            return compute_loss(_Bound(self.template, params), tokens, answer_pos, cfg, self._length)

        self._losses = vmap(one)
        self._autocast = cfg.precision == "bf16"

    def losses(self, tokens: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
        """Each run's loss ``(N,)`` on its own batch: ``tokens (N, b, L)``, ``answer_pos (N, b)``."""
        self._length = int(answer_pos.max())  # each run alone cuts at its own last answer: equal where windows are
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            return self._losses(self.params, tokens, answer_pos)

    def step(self, batches: Sequence[BatchLike], lrs: Sequence[float]) -> torch.Tensor:
        """One optimiser step of every run on its batch at its lr; returns the losses before the step."""
        tokens = torch.from_numpy(np.stack([b.tokens for b in batches])).to(self.device)
        answer_pos = torch.from_numpy(np.stack([b.answer_pos for b in batches])).to(self.device)
        for p in self.params.values():
            p.grad = None
        losses = self.losses(tokens, answer_pos)
        losses.sum().backward()  # the runs share no weight: each run's gradient is its own loss's
        with torch.no_grad():
            self._clip()
            self._adamw(torch.tensor(lrs, dtype=torch.float32, device=self.device))
        return losses.detach()

    def _clip(self) -> None:
        """Each run's gradients scaled to norm ``grad_clip`` where above it (``clip_grad_norm_``'s arithmetic)."""
        max_norm = self.cfgs[0].grad_clip
        if not max_norm:
            return
        grads = [p.grad for p in self.params.values()]
        norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (N,)
        coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))

    def _adamw(self, lrs: torch.Tensor) -> None:
        """``torch.optim.AdamW``'s update with a per-run lr."""
        cfg = self.cfgs[0]
        beta1, beta2 = cfg.betas
        self.steps += 1
        bias1, bias2_sqrt = 1 - beta1 ** self.steps, math.sqrt(1 - beta2 ** self.steps)
        for name, p in self.params.items():
            lr = lrs.view(-1, *[1] * (p.dim() - 1))
            if self.decay[name] and cfg.weight_decay:
                p.mul_(1 - lr * cfg.weight_decay)
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(1e-8)
            p.sub_((lr / bias1) * (m / denom))

    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy each run's trained weights into its model (the stack's order)."""
        with torch.no_grad():
            for i, model in enumerate(models):
                for name, p in model.named_parameters():
                    p.copy_(self.params[name][i])


class _Bound(nn.Module):
    """The template model called with one run's weights (``functional_call``): what ``compute_loss`` expects."""

    def __init__(self, template: nn.Module, params: dict[str, torch.Tensor]):
        super().__init__()
        self.__dict__["_template"], self.__dict__["_params"] = template, params

    def forward(self, *args, **kwargs):
        return functional_call(self._template, self._params, args, kwargs)


def train_stacked(models: Sequence[nn.Module], batch_ats: Sequence[Callable[[int], BatchLike]],
                  cfgs: Sequence[TrainConfig], device: str | torch.device = "cpu") -> list[float]:
    """Train ``models`` in place for their shared ``iters``, each on its ``batch_at(step)`` at its schedule's lr;
    returns each run's last loss."""
    stack = Stack(models, cfgs, device)
    losses = torch.zeros(len(models))
    for step in range(cfgs[0].iters):
        losses = stack.step([b(step) for b in batch_ats], [lr_at(step, c) for c in cfgs])
    stack.write_back(models)
    return losses.tolist()
