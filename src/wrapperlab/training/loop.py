"""The one training loop: pretraining, fine-tuning, reFT, randFT and the unlearning baselines all run through
:func:`train`, alone or many at once as one stack.

Data come from ``batch_at(step)``, a pure function of the step, and the learning rate from
:func:`~wrapperlab.training.schedule.lr_at`; with weights and optimiser state restored from a
checkpoint, a resumed run therefore repeats bit for bit what the uninterrupted run would have done.

How a step is taken is a strategy: :class:`SingleStep` (one run, ``torch.optim``) or :class:`StackedStep` (N runs of
one architecture stepped as one, training/stacked.py). Resume, evaluation, the stop rule, checkpoints, the divergence
guard and progress are written once, here, for both.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from wrapperlab.timing import section
from wrapperlab.training.checkpoint import load_checkpoint, save_checkpoint
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.losses import BatchLike, LossFn, token_loss
from wrapperlab.training.optim import Guard, check_weights, make_optimizer, masked
from wrapperlab.training.schedule import lr_at
from wrapperlab.training.stacked import Stack
from wrapperlab.training.stopping import StopRule

Evaluate = Callable[[nn.Module, int], dict]
Log = Callable[[dict], None]


@dataclass
class Trainee:
    """One run as the loop trains it: its model (trained in place), its batches, its ``train`` settings, where its
    checkpoints live (None: no resume), what it is evaluated by and where its records go. ``on_resume(step)`` lets the
    caller drop log lines written after the checkpoint it resumes from (-1 on a fresh start: every line); ``name``
    names it in the progress bar and in a divergence; ``loss_fn(model, batch, device, cfg)`` replaces the token losses
    of ``cfg.loss`` (e.g. :func:`~wrapperlab.training.losses.position_loss`)."""

    model: nn.Module
    batch_at: Callable[[int], BatchLike]
    cfg: TrainConfig
    checkpoint_dir: Path | None = None
    evaluate: Evaluate | None = None
    log: Log | None = None
    on_resume: Callable[[int], None] | None = None
    name: str = "train"
    loss_fn: LossFn | None = None


@dataclass
class TrainState:
    step: int  # steps completed
    resumed_from: int | None
    seconds: float
    tokens_per_second: float
    last_loss: float | None  # None when a resumed run had no step left to take
    stopped_early: bool = False  # the stop rule ended it before cfg.iters (step: where training ended)
    stop_reason: str | None = None  # "threshold" or "plateau" (training/stopping.py) where the rule fired


class SingleStep:
    """One run stepped by its ``torch.optim`` optimiser (the model ``torch.compile``-d where the runtime asks)."""

    def __init__(self, trainee: Trainee, optimizer: torch.optim.Optimizer, runtime: Runtime, device: torch.device):
        self.trainee, self.optimizer, self.device = trainee, optimizer, device
        self.forward = torch.compile(trainee.model) if runtime.compile else trainee.model
        self.guard = Guard([trainee.name], device, runtime.deferred_guard)
        cfg = trainee.cfg
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" \
            else contextlib.nullcontext()

    def step(self, step: int, batches: list[BatchLike], lrs: list[float]) -> torch.Tensor:
        """One optimiser step on the batch at the lr; the loss before it, ``(1,)`` on the device."""
        (batch,), (lr,), t = batches, lrs, self.trainee
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            loss = (t.loss_fn or token_loss)(self.forward, batch, self.device, t.cfg)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in t.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        ok = self.guard.step(step + 1, loss[None], norm[None], [lr])
        if ok is not None:  # deferred: a diverged run's gradients zeroed (its error comes at the next check)
            masked(grads, ok)
            norm = torch.where(ok[0], norm, torch.ones_like(norm))
        if t.cfg.grad_clip:  # clip_grad_norm_'s arithmetic, on the norm the guard already computed
            torch.nn.utils.clip_grads_with_norm_(t.model.parameters(), t.cfg.grad_clip, norm)
        self.optimizer.step()
        return loss.detach()[None]

    def check(self) -> None:
        """A deferred guard's error, if the run diverged since the last check."""
        self.guard.check()

    def sync(self) -> None:
        """The models hold their trained weights (they always do here)."""

    def optimizer_of(self, i: int) -> torch.optim.Optimizer:
        return self.optimizer


