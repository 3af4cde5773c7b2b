"""Where did fine-tuning write? Per-matrix weight differences between two models of one architecture.

For every weight matrix (the fused QKV matrix split into Q, K and V): the relative Frobenius change
``|dW| / |W_a|``, the effective rank of ``dW`` (``exp`` of the entropy of its normalised singular
values; Roy & Vetterli 2007) and the share of ``dW``'s energy (squared singular values) in its top 1
and top 5 directions. A wrapper predicts small, low-rank, localised changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from wrapperlab.errors import ConfigError


@dataclass
class MatrixDiff:
    name: str
    rel_change: float
    effective_rank: float
    top1_energy: float
    top5_energy: float
    shape: tuple[int, int]


def _matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.state_dict().items():
        if p.dim() != 2:
            continue
        if name.endswith("attn.qkv.weight"):
            for part, chunk in zip("QKV", p.split(list(model.cfg.qkv_split), dim=0)):
                out[name.replace("qkv.weight", f"W_{part}")] = chunk
        else:
            out[name.removesuffix(".weight")] = p
    return out


@torch.no_grad()
def weight_diff(model_a: nn.Module, model_b: nn.Module) -> list[MatrixDiff]:
    a, b = _matrices(model_a), _matrices(model_b)
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ConfigError("runs", "two architectures", "two runs of the same architecture")
    diffs = []
    for name, wa in a.items():
        delta = (b[name] - wa).double()
        sv = torch.linalg.svdvals(delta)
        energy = sv**2
        total = float(energy.sum())
        if total == 0:
            diffs.append(MatrixDiff(name, 0.0, 0.0, 0.0, 0.0, tuple(wa.shape)))
            continue
        p = sv / sv.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log()).sum())
        diffs.append(
            MatrixDiff(
                name=name,
                rel_change=float(delta.norm() / wa.double().norm().clamp_min(1e-12)),
                effective_rank=float(torch.exp(torch.tensor(entropy))),
                top1_energy=float(energy[:1].sum()) / total,
                top5_energy=float(energy[:5].sum()) / total,
                shape=tuple(wa.shape),
            )
        )
    return diffs


def as_dicts(diffs: list[MatrixDiff]) -> list[dict]:
    return [asdict(d) for d in diffs]
