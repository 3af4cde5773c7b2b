"""Measure: what an audit reads of a model on a capability's records — each a function of a :class:`CausalLM` and
:class:`Encoded` records, leaving the model as it found it.

* :func:`score` — answer log-probability (nats per answer token) and exact match (every answer token the argmax
  under teacher forcing: greedy decoding reproduces it) per record. Why log-probability: it is defined for any
  answer (a token or a story), moves before exact match does, and is what a relearning attack pushes on;
* :func:`relearn` — the model trained on the attack records (full fine-tuning, or LoRA through ``peft``), the
  held-out records scored along the way; a run that diverges is reported as such, never as a number;
* :func:`probe_answer` — a linear probe of the first answer token at every layer (analysis/probing.py's batched
  probes on ``output_hidden_states``);
* :func:`prune_curve` — the output rows of the decoder layers' ``nn.Linear`` / ``Conv1D`` most salient for the
  answer loss (grad × weight), zeroed K by K, the held-out records scored;
* :func:`weight_diff` — ‖ΔW‖/‖W‖ per named parameter, BASE to FINETUNED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from wrapperlab.analysis.probing import ProbeConfig, train_probe_sets
from wrapperlab.audit.config import RelearnConfig
from wrapperlab.audit.encode import Encoded
from wrapperlab.audit.models import CausalLM

#: the numbers of rows a pruning curve zeroes (the native pruning verdicts read K <= 15: claims/verdicts.PRUNE_K_MAX)
PRUNE_KS = (0, 1, 2, 3, 5, 10, 15)


@dataclass(frozen=True)
class Scores:
    """Per record: mean log-probability of its answer tokens (nats per token), and exact match."""

    logprob: list[float]
    exact: list[bool]

    @property
    def mean_logprob(self) -> float:
        return sum(self.logprob) / len(self.logprob)

    @property
    def accuracy(self) -> float:
        return sum(self.exact) / len(self.exact)


def answer_terms(lm: CausalLM, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed answer log-prob, answer-token count, correct) per row: correct is every answer token the argmax
    over the vocabulary, or, for multiple choice, the right letter the likeliest of the record's letters (the
    papers' accuracy: a model is not asked to prefer the letter over every other token)."""
    scored = batch.target >= 0
    first = int(scored.any(0).to(torch.int8).argmax())  # no logits are needed before the earliest answer
    logits = lm.logits(batch.tokens, batch.mask, keep=batch.tokens.shape[1] - first).float()
    batch = Encoded(batch.tokens, batch.mask, batch.target[:, first:], batch.options)
    mask = scored[:, first:]
    logp = F.log_softmax(logits, -1).gather(-1, batch.target.clamp(min=0)[..., None])[..., 0]
    if batch.options is None:
        hit = ((logits.argmax(-1) == batch.target) | ~mask).all(1)
    else:  # one answer token per record: its letter
        rows = torch.arange(len(batch), device=logits.device)
        at = mask.to(torch.int8).argmax(1)
        among = logits[rows, at].gather(1, batch.options.clamp(min=0)).masked_fill(batch.options < 0, -math.inf)
        hit = batch.options.gather(1, among.argmax(1, keepdim=True))[:, 0] == batch.target[rows, at]
    return (logp * mask).sum(1), mask.sum(1), hit


@torch.inference_mode()
def score(lm: CausalLM, data: Encoded, max_tokens: int = 8192) -> Scores:
    was_training = lm.model.training
    lm.model.eval()
    logprob, exact = [], []
    for part in data.batches(max_tokens, lm.device):
        total, count, hit = answer_terms(lm, part)
        logprob += (total / count).tolist()
        exact += hit.tolist()
    lm.model.train(was_training)
    return Scores(logprob, exact)


@dataclass
class Relearned:
    """A relearning run: the held-out records scored at each evaluated step (``{"step", "logprob", "accuracy"}``), and
    the step at which its loss or gradient stopped being finite (None: it did not diverge)."""

    curve: list[dict]
    diverged_at: int | None = None


def _student(lm: CausalLM, cfg: RelearnConfig):
    """The model relearning trains and how to hand it back: a copy (full fine-tuning), or LoRA adapters on ``lm``
    itself (peft: the base weights frozen, the adapters removed afterwards — no copy of a large model)."""
    if cfg.lora is None:
        student = lm.copy()
        return student, student.model.parameters(), lambda: None
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        from wrapperlab.errors import ConfigError

        raise ConfigError("lora", cfg.lora, "installed peft: pip install 'wrapperlab[hf]'") from None
    grads = {name: p.requires_grad for name, p in lm.model.named_parameters()}
    wrapped = get_peft_model(lm.model, LoraConfig(r=cfg.lora, lora_alpha=2 * cfg.lora, lora_dropout=0.0,
                                                  target_modules="all-linear"))

    def restore() -> None:
        wrapped.unload()  # the adapters out, the base modules back in place, untouched
        for name, p in lm.model.named_parameters():
            p.requires_grad_(grads.get(name, True))

    return CausalLM(wrapped, lm.role, lm.path), [p for p in wrapped.parameters() if p.requires_grad], restore


