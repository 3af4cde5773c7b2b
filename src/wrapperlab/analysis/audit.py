"""Measurements of a capability (data/capability.py) on any model of ours or imported one (models/hf.py): how well
the model answers it, and how much of it comes back when the model is trained on part of it.

Why answer log-probability as the behaviour: it is defined for any answer (one token or a story), moves before
exact match does, and is what a relearning attack pushes on. Exact match (every answer token the argmax under
teacher forcing, i.e. greedy decoding reproduces the answer) is reported beside it.

Two mechanistic signatures read the same records without training the model: a linear probe of the first answer
token at every layer (analysis/probing.py's batched probes) and grad × weight pruning on the capability's answer
loss (analysis/pruning.py's saliency), scored on held-out answers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from wrapperlab.analysis.probing import ProbeConfig, residuals_at_positions, train_probe_sets
from wrapperlab.analysis.pruning import PruneConfig, nested_prunes, saliency_of
from wrapperlab.data.capability import Capability
from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPT


@dataclass(frozen=True)
class Encoded:
    """A capability as model input: ``tokens`` (n, length) right-padded, ``target`` (n, length) the next token at
    each position where it is an answer token, -1 elsewhere (prompt, padding)."""

    tokens: torch.Tensor
    target: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def take(self, idx: torch.Tensor | list[int]) -> "Encoded":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Encoded(self.tokens[idx], self.target[idx])


def encode(capability: Capability, tokenizer, n_ctx: int, pad_id: int = 0, truncate: bool = False) -> Encoded:
    """Prompt and answer tokenized apart (the prompt with the tokenizer's special tokens, e.g. a BOS; the answer
    without), so the answer's tokens are exactly the ones scored. A record longer than the model's context is an
    error naming it — or, with ``truncate`` (the never-known twin, whose shuffled answers can land on longer
    prompts), its answer is cut to fit."""
    rows, targets = [], []
    for example in capability.examples:
        prompt = tokenizer.encode(example.prompt).ids
        answer = tokenizer.encode(example.answer, add_special_tokens=False).ids
        where = f"{capability.name}:{example.line}"
        if not answer:
            raise ConfigError(f"{where}: answer", example.answer, "text that tokenizes to at least one token")
        if truncate and len(prompt) < n_ctx:
            answer = answer[:n_ctx - len(prompt)]
        seq = prompt + answer
        if len(seq) > n_ctx:
            raise ConfigError(where, f"{len(seq)} tokens (prompt and answer)", f"at most the model's context of {n_ctx}")
        rows.append(seq)
        targets.append([-1] * (len(prompt) - 1) + answer + [-1])  # position t predicts token t + 1
    length = max(len(r) for r in rows)
    tokens = torch.full((len(rows), length), pad_id, dtype=torch.long)
    target = torch.full((len(rows), length), -1, dtype=torch.long)
    for i, (row, tgt) in enumerate(zip(rows, targets)):
        tokens[i, :len(row)] = torch.tensor(row)
        target[i, :len(tgt)] = torch.tensor(tgt)
    return Encoded(tokens, target)


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


def _answer_terms(model: GPT, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed answer log-prob, answer-token count, all-argmax-correct) per row."""
    logits = model(batch.tokens).float()
    mask = batch.target >= 0
    logp = F.log_softmax(logits, -1).gather(-1, batch.target.clamp(min=0)[..., None])[..., 0]
    hit = (logits.argmax(-1) == batch.target) | ~mask
    return (logp * mask).sum(1), mask.sum(1), hit.all(1)


def _batches(data: Encoded, batch_size: int, device: torch.device) -> Iterator[Encoded]:
    """``data`` in consecutive batches of ``batch_size`` records, on ``device``."""
    for start in range(0, len(data), batch_size):
        part = data.take(torch.arange(start, min(start + batch_size, len(data))))
        yield Encoded(part.tokens.to(device), part.target.to(device))


@torch.inference_mode()
def score(model: GPT, data: Encoded, batch_size: int = 64) -> Scores:
    was_training = model.training
    model.eval()
    logprob, exact = [], []
    for part in _batches(data, batch_size, next(model.parameters()).device):
        total, count, hit = _answer_terms(model, part)
        logprob += (total / count).tolist()
        exact += hit.tolist()
    model.train(was_training)
    return Scores(logprob, exact)


@dataclass(frozen=True)
class RelearnConfig:
    steps: int = 100
    lr: float = 1e-4
    batch_size: int = 16

    @property
    def eval_at(self) -> list[int]:
        """Where the held-out split is scored: doublings (speed is compared in log2 steps, so early steps matter
        most), every 10th step and the last."""
        doublings = [2 ** k for k in range(self.steps.bit_length()) if 2 ** k <= self.steps]
        return sorted({0, *doublings, *range(10, self.steps + 1, 10), self.steps})

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"relearn {name}", getattr(self, name), "a positive integer")
        if not self.lr > 0:
            raise ConfigError("relearn lr", self.lr, "a positive number")


