"""Mechanistic reads of compiled (and fine-tuned) Tracr models, labelled by the residual basis.

* :func:`attention_mass` — where the answer position looks, per block: the share of its attention on
  tokens ``a``, ``b`` and BOS (the Counter's selector-width head always keeps some mass on BOS).
* :func:`attention_change` — how far fine-tuning moved each block's attention (total-variation distance
  between the patterns before and after, on the same inputs). For Max-identifier the paper reads its
  claims off Block 0 (the sorting pattern kept at η_VS, distorted at larger lrs), and a distance says
  that without naming tokens.
* :func:`single_weight_search` — the paper reports that zeroing *one* weight of a Counter fine-tuned on
  correlated data revives counting ``a`` by > 60 points. First-order scores (g·w) are a poor guide on
  compiled models (±100-scale ReLU and softmax edges; pilot-tracr.md §5), so this zeroes every candidate
  weight in turn and measures the real accuracy, then reports the best ones on held-out data with the
  predicted-class histogram and the constant-output floor: a "revival" that outputs one class is not one.
* :func:`weight_name` — ``B1 mlp.fc_out [hidden 29 -> count_a:1]``: block, matrix, and the residual
  directions a weight reads from / writes to.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from wrapperlab.data.tracr_data import TracrData, TracrSamples
from wrapperlab.settings.tracr.evaluate import predict_classes


@torch.no_grad()
def attention_mass(model: nn.Module, samples: TracrSamples, token_ids: dict[str, int]) -> list[dict[str, float]]:
    """Per block, the mean attention (over inputs and heads) from the answer position onto each named token."""
    names = [f"blocks.{b}.attn.hook_pattern" for b in range(len(model.blocks))]
    _, cache = model.run_with_cache(torch.from_numpy(samples.tokens), names_filter=lambda n: n in names)
    tokens = torch.from_numpy(samples.tokens)
    rows = torch.arange(len(tokens))
    out = []
    for name in names:
        pattern = cache[name].mean(1)[rows, torch.from_numpy(samples.answer_pos)]  # (n, keys)
        out.append({label: float((pattern * (tokens == tid)).sum(-1).mean()) for label, tid in token_ids.items()})
    return out


@torch.no_grad()
def attention_change(before: nn.Module, after: nn.Module, samples: TracrSamples, pad_id: int | None = None) -> list[float]:
    """Per block, the mean over inputs, heads and query positions of 0.5 * sum_k |p_after - p_before|
    (0 = identical attention, 1 = disjoint), real (non-padding) query positions only."""
    names = [f"blocks.{b}.attn.hook_pattern" for b in range(len(before.blocks))]
    tokens = torch.from_numpy(samples.tokens)
    caches = [m.run_with_cache(tokens, names_filter=lambda n: n in names)[1] for m in (before, after)]
    real = tokens != pad_id if pad_id is not None else torch.ones_like(tokens, dtype=torch.bool)
    out = []
    for name in names:
        tv = 0.5 * (caches[1][name] - caches[0][name]).abs().sum(-1)  # (n, heads, queries)
        weight = real[:, None, :].expand_as(tv).float()
        out.append(float((tv * weight).sum() / weight.sum()))
    return out


def weight_name(param: str, index: tuple[int, ...], labels: Sequence[str], d_head: int, n_heads: int) -> str:
    """A human name for one scalar weight of a converted compiled model."""
    if param in ("embed.weight", "pos_embed.weight"):
        what = "token" if param == "embed.weight" else "position"
        return f"{param.split('.')[0]} [{what} {index[0]} -> {labels[index[1]]}]"
    block, rest = param.split(".", 2)[1], param.split(".", 2)[2]
    matrix, kind = rest.rsplit(".", 1)
    where = f"B{block} {matrix}"
    if matrix == "attn.qkv":
        which, within = divmod(index[0], n_heads * d_head)
        part = f"{'QKV'[which]} head {within // d_head} dim {within % d_head}"
        return f"{where} {kind} [{part}" + (f" <- {labels[index[1]]}]" if kind == "weight" else "]")
    if matrix == "attn.out":
        return f"{where} {kind} [" + (f"z {index[1]} -> " if kind == "weight" else "") + f"{labels[index[0]]}]"
    if matrix == "mlp.fc_in":
        return f"{where} {kind} [hidden {index[0]}" + (f" <- {labels[index[1]]}]" if kind == "weight" else "]")
    return f"{where} {kind} [" + (f"hidden {index[1]} -> " if kind == "weight" else "") + f"{labels[index[0]]}]"


@dataclass
class PrunedWeight:
    name: str
    param: str
    index: list[int]
    value: float
    search_acc: float  # Acc O_PT on the search set with this weight zeroed
    acc_pt_cte0: float = 0.0  # held-out
    acc_pt_cte1: float = 0.0
    acc_ft_cte1: float = 0.0
    histogram: dict[str, int] = field(default_factory=dict)  # predicted classes on held-out C_Te = 0


@dataclass
class WeightSearch:
    """Result of :func:`single_weight_search` (JSON-serialisable)."""

    baseline: dict[str, float]  # the unpruned model on the held-out sets
    floor_pt_cte0: float  # best constant output for O_PT on held-out C_Te = 0
    histogram_before: dict[str, int]
    candidates: int
    min_abs: float
    best: list[PrunedWeight]
    first_order: PrunedWeight | None  # the top g*w weight, for comparison
    greedy: list[dict] = field(default_factory=list)  # k weights zeroed together: names, held-out accs, histogram

    @property
    def gain(self) -> float:
        return self.best[0].acc_pt_cte0 - self.baseline["acc_pt_cte0"] if self.best else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "gain": self.gain}


def _histogram(data: TracrData, pred: np.ndarray) -> dict[str, int]:
    counts = np.bincount(pred, minlength=len(data.output_values))
    return {str(data.output_values[i]): int(c) for i, c in enumerate(counts) if c}


def _held_out(model, data: TracrData, tests: dict[float, TracrSamples]) -> tuple[dict[str, float], dict[str, int]]:
    out, hist = {}, {}
    for c, samples in tests.items():
        pred = predict_classes(model, samples)
        tag = f"cte{int(c)}"
        out[f"acc_pt_{tag}"] = float((pred == data.values_of(samples, data.config.pt)).mean())
        out[f"acc_ft_{tag}"] = float((pred == data.values_of(samples, data.config.ft)).mean())
        if c == 0.0:
            hist = _histogram(data, pred)
    return out, hist


@dataclass(frozen=True)
class SearchOptions:
    """Which weights a single-weight search tries (``|w| > min_abs``), how many of the best it reports (``keep``),
    and the greedy multi-weight sets it grows from the ``pool`` best, up to ``max_k`` weights."""

    min_abs: float = 1e-2
    keep: int = 5
    pool: int = 40
    max_k: int = 5


@torch.no_grad()
def single_weight_search(model: nn.Module, data: TracrData, search: TracrSamples, tests: dict[float, TracrSamples],
                         labels: Sequence[str], options: SearchOptions = SearchOptions()) -> WeightSearch:
    """Zero each weight with ``|w| > min_abs`` (the read-out projection excluded) in turn, rank by Acc O_PT
    on ``search``, and report the ``keep`` best on the held-out ``tests`` (C_Te = 0 and 1); then grow a
    set greedily from the ``pool`` best single weights up to ``max_k`` weights (multi-weight pruning)."""
    cfg = model.cfg
    truth = data.values_of(search, data.config.pt)
    tokens, pos = torch.from_numpy(search.tokens), torch.from_numpy(search.answer_pos)
    params = {n: p for n, p in model.named_parameters() if not n.startswith("unembed")}
    scored: list[tuple[float, str, tuple[int, ...]]] = []
    candidates = [(n, tuple(int(i) for i in idx)) for n, p in params.items()
                  for idx in (p.abs() > options.min_abs).nonzero()]
    for name, idx in candidates:
        with _zeroed(params, [(name, idx)]):
            scored.append((_accuracy(model, tokens, pos, truth), name, idx))
    scored.sort(key=lambda s: -s[0])
    baseline, hist_before = _held_out(model, data, tests)

    def evaluate(acc: float, name: str, idx: tuple[int, ...]) -> PrunedWeight:
        value = params[name][idx].item()
        with _zeroed(params, [(name, idx)]):
            held, hist = _held_out(model, data, tests)
        return PrunedWeight(weight_name(name, idx, labels, cfg.d_head, cfg.n_heads), name, list(idx), value, acc,
                            held["acc_pt_cte0"], held["acc_pt_cte1"], held["acc_ft_cte1"], hist)

    def accuracy_without(weights: list[tuple[str, tuple[int, ...]]]) -> float:
        with _zeroed(params, weights):
            return _accuracy(model, tokens, pos, truth)

    def held_out_without(weights: list[tuple[str, tuple[int, ...]]]) -> tuple[dict[str, float], dict[str, int]]:
        with _zeroed(params, weights):
            return _held_out(model, data, tests)

    best = [evaluate(*s) for s in scored[:options.keep]]
    names = lambda chosen: [weight_name(n, i, labels, cfg.d_head, cfg.n_heads) for n, i in chosen]  # noqa: E731
    greedy = _greedy([(n, i) for _, n, i in scored[:options.pool]], options.max_k, accuracy_without,
                     held_out_without, names)
    first = _first_order(model, data, search, params)
    first_pruned = None
    if first is not None:
        acc = next((s[0] for s in scored if (s[1], s[2]) == first), float("nan"))
        first_pruned = evaluate(acc, *first)
    truth_test = data.values_of(tests[0.0], data.config.pt)
    floor = float(np.bincount(truth_test[truth_test >= 0]).max() / len(truth_test))
    return WeightSearch(baseline, floor, hist_before, len(candidates), options.min_abs, best, first_pruned, greedy)


def _greedy(pool: list[tuple[str, tuple[int, ...]]], max_k: int, accuracy_without, held_out_without,
            names) -> list[dict]:
    """Add, one at a time, the pool weight whose zeroing (with those already chosen) helps Acc O_PT most
    (``accuracy_without(weights)``), each set measured on the held-out sets (``held_out_without``)."""
    chosen: list[tuple[str, tuple[int, ...]]] = []
    out = []
    for k in range(1, max_k + 1):
        best_acc, best = -1.0, None
        for weight in pool:
            if weight in chosen:
                continue
            acc = accuracy_without([*chosen, weight])
            if acc > best_acc:
                best_acc, best = acc, weight
        if best is None:
            break
        chosen.append(best)
        held, hist = held_out_without(chosen)
        out.append({"k": k, "search_acc": best_acc, **held, "histogram": hist, "weights": names(chosen)})
    return out


@contextmanager
def _zeroed(params: dict[str, torch.Tensor], weights: Sequence[tuple[str, tuple[int, ...]]]):
    """Zero the given scalar weights in place for the block, then put their values back."""
    saved = [(name, idx, params[name][idx].item()) for name, idx in weights]
    for name, idx, _ in saved:
        params[name][idx] = 0.0
    try:
        yield
    finally:
        for name, idx, value in saved:
            params[name][idx] = value


def _accuracy(model: nn.Module, tokens: torch.Tensor, pos: torch.Tensor, truth: np.ndarray) -> float:
    return float((model(tokens, logits_at=pos).argmax(-1).numpy() == truth).mean())


def _first_order(model, data: TracrData, search: TracrSamples, params: dict) -> tuple[str, tuple[int, ...]] | None:
    """The weight with the largest g·w on the O_PT loss (zeroing it is predicted to lower the loss most)."""
    with torch.enable_grad():
        model.zero_grad(set_to_none=True)
        logits = model(torch.from_numpy(search.tokens), logits_at=torch.from_numpy(search.answer_pos))
        truth = torch.from_numpy(data.values_of(search, data.config.pt))
        torch.nn.functional.cross_entropy(logits, truth.clamp(min=0)).backward()
    best, where = -float("inf"), None
    for name, p in params.items():
        if p.grad is None:
            continue
        gw = (p.grad * p).detach()
        value, flat = gw.flatten().max(0)
        if value.item() > best:
            best, where = value.item(), (name, tuple(int(i) for i in np.unravel_index(int(flat), p.shape)))
    model.zero_grad(set_to_none=True)
    return where


@torch.no_grad()
def tracr_maps(model: nn.Module, tokens: np.ndarray, token_names: Sequence[str], labels: Sequence[str]) -> dict:
    """One input's attention patterns ``(blocks, heads, q, k)`` and each MLP's output in the residual basis
    ``(blocks, pos, d_model)``, with the names to label both (JSON-serialisable)."""
    names = {f"blocks.{b}.{h}" for b in range(len(model.blocks)) for h in ("attn.hook_pattern", "hook_mlp_out")}
    _, cache = model.run_with_cache(torch.from_numpy(tokens[None]), names_filter=lambda n: n in names)
    blocks = range(len(model.blocks))
    return {
        "tokens": list(token_names),
        "labels": list(labels),
        "patterns": [cache[f"blocks.{b}.attn.hook_pattern"][0].tolist() for b in blocks],
        "mlp_out": [cache[f"blocks.{b}.hook_mlp_out"][0].tolist() for b in blocks],
    }


def top_writes(maps: dict, position: int, k: int = 4) -> list[list[tuple[str, float]]]:
    """Per block, the residual directions its MLP writes most strongly at ``position``."""
    out = []
    for block in maps["mlp_out"]:
        row = np.asarray(block[position])
        order = np.argsort(-np.abs(row))[:k]
        out.append([(maps["labels"][i], float(row[i])) for i in order if abs(row[i]) > 1e-3])
    return out
