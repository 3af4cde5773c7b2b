"""Linear probes for story features, in three designs, each always beside a randomly initialised model.

Why three: the pilot (``shared/paper/pilot-stories.md``) found that the paper's design — the mean residual over
the last 10 story positions, one binary probe per feature — scores ~1.0 on a *random* network here, because a
story with a Twist contains Twist words; a probe then measures the input, not the model. So:

* ``last10`` — the paper's design (§5.2, App. F): mean of the residual stream over the story's last 10 positions,
  one probe per feature on what the story has. Expected to be trivially solved by the words; reported with the
  random-init control so that is visible.
* ``requested`` — the position right after ``Story:`` (before any story token), predicting whether the
  instruction requested a Twist: the decision the model must take before writing. No story words exist yet,
  but the instruction's "Twist" token does, so a random network may still read it.
* ``requested_matched`` — the same position, but both classes contain the token "Twist" once: positives request
  it in ``Features:``, negatives carry it as a required word in ``Words:`` (the same record, the word moved). A
  bag of tokens cannot tell the classes apart; a model that parses instructions can. This is the design the
  story's (and the header's) words do not solve.

A design is informative for a model only where it beats the random-init model by a margin
(:data:`INFORMATIVE_MARGIN`); the report says "uninformative" otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np
import torch
from torch import nn

from wrapperlab.analysis.probing import ProbeConfig, layer_names, residual_hooks, train_probes
from wrapperlab.analysis.rng import in_eval_mode
from wrapperlab.data.stories.corpus import prompt_and_story
from wrapperlab.data.stories.records import FEATURES, StoryRecord
from wrapperlab.training.losses import PAD_ID

DESIGNS = ("last10", "requested", "requested_matched")
#: accuracy points a trained model must beat the random-init model by (best layer) for a design to say anything
INFORMATIVE_MARGIN = 0.05


@dataclass
class ProbeSet:
    """Token sequences, the positions averaged per sequence, and binary labels per target."""

    seqs: list[list[int]]
    positions: list[list[int]]
    labels: dict[str, np.ndarray]


@torch.no_grad()
@in_eval_mode
def pooled_residuals(model: nn.Module, seqs: Sequence[list[int]], positions: Sequence[list[int]],
                     batch_size: int = 64) -> torch.Tensor:
    """Mean residual stream over each sequence's ``positions`` at B0 (embeddings) and after every block:
    ``(n_layers + 1, n, d_model)``. Right padding is safe: the model is causal."""
    device = next(model.parameters()).device
    names = residual_hooks(len(model.blocks))
    out = []
    for start in range(0, len(seqs), batch_size):
        chunk, where = seqs[start:start + batch_size], positions[start:start + batch_size]
        width = max(len(s) for s in chunk)
        tokens = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros(len(chunk), width)
        for i, (seq, pos) in enumerate(zip(chunk, where)):
            tokens[i, : len(seq)] = torch.tensor(seq)
            mask[i, pos] = 1.0 / len(pos)
        _, cache = model.run_with_cache(tokens.to(device), names_filter=names)
        out.append(torch.stack([torch.einsum("bt,btd->bd", mask, cache[n].float().cpu()) for n in names]))
    return torch.cat(out, dim=1)


def design_set(design: str, records: Sequence[StoryRecord], tokenizer, n_ctx: int) -> ProbeSet:
    """The inputs and labels of one design from held-out records (see the module doc)."""
    if design == "last10":
        seqs, positions, kept = [], [], []
        for r in records:
            prompt, story = prompt_and_story(r, tokenizer)
            seq = (prompt + story)[:n_ctx]
            if len(seq) > len(prompt):  # a record whose instruction fills the context has no story to pool
                seqs.append(seq)
                positions.append(list(range(max(len(prompt), len(seq) - 10), len(seq))))
                kept.append(r)
        labels = {f: np.array([f in r.has for r in kept], dtype=np.int64) for f in FEATURES}
        return ProbeSet(seqs, positions, labels)
    if design == "requested":
        chosen = _balanced(records, lambda r: "Twist" in r.features)
        return _prompt_set(chosen, [int("Twist" in r.features) for r in chosen], tokenizer, n_ctx)
    if design == "requested_matched":
        pairs = [r for r in records if "Twist" in r.features and len(r.features) >= 2]
        moved = [replace(r, features=tuple(f for f in r.features if f != "Twist"), words=r.words + ("Twist",))
                 for r in pairs]
        chosen = [x for pair in zip(pairs, moved) for x in pair]
        return _prompt_set(chosen, [1, 0] * len(pairs), tokenizer, n_ctx)
    raise ValueError(f"unknown probe design {design!r} (known: {', '.join(DESIGNS)})")


def _balanced(records: Sequence[StoryRecord], positive) -> list[StoryRecord]:
    pos = [r for r in records if positive(r)]
    neg = [r for r in records if not positive(r)]
    n = min(len(pos), len(neg))
    return [x for pair in zip(pos[:n], neg[:n]) for x in pair]


def _prompt_set(chosen: Sequence[StoryRecord], labels: list[int], tokenizer, n_ctx: int) -> ProbeSet:
    seqs = [prompt_and_story(r, tokenizer)[0][-n_ctx:] for r in chosen]
    return ProbeSet(seqs, [[len(s) - 1] for s in seqs], {"Twist": np.array(labels, dtype=np.int64)})


@dataclass
class StoryProbeResult:
    layers: list[str]
    #: design -> target -> {"model": [acc per layer], "random_init": [...]}
    accuracy: dict[str, dict[str, dict[str, list[float]]]]
    majority: dict[str, dict[str, float]]  # design -> target -> majority-class rate on the test split
    n: dict[str, int]  # design -> examples (train + test)

    def as_dict(self) -> dict:
        return asdict(self)


def probe_story_model(model: nn.Module, random_init: nn.Module, records: Sequence[StoryRecord], tokenizer,
                      cfg: ProbeConfig, designs: Sequence[str] = DESIGNS, seed: int = 0) -> StoryProbeResult:
    """Every design on ``model`` and on ``random_init`` (same architecture); 80 % of each design's examples
    train the probes, 20 % test them (pairs of the matched design stay on one side)."""
    accuracy: dict[str, dict[str, dict[str, list[float]]]] = {}
    majority: dict[str, dict[str, float]] = {}
    sizes: dict[str, int] = {}
    for design in designs:
        data = design_set(design, records, tokenizer, model.cfg.n_ctx)
        n = len(data.seqs)
        if n < 10:
            raise ValueError(f"probe design {design}: only {n} examples; give more held-out records")
        cut = int(0.8 * n) // 2 * 2
        acts = {name: pooled_residuals(m, data.seqs, data.positions) for name, m in
                (("model", model), ("random_init", random_init))}
        accuracy[design], majority[design], sizes[design] = {}, {}, n
        for target, y in data.labels.items():
            if y.min() == y.max():
                continue  # a feature absent from these records has nothing to probe
            accuracy[design][target] = {name: train_probes(x[:, :cut], y[:cut], x[:, cut:], y[cut:], cfg, seed)
                                        for name, x in acts.items()}
            majority[design][target] = float(np.bincount(y[cut:], minlength=2).max() / (n - cut))
    return StoryProbeResult(layer_names(len(model.blocks)), accuracy, majority, sizes)


def informative(model_acc: Sequence[float], random_acc: Sequence[float], margin: float = INFORMATIVE_MARGIN) -> bool:
    """Does the trained model beat the random-init model by ``margin`` at its best layer?"""
    return max(m - r for m, r in zip(model_acc, random_acc)) >= margin