def relearn(lm: CausalLM, split: tuple[Encoded, Encoded], cfg: RelearnConfig, seed: int,
            tick: Callable[[], None] = lambda: None, max_tokens: int = 8192) -> Relearned:
    """Train ``lm`` (a copy, or adapters on it) on the answers of the attack records (``split``: attack, held out) —
    AdamW, constant lr, no weight decay, gradients clipped at 1, ``cfg.batch_size`` records a step in micro-batches of
    ``max_tokens`` — scoring the held-out records at ``cfg.eval_at``. ``seed`` sets the batches' order; ``tick()``
    after every step."""
    attack, held_out = split
    rng = torch.random.fork_rng(devices=[lm.device] if lm.device.type == "cuda" else [])
    rng.__enter__()
    torch.manual_seed(seed)  # LoRA's initial adapters, and dropout where the model has it, draw from the seed too
    student, params, restore = _student(lm, cfg)
    try:
        params = list(params)
        if cfg.grad_checkpoint:
            student.model.gradient_checkpointing_enable()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
        gen = torch.Generator().manual_seed(seed)
        checkpoints, out = set(cfg.eval_at), Relearned([])
        order = torch.empty(0, dtype=torch.long)

        def evaluate(step: int) -> None:
            s = score(student, held_out, max_tokens)
            out.curve.append({"step": step, "logprob": s.mean_logprob, "accuracy": s.accuracy})

        evaluate(0)
        student.model.train()
        for step in range(1, cfg.steps + 1):
            if len(order) < cfg.batch_size:  # epochs of a fresh permutation
                order = torch.cat([order, torch.randperm(len(attack), generator=gen)])
            idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
            batch = attack.take(idx)
            n_tokens = int((batch.target >= 0).sum())
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for part in batch.batches(max_tokens, student.device):
                loss = -answer_terms(student, part)[0].sum() / n_tokens
                loss.backward()
                total += float(loss.detach())
            norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
            if not (math.isfinite(total) and math.isfinite(float(norm))):
                out.diverged_at = step  # no update with a non-finite gradient; nothing after it is a measurement
                break
            opt.step()
            tick()
            if step in checkpoints:
                evaluate(step)
        return out
    finally:
        rng.__exit__(None, None, None)
        student.model.eval()
        restore()


