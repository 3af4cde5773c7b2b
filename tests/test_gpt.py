"""The decoder: shapes, options, TransformerLens hook names, cache, and the fast/explicit attention paths."""

import pytest
import torch

from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.runs.profiles import validated


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig.preset("test", vocab_size=50, n_ctx=32, **kw))


def tokens(b=3, n=20):
    return torch.randint(0, 50, (b, n), generator=torch.Generator().manual_seed(1))


def test_paper_preset_size():
    m = GPT(GPTConfig.preset("paper", vocab_size=266, n_ctx=259))
    assert (m.cfg.n_layers, m.cfg.n_heads, m.cfg.d_model) == (6, 6, 192)
    assert 2.5e6 < m.num_params() < 3.5e6  # "about 3 M parameters"


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"norm": "rmsnorm", "positions": "rope", "act": "swiglu"},
        {"norm": "none", "act": "relu", "attention": "bidirectional"},
        {"tie_embeddings": True, "bias": False},
    ],
)
def test_options_forward_and_backward(options):
    m = tiny(**options)
    x = tokens()
    logits = m(x)
    assert logits.shape == (3, 20, 50)
    logits.sum().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_hook_names_follow_transformer_lens():
    names = set(tiny().hook_points)
    for l in range(2):
        for n in ["hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
                  "attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_pattern", "attn.hook_attn_scores",
                  "attn.hook_z", "mlp.hook_pre", "mlp.hook_post"]:
            assert f"blocks.{l}.{n}" in names
    assert {"hook_embed", "hook_pos_embed"} <= names


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_cache_and_explicit_path_match_fast_path(attention):
    m = tiny(attention=attention)
    x = tokens()
    fast = m(x)
    logits, cache = m.run_with_cache(x)
    assert torch.allclose(fast, logits, atol=1e-5)
    pattern = cache["blocks.0.attn.hook_pattern"]
    assert pattern.shape == (3, 2, 20, 20)
    assert torch.allclose(pattern.sum(-1), torch.ones(3, 2, 20))
    if attention == "causal":
        assert pattern[0, 0].triu(1).abs().max() == 0
    assert cache["blocks.1.hook_resid_post"].shape == (3, 20, 64)
    assert cache["blocks.0.mlp.hook_post"].shape == (3, 20, 256)
    # residual stream bookkeeping: post = mid + mlp_out
    assert torch.allclose(cache["blocks.0.hook_resid_post"],
                          cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"], atol=1e-6)


def test_hooks_can_edit_and_are_removed():
    m = tiny()
    x = tokens()
    clean = m(x)
    zeroed = m.run_with_hooks(x, [("blocks.1.hook_mlp_out", lambda t, hook: torch.zeros_like(t))])
    assert not torch.allclose(clean, zeroed)
    assert torch.allclose(m(x), clean)  # no hook left behind
    assert not any(hp.active for hp in m.hook_points.values())
    with pytest.raises(KeyError):
        m.run_with_hooks(x, [("blocks.9.nothing", lambda t, hook: t)])


def test_names_filter_limits_the_cache():
    _, cache = tiny().run_with_cache(tokens(), names_filter=lambda n: n.endswith("hook_resid_post"))
    assert sorted(cache) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]


def test_logits_at_equals_full_logits_at_those_positions():
    m = tiny()
    x = tokens()
    pos = torch.tensor([3, 19, 7])
    assert torch.allclose(m(x, logits_at=pos), m(x)[torch.arange(3), pos], atol=1e-5)


@pytest.mark.parametrize("options", [{}, {"norm": "rmsnorm", "positions": "rope", "act": "swiglu", "bias": False},
                                     {"n_kv_heads": 1}, {"attention": "bidirectional"}, {"pad_token": 0}])
