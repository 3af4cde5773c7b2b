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

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from wrapperlab.data.samples import Samples
from wrapperlab.schema import Config, Result


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


def residuals_at(model: nn.Module, samples: Samples, batch_size: int = 256) -> torch.Tensor:
    """Residual stream at each sample's answer-predicting position: ``(n_layers + 1, n, d_model)``."""
    return residuals_at_positions(model, torch.from_numpy(samples.tokens), torch.from_numpy(samples.answer_pos) - 1,
                                  batch_size)


@torch.no_grad()
def residuals_at_positions(model: nn.Module, tokens: torch.Tensor, query: torch.Tensor,
                           batch_size: int = 256) -> torch.Tensor:
    """Residual stream of each row of ``tokens`` at its position ``query``, at B0 and after every block:
    ``(n_layers + 1, n, d_model)``. Each batch runs only as far as its furthest query (nothing after it matters).

    The last block's output is read where the final norm receives it (a forward pre-hook on ``ln_final``), not
    through a hook on the block: with no hook on it, :class:`~wrapperlab.models.gpt.GPT` computes the last block
    at the query positions only (its keys and values everywhere), which is all a probe reads — the same values
    within float rounding, for a block's work less per input (docs/performance.md)."""
    device = next(model.parameters()).device
    names = residual_hooks(len(model.blocks))[:-1]
    out = []
    for i in range(0, len(tokens), batch_size):
        part = tokens[i : i + batch_size].to(device)
        where = query[i : i + batch_size].to(device)
        rows = torch.arange(len(part), device=device)
        grabbed: dict[str, torch.Tensor] = {}

        def grab(x, hook):
            grabbed[hook.name] = x[rows, where].float().cpu()

        def grab_final(_module, inputs):  # (b, d_model): the last block's output at ``where``
            grabbed["final"] = inputs[0].float().cpu()

        handle = model.ln_final.register_forward_pre_hook(grab_final)
        try:
            model.run_with_hooks(part[:, : int(where.max()) + 1], [(names, grab)], logits_at=where)
        finally:
            handle.remove()
        out.append(torch.stack([grabbed[n] for n in names] + [grabbed["final"]]))
    return torch.cat(out, dim=1)


def train_probes(
    x_train: torch.Tensor, y_train: np.ndarray, x_test: torch.Tensor, y_test: np.ndarray, cfg: ProbeConfig, seed: int = 0
) -> list[float]:
    """One linear probe per layer (``x``: ``(layers, n, d)``); returns test accuracy per layer."""
    return train_probe_sets([(x_train, y_train, x_test, y_test)], cfg, seed)[0]


