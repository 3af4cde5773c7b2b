"""Exact-match accuracy of the greedy answer token, per (task, operand) and for fine-tuning pairs.

Pure functions: a model and data in, numbers out. Test sets come from the ``test`` stream of a
seed, so two evaluations with the same seed see the same samples and differ only by the model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import nn

from wrapperlab.analysis.predict import batched_argmax
from wrapperlab.data.finetune_data import FinetuneData
from wrapperlab.data.samples import PCFGData, Samples, stream_rng
from wrapperlab.data.tasks import family
from wrapperlab.training.losses import answer_logits


def predict(model: nn.Module, samples: Samples, batch_size: int | None = None) -> np.ndarray:
    """Greedy answer token ids, ``(n,)`` (the answer token hidden from the input, see ``answer_logits``)."""
    return batched_argmax(model, samples, answer_logits, batch_size)


def accuracy(model: nn.Module, samples: Samples, batch_size: int | None = None) -> float:
    truth = samples.tokens[np.arange(len(samples)), samples.answer_pos]
    return float((predict(model, samples, batch_size) == truth).mean())


def pretrain_pairs(data: PCFGData) -> list[tuple[str, str]]:
    """Every (task, operand) of the configured families, including operands the prior never draws."""
    return [(t, op) for t in data.config.tasks for op in family(t).operands]


def pretrain_accuracies(
    model: nn.Module, data: PCFGData, n: int = 1000, seed: int = 0, pairs: list[tuple[str, str]] | None = None
) -> dict[str, float]:
    """``{"count/a": acc, ...}`` on ``n`` fresh samples per pair (the same windows for every pair)."""
    windows = data.windows(n, stream_rng(seed, "test"))
    result = {}
    for task, operand in pairs or pretrain_pairs(data):
        result[f"{task}/{operand}"] = accuracy(model, data.build([task] * n, [operand] * n, windows))
    return result


@dataclass
class FinetuneAccuracies:
    """The paper's four fine-tuning numbers (fractions in [0, 1])."""

    acc_ft_cte0: float  # O_FT asked, uncorrelated windows: did it learn the new capability?
    acc_ft_cte1: float  # O_FT asked, correlated windows: the shortcut suffices here
    acc_pt_cte0: float  # O_PT asked, uncorrelated windows: is the pretraining behaviour still there?
    acc_pt_cte1: float  # O_PT asked, correlated windows

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def finetune_test_sets(ft: FinetuneData, n: int, seed: int) -> dict[float, Samples]:
    return {c: ft.sample(n, stream_rng(seed, "test", int(c)), c=c) for c in (0.0, 1.0)}


def finetune_accuracies(
    model: nn.Module, ft: FinetuneData, n: int = 1000, seed: int = 0, test_sets: dict[float, Samples] | None = None
) -> FinetuneAccuracies:
    sets = test_sets or finetune_test_sets(ft, n, seed)
    acc = {}
    for c, samples in sets.items():
        tag = "cte1" if c else "cte0"
        acc[f"acc_ft_{tag}"] = accuracy(model, samples)
        acc[f"acc_pt_{tag}"] = accuracy(model, ft.pretraining_view(samples))
    return FinetuneAccuracies(**acc)