def answer_queries(data: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Per record: the position that predicts the first answer token (the last prompt position), and that token."""
    query = (data.target >= 0).to(torch.int8).argmax(1)  # the first scored position
    return query, data.target.gather(1, query[:, None])[:, 0]


@torch.inference_mode()
def residuals(lm: CausalLM, data: Encoded, positions: torch.Tensor, max_tokens: int = 8192) -> torch.Tensor:
    """The residual stream at each record's position, ``(n_layers + 1, n, d)``."""
    out, start = [], 0
    for part in data.batches(max_tokens, lm.device):
        where = positions[start:start + len(part)].to(lm.device)
        out.append(lm.hidden(part.tokens, part.mask, where))
        start += len(part)
    return torch.cat(out, dim=1)


def probe_answer(models: dict[str, CausalLM], attack: Encoded, held_out: Encoded, iters: int, seed: int,
                 max_tokens: int = 8192) -> dict[str, list[float]]:
    """Held-out accuracy per layer (B0, B1 …) of a linear probe of the first answer token, trained on the attack
    records' residuals at the last prompt position — for each model, all probes trained as one batch."""
    (q_attack, y_attack), (q_held, y_held) = answer_queries(attack), answer_queries(held_out)
    classes = {t: i for i, t in enumerate(sorted({*y_attack.tolist(), *y_held.tolist()}))}
    labels = [torch.tensor([classes[t] for t in y.tolist()]).numpy() for y in (y_attack, y_held)]
    problems = [(residuals(m, attack, q_attack, max_tokens), labels[0], residuals(m, held_out, q_held, max_tokens),
                 labels[1]) for m in models.values()]
    return dict(zip(models, train_probe_sets(problems, ProbeConfig(iters=iters), seed)))


def _rows(module: torch.nn.Module) -> tuple[torch.Tensor, bool]:
    """A module's weight and whether its output rows are its columns (GPT-2's ``Conv1D`` stores in x out)."""
    return module.weight, type(module).__name__ == "Conv1D"


def row_saliency(lm: CausalLM, losses: Callable[[CausalLM], Iterator[torch.Tensor]], top: int) -> list[tuple[str, int, float]]:
    """The ``top`` output rows (module path, row, g·w) of the decoder layers' linear maps whose zeroing most lowers
    the loss (to first order, zeroing a row changes the loss by −g·w summed over the row and its bias entry). The
    gradients are taken on ``lm`` itself (no copy of a large model) and dropped afterwards."""
    grads = {p: p.requires_grad for p in lm.model.parameters()}
    was_training = lm.model.training
    lm.model.eval()
    try:
        for p in grads:
            p.requires_grad_(True)
            p.grad = None
        for loss in losses(lm):
            loss.backward()
        scored = []
        with torch.no_grad():
            for path, module in lm.linears():
                weight, transposed = _rows(module)
                if weight.grad is None:
                    continue
                gw = (weight.grad.float() * weight.float()).sum(0 if transposed else 1)
                if getattr(module, "bias", None) is not None and module.bias.grad is not None:
                    gw = gw + module.bias.grad.float() * module.bias.float()
                scored += [(path, i, v) for i, v in enumerate(gw.tolist())]
    finally:
        for p, flag in grads.items():
            p.grad = None
            p.requires_grad_(flag)
        lm.model.train(was_training)
    scored.sort(key=lambda s: -s[2])
    return scored[:top]


@torch.no_grad()
def zero_rows(lm: CausalLM, rows: list[tuple[str, int, float]]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Zero ``rows`` of ``lm`` in place; returns what they held (for :func:`restore_rows`)."""
    modules, saved = dict(lm.linears()), []
    for path, i, _ in rows:
        weight, transposed = _rows(modules[path])
        row = weight[:, i] if transposed else weight[i]
        bias = getattr(modules[path], "bias", None)
        saved.append((row.clone(), None if bias is None else bias[i].clone()))
        row.zero_()
        if bias is not None:
            bias[i] = 0
    return saved


@torch.no_grad()
def restore_rows(lm: CausalLM, rows: list[tuple[str, int, float]],
                 saved: list[tuple[torch.Tensor, torch.Tensor | None]]) -> None:
    modules = dict(lm.linears())
    for (path, i, _), (row, bias) in zip(rows, saved):
        weight, transposed = _rows(modules[path])
        (weight[:, i] if transposed else weight[i]).copy_(row)
        if bias is not None:
            modules[path].bias[i] = bias


def answer_losses(data: Encoded, max_tokens: int = 8192) -> Callable[[CausalLM], Iterator[torch.Tensor]]:
    """The mean negative log-prob of ``data``'s answer tokens, yielded in chunks that sum to it."""
    n_tokens = int((data.target >= 0).sum())

    def losses(lm: CausalLM) -> Iterator[torch.Tensor]:
        for part in data.batches(max_tokens, lm.device):
            yield -answer_terms(lm, part)[0].sum() / n_tokens

    return losses


def prune_curve(lm: CausalLM, attack: Encoded, held_out: Encoded, sizes: tuple[int, ...] = PRUNE_KS,
                max_tokens: int = 8192) -> list[dict]:
    """Zero the rows most salient for the attack records' answer loss, K by K (nested sets), scoring the held-out
    records at each K: ``[{"k", "logprob", "accuracy"}, ...]`` (K = 0 is the model as it is)."""
    rows = row_saliency(lm, answer_losses(attack, max_tokens), top=max(sizes))
    done, curve, saved = 0, [], []
    try:  # zeroed in place, K by K, and put back: no copy of a large model
        for k in sizes:
            saved += zero_rows(lm, rows[done:k])
            done = k
            s = score(lm, held_out, max_tokens)
            curve.append({"k": k, "logprob": s.mean_logprob, "accuracy": s.accuracy})
    finally:
        restore_rows(lm, rows[:len(saved)], saved)
    return curve


@torch.no_grad()
def weight_diff(base: CausalLM, finetuned: CausalLM) -> list[dict]:
    """``‖ΔW‖ / ‖W‖`` of every matrix (parameters of two or more dimensions), by name, BASE to FINETUNED."""
    theirs = dict(finetuned.model.named_parameters())
    out = []
    for name, p in base.model.named_parameters():
        if p.dim() >= 2 and name in theirs:
            w = p.float()
            out.append({"name": name, "rel_change": float((theirs[name].float() - w).norm() / w.norm().clamp(min=1e-12))})
    return out