def train_probe_sets(problems: list[tuple[torch.Tensor, np.ndarray, torch.Tensor, np.ndarray]], cfg: ProbeConfig,
                     seed: int = 0) -> list[list[float]]:
    """:func:`train_probes` for several problems at once (each ``(x_train, y_train, x_test, y_test)``, the same
    number of training samples and width): every layer of every problem one slice of one batched linear map.

    Why: a probe step is a few tiny matrix products, so four problems trained one after another (two targets, the
    model and its random-init twin) cost four times the per-step overhead for no more arithmetic. Each problem
    trains exactly as alone — the same minibatch indices (one generator seeded by ``seed``, as each alone would
    draw), its own standardisation, its loss a mean over its own layers and samples (the summed loss gives each
    its own gradient; AdamW is elementwise), and classes beyond its own masked out of its softmax — so the
    accuracies equal separate training up to float summation order."""
    gen = torch.Generator().manual_seed(seed)
    xs_train, xs_test, ys_train, ys_test, classes, layers = [], [], [], [], [], []
    for x_train, y_train, x_test, y_test in problems:
        mean = x_train.mean(1, keepdim=True)
        std = x_train.std(1, keepdim=True) + 1e-6  # standardise per feature: one lr suits every layer
        xs_train.append((x_train - mean) / std)
        xs_test.append((x_test - mean) / std)
        n_layers = x_train.shape[0]
        ys_train.append(torch.from_numpy(y_train).long().expand(n_layers, -1))
        ys_test.append(torch.from_numpy(y_test).long().expand(n_layers, -1))
        classes.append(int(max(y_train.max(), y_test.max())) + 1)
        layers.append(n_layers)
    xtr, xte, ytr, yte = torch.cat(xs_train), torch.cat(xs_test), torch.cat(ys_train), torch.cat(ys_test)
    rows, n, d = xtr.shape
    width = max(classes)
    mask = torch.zeros(rows, 1, width)
    row_weight = torch.empty(rows)
    start = 0
    for n_layers, n_classes in zip(layers, classes):
        mask[start : start + n_layers, :, n_classes:] = float("-inf")
        row_weight[start : start + n_layers] = 1.0 / n_layers
        start += n_layers
    weight = torch.zeros(rows, d, width, requires_grad=True)
    bias = torch.zeros(rows, 1, width, requires_grad=True)
    opt = torch.optim.AdamW([weight, bias], lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = [int(m * cfg.iters) for m in cfg.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, steps, gamma=0.1)
    for _ in range(cfg.iters):
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        # index_select, not xtr[:, idx]: the same gather, 5x faster on CPU (a third of a step before)
        logits = torch.baddbmm(bias, xtr.index_select(1, idx), weight) + mask  # (rows, batch, classes)
        per_sample = F.cross_entropy(logits.flatten(0, 1), ytr.index_select(1, idx).flatten(), reduction="none")
        loss = (per_sample.view(rows, -1).mean(1) * row_weight).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        hits = (torch.baddbmm(bias, xte, weight) + mask).argmax(-1) == yte
        per_row = hits.float().mean(1).tolist()
    bounds = np.cumsum([0, *layers])
    return [per_row[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


class ProbeResult(Result):
    """Held-out probe accuracy per layer, for the model and its random-init twin, per target."""

    layers: list[str]
    accuracy: dict[str, dict[str, list[float]]]  # target -> {"model": [...], "random_init": [...]}
    majority: dict[str, float]  # target -> accuracy of always answering the most common class
    config: dict[str, Any]


def target_probes(acts: dict[str, tuple[torch.Tensor, torch.Tensor]], targets: dict[str, tuple[np.ndarray, np.ndarray]],
                  cfg: ProbeConfig, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Per-layer probe accuracy for every target on every model's residuals (``acts``: name -> (train, test)), all
    trained as one batch: ``{target: {name: [...]}}``."""
    cells = [(target, name) for target in targets for name in acts]
    results = train_probe_sets([(acts[name][0], targets[target][0], acts[name][1], targets[target][1])
                                for target, name in cells], cfg, seed)
    accuracy: dict[str, dict[str, list[float]]] = {target: {} for target in targets}
    for (target, name), values in zip(cells, results):
        accuracy[target][name] = values
    return accuracy


def probe(
    model: nn.Module,
    control: nn.Module,
    train: Samples,
    test: Samples,
    targets: dict[str, tuple[np.ndarray, np.ndarray]],
    cfg: ProbeConfig,
    seed: int = 0,
    control_acts: tuple[torch.Tensor, torch.Tensor] | None = None,
    control_accuracy: dict[str, list[float]] | None = None,
) -> ProbeResult:
    """Probe ``model`` and a random-init ``control`` for each target (train labels, test labels).

    ``control_acts``: the control's residuals on ``train`` and ``test`` (:func:`residuals_at`) where the caller
    has them — the same twin on the same inputs serves every run probed with them, so a store caches them.
    ``control_accuracy``: the control's probe accuracies per target where the caller has them (the same twin, inputs,
    targets, config and seed give the same probes: each problem trains as alone, :func:`train_probe_sets`), so only
    the model's probes are trained."""
    acts = {"model": (residuals_at(model, train), residuals_at(model, test))}
    if control_accuracy is None:
        acts["random_init"] = control_acts or (residuals_at(control, train), residuals_at(control, test))
    accuracy = target_probes(acts, targets, cfg, seed)
    if control_accuracy is not None:
        for target in targets:
            accuracy[target]["random_init"] = list(control_accuracy[target])
    majority = {target: float(np.bincount(y_test).max() / len(y_test)) for target, (_, y_test) in targets.items()}
    return ProbeResult(layers=layer_names(len(model.blocks)), accuracy=accuracy, majority=majority,
                       config=cfg.model_dump(mode="json"))