def test_the_last_block_at_the_read_positions_only_is_the_full_pass(options):
    """With ``logits_at`` the last block computes its query, attention output and MLP at those positions only (1.5x
    faster fine-tuning steps): values and gradients as the full pass gives them (which a hook on the block forces),
    within float rounding, for every architecture option; and under vmap, as stacked runs call it."""
    from torch.func import functional_call, vmap

    m = tiny(**options)
    x, pos = tokens(4, 20), torch.tensor([3, 19, 7, 0])
    full = m.blocks[-1].hook_resid_post
    trimmed = m(x, logits_at=pos)
    trimmed.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad()
    with m.hooks([(full.name, lambda t, hook: t)]):
        reference = m(x, logits_at=pos)
        reference.square().sum().backward()
    assert torch.allclose(trimmed, reference, atol=1e-5) and torch.allclose(reference, m(x)[torch.arange(4), pos],
                                                                            atol=1e-5)
    for n, p in m.named_parameters():
        assert torch.allclose(grads[n], p.grad, atol=1e-4), n
    params = {n: torch.stack([p.detach(), p.detach() * 1.01]) for n, p in m.named_parameters()}
    stacked = vmap(lambda w, t, a: functional_call(m, w, (t,), {"logits_at": a}))(params, torch.stack([x, x]),
                                                                                   torch.stack([pos, pos]))
    assert torch.allclose(stacked[0], trimmed, atol=1e-5)


def test_causal_model_ignores_the_future():
    m = tiny()
    x = tokens()
    y = x.clone()
    y[:, 10:] = 0
    assert torch.allclose(m(x)[:, :10], m(y)[:, :10], atol=1e-5)


def test_bad_shapes_are_config_errors():
    with pytest.raises(ConfigError, match="n_heads"):
        validated(GPTConfig, {"vocab_size": 10, "n_ctx": 8, "d_model": 64, "n_heads": 3})
    with pytest.raises(ConfigError, match="preset"):
        GPTConfig.preset("huge", vocab_size=10, n_ctx=8)
    with pytest.raises(ValueError, match="n_ctx"):
        tiny()(torch.zeros(1, 40, dtype=torch.long))


def test_compiled_shapes_head_dim_and_output_vocabulary():
    """Tracr-compiled models have heads narrower than d_model / n_heads and their own output classes."""
    model = tiny(d_model=66, n_heads=1, head_dim=18, vocab_out=17, d_mlp=34, norm="none", act="relu")
    assert model.blocks[0].attn.qkv.weight.shape == (54, 66)
    assert model.blocks[0].attn.out.weight.shape == (66, 18)
    assert model(tokens()).shape == (3, 20, 17)
    with pytest.raises(ConfigError, match="tie_embeddings"):
        validated(GPTConfig, dict(vocab_size=30, n_ctx=32, vocab_out=17, tie_embeddings=True), "model")


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_padding_keys_are_masked(attention):
    """With ``pad_token`` set, right padding leaves the real positions' outputs unchanged, and the
    fused path agrees with the explicit one that materialises the pattern."""
    model = tiny(attention=attention, pad_token=0, norm="none")
    x = tokens(b=2, n=10).clamp(min=1)
    padded = torch.cat([x, torch.zeros(2, 6, dtype=torch.long)], 1)
    with torch.no_grad():
        short = model(x)
        long = model(padded)
        _, cache = model.run_with_cache(padded)
    assert torch.allclose(long[:, :10], short, atol=1e-5)
    assert cache["blocks.0.attn.hook_pattern"][..., 10:].abs().max() == 0
    unmasked = tiny(attention=attention, norm="none")
    unmasked.load_state_dict(model.state_dict())
    _, cache = unmasked.run_with_cache(padded)
    on_padding = cache["blocks.0.attn.hook_pattern"][..., :10, 10:].sum(-1)
    assert (on_padding.min() > 0.1) == (attention == "bidirectional")  # the mask is what keeps padding out


def test_bf16_autocast_on_cpu_keeps_attention_in_fp32():
    """Under CPU bf16 autocast the fused attention runs in fp32 (its bf16 backward is the slow part there), and
    the logits stay close to fp32's."""
    import torch

    from wrapperlab.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=40, n_ctx=16))
    tokens = torch.randint(0, 40, (4, 16))
    seen = []
    hook = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(q.dtype)
        return hook(q, k, v, **kw)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(tokens).float()
    finally:
        torch.nn.functional.scaled_dot_product_attention = hook
    assert seen and set(seen) == {torch.float32}
    assert torch.allclose(low, model(tokens), atol=0.1)
