"""Single-shot gradient x weight pruning (Jain et al. App. D; Molchanov et al. 2016).

Score every *unit* by the dot product of its weights with the gradient of the pretraining-task loss,
zero the top-K and re-measure. Zeroing ``w`` changes the loss by about ``-g . w`` (first order), so the
largest ``g . w`` are the units whose removal most lowers the pretraining loss: if fine-tuning only
wrapped the capability, removing a few such units brings it back.

Units (``PruneConfig.unit``):

* ``rows`` (default, the paper's "a row in the weight matrix"): one output row of a weight matrix plus
  its bias entry, over the matrices named in ``matrices`` (default every matrix of every block:
  ``attn.qkv`` — a Q, K or V row —, ``attn.out``, ``mlp.fc_in``, ``mlp.fc_out``).
* ``mlp_hidden``: one MLP hidden unit: its ``fc_in`` row (both halves for SwiGLU), bias, and ``fc_out``
  column.
* ``weights``: single scalar weights of the named matrices (the paper's unit for Tracr models).

The stored model is never modified: pruning works on a copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from wrapperlab.data.samples import Samples
from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPTConfig
from wrapperlab.schema import Config, Result
from wrapperlab.training.losses import answer_logits

MATRICES = ("attn.qkv", "attn.out", "mlp.fc_in", "mlp.fc_out")


class PruneConfig(Config):

    unit: Literal["rows", "mlp_hidden", "weights"] = "rows"
    matrices: tuple[str, ...] = MATRICES
    saliency: Literal["signed", "absolute"] = "signed"
    n_samples: int = Field(512, gt=0, description="pretraining-task samples for the saliency gradient")
    ks: tuple[int, ...] = (0, 1, 2, 3, 5, 10, 15, 20)

    @field_validator("matrices")
    @classmethod
    def _matrices(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            if m not in MATRICES:
                raise ConfigError("matrices", m, f"names from {list(MATRICES)}")
        if not v:
            raise ValueError("at least one matrix")
        return v

    @field_validator("ks")
    @classmethod
    def _ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 0 for k in v):
            raise ConfigError("ks", list(v), "non-negative numbers of units")
        return tuple(sorted(set(v)))


@dataclass(frozen=True)
class Unit:
    """One prunable unit: where it lives and its saliency score."""

    block: int
    matrix: str  # e.g. "attn.qkv", or "mlp" for a hidden unit
    index: int  # row (rows), hidden unit (mlp_hidden), or flat weight index (weights)
    score: float

    def describe(self, cfg: GPTConfig, kind: str = "rows") -> dict:
        out = {"block": self.block, "matrix": self.matrix, "index": self.index, "score": self.score}
        if self.matrix == "attn.qkv":
            row = self.index // cfg.d_model if kind == "weights" else self.index  # qkv has d_model inputs
            for part, width in zip("QKV", cfg.qkv_split):
                if row < width:
                    break
                row -= width
            out["qkv"] = part
            out["head"] = row // cfg.d_head
        return out


# -- unit enumeration and scores ----------------------------------------------------------------


def _linear(model: nn.Module, block: int, matrix: str) -> nn.Linear:
    return model.get_submodule(f"blocks.{block}.{matrix}")


def _scores(model: nn.Module, cfg: PruneConfig) -> list[tuple[int, str, torch.Tensor]]:
    """Per (block, matrix) a vector of unit scores (g . w summed over each unit's parameters)."""
    n_blocks = len(model.blocks)
    out = []
    for b in range(n_blocks):
        if cfg.unit == "mlp_hidden":
            fc_in, fc_out = _linear(model, b, "mlp.fc_in"), _linear(model, b, "mlp.fc_out")
            width = fc_out.weight.shape[1]
            s_in = (fc_in.weight.grad * fc_in.weight).sum(1)
            if fc_in.bias is not None:
                s_in = s_in + fc_in.bias.grad * fc_in.bias
            s = s_in.view(-1, width).sum(0)  # SwiGLU: gate and up halves belong to the same unit
            s = s + (fc_out.weight.grad * fc_out.weight).sum(0)
            out.append((b, "mlp", s))
            continue
        for m in cfg.matrices:
            lin = _linear(model, b, m)
            gw = lin.weight.grad * lin.weight
            if cfg.unit == "weights":
                out.append((b, m, gw.flatten()))
            else:
                s = gw.sum(1)
                if lin.bias is not None:
                    s = s + lin.bias.grad * lin.bias
                out.append((b, m, s))
    return out


def count_units(model: nn.Module, cfg: PruneConfig) -> int:
    """How many units of ``cfg.unit`` the model has (no gradients needed)."""
    total = 0
    for b in range(len(model.blocks)):
        if cfg.unit == "mlp_hidden":
            total += _linear(model, b, "mlp.fc_out").weight.shape[1]
        else:
            for m in cfg.matrices:
                w = _linear(model, b, m).weight
                total += w.numel() if cfg.unit == "weights" else w.shape[0]
    return total


def check_ks(model: nn.Module, cfg: PruneConfig) -> None:
    n_units = count_units(model, cfg)
    if max(cfg.ks) > n_units:
        raise ConfigError("ks", max(cfg.ks), f"at most the {n_units} units of kind {cfg.unit!r} in this model")


def saliency(model: nn.Module, samples: Samples, cfg: PruneConfig, top: int, batch_size: int = 256) -> tuple[list[Unit], int]:
    """The ``top`` most salient units on the answer-only CE of ``samples``, and how many units exist."""
    n = len(samples)

    def losses(work: nn.Module) -> Iterator[torch.Tensor]:
        device = next(work.parameters()).device
        for i in range(0, n, batch_size):
            tokens = torch.from_numpy(samples.tokens[i : i + batch_size]).to(device)
            pos = torch.from_numpy(samples.answer_pos[i : i + batch_size]).to(device)
            rows = torch.arange(len(tokens), device=device)
            yield F.cross_entropy(answer_logits(work, tokens, pos), tokens[rows, pos], reduction="sum") / n

    return saliency_of(model, losses, cfg, top)


def saliency_of(model: nn.Module, losses: Callable[[nn.Module], Iterable[torch.Tensor]], cfg: PruneConfig,
                top: int) -> tuple[list[Unit], int]:
    """The ``top`` most salient units for any loss, and how many units exist. ``losses(work)`` yields the loss in
    chunks (their sum is the loss) computed with ``work``, a private copy of the model whose gradients accumulate
    over the chunks — so a large evaluation set never needs one graph."""
    work = copy.deepcopy(model)
    work.eval()
    work.zero_grad(set_to_none=False)
    for loss in losses(work):
        loss.backward()
    with torch.no_grad():
        groups = _scores(work, cfg)
        flat = torch.cat([s for _, _, s in groups])
        if cfg.saliency == "absolute":
            flat = flat.abs()
        values, order = torch.topk(flat, min(top, len(flat)))
        starts = torch.tensor([0] + [len(s) for _, _, s in groups]).cumsum(0)
        units = []
        for v, i in zip(values.tolist(), order.tolist()):
            g = int(torch.searchsorted(starts, i, right=True)) - 1
            block, matrix, _ = groups[g]
            units.append(Unit(block, matrix, i - int(starts[g]), v))
    return units, len(flat)


@torch.no_grad()
def zero_units(model: nn.Module, units: list[Unit], unit_kind: str) -> None:
    """Zero the given units of ``model`` in place (call on a copy)."""
    for u in units:
        if unit_kind == "mlp_hidden":
            fc_in, fc_out = _linear(model, u.block, "mlp.fc_in"), _linear(model, u.block, "mlp.fc_out")
            width = fc_out.weight.shape[1]
            rows = list(range(u.index, fc_in.weight.shape[0], width))  # both SwiGLU halves
            fc_in.weight[rows] = 0
            if fc_in.bias is not None:
                fc_in.bias[rows] = 0
            fc_out.weight[:, u.index] = 0
            continue
        lin = _linear(model, u.block, u.matrix)
        if unit_kind == "weights":
            lin.weight.view(-1)[u.index] = 0
        else:
            lin.weight[u.index] = 0
            if lin.bias is not None:
                lin.bias[u.index] = 0


def pruned_copy(model: nn.Module, units: list[Unit], unit_kind: str) -> nn.Module:
    out = copy.deepcopy(model)
    zero_units(out, units, unit_kind)
    return out


def nested_prunes(model: nn.Module, units: list[Unit], cfg: PruneConfig) -> Iterator[tuple[int, nn.Module]]:
    """``(K, a copy of model with the first K of units zeroed)`` for each K of ``cfg.ks``: the top-K sets are nested,
    so one copy is pruned cumulatively along the sweep (evaluate it before taking the next)."""
    work, done = copy.deepcopy(model), 0
    for k in cfg.ks:
        zero_units(work, units[done:k], cfg.unit)
        done = k
        yield k, work


class PruneResult(Result):
    """Accuracy after zeroing the top-K units, for each K of the sweep."""

    config: dict[str, Any]
    ks: list[int]
    curves: dict[str, list[float]]  # metric -> value per K
    top_units: list[dict[str, Any]]  # block, matrix, index, score (and qkv for a Q/K/V row), best first
    reference: dict[str, float] = {}  # e.g. the pretrained model's numbers
    k_to_half: int | None = None  # smallest K with Acc O_PT(C_Te=0) >= half its reference value
    n_units: int = 0


def prune_sweep(
    model: nn.Module,
    saliency_samples: Samples,
    evaluate: Callable[[nn.Module], dict[str, float]],
    cfg: PruneConfig,
    reference: dict[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> PruneResult:
    """Rank units on ``saliency_samples``, then for each K evaluate a copy with the top-K zeroed.

    The top-K sets are nested, so one copy is pruned cumulatively along the sweep.
    """
    check_ks(model, cfg)
    units, n_units = saliency(model, saliency_samples, cfg, top=max(20, max(cfg.ks)))
    curves: dict[str, list[float]] = {}
    for k, work in nested_prunes(model, units, cfg):
        for name, value in evaluate(work).items():
            curves.setdefault(name, []).append(value)
        if progress:
            progress(k)
    reference = reference or {}
    k_half = None
    if "acc_pt_cte0" in reference and "acc_pt_cte0" in curves:
        target = 0.5 * reference["acc_pt_cte0"]
        k_half = next((k for k, v in zip(cfg.ks, curves["acc_pt_cte0"]) if v >= target), None)
    mcfg = model.cfg
    return PruneResult(
        config=cfg.model_dump(mode="json"),
        ks=list(cfg.ks),
        curves=curves,
        top_units=[u.describe(mcfg, cfg.unit) for u in units],
        reference=reference,
        k_to_half=k_half,
        n_units=n_units,
    )


def unit_locations(result: PruneResult, k: int) -> dict[str, int]:
    """Where the top-k units sit: counts per 'block/matrix[/Q|K|V]'."""
    counts: dict[str, int] = {}
    for u in result.top_units[:k]:
        key = f"B{u['block']} {u['matrix']}" + (f" {u['qkv']}" if "qkv" in u else "")
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


