"""TransformerLens export (models/tl.py): every kind of model of ours — PCFG, story (llama-style, grouped-query),
Tracr-shaped — gives the same logits and the same residual stream through TransformerLens' hooks."""

from __future__ import annotations

import pytest
import torch

from wrapperlab.models.gpt import GPT, GPTConfig

pytest.importorskip("transformer_lens", reason="pip install 'wrapperlab[tl]'")
from wrapperlab.models.tl import to_transformer_lens  # noqa: E402

SHAPES = {
    "pcfg": dict(norm="layernorm", act="gelu", positions="learned"),
    "story-gqa": dict(norm="rmsnorm", act="swiglu", positions="rope", bias=False, tie_embeddings=True, n_kv_heads=2,
                      rope_base=500.0),
    "gpt2-like": dict(act="gelu_tanh", norm_eps=1e-6),
    "tracr-like": dict(norm="none", act="relu", attention="bidirectional", head_dim=6, vocab_out=7, d_mlp=40),
}


@pytest.mark.parametrize("name", SHAPES)
def test_logits_and_hooks_match(name):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=23, n_ctx=16, d_model=32, n_layers=2, n_heads=4, **SHAPES[name])).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():  # norm weights and biases away from 1 and 0
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    bridge = to_transformer_lens(model)
    tokens = torch.randint(0, 23, (3, 12), generator=g)
    with torch.no_grad():
        ours, our_cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
        theirs, cache = bridge.run_with_cache(tokens)
    assert theirs.shape == ours.shape
    assert (theirs - ours).abs().max() <= 1e-4
    for i in range(2):
        key = f"blocks.{i}.hook_resid_post"
        assert (cache[key] - our_cache[key]).abs().max() <= 1e-4
