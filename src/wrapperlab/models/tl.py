"""Our GPT as a TransformerLens model, for users whose analysis code is written against TransformerLens.

TransformerLens 4 removed ``HookedTransformer``; its successor, ``TransformerBridge``, wraps a model whose layout
it knows. Its own "native" architecture has every option our GPT has (LayerNorm / RMSNorm / none, learned or
rotary positions, GELU / tanh-GELU / ReLU / SwiGLU, grouped-query attention, causal or bidirectional attention, an
output vocabulary of its own), so every model of ours — PCFG, Tracr-compiled, story — goes across by copying
weights, and the bridge's hooks (``blocks.{i}.hook_resid_post``, ``attn.hook_pattern``, ...) read the same
activations ours do. Pinned to transformer-lens 4.3 (the ``tl`` extra): the bridge builder is not public API yet.

Two things differ. ``pad_token`` key masking (Tracr models pad right) does not carry over: pass the bridge an
``attention_mask`` for padded inputs. And the native rotary embedding rotates adjacent pairs (Meta's layout) where
ours rotates halves (Hugging Face's): the query and key rows of each head are permuted to match, which leaves
attention unchanged but orders ``hook_q`` / ``hook_k`` of a RoPE model differently within a head.
"""

from __future__ import annotations

import torch

from wrapperlab.models.gpt import GPT, GPTConfig

_NORMS = {"layernorm": "LN", "rmsnorm": "RMS", "none": None}
_ACTS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "swiglu": "silu"}


def bridge_config(cfg: GPTConfig) -> dict:
    """The TransformerLens config fields of a model of ours."""
    fields = dict(n_layers=cfg.n_layers, d_model=cfg.d_model, n_ctx=cfg.n_ctx, d_head=cfg.d_head, n_heads=cfg.n_heads,
                  n_key_value_heads=cfg.kv_heads if cfg.kv_heads != cfg.n_heads else None, d_mlp=cfg.mlp_width,
                  d_vocab=cfg.vocab_size, d_vocab_out=cfg.n_out, act_fn=_ACTS[cfg.act], gated_mlp=cfg.act == "swiglu",
                  normalization_type=_NORMS[cfg.norm], eps=cfg.eps, attention_dir=cfg.attention,
                  positional_embedding_type="rotary" if cfg.positions == "rope" else "standard",
                  default_prepend_bos=False)
    if cfg.positions == "rope":
        fields.update(rotary_dim=cfg.d_head, rotary_base=cfg.rope_base)
    return fields


def native_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under the native model's names (absent biases become zeros: its projections always have one)."""
    cfg = model.cfg
    ours = {k: v.detach() for k, v in model.state_dict().items()}
    out = {"tok_embed.weight": ours["embed.weight"], "head.weight": ours["unembed.weight"]}
    if cfg.positions == "learned":
        out["pos.weight"] = ours["pos_embed.weight"]
    norms = {"ln_final": "ln_out"} | {f"blocks.{i}.ln{j}": f"layers.{i}.ln{j}" for i in range(cfg.n_layers)
                                     for j in (1, 2)}
    for mine, theirs in norms.items():
        for leaf in ("weight", "bias"):
            if f"{mine}.{leaf}" in ours:
                out[f"{theirs}.{leaf}"] = ours[f"{mine}.{leaf}"]
    for i in range(cfg.n_layers):
        b, t = f"blocks.{i}.", f"layers.{i}."
        qkv_w = ours[b + "attn.qkv.weight"].split(list(cfg.qkv_split))
        qkv_b = ours[b + "attn.qkv.bias"].split(list(cfg.qkv_split)) if cfg.bias else \
            [torch.zeros(n) for n in cfg.qkv_split]
        for name, w, bias in zip("qkv", qkv_w, qkv_b):
            if cfg.positions == "rope" and name != "v":
                w, bias = _pairs_from_halves(w, cfg.d_head), _pairs_from_halves(bias, cfg.d_head)
            out[f"{t}attn.{name}.weight"], out[f"{t}attn.{name}.bias"] = w, bias
        out[t + "attn.o.weight"] = ours[b + "attn.out.weight"]
        out[t + "attn.o.bias"] = ours.get(b + "attn.out.bias", torch.zeros(cfg.d_model))
        if cfg.act == "swiglu":  # the native gated MLP has no biases
            out[t + "mlp.gate.weight"], out[t + "mlp.in.weight"] = ours[b + "mlp.fc_in.weight"].chunk(2)
            out[t + "mlp.out.weight"] = ours[b + "mlp.fc_out.weight"]
        else:
            for leaf in ("fc_in.weight", "fc_out.weight"):
                out[f"{t}mlp.{leaf}"] = ours[f"{b}mlp.{leaf}"]
            out[t + "mlp.fc_in.bias"] = ours.get(b + "mlp.fc_in.bias", torch.zeros(cfg.mlp_width))
            out[t + "mlp.fc_out.bias"] = ours.get(b + "mlp.fc_out.bias", torch.zeros(cfg.d_model))
    return out


def _pairs_from_halves(rows: torch.Tensor, d_head: int) -> torch.Tensor:
    """Reorder each head's rows from rotate-half layout (i pairs with i + d/2) to adjacent pairs (2i with 2i+1)."""
    half = d_head // 2
    order = torch.stack([torch.arange(half), torch.arange(half) + half], -1).reshape(-1)
    heads = rows.reshape(-1, d_head, *rows.shape[1:])
    return heads[:, order].reshape(rows.shape)


def to_transformer_lens(model: GPT, tokenizer=None):
    """A ``TransformerBridge`` computing what ``model`` computes (its own copy of the weights), with
    TransformerLens' hooks. ``tokenizer``: optional, a Hugging Face tokenizer for the bridge's string helpers."""
    if model.cfg.act == "swiglu" and model.cfg.bias:
        from wrapperlab.errors import ConfigError

        raise ConfigError("model bias", True, "False for a SwiGLU model (TransformerLens' gated MLP has no biases)")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
    from transformer_lens.model_bridge.sources.native.model import NativeModel

    tl_cfg = TransformerBridgeConfig.from_dict(bridge_config(model.cfg))
    native = NativeModel(tl_cfg)
    native.load_state_dict(native_state(model), strict=True)
    native.to(next(model.parameters()).device).eval()
    return build_bridge_from_module(native, architecture="TransformerLensNative", tl_config=tl_cfg,
                                   tokenizer=tokenizer, model_name="wrapperlab")
