"""Linear probes on the residual stream: is a quantity still linearly readable inside the model?

The paper's definition of a capability (Def. 1) is a linear readout at some layer. We read the
residual stream at the position that predicts the answer (``ART``; the ``Ans`` position itself has
already seen the answer token) at ``B0`` (embeddings) and after every block ``B1 … BL``, and train
one linear probe per layer and target on cached activations — all layers at once as one batched
linear map, so the model runs once per input.

A probe's accuracy means little on its own: a random network can expose a count linearly too. So
every result carries the same probes on a randomly initialised model of the same architecture and
the majority-class rate of the targets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wrapperlab.data.samples import Samples
from wrapperlab.schema import Config


class ProbeConfig(Config):

    iters: int = Field(4000, gt=0, description="paper: 4K")
    lr: float = Field(1e-3, gt=0)
    milestones: tuple[float, ...] = Field((0.5, 0.75, 0.875), description="lr / 10 at these fractions (2K, 3K, 3.5K of 4K)")
    batch_size: int = Field(256, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    n_train: int = Field(4000, gt=0)
    n_test: int = Field(1000, gt=0)


def layer_names(n_layers: int) -> list[str]:
    return [f"B{i}" for i in range(n_layers + 1)]


def residual_hooks(n_layers: int) -> list[str]:
    """Hook names of the residual stream at B0 (embeddings) and after every block, in :func:`layer_names` order."""
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]


@torch.no_grad()
def residuals_at(model: nn.Module, samples: Samples, batch_size: int = 256) -> torch.Tensor:
    """Residual stream at each sample's answer-predicting position: ``(n_layers + 1, n, d_model)``."""
    device = next(model.parameters()).device
    names = residual_hooks(len(model.blocks))
    out = []
    for i in range(0, len(samples), batch_size):
        tokens = torch.from_numpy(samples.tokens[i : i + batch_size]).to(device)
        query = torch.from_numpy(samples.answer_pos[i : i + batch_size]).to(device) - 1
        rows = torch.arange(len(tokens), device=device)
        grabbed: dict[str, torch.Tensor] = {}

        def grab(x, hook):
            grabbed[hook.name] = x[rows, query].float().cpu()

        model.run_with_hooks(tokens[:, : int(query.max()) + 1], [(names, grab)], logits_at=query)
        out.append(torch.stack([grabbed[n] for n in names]))
    return torch.cat(out, dim=1)


def train_probes(
    x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, cfg: ProbeConfig, seed: int = 0
) -> list[float]:
    """One linear probe per layer (``x``: ``(layers, n, d)``); returns test accuracy per layer."""
    gen = torch.Generator().manual_seed(seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    mean = x_train.mean(1, keepdim=True)
    std = x_train.std(1, keepdim=True) + 1e-6  # standardise per feature: one lr suits every layer
    xtr, xte = (x_train - mean) / std, (x_test - mean) / std
    ytr, yte = torch.from_numpy(y_train).long(), torch.from_numpy(y_test).long()
    layers, n, d = xtr.shape
    weight = torch.zeros(layers, d, n_classes, requires_grad=True)
    bias = torch.zeros(layers, 1, n_classes, requires_grad=True)
    opt = torch.optim.AdamW([weight, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = [int(m * cfg.iters) for m in cfg.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1)
    for _ in range(cfg.iters):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        logits = torch.baddbmm(bias, xtr[:, idx], weight)  # (layers, batch, classes)
        loss = F.cross_entropy(logits.flatten(0, 1), ytr[idx].repeat(layers))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        pred = torch.baddbmm(bias, xte, weight).argmax(-1)
        return (pred == yte[None]).float().mean(1).tolist()


@dataclass
class ProbeResult:
    layers: list[str]
    accuracy: dict[str, dict[str, list[float]]]  # target -> {"model": [...], "random_init": [...]}
    majority: dict[str, float]  # target -> accuracy of always answering the most common class
    config: dict

    def as_dict(self) -> dict:
        return asdict(self)


def probe(
    model: nn.Module,
    control: nn.Module,
    train: Samples,
    test: Samples,
    targets: dict[str, tuple[np.ndarray, np.ndarray]],
    cfg: ProbeConfig,
    seed: int = 0,
) -> ProbeResult:
    """Probe ``model`` and a random-init ``control`` for each target (train labels, test labels)."""
    acts = {name: (residuals_at(m, train), residuals_at(m, test)) for name, m in (("model", model), ("random_init", control))}
    accuracy: dict[str, dict[str, list[float]]] = {}
    majority = {}
    for target, (y_train, y_test) in targets.items():
        accuracy[target] = {
            name: train_probes(xtr, y_train, xte, y_test, cfg, seed) for name, (xtr, xte) in acts.items()
        }
        majority[target] = float(np.bincount(y_test).max() / len(y_test))
    return ProbeResult(layer_names(len(model.blocks)), accuracy, majority, cfg.model_dump(mode="json"))
