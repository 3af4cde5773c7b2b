"""The local judge: which of the six features a story has, from its text alone (the paper used a fine-tuned
GPT-3.5, 92 % held-out accuracy; nothing may call out of this machine, so we train our own).

A bag of word unigrams and bigrams, one logistic regression per feature (an ``EmbeddingBag`` of summed weights:
sparse inputs, any vocabulary size, real data included). Labels are the features a story really has
(``StoryRecord.has``) — for generated records known exactly, for the real dataset its instruction's features.
The judge reads only the story, never the instruction, so it scores what a model *wrote*.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from wrapperlab.analysis.rng import seeded
from wrapperlab.data.stories.records import FEATURES, StoryRecord

_WORD = re.compile(r"[a-z']+|[!?\"]")


def _grams(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a} {b}" for a, b in zip(words, words[1:])]


@dataclass
class Judge:
    vocab: dict[str, int]
    model: nn.EmbeddingBag
    bias: torch.Tensor
    features: tuple[str, ...] = FEATURES

    @classmethod
    def fit(cls, records: Sequence[StoryRecord], max_vocab: int = 50000, min_count: int = 2, epochs: int = 4,
            seed: int = 0) -> "Judge":
        # each story's distinct grams in the order they occur (not a set: a set's order follows the process's string
        # hash seed, and most_common breaks ties by insertion order, so the vocabulary — and the judge — varied run by
        # run with the same seed)
        counts = Counter(g for r in records for g in dict.fromkeys(_grams(r.story)))
        kept = [g for g, c in counts.most_common(max_vocab) if c >= min_count]
        vocab = {g: i for i, g in enumerate(kept)}
        with seeded(seed):  # the bag's (zeroed) init draws from the global RNG; the caller's state is kept
            judge = cls(vocab, nn.EmbeddingBag(len(vocab) + 1, len(FEATURES), mode="sum", padding_idx=len(vocab)),
                        torch.zeros(len(FEATURES), requires_grad=True))
        nn.init.zeros_(judge.model.weight)
        labels = torch.tensor(_labels(records))
        opt = torch.optim.Adam([judge.model.weight, judge.bias], lr=0.05)
        for epoch in range(epochs):
            perm = np.random.default_rng([seed, epoch]).permutation(len(records))  # every record once per epoch
            for start in range(0, len(records), 256):
                batch = torch.from_numpy(perm[start:start + 256])
                logits = judge._logits([records[i].story for i in batch.tolist()])
                loss = nn.functional.binary_cross_entropy_with_logits(logits, labels[batch])
                opt.zero_grad()
                loss.backward()
                opt.step()
        return judge

    def _logits(self, stories: Sequence[str]) -> torch.Tensor:
        pad = len(self.vocab)
        ids = [[self.vocab[g] for g in _grams(s) if g in self.vocab] or [pad] for s in stories]
        flat = torch.tensor([i for row in ids for i in row])
        offsets = torch.tensor([0] + [len(row) for row in ids[:-1]]).cumsum(0)
        return self.model(flat, offsets) + self.bias

    @torch.no_grad()
    def predict(self, stories: Sequence[str]) -> np.ndarray:
        """``(n, 6)`` booleans in the order of :data:`FEATURES`."""
        out = [self._logits(stories[i:i + 1024]) > 0 for i in range(0, len(stories), 1024)]
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.features)), dtype=bool)

    def accuracy(self, records: Sequence[StoryRecord]) -> dict[str, float]:
        """Held-out accuracy per feature, and ``all``: the share of stories whose six labels are all right."""
        pred, truth = self.predict([r.story for r in records]), np.array(_labels(records), dtype=bool)
        out = {f: float((pred[:, i] == truth[:, i]).mean()) for i, f in enumerate(self.features)}
        out["all"] = float((pred == truth).all(axis=1).mean())
        return out

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        weights = self.model.weight.detach().numpy()
        tmp.write_text(json.dumps({"features": list(self.features), "vocab": list(self.vocab),
                                   "weights": weights.round(6).tolist(), "bias": self.bias.detach().tolist()}))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Judge":
        data = json.loads(Path(path).read_text())
        vocab = {g: i for i, g in enumerate(data["vocab"])}
        bag = nn.EmbeddingBag(len(vocab) + 1, len(data["features"]), mode="sum", padding_idx=len(vocab))
        bag.weight.data = torch.tensor(data["weights"], dtype=torch.float32)
        return cls(vocab, bag, torch.tensor(data["bias"]), tuple(data["features"]))


def _labels(records: Sequence[StoryRecord]) -> list[list[float]]:
    return [[float(f in r.has) for f in FEATURES] for r in records]