def relearn(model: GPT, attack: Encoded, held_out: Encoded, cfg: RelearnConfig, seed: int,
            desc: str | None = None) -> list[dict]:
    """Train a copy of ``model`` on the attack split's answers (AdamW, constant lr, clip 1) and score the held-out
    split along the way: ``[{"step", "logprob", "accuracy"}, ...]``. ``seed`` sets the batches' order. With
    ``desc``, a progress bar on stderr (a relearning run of a 100M-parameter model takes minutes on a CPU)."""
    import sys

    from tqdm import tqdm

    device = next(model.parameters()).device
    student = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    checkpoints = set(cfg.eval_at)
    curve, order = [], torch.empty(0, dtype=torch.long)

    def evaluate(step: int) -> None:
        s = score(student, held_out)
        curve.append({"step": step, "logprob": s.mean_logprob, "accuracy": s.accuracy})

    evaluate(0)
    bar = tqdm(total=cfg.steps, desc=desc, disable=desc is None, leave=False, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.5 if sys.stderr.isatty() else 10.0)
    for step in range(1, cfg.steps + 1):
        if len(order) < cfg.batch_size:  # epochs of a fresh permutation
            order = torch.cat([order, torch.randperm(len(attack), generator=gen)])
        idx, order = order[:cfg.batch_size], order[cfg.batch_size:]
        batch = attack.take(idx)
        total, count, _ = _answer_terms(student, Encoded(batch.tokens.to(device), batch.target.to(device)))
        loss = -(total.sum() / count.sum())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        bar.update(1)
        if step in checkpoints:
            evaluate(step)
            bar.set_postfix({"held-out log-prob": f"{curve[-1]['logprob']:.3f}"}, refresh=False)
    bar.close()
    return curve



# -- the mechanistic signatures ------------------------------------------------------------------------------------


def answer_queries(data: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """Per record: the position that predicts the first answer token (the last prompt position), and that token."""
    query = (data.target >= 0).to(torch.int8).argmax(1)  # the first scored position
    return query, data.target.gather(1, query[:, None])[:, 0]


def probe_answer(models: dict[str, GPT], attack: Encoded, held_out: Encoded, cfg: ProbeConfig,
                 seed: int) -> dict[str, list[float]]:
    """Held-out accuracy per layer (B0, B1 …) of a linear probe of the first answer token, trained on the attack
    split's residuals at the last prompt position — for each model, all probes trained as one batch."""
    (q_attack, y_attack), (q_held, y_held) = answer_queries(attack), answer_queries(held_out)
    classes = {t: i for i, t in enumerate(sorted({*y_attack.tolist(), *y_held.tolist()}))}
    labels = [torch.tensor([classes[t] for t in y.tolist()]).numpy() for y in (y_attack, y_held)]
    problems = [(residuals_at_positions(m, attack.tokens, q_attack), labels[0],
                 residuals_at_positions(m, held_out.tokens, q_held), labels[1]) for m in models.values()]
    return dict(zip(models, train_probe_sets(problems, cfg, seed)))


#: rows of every block matrix, the handful the native pruning verdicts use (claims/verdicts.PRUNE_K_MAX)
AUDIT_PRUNE = PruneConfig(unit="rows", ks=(0, 1, 2, 3, 5, 10, 15))


def answer_losses(data: Encoded, batch_size: int = 64) -> Callable[[nn.Module], Iterator[torch.Tensor]]:
    """The mean negative log-prob of ``data``'s answer tokens, yielded in chunks that sum to it (for
    :func:`~wrapperlab.analysis.pruning.saliency_of`)."""
    n_tokens = int((data.target >= 0).sum())

    def losses(model: nn.Module) -> Iterator[torch.Tensor]:
        for part in _batches(data, batch_size, next(model.parameters()).device):
            yield -_answer_terms(model, part)[0].sum() / n_tokens

    return losses


def prune_curve(model: GPT, attack: Encoded, held_out: Encoded, cfg: PruneConfig = AUDIT_PRUNE) -> list[dict]:
    """Zero the rows most salient for the attack split's answer loss, K by K, scoring the held-out split at each K:
    ``[{"k", "logprob", "accuracy"}, ...]``. The top-K sets are nested; ``model`` is untouched."""
    units, _ = saliency_of(model, answer_losses(attack), cfg, top=max(cfg.ks))
    curve = []
    for k, pruned in nested_prunes(model, units, cfg):
        s = score(pruned, held_out)
        curve.append({"k": k, "logprob": s.mean_logprob, "accuracy": s.accuracy})
    return curve
