"""Measurements of a story language model (Jain et al. §5.2): the loss on stories with a feature, and the
generation score — the share of stories written for prompts that request the feature which the judge says
have it, beside the same share for prompts that do not request it (a model that twists every story has not
regained the *requested* capability).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wrapperlab.analysis.rng import in_eval_mode
from wrapperlab.data.stories.corpus import prompt_and_story
from wrapperlab.data.stories.records import FEATURES, StoryRecord, header
from wrapperlab.training.losses import PAD_ID


@torch.no_grad()
@in_eval_mode
def story_loss(model: nn.Module, tokenizer, records: Sequence[StoryRecord], batch_size: int = 32) -> float:
    """Mean next-token cross-entropy over the *story* tokens of ``records`` (instruction tokens are context
    only), each record cut to the model's context."""
    n_ctx = model.cfg.n_ctx
    device = next(model.parameters()).device
    total, count = 0.0, 0
    pairs = [prompt_and_story(r, tokenizer) for r in records]
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        seqs = [(p + s)[: n_ctx + 1] for p, s in chunk]
        width = max(len(s) for s in seqs)
        tokens = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
        weight = torch.zeros(len(seqs), width - 1)
        for i, ((prompt, _), seq) in enumerate(zip(chunk, seqs)):
            tokens[i, : len(seq)] = torch.tensor(seq)
            weight[i, len(prompt) - 1: len(seq) - 1] = 1.0  # targets that are story tokens
        logits = model(tokens[:, :-1].to(device)).float()
        ce = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten().to(device), reduction="none")
        total += float((ce.cpu() * weight.flatten()).sum())
        count += int(weight.sum())
    return total / max(count, 1)


@dataclass(frozen=True)
class Sampling:
    """How stories are sampled: ``n`` per prompt, at most ``max_new`` tokens each, at ``temperature``, seeded."""

    n: int = 4
    max_new: int = 160
    temperature: float = 1.0
    seed: int = 0

    def shifted(self, by: int) -> "Sampling":
        """The same sampling from seed + ``by`` (prompt ``by`` of a batch generated one prompt at a time)."""
        return replace(self, seed=self.seed + by)


@torch.no_grad()
@in_eval_mode
def generate(model: nn.Module, prompt: list[int], sampling: Sampling, end_id: int) -> list[list[int]]:
    """``sampling.n`` samples continuing one prompt (same length, so no padding), stopping at ``end_id``; seeded."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(sampling.seed)
    tokens = torch.tensor([prompt] * sampling.n, dtype=torch.long)
    done = torch.zeros(sampling.n, dtype=torch.bool)
    for _ in range(sampling.max_new):
        logits = model(tokens[:, -model.cfg.n_ctx:].to(device))[:, -1].float().cpu()
        nxt = _sample(logits, sampling.temperature, gen, done, end_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        if done.all():
            break
    return _until_end(tokens[:, len(prompt):], end_id)


def _sample(logits: torch.Tensor, temperature: float, gen: torch.Generator, done: torch.Tensor,
            end_id: int) -> torch.Tensor:
    """One token per row (finished rows repeat ``end_id``); marks rows that just ended in ``done``."""
    nxt = torch.multinomial(torch.softmax(logits / max(temperature, 1e-6), dim=-1), 1, generator=gen).squeeze(1)
    nxt = torch.where(done, torch.full_like(nxt, end_id), nxt)
    done |= nxt == end_id
    return nxt


def _until_end(generated: torch.Tensor, end_id: int) -> list[list[int]]:
    return [row[: row.index(end_id)] if end_id in row else row for row in generated.tolist()]


@torch.no_grad()
@in_eval_mode
def generate_many(model: nn.Module, prompts: Sequence[list[int]], sampling: Sampling,
                  end_id: int) -> list[list[list[int]]]:
    """``sampling.n`` samples for each of several prompts in one left-padded batch (one forward per new token for all
    of them, instead of one per prompt); per prompt, the samples' token lists. Needs rotary positions, which
    make left padding invisible to the real tokens; otherwise it generates prompt by prompt. Keys and values
    are cached until the sequence fills the context; past it, a sliding window is recomputed each step (a
    left-padded row then drops its first real tokens a little earlier than it would alone)."""
    if getattr(model.cfg, "positions", "learned") != "rope":
        return [generate(model, p, sampling.shifted(i), end_id) for i, p in enumerate(prompts)]
    n, device = sampling.n, next(model.parameters()).device
    gen = torch.Generator().manual_seed(sampling.seed)
    width = max(len(p) for p in prompts)
    rows = [p for p in prompts for _ in range(n)]
    tokens = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    real = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, p in enumerate(rows):
        tokens[i, width - len(p):] = torch.tensor(p)
        real[i, width - len(p):] = True
    done = torch.zeros(len(rows), dtype=torch.bool)
    n_ctx = model.cfg.n_ctx
    cache = [{} for _ in model.blocks] if width <= n_ctx else None
    logits = _last_logits(model, tokens, real, cache, device)
    for _ in range(sampling.max_new):
        nxt = _sample(logits, sampling.temperature, gen, done, end_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        real = torch.cat([real, torch.ones(len(rows), 1, dtype=torch.bool)], dim=1)
        if done.all():
            break
        if cache is not None and tokens.shape[1] <= n_ctx:  # keys and values of earlier positions are cached
            logits = _last_logits(model, tokens[:, -1:], real, cache, device)
        else:  # past the context: a sliding window, recomputed (rotary positions are relative)
            cache = None
            logits = _last_logits(model, tokens[:, -n_ctx:], real[:, -n_ctx:], None, device)
    out = _until_end(tokens[:, width:], end_id)
    return [out[i * n:(i + 1) * n] for i in range(len(prompts))]


def _last_logits(model: nn.Module, tokens: torch.Tensor, real: torch.Tensor, cache, device) -> torch.Tensor:
    return model(tokens.to(device), pad_mask=real.to(device), cache=cache)[:, -1].float().cpu()


def generation_scores(model: nn.Module, tokenizer, judge, prompts: Sequence[StoryRecord],
                      sampling: Sampling = Sampling(), feature: str = "Twist") -> dict[str, float]:
    """``requested``: share of stories judged to have ``feature`` among those written for prompts that ask for it;
    ``unrequested``: the same for prompts that do not. Each prompt is a record's instruction."""
    end = tokenizer.token_to_id("<|endoftext|>")
    column = FEATURES.index(feature)
    hits: dict[str, list[bool]] = {"requested": [], "unrequested": []}
    encoded = [tokenizer.encode(header(record).rstrip(" ")).ids for record in prompts]
    for record, samples_ in zip(prompts, generate_many(model, encoded, sampling, end)):
        verdicts = judge.predict([tokenizer.decode(ids) for ids in samples_])[:, column]
        hits["requested" if feature in record.features else "unrequested"] += [bool(v) for v in verdicts]
    return {k: float(np.mean(v)) if v else float("nan") for k, v in hits.items()} | {
        f"n_{k}": len(v) for k, v in hits.items()}
