"""Accuracy of a (fine-tuned) compiled model, with the floors that make its numbers readable.

A compiled model reads no question: the same input is scored against the pretraining answer (O_PT,
e.g. count(a)) and the fine-tuning answer (O_FT, count(b)). Small counts dominate these inputs, so a
constant output already scores a lot (the pilot: "always 0" = 34 %); every accuracy therefore comes
with the best constant-output floor and a breakdown by true answer value. ``shortcut`` is the share of
inputs answered with the O_PT answer shifted by q — the wrapper the spurious correlation invites.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from wrapperlab.analysis.predict import batched_argmax
from wrapperlab.data.samples import stream_rng
from wrapperlab.data.tracr_data import TracrData, TracrSamples


def predict_classes(model: nn.Module, samples: TracrSamples, batch_size: int = 2048) -> np.ndarray:
    """The output class at each input's answer position (every input token visible)."""
    return batched_argmax(model, samples, lambda m, tokens, pos: m(tokens, logits_at=pos), batch_size)


def tracr_test_sets(data: TracrData, n: int, seed: int) -> dict[float, TracrSamples]:
    return {c: data.sample(n, stream_rng(seed, "test", int(c)), c=c) for c in (0.0, 1.0)}


def _floor(truth: np.ndarray) -> float:
    return float(np.bincount(truth[truth >= 0]).max() / len(truth)) if len(truth) else 0.0


def tracr_accuracies(
    model: nn.Module, data: TracrData, test_sets: dict[float, TracrSamples], detail: bool = False
) -> dict[str, float | dict]:
    """``acc_{pt,ft}_cte{0,1}``, ``floor_…`` (best constant output), ``shortcut_cte{0,1}``; with
    ``detail`` also ``by_value_{pt,ft}_cte{0,1}``: ``{true value: [accuracy, n]}``. The shortcut
    class is the O_PT class + q: output classes are consecutive values in order (counts, letters)."""
    cfg = data.config
    out: dict[str, float | dict] = {}
    for c, samples in test_sets.items():
        tag = f"cte{int(c)}"
        pred = predict_classes(model, samples)
        for which, operand in (("pt", cfg.pt), ("ft", cfg.ft)):
            truth = data.values_of(samples, operand)
            out[f"acc_{which}_{tag}"] = float((pred == truth).mean())
            out[f"floor_{which}_{tag}"] = _floor(truth)
            if detail:
                out[f"by_value_{which}_{tag}"] = {
                    str(data.output_values[v]): [float((pred[truth == v] == v).mean()), int((truth == v).sum())]
                    for v in np.unique(truth[truth >= 0])
                }
        out[f"shortcut_{tag}"] = float((pred == data.values_of(samples, cfg.pt) + cfg.q).mean())
    return out