class StackedStep:
    """N runs of one architecture stepped as one (:class:`~wrapperlab.training.stacked.Stack`); their optimiser
    states restored from each run's checkpoint, and handed back as each run's ``torch.optim.AdamW`` state."""

    def __init__(self, trainees: Sequence[Trainee], optimizers: list[torch.optim.Optimizer], start: int,
                 device: torch.device, runtime: Runtime):
        self.trainees = list(trainees)
        self.models = [t.model for t in trainees]
        self.stack = Stack(self.models, [t.cfg for t in trainees], device, [t.name for t in trainees],
                           runtime.deferred_guard)
        for i, optimizer in enumerate(optimizers):
            self.stack.load_optimizer(i, self.models[i], optimizer, start)

    def step(self, step: int, batches: list[BatchLike], lrs: list[float]) -> torch.Tensor:
        return self.stack.step(batches, lrs)  # the guard ran inside, run by run

    def check(self) -> None:
        self.stack.guard.check()

    def sync(self) -> None:
        """Copy each run's trained weights out of the stack into its model (before evaluating or storing it)."""
        self.stack.write_back(self.models)

    def optimizer_of(self, i: int) -> torch.optim.Optimizer:
        return self.stack.optimizer_for(i, self.models[i])


def _restore(trainees: Sequence[Trainee], device: torch.device) -> tuple[list[torch.optim.Optimizer], int, dict]:
    """Each run's optimiser, with weights and state restored from its checkpoint: (optimisers, the step they resume
    from — one for all: a stack moves in lockstep —, what a resumed single run's stop rule had: its ``stop_at``,
    ``stop_reason`` and ``stop_state``, empty on a fresh start)."""
    optimizers, starts, stop = [], set(), {}
    for t in trainees:
        t.model.to(device)
        optimizer = make_optimizer(t.model, t.cfg)
        pointer = load_checkpoint(t.checkpoint_dir, t.model, optimizer) if t.checkpoint_dir is not None else None
        optimizers.append(optimizer)
        starts.add(pointer["step"] if pointer else 0)
        stop = {k: pointer.get(k) for k in ("stop_at", "stop_reason", "stop_state")} if pointer else stop
    if len(starts) > 1:
        raise ValueError(f"runs of a stack resume from one step (their checkpoints are at steps {sorted(starts)}); "
                         "train them alone")
    return optimizers, starts.pop(), stop


