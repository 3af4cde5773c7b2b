"""One decoder for every model in wrapperlab (nanoGPT/minGPT shape, TransformerLens hook names).

Options cover the PCFG minGPT (LayerNorm, GELU, learned positions, causal), Tracr-compiled models
(no norm, ReLU, bidirectional or causal), llama-style story models (RMSNorm, RoPE, SwiGLU) and what imported
Hugging Face models need besides (models/hf.py: GPT-2's tanh-GELU, grouped-query attention, norm eps, RoPE base).

Weights are stored the PyTorch way (``out x in``). The unit of the paper's pruning, "a row in the
weight matrix", is therefore one output row of ``attn.qkv`` (a Q, K or V row), ``attn.out``,
``mlp.fc_in`` or ``mlp.fc_out`` together with its bias entry.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import nn

from wrapperlab.errors import ConfigError
from wrapperlab.models.hooks import HookedModule, HookPoint
from wrapperlab.schema import Config, without_later_defaults

PRESETS: dict[str, dict] = {
    # the paper's PCFG model (minGPT "gpt-mini", about 3 M parameters with its vocabulary)
    "paper": dict(n_layers=6, n_heads=6, d_model=192),
    # CPU-sized: the pilot's 4 x 128 model learns counting in minutes on 2 cores
    "quick": dict(n_layers=4, n_heads=4, d_model=128),
    # seconds-scale mechanics tests
    "test": dict(n_layers=2, n_heads=2, d_model=64),
    # story language models, llama-style (RMSNorm, RoPE, SwiGLU, no biases, tied embeddings); vocabulary and
    # context come from the tokenizer and the data config. quick: the stories pilot's 4 x 128 size
    "stories-quick": dict(n_layers=4, n_heads=4, d_model=128, norm="rmsnorm", act="swiglu", positions="rope",
                          bias=False, tie_embeddings=True),
    # the paper's TinyStories model: 768 hidden, 12 layers, 12 heads (vocab 8192 and context 1024 from the data)
    "stories-paper": dict(n_layers=12, n_heads=12, d_model=768, norm="rmsnorm", act="swiglu", positions="rope",
                          bias=False, tie_embeddings=True),
}


#: options added after runs were stored, with the value that reproduces the older models: left out of a config's
#: dump at that value, so the run ids hashed over older configs stay what they were
LATER_OPTIONS: dict[str, object] = {"n_kv_heads": None, "norm_eps": None, "rope_base": 10000.0}


class GPTConfig(Config):

    vocab_size: int = Field(gt=0)
    n_ctx: int = Field(gt=0)
    d_model: int = Field(128, gt=0)
    n_layers: int = Field(4, gt=0)
    n_heads: int = Field(4, gt=0)
    n_kv_heads: int | None = Field(
        None, gt=0, description="key/value heads (grouped-query attention, Llama); default n_heads")
    d_mlp: int | None = Field(None, gt=0, description="default 4 * d_model")
    head_dim: int | None = Field(None, gt=0, description="default d_model // n_heads (compiled models set their own)")
    vocab_out: int | None = Field(None, gt=0, description="output classes if not the input vocabulary (Tracr)")
    pad_token: int | None = Field(
        None, ge=0, description="keys holding this token are masked (Tracr pads right; PCFG never attends to padding)"
    )
    norm: Literal["layernorm", "rmsnorm", "none"] = "layernorm"
    norm_eps: float | None = Field(None, gt=0, description="default: PyTorch's (1e-5 LayerNorm, float eps RMSNorm)")
    act: Literal["gelu", "gelu_tanh", "relu", "swiglu"] = "gelu"
    positions: Literal["learned", "rope"] = "learned"
    rope_base: float = Field(10000.0, gt=1)
    attention: Literal["causal", "bidirectional"] = "causal"
    bias: bool = True
    tie_embeddings: bool = False
    init_std: float = Field(0.02, gt=0)

    @model_validator(mode="after")
    def _heads(self):
        if self.head_dim is None and self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"a divisor of d_model={self.d_model}")
        if self.tie_embeddings and self.n_out != self.vocab_size:
            raise ConfigError("tie_embeddings", True, "vocab_out unset (tied weights share one vocabulary)")
        if self.positions == "rope" and self.d_head % 2:
            raise ConfigError("positions", "rope", "an even head dimension")
        if self.n_heads % self.kv_heads:
            raise ConfigError("n_kv_heads", self.n_kv_heads, f"a divisor of n_heads={self.n_heads}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict:
        return without_later_defaults(handler(self), LATER_OPTIONS)

    @property
    def eps(self) -> float:
        """The norms' epsilon as a float32 model computes it (what an exported config must state): PyTorch's
        defaults unless ``norm_eps`` is set — 1e-5 for LayerNorm, float32's machine epsilon for RMSNorm."""
        return self.norm_eps or (1e-5 if self.norm == "layernorm" else torch.finfo(torch.float32).eps)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def qkv_split(self) -> tuple[int, int, int]:
        """Rows of ``attn.qkv`` that are Q, K and V (K and V are narrower under grouped-query attention)."""
        kv = self.kv_heads * self.d_head
        return self.d_attn, kv, kv

    @property
    def d_head(self) -> int:
        return self.head_dim or self.d_model // self.n_heads

    @property
    def d_attn(self) -> int:
        """Width of the concatenated heads (equals d_model unless ``head_dim`` is set)."""
        return self.n_heads * self.d_head

    @property
    def n_out(self) -> int:
        return self.vocab_out or self.vocab_size

    @property
    def mlp_width(self) -> int:
        return self.d_mlp or 4 * self.d_model

    @classmethod
    def preset(cls, name: str, **overrides) -> "GPTConfig":
        if name not in PRESETS:
            raise ConfigError("model preset", name, f"one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "layernorm":
        return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps or 1e-5, bias=cfg.bias)
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=cfg.norm_eps)
    return nn.Identity()


