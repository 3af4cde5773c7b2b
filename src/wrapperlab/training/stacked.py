"""Many small runs trained as one: the same architecture and step count, each run with its own weights, data
stream, learning rate and seed, stacked along a leading axis and stepped together.

Why: the paper's grids hold dozens of tiny runs (seeds x C_Tr x priors x lrs). One such run leaves a GPU idle and
pays Python and kernel-launch overhead per small matmul on a CPU; ``torch.func.vmap`` over stacked parameters turns
N runs' matmuls into batched ones. Each run must come out as it would have trained alone, so the optimiser here is
AdamW written out with the same arithmetic as ``torch.optim.AdamW`` (decay on ``nn.Linear`` weights only, as in
:func:`~wrapperlab.training.optim.make_optimizer`), with each run's own lr and its own gradient-norm clip.
``tests/test_stacked.py`` checks a stacked run against the same run trained alone.

:class:`Stack` is the stacked step of the one loop (:func:`~wrapperlab.training.loop.train` with ``stacked=True``):
each run is evaluated, logged and checkpointed at the steps it would be alone, and its checkpoints hold its own
weights and a ``torch.optim.AdamW`` state, so a run begun in a stack resumes alone (or in another stack) as if it had
always trained alone. Runs that stop at a threshold (``train.stop_when``: reFT and its baselines) train alone: each
would leave the stack at its own step. docs/performance.md says where stacking wins.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from wrapperlab.training.config import TrainConfig
from wrapperlab.training.losses import BatchLike, array_to, compute_loss
from wrapperlab.training.optim import Guard, make_optimizer, masked

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
    if any(not p.requires_grad for m in models for p in m.parameters()):
        raise ValueError("stacked training updates every weight: models with frozen weights train alone")
    if cfgs[0].optimizer != "adamw":
        raise ValueError("stacked training implements AdamW only (Tracr's SGD runs train alone)")
    if any(c.stop_when for c in cfgs):
        raise ValueError("runs that stop at a threshold (train.stop_when) train alone: each would leave the stack "
                         "at its own step")


def _decayed(model: nn.Module, cfg: TrainConfig) -> dict[str, float]:
    """Each parameter's AdamW weight decay, by name, read off :func:`make_optimizer`'s groups (its rule, not a copy:
    Linear weights decay, biases, norms and embeddings do not)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: group["weight_decay"] for group in make_optimizer(model, cfg).param_groups
            for p in group["params"]}


class Stack:
    """N runs' weights and AdamW state, stacked: ``step(batches, lrs)`` trains every run one step."""

    def __init__(self, models: Sequence[nn.Module], cfgs: Sequence[TrainConfig], device: str | torch.device = "cpu",
                 names: Sequence[str] | None = None, deferred_guard: bool | None = None):
        check_stackable(models, cfgs)
        self.cfgs, self.device = list(cfgs), torch.device(device)
        self.names = list(names) if names is not None else [f"run {i} of the stack" for i in range(len(models))]
        self.guard = Guard(self.names, self.device, deferred_guard)
        self.template = models[0].to(self.device)
        named = [dict(m.named_parameters()) for m in models]
        self.params = {n: torch.stack([p[n].detach().to(self.device) for p in named]).requires_grad_(True)
                       for n in named[0]}
        self.decay = _decayed(self.template, cfgs[0])
        self.exp_avg = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.exp_avg_sq = {n: torch.zeros_like(p) for n, p in self.params.items()}
        self.steps = 0
        cfg = cfgs[0]
        self._length = 0  # the answer loss's input length, set per step outside vmap (see answer_logits)

        def one(params: dict[str, torch.Tensor], tokens: torch.Tensor, answer_pos: torch.Tensor) -> torch.Tensor:
            return compute_loss(_Bound(self.template, params), tokens, answer_pos, cfg, self._length)

        self._losses = vmap(one)
        self._autocast = cfg.precision == "bf16"

    def losses(self, tokens: torch.Tensor, answer_pos: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """Each run's loss ``(N,)`` on its own batch: ``tokens (N, b, L)``, ``answer_pos (N, b)``; ``length``: the
        last answer's position where the caller has it on the host (read from the device tensor, a host sync)."""
        # each run alone cuts at its own last answer: equal where windows are
        self._length = int(answer_pos.max()) if length is None else length
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            return self._losses(self.params, tokens, answer_pos)

    def step(self, batches: Sequence[BatchLike], lrs: Sequence[float]) -> torch.Tensor:
        """One optimiser step of every run on its batch at its lr; returns the losses before the step."""
        positions = np.stack([b.answer_pos for b in batches])
        tokens = array_to(np.stack([b.tokens for b in batches]), self.device)
        answer_pos = array_to(positions, self.device)
        for p in self.params.values():
            p.grad = None
        losses = self.losses(tokens, answer_pos, int(positions.max()))
        losses.sum().backward()  # the runs share no weight: each run's gradient is its own loss's
        with torch.no_grad():
            grads = [p.grad for p in self.params.values()]
            norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (N,)
            ok = self.guard.step(self.steps + 1, losses, norms, lrs)  # train()'s divergence guard, run by run
            if ok is not None:  # deferred: a diverged run's gradients zeroed (its error comes at the next check)
                masked(grads, ok)
                norms = torch.where(ok, norms, torch.ones_like(norms))
            self._clip(grads, norms)
            self._adamw(torch.tensor(lrs, dtype=torch.float32, device=self.device))
        return losses.detach()

    def _clip(self, grads: list[torch.Tensor], norms: torch.Tensor) -> None:
        """Each run's gradients scaled to norm ``grad_clip`` where above it (``clip_grad_norm_``'s arithmetic)."""
        max_norm = self.cfgs[0].grad_clip
        if not max_norm:
            return
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
            if self.decay[name]:
                p.mul_(1 - lr * self.decay[name])
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            denom = (v.sqrt() / bias2_sqrt).add_(1e-8)
            p.sub_((lr / bias1) * (m / denom))

    def optimizer_for(self, i: int, model: nn.Module) -> torch.optim.Optimizer:
        """Run ``i``'s AdamW state as the ``torch.optim.AdamW`` that :func:`make_optimizer` builds for ``model``
        (what a checkpoint holds: the run resumes alone exactly where the stack left it)."""
        optimizer = make_optimizer(model, self.cfgs[i])
        names = {id(p): n for n, p in model.named_parameters()}
        for group in optimizer.param_groups:
            for p in group["params"]:
                name = names[id(p)]
                optimizer.state[p] = {"step": torch.tensor(float(self.steps)),
                                      "exp_avg": self.exp_avg[name][i].detach().clone(),
                                      "exp_avg_sq": self.exp_avg_sq[name][i].detach().clone()}
        return optimizer

    def load_optimizer(self, i: int, model: nn.Module, optimizer: torch.optim.Optimizer, steps: int) -> None:
        """Run ``i``'s AdamW state from a ``torch.optim.AdamW`` over ``model`` (a restored checkpoint)."""
        names = {id(p): n for n, p in model.named_parameters()}
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    state = optimizer.state.get(p, {})
                    if state:
                        self.exp_avg[names[id(p)]][i].copy_(state["exp_avg"])
                        self.exp_avg_sq[names[id(p)]][i].copy_(state["exp_avg_sq"])
        self.steps = steps

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
