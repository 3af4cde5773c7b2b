"""Probes: perfect where the target is linearly there, chance where it is not."""

import numpy as np
import pytest
import torch

from wrapperlab.analysis.probing import (
    ProbeConfig,
    layer_names,
    residual_hooks,
    residuals_at,
    residuals_at_positions,
    train_probe_sets,
    train_probes,
)
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.models.gpt import GPT, GPTConfig

CFG = ProbeConfig(iters=400, lr=1e-2, n_train=600, n_test=300)


def synthetic(n, d=32, classes=8, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    basis = rng.normal(size=(classes, d))
    x = basis[y] + 0.1 * rng.normal(size=(n, d))
    return torch.tensor(x, dtype=torch.float32), y


def test_linear_code_is_read_perfectly_and_shuffled_labels_are_not():
    x, y = synthetic(900)
    noise = torch.randn_like(x)
    layers = torch.stack([x, noise])  # layer 0 encodes y, layer 1 is pure noise
    acc = train_probes(layers[:, :600], y[:600], layers[:, 600:], y[600:], CFG)
    assert acc[0] > 0.98
    chance = np.bincount(y[600:]).max() / 300
    assert acc[1] < chance + 0.08
    shuffled = np.random.default_rng(1).permutation(y)
    acc = train_probes(layers[:, :600], shuffled[:600], layers[:, 600:], shuffled[600:], CFG)
    assert acc[0] < chance + 0.08


def test_problems_trained_as_one_batch_equal_each_trained_alone():
    """Probe problems with different class counts and layer counts, trained as one batch, give each problem the
    accuracies it gets alone (masked extra classes, per-problem loss means): equal up to float summation order."""
    problems = []
    for seed, (classes, n_layers) in enumerate([(8, 2), (3, 3), (12, 1)]):
        x, y = synthetic(900, classes=classes, seed=seed)
        layers = torch.stack([x + 0.3 * torch.randn_like(x) * i for i in range(n_layers)])
        problems.append((layers[:, :600], y[:600], layers[:, 600:], y[600:]))
    together = train_probe_sets(problems, CFG, seed=3)
    alone = [train_probe_sets([p], CFG, seed=3)[0] for p in problems]
    assert [len(a) for a in together] == [2, 3, 1]
    for a, b in zip(together, alone):
        assert np.allclose(a, b, atol=1 / 300 + 1e-9)  # at most one test sample of 300 flips


def test_residuals_are_read_at_the_answer_predicting_position():
    data = PCFGData(PCFGDataConfig(window=64, tasks=("count",)))
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=len(data.vocab), n_ctx=data.seq_len)).eval()
    samples = data.sample(5, np.random.default_rng(0))
    acts = residuals_at(model, samples, batch_size=2)
    assert acts.shape == (3, 5, 64) and layer_names(2) == ["B0", "B1", "B2"]
    _, cache = model.run_with_cache(torch.from_numpy(samples.tokens))
    pos = int(samples.answer_pos[0]) - 1
    assert torch.allclose(acts[2, 0], cache["blocks.1.hook_resid_post"][0, pos], atol=1e-5)
    assert torch.allclose(acts[0, 3], cache["blocks.0.hook_resid_pre"][3, pos], atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"norm": "rmsnorm", "positions": "rope", "act": "swiglu", "bias": False},
                                     {"n_kv_heads": 1}, {"n_layers": 1}])
def test_residuals_through_the_trimmed_last_block_equal_the_full_pass(options):
    """The last block's output is read at the final norm, so the model computes that block at the read positions
    only: every layer's residual equals the full pass's within float rounding, and the last block's MLP really
    ran on one position per row (its input is ``(b, 1, d)``), except in a one-block model, whose block is hooked."""
    torch.manual_seed(0)
    cfg = {"vocab_size": 30, "n_ctx": 24, "d_model": 32, "n_heads": 4, "n_layers": 2, **options}
    model = GPT(GPTConfig(**cfg)).eval()
    x = torch.randint(0, 30, (5, 24))
    query = torch.tensor([3, 23, 7, 0, 12])
    shapes = []
    handle = model.blocks[-1].mlp.register_forward_pre_hook(lambda _m, inputs: shapes.append(inputs[0].shape))
    acts = residuals_at_positions(model, x, query, batch_size=2)
    handle.remove()
    _, cache = model.run_with_cache(x)
    rows = torch.arange(5)
    full = torch.stack([cache[name][rows, query] for name in residual_hooks(cfg["n_layers"])])
    assert acts.shape == full.shape and torch.allclose(acts, full, atol=1e-5)
    assert len(shapes) == 3 and all((s[1] == 1) == (cfg["n_layers"] > 1) for s in shapes)
