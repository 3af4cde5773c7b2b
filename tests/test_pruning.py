"""Pruning: zeroing is exactly what it says, saliency finds a planted culprit, the model is never touched."""

import copy

import numpy as np
import pytest
import torch

from wrapperlab.analysis.pruning import PruneConfig, Unit, prune_sweep, pruned_copy, saliency
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.runs.profiles import validated


@pytest.fixture(scope="module")
def data():
    return PCFGData(PCFGDataConfig(window=64, tasks=("count",)))


def model_for(data, **kw):
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("test", vocab_size=len(data.vocab), n_ctx=data.seq_len, **kw))


@pytest.mark.parametrize("unit, matrix, index", [("rows", "attn.qkv", 70), ("rows", "mlp.fc_out", 3),
                                                 ("mlp_hidden", "mlp", 17), ("weights", "attn.out", 1234)])
def test_pruning_equals_zeroing_by_hand(data, unit, matrix, index):
    model = model_for(data)
    hand = copy.deepcopy(model)
    with torch.no_grad():
        blk = hand.blocks[1]
        if unit == "mlp_hidden":
            blk.mlp.fc_in.weight[index] = 0
            blk.mlp.fc_in.bias[index] = 0
            blk.mlp.fc_out.weight[:, index] = 0
        elif unit == "weights":
            blk.attn.out.weight.view(-1)[index] = 0
        else:
            lin = blk.get_submodule(matrix)
            lin.weight[index] = 0
            lin.bias[index] = 0
    ours = pruned_copy(model, [Unit(1, matrix, index, 0.0)], unit)
    for (name, a), b in zip(ours.state_dict().items(), hand.state_dict().values()):
        assert torch.equal(a, b), name
    x = torch.from_numpy(data.sample(4, np.random.default_rng(0)).tokens)
    assert not torch.equal(model(x), ours(x))  # and it did change something


def test_swiglu_hidden_unit_takes_both_halves(data):
    model = model_for(data, act="swiglu")
    pruned = pruned_copy(model, [Unit(0, "mlp", 5, 0.0)], "mlp_hidden")
    w = pruned.blocks[0].mlp.fc_in.weight
    width = pruned.blocks[0].mlp.fc_out.weight.shape[1]
    assert w[5].abs().sum() == 0 and w[5 + width].abs().sum() == 0 and w[6].abs().sum() > 0


def test_saliency_ranks_a_planted_culprit_first(data):
    """A toy: one output row of block-1 fc_out writes a huge value into a residual direction that the
    unembedding turns into a wrong answer. Zeroing that row is what lowers the loss most."""
    model = model_for(data, norm="none")
    culprit = 7
    wrong = data.vocab.id("<eos>")
    with torch.no_grad():
        model.blocks[1].mlp.fc_out.bias[culprit] = 5.0
        model.unembed.weight[:, culprit] = 0.0
        model.unembed.weight[wrong, culprit] = 4.0
    samples = data.sample(128, np.random.default_rng(1), task="count", operand="a")
    for mode in ("signed", "absolute"):
        top, n = saliency(model, samples, PruneConfig(saliency=mode), top=3)
        assert (top[0].block, top[0].matrix, top[0].index) == (1, "mlp.fc_out", culprit)
        assert n == 2 * (3 * 64 + 64 + 256 + 64)


def test_sweep_leaves_the_model_alone_and_is_monotone_in_k(data):
    model = model_for(data)
    before = copy.deepcopy(model.state_dict())
    samples = data.sample(64, np.random.default_rng(2), task="count", operand="a")
    zeros = []

    def evaluate(m):
        zeros.append(sum(int((p == 0).sum()) for p in m.parameters()))
        return {"acc_pt_cte0": 0.5}

    result = prune_sweep(model, samples, evaluate, PruneConfig(ks=(0, 2, 5)), reference={"acc_pt_cte0": 0.9})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert zeros[0] < zeros[1] < zeros[2]
    assert result.k_to_half == 0 and result.ks == [0, 2, 5] and len(result.top_units) == 20
    assert result.top_units[0]["score"] >= result.top_units[1]["score"]


def test_bad_prune_settings(data):
    with pytest.raises(ConfigError, match="matrices"):
        validated(PruneConfig, {"matrices": ["attn.nope"]})
    with pytest.raises(ConfigError, match="ks"):
        validated(PruneConfig, {"ks": [-1]})
    model = model_for(data)
    samples = data.sample(8, np.random.default_rng(2), task="count", operand="a")
    with pytest.raises(ConfigError, match="ks"):
        prune_sweep(model, samples, lambda m: {}, PruneConfig(unit="mlp_hidden", ks=(0, 10_000)))