class Rotary(nn.Module):
    """Rotary position embedding (rotate-half form), applied to queries and keys."""

    def __init__(self, d_head: int, n_ctx: int, base: float = 10000.0):
        super().__init__()
        inv = 1.0 / base ** (torch.arange(0, d_head, 2).float() / d_head)
        angles = torch.outer(torch.arange(n_ctx).float(), inv)
        self.register_buffer("cos", torch.cat([angles.cos()] * 2, -1), persistent=False)
        self.register_buffer("sin", torch.cat([angles.sin()] * 2, -1), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:  # x: (b, h, pos, d_head)
        """``offset``: the absolute position of ``x``'s first row (cached decoding feeds one position at a time)."""
        n = x.shape[-2]
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
        cos, sin = self.cos[offset:offset + n].to(x.dtype), self.sin[offset:offset + n].to(x.dtype)
        return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv = nn.Linear(cfg.d_model, sum(cfg.qkv_split), bias=cfg.bias)
        self.out = nn.Linear(cfg.d_attn, cfg.d_model, bias=cfg.bias)
        self.rotary = Rotary(cfg.d_head, cfg.n_ctx, cfg.rope_base) if cfg.positions == "rope" else None
        # (b, pos, heads, d_head); keys and values have n_kv_heads heads (TransformerLens does the same)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_scores = HookPoint()  # (b, h, q, k), before softmax
        self.hook_pattern = HookPoint()  # (b, h, q, k)
        self.hook_z = HookPoint()  # (b, pos, h, d_head): per-head output before W_O

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, cache: dict | None = None,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """``keep``: optional boolean mask of the keys that may be attended to (``(b, 1, 1 or q, k)``).
        ``cache``: a dict this layer keeps its keys and values in between calls (generation: the prompt once,
        then one new position per call, instead of the whole sequence again). ``at``: ``(b,)`` positions, the only
        queries computed (keys and values at every position): the output is ``(b, 1, d_model)``."""
        if at is not None:
            return self._at(x, keep, at)
        b, n, _ = x.shape
        h, dh = self.cfg.n_heads, self.cfg.d_head
        if self.cfg.kv_heads == h:
            q, k, v = self.qkv(x).view(b, n, 3, h, dh).unbind(2)
        else:
            q, k, v = (t.view(b, n, -1, dh) for t in self.qkv(x).split(self.cfg.qkv_split, -1))
        q, k, v = self.hook_q(q), self.hook_k(k), self.hook_v(v)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (b, h, pos, dh)
        past = cache["k"].shape[-2] if cache and "k" in cache else 0
        if self.rotary is not None:
            q, k = self.rotary(q, past), self.rotary(k, past)
        if cache is not None:
            if past:
                k, v = torch.cat([cache["k"], k], -2), torch.cat([cache["v"], v], -2)
            cache["k"], cache["v"] = k, v
        if self.cfg.kv_heads != h:  # each key/value head serves n_heads / n_kv_heads consecutive query heads
            k, v = k.repeat_interleave(h // self.cfg.kv_heads, 1), v.repeat_interleave(h // self.cfg.kv_heads, 1)
        causal = self.cfg.attention == "causal"
        if causal and (keep is not None or past):  # query i sits at absolute position past + i
            tril = torch.ones(n, past + n, dtype=torch.bool, device=x.device).tril(past)
            keep = tril if keep is None else keep & tril
        if self.hook_pattern.active or self.hook_attn_scores.active:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            elif causal:
                mask = torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            scores = self.hook_attn_scores(scores)
            pattern = self.hook_pattern(scores.softmax(-1))
            z = pattern @ v
        else:  # fast path: fused kernel, no pattern materialised
            z = _fused_attention(q, k, v, keep, causal)
        z = self.hook_z(z.transpose(1, 2))
        return self.out(z.reshape(b, n, h * dh))

    def _at(self, x: torch.Tensor, keep: torch.Tensor | None, at: torch.Tensor) -> torch.Tensor:
        """The attention output at one query position per row (:meth:`forward`'s ``at``; no hook, no cache): each
        query sees the keys it sees in the full pass (causal: those up to it; ``keep``'s padding mask too)."""
        b, n, _ = x.shape
        h, dh = self.cfg.n_heads, self.cfg.d_head
        rows = torch.arange(b, device=x.device)
        q, k, v = (t.view(b, n, -1, dh).transpose(1, 2) for t in self.qkv(x).split(self.cfg.qkv_split, -1))
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        q = q[rows, :, at][:, :, None]  # (b, h, 1, dh)
        if self.cfg.kv_heads != h:
            k, v = k.repeat_interleave(h // self.cfg.kv_heads, 1), v.repeat_interleave(h // self.cfg.kv_heads, 1)
        if self.cfg.attention == "causal":
            upto = (torch.arange(n, device=x.device)[None, :] <= at[:, None])[:, None, None, :]
            keep = upto if keep is None else keep & upto
        z = _fused_attention(q, k, v, keep, causal=False)
        return self.out(z.transpose(1, 2).reshape(b, 1, h * dh))


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None,
                     causal: bool) -> torch.Tensor:
    """``F.scaled_dot_product_attention``, in fp32 on CPU under bf16 autocast: there the fused kernel's bf16
    backward is several times slower than its fp32 one (measured at head width 32: 4.5x), which cancels what bf16
    matmuls gain (docs/performance.md). GPUs keep bf16 attention."""
    dtype = q.dtype
    if q.device.type == "cpu" and dtype == torch.bfloat16:
        with torch.autocast("cpu", enabled=False):  # autocast would cast the inputs back to bf16
            return _fused_attention(q.float(), k.float(), v.float(), keep, causal).to(dtype)
    if torch._C._functorch.is_batchedtensor(q):  # under vmap (stacked runs): the fused kernel has no batching rule
        return _plain_attention(q, k, v, keep, causal)  # and would run model by model
    if keep is not None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None,
                     causal: bool) -> torch.Tensor:
    """Attention written out (what the fused kernel computes), for where the kernel cannot run batched."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if keep is None and causal:
        n = q.shape[-2]
        keep = torch.ones(n, k.shape[-2], dtype=torch.bool, device=q.device).tril(k.shape[-2] - n)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    # a query with no key to attend to (a padding token first in its row) gets zeros, as from the fused kernel; the
    # softmax of a row of -inf is NaN, which reached every later position through the next layer's values
    return scores.softmax(-1).nan_to_num(0.0) @ v


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        width = cfg.mlp_width
        self.act = cfg.act
        self.fc_in = nn.Linear(cfg.d_model, 2 * width if cfg.act == "swiglu" else width, bias=cfg.bias)
        self.fc_out = nn.Linear(width, cfg.d_model, bias=cfg.bias)
        self.hook_pre = HookPoint()
        self.hook_post = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.hook_pre(self.fc_in(x))
        if self.act == "swiglu":
            gate, up = pre.chunk(2, -1)
            post = F.silu(gate) * up
        elif self.act == "relu":
            post = F.relu(pre)
        else:
            post = F.gelu(pre, approximate="tanh" if self.act == "gelu_tanh" else "none")
        return self.fc_out(self.hook_post(post))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln1, self.ln2 = _norm(cfg), _norm(cfg)
        self.attn, self.mlp = Attention(cfg), MLP(cfg)
        self.hook_resid_pre, self.hook_resid_mid, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        self.hook_attn_out, self.hook_mlp_out = HookPoint(), HookPoint()

    def hooked(self) -> bool:
        """Whether any hook point in this block has a hook (then every position is computed: a hook sees all)."""
        return any(m.active for m in self.modules() if isinstance(m, HookPoint))

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None, cache: dict | None = None,
                at: torch.Tensor | None = None) -> torch.Tensor:
        """``at``: ``(b,)`` positions, the only rows of the output computed (``(b, 1, d_model)``): where the last
        block's output is read at one position (answer losses, accuracies), its query, attention output and MLP at
        every other position were computed and dropped. Only without hooks (a hook sees every position)."""
        if at is not None:
            rows = torch.arange(len(x), device=x.device)
            x_at = x[rows, at][:, None] + self.attn(self.ln1(x), keep, None, at)
            return x_at + self.mlp(self.ln2(x_at))
        x = self.hook_resid_pre(x)
        x = self.hook_resid_mid(x + self.hook_attn_out(self.attn(self.ln1(x), keep, cache)))
        return self.hook_resid_post(x + self.hook_mlp_out(self.mlp(self.ln2(x))))


class GPT(HookedModule):
    """Decoder-only transformer. ``model(tokens)`` -> logits ``(b, pos, vocab)``.

    ``logits_at`` (a ``(b,)`` tensor of positions) unembeds only those positions and returns
    ``(b, vocab)``: answer-only losses and accuracies need one position, not all of them.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.n_ctx, cfg.d_model) if cfg.positions == "learned" else None
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = _norm(cfg)
        self.unembed = nn.Linear(cfg.d_model, cfg.n_out, bias=False)
        if cfg.tie_embeddings:
            self.unembed.weight = self.embed.weight
        self._init_weights()
        self.setup_hooks()

    def _init_weights(self) -> None:
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                # GPT-2: projections into the residual stream shrink with depth so its variance stays put
                scale = 1 / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("attn.out.weight", "fc_out.weight")) else 1
                nn.init.normal_(p, 0.0, std * scale)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, tokens: torch.Tensor, logits_at: torch.Tensor | None = None,
                pad_mask: torch.Tensor | None = None, cache: list[dict] | None = None) -> torch.Tensor:
        """``pad_mask``: optional ``(b, past + pos)`` booleans, True for real tokens — for left-padded batches
        (batched generation): padded keys are never attended to, and a padded query attends to itself only, so
        its row stays finite and real positions see exactly what they would unpadded (with rotary positions).
        ``cache``: one dict per block (``[{} for _ in model.blocks]``) holding keys and values of the positions
        fed so far; ``tokens`` then continue them (incremental decoding)."""
        b, n = tokens.shape
        past = cache[0]["k"].shape[-2] if cache and "k" in cache[0] else 0
        if past + n > self.cfg.n_ctx:
            raise ValueError(f"sequence of {past + n} tokens exceeds n_ctx={self.cfg.n_ctx}")
        x = self.hook_embed(self.embed(tokens))
        if self.pos_embed is not None:
            x = x + self.hook_pos_embed(self.pos_embed(torch.arange(past, past + n, device=tokens.device)))
        if pad_mask is not None:
            at = torch.arange(past + n, device=tokens.device)
            eye = at[None, :] == (past + torch.arange(n, device=tokens.device))[:, None]
            keep = pad_mask.to(torch.bool)[:, None, None, :] | eye
        else:
            keep = None if self.cfg.pad_token is None else (tokens != self.cfg.pad_token)[:, None, None, :]
        last = len(self.blocks) - 1
        trim = logits_at is not None and cache is None and not self.blocks[last].hooked()
        for i, block in enumerate(self.blocks):
            if trim and i == last:  # only logits_at is read: the last block's other rows are never needed
                return self.unembed(self.ln_final(block(x, keep, None, logits_at)[:, 0]))
            x = block(x, keep, cache[i] if cache is not None else None)
        if logits_at is not None:
            x = x[torch.arange(b, device=x.device), logits_at]
        return self.unembed(self.ln_final(x))

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