def train(trainees: Sequence[Trainee], runtime: Runtime = Runtime(), stacked: bool = False) -> list[TrainState]:
    """Train each run's model in place for ``cfg.iters`` steps — one run (``stacked=False``) or several of one
    architecture and step count as one stack (training/stacked.py) — resuming each from its checkpoint.

    ``evaluate(model, step)`` runs every ``cfg.eval_every`` steps, at ``cfg.eval_at`` and at the end; its numbers go
    to ``log`` with the step, loss, learning rate and throughput.

    Divergence stops it: a non-finite loss or gradient norm before an optimiser step, or a non-finite weight before a
    checkpoint or the end, raises :class:`~wrapperlab.errors.DivergedError` (step, what, value); the checkpoint left
    behind is the last good one and the caller never marks the run finished.

    With ``cfg.stop_when`` (single runs only: a stack moves in lockstep), training ends ``cfg.stop_margin`` steps
    after the first evaluation at which every named metric reached its threshold (evaluated there, checkpointed
    there). The stop step is kept in the checkpoint, so a run killed during its margin resumes to the same end.
    """
    if not trainees or (len(trainees) > 1 and not stacked):
        raise ValueError("train takes one run, or several with stacked=True")
    device = torch.device(runtime.device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    optimizers, start, stop = _restore(trainees, device)
    for t in trainees:
        if t.on_resume:  # a fresh start (-1) keeps nothing an earlier attempt logged before its first checkpoint
            t.on_resume(start if start else -1)
    strategy = StackedStep(trainees, optimizers, start, device, runtime) if stacked \
        else SingleStep(trainees[0], optimizers[0], runtime, device)
    return _Loop(trainees, strategy, start, stop, runtime).run()


class _Loop:
    """The loop's state: where it started and ends, what it has logged, its progress bar."""

    def __init__(self, trainees: Sequence[Trainee], strategy, start: int, stop: dict, runtime: Runtime):
        self.trainees, self.strategy, self.start = list(trainees), strategy, start
        self.stop_at, self.stop_reason = stop.get("stop_at"), stop.get("stop_reason")
        cfg = self.cfg = trainees[0].cfg
        self.rule = StopRule.of(cfg, stop.get("stop_state"))
        self.end = min(cfg.iters, self.stop_at) if self.stop_at is not None else cfg.iters
        self.autocast = torch.autocast(torch.device(runtime.device).type, dtype=torch.bfloat16) \
            if cfg.precision == "bf16" else contextlib.nullcontext()
        many = f" ({len(trainees)} runs)" if len(trainees) > 1 else ""
        self.bar = tqdm(total=cfg.iters, initial=start, desc=trainees[0].name + many, disable=not runtime.progress,
                        mininterval=0.5 if sys.stderr.isatty() else 10.0, dynamic_ncols=True, file=sys.stderr)

    def evaluated(self, records: list[dict]) -> None:
        """Each run's ``record`` with its evaluation at the record's step, logged; ``stop_at`` where a single run's
        stop_when first holds."""
        self.strategy.sync()
        for t, record in zip(self.trainees, records):
            if t.evaluate is not None:
                t.model.eval()
                with section("eval"), torch.inference_mode(), self.autocast:
                    record.update(t.evaluate(t.model, record["step"]))
                t.model.train()
            reason = self.rule.update(record) if self.stop_at is None and len(self.trainees) == 1 else None
            if reason:  # training/stopping.py: the threshold held (stop_holds evaluations), or a plateau
                record["stop_at"] = min(t.cfg.iters, record["step"] + t.cfg.stop_margin)
                self.stop_reason = reason  # in the checkpoint and the result, not the (numeric) metrics line
                self.end = self.stop_at = record["stop_at"]
            if t.log:
                t.log(record)
        if len(records) == 1 and records[0].get("loss") is not None:
            self.bar.set_postfix({k: f"{v:.3g}" for k, v in records[0].items() if k not in ("step", "lr")},
                                 refresh=False)

    def run(self) -> list[TrainState]:
        cfg, trainees, t0 = self.cfg, self.trainees, time.perf_counter()
        if self.start == 0 and 0 in cfg.eval_at and any(t.evaluate is not None for t in trainees):
            self.evaluated([{"step": 0, "lr": 0.0} for _ in trainees])  # the starting point of a curve
        for t in trainees:
            t.model.train()
        losses: list[float] | None = None
        tokens_seen = 0
        for step in range(self.start, self.end):
            lrs = [lr_at(step, t.cfg) for t in trainees]
            with section("data"):
                batches = [t.batch_at(step) for t in trainees]
            with section("train"):
                on_device = self.strategy.step(step, batches, lrs)
            tokens_seen += batches[0].tokens.size  # per run: each run's own batch
            done = step + 1
            self.bar.update(1)
            evaluating = done % cfg.eval_every == 0 or done == self.end or done in cfg.eval_at
            saving = self.saving(done)
            if evaluating or saving:  # the only host syncs of a step: a deferred guard's check, the losses read
                self.strategy.check()
                losses = on_device.tolist()
            if evaluating:
                rate = tokens_seen / max(time.perf_counter() - t0, 1e-9)
                self.evaluated([{"step": done, "loss": losses[i], "lr": lrs[i], "tokens_per_s": rate}
                                for i in range(len(trainees))])
            if saving:
                self.checkpoint(done, lrs, losses)
            if done == self.end:
                break
        self.bar.close()
        self.strategy.sync()
        for t in trainees:
            t.model.eval()
        elapsed = time.perf_counter() - t0
        return [TrainState(step=self.end, resumed_from=self.start or None, seconds=elapsed,
                           tokens_per_second=tokens_seen / max(elapsed, 1e-9),
                           last_loss=losses[i] if losses is not None else None, stopped_early=self.end < cfg.iters,
                           stop_reason=self.stop_reason)
                for i in range(len(trainees))]

    def saving(self, done: int) -> bool:
        """Whether step ``done`` checks the weights and stores checkpoints: at the end, and every
        ``checkpoint_every`` steps where any run keeps checkpoints."""
        due = done % self.cfg.checkpoint_every == 0 and any(t.checkpoint_dir is not None for t in self.trainees)
        return done == self.end or due

    def checkpoint(self, done: int, lrs: list[float], losses: list[float]) -> None:
        """Every weight finite (finite steps can still overflow a weight, so a stored checkpoint is always a good one
        to resume from), then each run's checkpoint (:meth:`saving` says when)."""
        saving = [t.checkpoint_dir is not None for t in self.trainees]
        self.strategy.sync()
        for t, lr in zip(self.trainees, lrs):
            check_weights(t.model, done, lr, t.name)
        for i, t in enumerate(self.trainees):
            if saving[i]:
                with section("io"):
                    save_checkpoint(t.checkpoint_dir, done, t.model, self.strategy.optimizer_of(i),
                                    {"loss": losses[i], "stop_at": self.stop_at, "stop_reason": self.stop_reason,
                                     "stop_state": self.rule.state()})


def fit(trainee: Trainee, runtime: Runtime = Runtime()) -> TrainState:
    """:func:`train` of one run: its state."""
    return train([trainee], runtime)[0]

