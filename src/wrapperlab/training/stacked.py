"""Many small runs trained as one: the same architecture and step count, each run with its own weights, data
stream, learning rate and seed, stacked along a leading axis and stepped together.

Why: the paper's grids hold dozens of tiny runs (seeds x C_Tr x priors x lrs). One such run leaves a GPU idle and
pays Python and kernel-launch overhead per small matmul on a CPU; ``torch.func.vmap`` over stacked parameters turns
N runs' matmuls into batched ones. Each run must come out as it would have trained alone, so the optimiser here is
AdamW written out with the same arithmetic as ``torch.optim.AdamW`` (decay on ``nn.Linear`` weights only, as in
:func:`~wrapperlab.training.loop.make_optimizer`), with each run's own lr and its own gradient-norm clip.
``tests/test_stacked.py`` checks a stacked run against the same run trained alone by :func:`train`.

:func:`train_stacked` is :func:`~wrapperlab.training.loop.train` for a stack: each run is evaluated, logged and
checkpointed at the steps it would be alone, and its checkpoints hold its own weights and a ``torch.optim.AdamW``
state, so a run begun in a stack resumes alone (or in another stack) as if it had always trained alone. Runs that
stop at a threshold (``train.stop_when``: reFT and its baselines) train alone: each would leave the stack at its
own step. docs/performance.md says where stacking wins.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from tqdm import tqdm

from wrapperlab.timing import section
from wrapperlab.training.checkpoint import load_checkpoint, save_checkpoint
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import (
    BatchLike,
    Evaluate,
    Log,
    TrainState,
    check_values,
    check_weights,
    compute_loss,
    make_optimizer,
)
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
                 names: Sequence[str] | None = None):
        check_stackable(models, cfgs)
        self.cfgs, self.device = list(cfgs), torch.device(device)
        self.names = list(names) if names is not None else [f"run {i} of the stack" for i in range(len(models))]
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
            grads = [p.grad for p in self.params.values()]
            norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (N,)
            loss_values, norm_values = torch.stack([losses.detach().float(), norms.float()]).tolist()
            for i in range(len(self.cfgs)):  # the divergence guard of train(), run by run, on one host sync
                check_values(self.steps + 1, loss_values[i], norm_values[i], lrs[i], self.names[i])
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


def train_stacked(models: Sequence[nn.Module], batch_ats: Sequence[Callable[[int], BatchLike]],
                  cfgs: Sequence[TrainConfig], runtime: Runtime = Runtime(),
                  checkpoint_dirs: Sequence[Path] | None = None, evaluates: Sequence[Evaluate] | None = None,
                  logs: Sequence[Log] | None = None, on_resumes: Sequence[Callable[[int], None]] | None = None,
                  desc: str = "stack", names: Sequence[str] | None = None) -> list[TrainState]:
    """Train ``models`` in place for their shared ``iters``, run ``i`` on ``batch_ats[i](step)`` at its own
    schedule's lr: :func:`~wrapperlab.training.loop.train` for many runs at once. Each run is evaluated
    (``evaluates[i](model, step)``), logged and checkpointed (``checkpoint_dirs[i]``) at the steps ``train`` would;
    runs with checkpoints resume from them (all from one step: a stack moves in lockstep), calling
    ``on_resumes[i](step)`` as ``train`` calls ``on_resume``. ``names[i]`` names run ``i`` where one diverges (the
    guard of ``train``: the whole stack stops, every run keeps its last good checkpoint)."""
    n, cfg, device = len(models), cfgs[0], torch.device(runtime.device)
    check_stackable(models, cfgs)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    dirs = list(checkpoint_dirs) if checkpoint_dirs is not None else [None] * n
    evaluates = list(evaluates) if evaluates is not None else [None] * n
    logs = list(logs) if logs is not None else [lambda _: None] * n
    restored = []
    for model, cfg_i, directory in zip(models, cfgs, dirs):
        model.to(device)
        optimizer = make_optimizer(model, cfg_i)
        pointer = load_checkpoint(directory, model, optimizer) if directory is not None else None
        restored.append((optimizer, pointer["step"] if pointer else 0))
    starts = {step for _, step in restored}
    if len(starts) > 1:
        raise ValueError(f"runs of a stack resume from one step (their checkpoints are at steps {sorted(starts)}); "
                         "train them alone")
    start = starts.pop()
    if on_resumes is not None:
        for on_resume in on_resumes:
            on_resume(start if start else -1)
    stack = Stack(models, cfgs, device, names)
    for i, (optimizer, _) in enumerate(restored):
        stack.load_optimizer(i, models[i], optimizer, start)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" \
        else contextlib.nullcontext()

    def evaluate_all(records: list[dict]) -> None:
        stack.write_back(models)
        for model, evaluate, log, record in zip(models, evaluates, logs, records):
            if evaluate is not None:
                model.eval()
                with section("eval"), torch.inference_mode(), autocast:
                    record.update(evaluate(model, record["step"]))
                model.train()
            log(record)

    if start == 0 and 0 in cfg.eval_at and any(e is not None for e in evaluates):
        evaluate_all([{"step": 0, "lr": 0.0} for _ in models])
    losses, tokens_seen, t0 = torch.zeros(n), 0, time.perf_counter()
    bar = tqdm(total=cfg.iters, initial=start, desc=f"{desc} ({n} runs)", disable=not runtime.progress,
               mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True, file=sys.stderr)
    for step in range(start, cfg.iters):
        lrs = [lr_at(step, c) for c in cfgs]
        with section("data"):
            batches = [b(step) for b in batch_ats]
        with section("train"):
            losses = stack.step(batches, lrs)
        tokens_seen += batches[0].tokens.size
        done = step + 1
        bar.update(1)
        if done % cfg.eval_every == 0 or done == cfg.iters or done in cfg.eval_at:
            rate = tokens_seen / max(time.perf_counter() - t0, 1e-9)  # per run: the stack's tokens over N runs
            evaluate_all([{"step": done, "loss": float(losses[i]), "lr": lrs[i], "tokens_per_s": rate}
                          for i in range(n)])
        if done % cfg.checkpoint_every == 0 or done == cfg.iters:
            with section("io"):
                stack.write_back(models)
                for i, model in enumerate(models):
                    check_weights(model, done, lrs[i], stack.names[i])
                for i, (model, directory) in enumerate(zip(models, dirs)):
                    if directory is not None:
                        save_checkpoint(directory, done, model, stack.optimizer_for(i, model),
                                        {"loss": float(losses[i]), "stop_at": None})
    bar.close()
    stack.write_back(models)
    elapsed = time.perf_counter() - t0
    for model in models:
        model.eval()
    return [TrainState(step=cfg.iters, resumed_from=start or None, seconds=elapsed,
                       tokens_per_second=tokens_seen / max(elapsed, 1e-9),
                       last_loss=float(losses[i]) if cfg.iters > start else None) for i in range(n)]
