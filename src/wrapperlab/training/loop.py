"""The one training loop: pretraining, fine-tuning, reFT and randFT all run through :func:`train`.

Data come from ``batch_at(step)``, a pure function of the step, and the learning rate from
:func:`~wrapperlab.training.schedule.lr_at`; with weights and optimiser state restored from a
checkpoint, a resumed run therefore repeats bit for bit what the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from wrapperlab.errors import DivergedError
from wrapperlab.timing import section
from wrapperlab.training.checkpoint import load_checkpoint, save_checkpoint
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.schedule import lr_at

PAD_ID = 0  # "<pad>" is token 0 in every wrapperlab vocabulary


class BatchLike(Protocol):
    tokens: np.ndarray  # (b, L) token ids
    answer_pos: np.ndarray  # (b,) index of the answer token


def to_device(batch: BatchLike, device: str | torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.from_numpy(batch.tokens).to(device, non_blocking=True)
    answer_pos = torch.from_numpy(batch.answer_pos).to(device, non_blocking=True)
    return tokens, answer_pos


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


def _token_loss(model: nn.Module, batch, device: torch.device, cfg: TrainConfig) -> torch.Tensor:
    tokens, answer_pos = to_device(batch, device)
    return compute_loss(model, tokens, answer_pos, cfg)


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


@dataclass
class TrainState:
    step: int  # steps completed
    resumed_from: int | None
    seconds: float
    tokens_per_second: float
    last_loss: float | None  # None when a resumed run had no step left to take
    stopped_early: bool = False  # cfg.stop_when held before cfg.iters (step: where training ended)


Evaluate = Callable[[nn.Module, int], dict]
Log = Callable[[dict], None]


def train(
    model: nn.Module,
    batch_at: Callable[[int], BatchLike],
    cfg: TrainConfig,
    runtime: Runtime = Runtime(),
    checkpoint_dir: Path | None = None,
    evaluate: Evaluate | None = None,
    log: Log | None = None,
    on_resume: Callable[[int], None] | None = None,
    desc: str = "train",
    loss_fn: LossFn | None = None,
) -> TrainState:
    """Train ``model`` in place for ``cfg.iters`` steps, resuming from ``checkpoint_dir`` if it holds one.

    ``evaluate(model, step)`` runs every ``cfg.eval_every`` steps and at the end; its numbers go to
    ``log`` with the step, loss, learning rate and throughput. ``on_resume(step)`` lets the caller
    drop log lines written after the checkpoint it resumes from (-1 on a fresh start: every line).
    ``loss_fn(model, batch, device, cfg)`` replaces the token losses of ``cfg.loss`` (e.g. :func:`position_loss`).

    Divergence stops it: a non-finite loss or gradient norm before an optimiser step, or a non-finite weight
    before a checkpoint or the end, raises :class:`~wrapperlab.errors.DivergedError` (step, what, value); the
    checkpoint left behind is the last good one and the caller never marks the run finished.

    With ``cfg.stop_when``, training ends ``cfg.stop_margin`` steps after the first evaluation at which every
    named metric reached its threshold (evaluated there, checkpointed there). The stop step is kept in the
    checkpoint, so a run killed during its margin resumes to the same end.
    """
    device = torch.device(runtime.device)
    if runtime.threads:
        torch.set_num_threads(runtime.threads)
    model.to(device)
    optimizer = make_optimizer(model, cfg)
    start, stop_at = 0, None  # stop_at: the step at which stop_when (plus its margin) ends training
    if checkpoint_dir is not None:
        pointer = load_checkpoint(checkpoint_dir, model, optimizer)
        if pointer is not None:
            start, stop_at = pointer["step"], pointer.get("stop_at")
    if on_resume:  # a fresh start (-1) keeps nothing an earlier attempt logged before its first checkpoint
        on_resume(start if start else -1)
    end = min(cfg.iters, stop_at) if stop_at is not None else cfg.iters
    forward_model = torch.compile(model) if runtime.compile else model
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else contextlib.nullcontext()
    )
    log = log or (lambda _: None)
    bar = tqdm(
        total=cfg.iters,
        initial=start,
        desc=desc,
        disable=not runtime.progress,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
        dynamic_ncols=True,
        file=sys.stderr,
    )

    def evaluated(record: dict) -> dict:
        """``record`` with the evaluation at its step, and ``stop_at`` where stop_when first holds."""
        model.eval()
        with section("eval"), torch.inference_mode(), autocast:
            record.update(evaluate(model, record["step"]) if evaluate is not None else {})
        model.train()
        if stop_at is None and cfg.stop_when and all(record.get(k, -math.inf) >= v for k, v in cfg.stop_when.items()):
            record["stop_at"] = min(cfg.iters, record["step"] + cfg.stop_margin)
        return record

    loss_value: float | None = None
    tokens_seen, t0 = 0, time.perf_counter()
    if start == 0 and 0 in cfg.eval_at and evaluate is not None:  # the starting point of a curve
        record = evaluated({"step": 0, "lr": 0.0})
        log(record)
        if "stop_at" in record:
            end = stop_at = record["stop_at"]
    model.train()
    for step in range(start, end):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with section("data"):
            batch = batch_at(step)
        with section("train"):
            with autocast:
                loss = (loss_fn or _token_loss)(forward_model, batch, device, cfg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads)
            last_loss = check_step(step + 1, loss, norm, lr, desc)
            if cfg.grad_clip:  # clip_grad_norm_'s arithmetic, on the norm the guard already computed
                torch.nn.utils.clip_grads_with_norm_(model.parameters(), cfg.grad_clip, norm)
            optimizer.step()
        tokens_seen += batch.tokens.size
        done = step + 1
        bar.update(1)
        if done % cfg.eval_every == 0 or done == end or done in cfg.eval_at:
            loss_value = last_loss
            elapsed = time.perf_counter() - t0
            record = evaluated({"step": done, "loss": loss_value, "lr": lr,
                                "tokens_per_s": tokens_seen / max(elapsed, 1e-9)})
            if "stop_at" in record:
                end = stop_at = record["stop_at"]
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k not in ("step", "lr")}, refresh=False)
            log(record)
        if done == end or (checkpoint_dir is not None and done % cfg.checkpoint_every == 0):
            check_weights(model, done, lr, desc)
        if checkpoint_dir is not None and (done % cfg.checkpoint_every == 0 or done == end):
            with section("io"):
                save_checkpoint(checkpoint_dir, done, model, optimizer, {"loss": last_loss, "stop_at": stop_at})
        if done == end:
            break
    bar.close()
    model.eval()
    elapsed = time.perf_counter() - t0
    return TrainState(
        step=end,
        resumed_from=start or None,
        seconds=elapsed,
        tokens_per_second=tokens_seen / max(elapsed, 1e-9),
        last_loss=loss_value,
        stopped_early=end < cfg.iters,
    )
