"""Hugging Face model directories in and out of our GPT, so the analyses can audit models that are not ours.

Why no ``transformers`` here: a causal LM directory is a ``config.json``, safetensors (or ``pytorch_model.bin``)
and a ``tokenizer.json``, all of which torch, safetensors and tokenizers read. Mapping names ourselves keeps the
import light and makes it exact: our GPT gets each family's options (tanh-GELU, grouped-query attention, norm eps,
RoPE base, tied embeddings) and the TransformerLens hook names every analysis reads. ``transformers`` (the ``hf``
extra) is what the parity tests compare against and what a user loads an exported directory with.

Families: GPT-2 (``gpt2``) and Llama (``llama``). What a family cannot express in our GPT (Mistral's sliding
window, scaled RoPE, GPT-NeoX's parallel residual) is refused by name, never approximated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from wrapperlab.errors import ConfigError, IntegrityError, UserError
from wrapperlab.files import atomic_write, atomic_write_text
from wrapperlab.models.gpt import GPT, GPTConfig

#: how a RoPE model's context is capped on import when its config allows more (the rotary tables are
#: n_ctx x d_head; Llama configs announce 128k positions)
DEFAULT_MAX_CTX = 4096


@dataclass(frozen=True)
class Param:
    """One of our parameters and the Hugging Face tensors it is made of (concatenated along the rows).
    ``conv1d``: GPT-2 stores its projections ``in x out`` (its Conv1D), we store ``out x in``."""

    ours: str
    theirs: tuple[str, ...]
    conv1d: bool = False


@dataclass(frozen=True)
class Family:
    model_type: str
    architecture: str
    layer_prefix: str
    global_params: tuple[Param, ...]
    layer_params: tuple[Param, ...]
    to_ours: Callable[[dict, int], dict]  # HF config, max_ctx -> GPTConfig fields
    to_theirs: Callable[[GPTConfig], dict]  # -> HF config fields
    optional: frozenset[str] = frozenset()  # our parameters a config may lack (biases, untied unembedding)

    def params(self, cfg: GPTConfig) -> list[Param]:
        out = list(self.global_params)
        for i in range(cfg.n_layers):
            out += [Param(f"blocks.{i}.{p.ours}", tuple(f"{self.layer_prefix}{i}.{t}" for t in p.theirs), p.conv1d)
                    for p in self.layer_params]
        return out


def _get(config: dict, key: str, default: Any = None, *, required: bool = False) -> Any:
    if required and key not in config:
        raise ConfigError(f"config.json: {key}", None, "a value (the file lacks it)")
    return config.get(key, default)


def _refuse(key: str, value: Any, allowed: Any, what: str) -> None:
    if value not in allowed:
        raise ConfigError(f"config.json: {key}", value, f"{what} (wrapperlab's GPT cannot express {value!r})")


# -- GPT-2 -------------------------------------------------------------------------------------------------------

_GPT2_ACT = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu", "relu": "relu"}


def _gpt2_to_ours(c: dict, max_ctx: int) -> dict:
    act = _get(c, "activation_function", "gelu_new")
    _refuse("activation_function", act, _GPT2_ACT, f"one of {sorted(_GPT2_ACT)}")
    for key in ("scale_attn_by_inverse_layer_idx", "add_cross_attention"):
        _refuse(key, bool(_get(c, key, False)), (False,), "false")
    _refuse("scale_attn_weights", bool(_get(c, "scale_attn_weights", True)), (True,), "true")
    d = _get(c, "n_embd", required=True)
    return dict(vocab_size=_get(c, "vocab_size", required=True), n_ctx=_get(c, "n_positions", required=True),
                d_model=d, n_layers=_get(c, "n_layer", required=True), n_heads=_get(c, "n_head", required=True),
                d_mlp=_get(c, "n_inner") or 4 * d, norm="layernorm", norm_eps=_get(c, "layer_norm_epsilon", 1e-5),
                act=_GPT2_ACT[act], positions="learned", bias=True,
                tie_embeddings=bool(_get(c, "tie_word_embeddings", True)))


def _gpt2_to_theirs(cfg: GPTConfig) -> dict:
    act = {"gelu_tanh": "gelu_new", "gelu": "gelu", "relu": "relu"}
    _fits("gpt2", {"norm": ("layernorm", cfg.norm), "positions": ("learned", cfg.positions), "bias": (True, cfg.bias),
                   "attention": ("causal", cfg.attention), "n_kv_heads": (cfg.n_heads, cfg.kv_heads),
                   "head_dim": (cfg.d_model // cfg.n_heads, cfg.d_head), "vocab_out": (None, cfg.vocab_out),
                   "pad_token": (None, cfg.pad_token)})
    if cfg.act not in act:
        raise ConfigError("model act", cfg.act, f"one of {sorted(act)} to export as gpt2")
    return dict(vocab_size=cfg.vocab_size, n_positions=cfg.n_ctx, n_embd=cfg.d_model, n_layer=cfg.n_layers,
                n_head=cfg.n_heads, n_inner=cfg.mlp_width, activation_function=act[cfg.act],
                layer_norm_epsilon=cfg.eps, tie_word_embeddings=cfg.tie_embeddings,
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


GPT2 = Family(
    model_type="gpt2", architecture="GPT2LMHeadModel", layer_prefix="transformer.h.",
    global_params=(Param("embed.weight", ("transformer.wte.weight",)),
                   Param("pos_embed.weight", ("transformer.wpe.weight",)),
                   Param("ln_final.weight", ("transformer.ln_f.weight",)),
                   Param("ln_final.bias", ("transformer.ln_f.bias",)),
                   Param("unembed.weight", ("lm_head.weight",))),
    layer_params=(Param("ln1.weight", ("ln_1.weight",)), Param("ln1.bias", ("ln_1.bias",)),
                  Param("attn.qkv.weight", ("attn.c_attn.weight",), conv1d=True),
                  Param("attn.qkv.bias", ("attn.c_attn.bias",)),
                  Param("attn.out.weight", ("attn.c_proj.weight",), conv1d=True),
                  Param("attn.out.bias", ("attn.c_proj.bias",)),
                  Param("ln2.weight", ("ln_2.weight",)), Param("ln2.bias", ("ln_2.bias",)),
                  Param("mlp.fc_in.weight", ("mlp.c_fc.weight",), conv1d=True),
                  Param("mlp.fc_in.bias", ("mlp.c_fc.bias",)),
                  Param("mlp.fc_out.weight", ("mlp.c_proj.weight",), conv1d=True),
                  Param("mlp.fc_out.bias", ("mlp.c_proj.bias",))),
    to_ours=_gpt2_to_ours, to_theirs=_gpt2_to_theirs, optional=frozenset({"unembed.weight"}))


# -- Llama -------------------------------------------------------------------------------------------------------

def _rope(c: dict) -> float:
    """RoPE base from either spelling (transformers 5 nests it in ``rope_parameters``); scaled RoPE is refused."""
    params = _get(c, "rope_parameters") or _get(c, "rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    _refuse("rope_parameters.rope_type", kind, ("default",), "default (unscaled) RoPE")
    return float(params.get("rope_theta", _get(c, "rope_theta", 10000.0)))


def _llama_to_ours(c: dict, max_ctx: int) -> dict:
    _refuse("hidden_act", _get(c, "hidden_act", "silu"), ("silu",), "silu")
    attention_bias, mlp_bias = bool(_get(c, "attention_bias", False)), bool(_get(c, "mlp_bias", False))
    if attention_bias != mlp_bias:
        raise ConfigError("config.json: attention_bias", attention_bias,
                          f"the same as mlp_bias ({mlp_bias}): wrapperlab's GPT has one bias switch")
    d, heads = _get(c, "hidden_size", required=True), _get(c, "num_attention_heads", required=True)
    return dict(vocab_size=_get(c, "vocab_size", required=True),
                n_ctx=min(_get(c, "max_position_embeddings", 2048), max_ctx), d_model=d,
                n_layers=_get(c, "num_hidden_layers", required=True), n_heads=heads,
                n_kv_heads=_get(c, "num_key_value_heads") or heads, head_dim=_get(c, "head_dim") or d // heads,
                d_mlp=_get(c, "intermediate_size", required=True), norm="rmsnorm",
                norm_eps=_get(c, "rms_norm_eps", 1e-6), act="swiglu", positions="rope", rope_base=_rope(c),
                bias=attention_bias, tie_embeddings=bool(_get(c, "tie_word_embeddings", False)))


def _llama_to_theirs(cfg: GPTConfig) -> dict:
    _fits("llama", {"norm": ("rmsnorm", cfg.norm), "act": ("swiglu", cfg.act), "positions": ("rope", cfg.positions),
                    "attention": ("causal", cfg.attention), "vocab_out": (None, cfg.vocab_out),
                    "pad_token": (None, cfg.pad_token)})
    theta = cfg.rope_base
    return dict(vocab_size=cfg.vocab_size, max_position_embeddings=cfg.n_ctx, hidden_size=cfg.d_model,
                intermediate_size=cfg.mlp_width, num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                num_key_value_heads=cfg.kv_heads, head_dim=cfg.d_head, hidden_act="silu",
                rms_norm_eps=cfg.eps,
                rope_theta=theta, rope_parameters={"rope_type": "default", "rope_theta": theta},
                attention_bias=cfg.bias, mlp_bias=cfg.bias, tie_word_embeddings=cfg.tie_embeddings,
                attention_dropout=0.0)


_LLAMA_ATTN = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")
LLAMA = Family(
    model_type="llama", architecture="LlamaForCausalLM", layer_prefix="model.layers.",
    global_params=(Param("embed.weight", ("model.embed_tokens.weight",)),
                   Param("ln_final.weight", ("model.norm.weight",)),
                   Param("unembed.weight", ("lm_head.weight",))),
    layer_params=(Param("ln1.weight", ("input_layernorm.weight",)),
                  Param("attn.qkv.weight", tuple(f"{n}.weight" for n in _LLAMA_ATTN)),
                  Param("attn.qkv.bias", tuple(f"{n}.bias" for n in _LLAMA_ATTN)),
                  Param("attn.out.weight", ("self_attn.o_proj.weight",)),
                  Param("attn.out.bias", ("self_attn.o_proj.bias",)),
                  Param("ln2.weight", ("post_attention_layernorm.weight",)),
                  Param("mlp.fc_in.weight", ("mlp.gate_proj.weight", "mlp.up_proj.weight")),  # SwiGLU: gate first
                  Param("mlp.fc_in.bias", ("mlp.gate_proj.bias", "mlp.up_proj.bias")),
                  Param("mlp.fc_out.weight", ("mlp.down_proj.weight",)),
                  Param("mlp.fc_out.bias", ("mlp.down_proj.bias",))),
    to_ours=_llama_to_ours, to_theirs=_llama_to_theirs, optional=frozenset({"unembed.weight"}))

FAMILIES = {f.model_type: f for f in (GPT2, LLAMA)}


def _fits(family: str, needs: dict[str, tuple[Any, Any]]) -> None:
    for option, (wanted, found) in needs.items():
        if wanted != found:
            raise ConfigError(f"model {option}", found, f"{wanted!r} to export as {family}")


# -- reading -----------------------------------------------------------------------------------------------------

def read_config(path: Path) -> dict:
    """``config.json`` of a model directory, or a :class:`UserError` naming what is wrong with ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a directory (a Hugging Face model is a directory with config.json)")
    file = path / "config.json"
    if not file.is_file():
        raise UserError(f"{path}: no config.json, so not a Hugging Face model directory")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise IntegrityError(file, f"not JSON ({e})", "fix or replace the file") from None
    if not isinstance(config, dict):
        raise IntegrityError(file, "not a JSON object", "fix or replace the file")
    return config


def family_of(config: dict) -> Family:
    kind = config.get("model_type")
    if kind not in FAMILIES:
        raise ConfigError("config.json: model_type", kind, f"one of {sorted(FAMILIES)} (supported families)")
    return FAMILIES[kind]


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a directory: one safetensors file, a sharded safetensors index, or ``pytorch_model.bin``."""
    from safetensors.torch import load_file

    single, index, pickle = path / "model.safetensors", path / "model.safetensors.index.json", path / "pytorch_model.bin"
    try:
        if single.is_file():
            return load_file(str(single))
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
        if pickle.is_file():
            return torch.load(pickle, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch raise several types for truncated or foreign files
        raise IntegrityError(path, f"unreadable weights ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
                             "re-save the model (model.save_pretrained)") from None
    raise UserError(f"{path}: no weights (model.safetensors, model.safetensors.index.json or pytorch_model.bin)")


def hf_config_to_gpt(config: dict, max_ctx: int = DEFAULT_MAX_CTX) -> GPTConfig:
    """Our GPT's config for a Hugging Face ``config.json`` (refusing, by name, what it cannot express)."""
    fields = family_of(config).to_ours(config, max_ctx)
    try:
        return GPTConfig(**fields)
    except ValueError as e:
        raise ConfigError("config.json", {k: fields[k] for k in sorted(fields)}, f"a shape our GPT takes ({e})") from None


def load_hf(path: str | Path, max_ctx: int = DEFAULT_MAX_CTX, dtype: torch.dtype = torch.float32) -> GPT:
    """A local Hugging Face causal LM directory as our GPT (float32 by default: the analyses take gradients).

    Every tensor our model needs must be in the files and every tensor in the files must be used (apart from
    buffers transformers used to save, like GPT-2's causal mask): a mismatch is named, never filled with init."""
    path = Path(path)
    config = read_config(path)
    family = family_of(config)
    cfg = hf_config_to_gpt(config, max_ctx)
    tensors = {k.removeprefix("module."): v for k, v in _read_tensors(path).items()}
    if family is GPT2 and not any(k.startswith("transformer.") for k in tensors):  # GPT2Model saves without it
        tensors = {("transformer." + k if not k.startswith("lm_head.") else k): v for k, v in tensors.items()}
    model = GPT(cfg)
    wanted = dict(model.state_dict())
    state, used = {}, set()
    for p in family.params(cfg):
        if p.ours not in wanted:
            continue
        if p.ours == "unembed.weight" and cfg.tie_embeddings:
            used.add(p.theirs[0])
            continue
        missing = [t for t in p.theirs if t not in tensors]
        if missing:
            raise IntegrityError(path, f"lacks tensor {missing[0]} (needed for {p.ours})", "re-save the model")
        parts = [tensors[t].t() if p.conv1d else tensors[t] for t in p.theirs]
        state[p.ours] = torch.cat(parts) if len(parts) > 1 else parts[0]
        used.update(p.theirs)
    ignorable = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")
    extra = sorted(k for k in tensors if k not in used and not k.endswith(ignorable))
    if extra:
        raise IntegrityError(path, f"holds tensors wrapperlab's {family.model_type} mapping does not use "
                                   f"({', '.join(extra[:3])}{', ...' if len(extra) > 3 else ''})",
                             "check model_type in config.json")
    for name, tensor in state.items():
        if tensor.shape != wanted[name].shape:
            raise IntegrityError(path, f"{name}: shape {tuple(tensor.shape)}, config.json implies "
                                       f"{tuple(wanted[name].shape)}", "check config.json against the weights")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    return model.to(dtype).eval()


def load_hf_tokenizer(path: str | Path):
    """The directory's ``tokenizer.json`` (a fast tokenizer, read with ``tokenizers``)."""
    from tokenizers import Tokenizer

    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        raise UserError(f"{path}: no tokenizer.json (save the model's fast tokenizer with tokenizer.save_pretrained)")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises its own exception type for malformed files
        raise IntegrityError(file, f"not a tokenizers file ({' '.join(str(e).split())[:200]})",
                             "re-save the tokenizer") from None


# -- writing -----------------------------------------------------------------------------------------------------

def _family_for(cfg: GPTConfig) -> Family:
    return LLAMA if cfg.positions == "rope" else GPT2


def export_hf(model: GPT, out: str | Path, tokenizer: Any = None, special_tokens: dict[str, str] | None = None) -> Path:
    """Write ``model`` as a Hugging Face directory (``config.json``, ``model.safetensors``, and the tokenizer's
    ``tokenizer.json`` with a ``tokenizer_config.json`` when ``tokenizer`` — a ``tokenizers.Tokenizer`` or its JSON
    file — is given) that ``transformers`` loads
    with ``AutoModelForCausalLM.from_pretrained``. RoPE models go out as Llama, learned-position ones as GPT-2;
    an option the family cannot hold is named. ``special_tokens``: e.g. ``{"eos_token": "<|endoftext|>"}``."""
    from safetensors.torch import save_file

    out = Path(out)
    cfg = model.cfg
    family = _family_for(cfg)
    config = {"architectures": [family.architecture], "model_type": family.model_type, "torch_dtype": "float32",
              **family.to_theirs(cfg)}
    ours = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    tensors = {}
    for p in family.params(cfg):
        if p.ours not in ours or (p.ours == "unembed.weight" and cfg.tie_embeddings):
            continue
        sizes = list(cfg.qkv_split) if len(p.theirs) == 3 else [cfg.mlp_width] * len(p.theirs)
        for name, part in zip(p.theirs, ours[p.ours].split(sizes) if len(p.theirs) > 1 else [ours[p.ours]]):
            tensors[name] = (part.t() if p.conv1d else part).contiguous()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "model.safetensors", lambda f: save_file(tensors, str(f), metadata={"format": "pt"}))
    if tokenizer is not None:
        _export_tokenizer(tokenizer, out, config, special_tokens or {})
    atomic_write_text(out / "config.json", json.dumps(config, indent=1, sort_keys=True))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if (out / name).exists():  # temporary files are private; a model directory is for sharing
            (out / name).chmod(0o644)
    return out


def _export_tokenizer(tokenizer: Any, out: Path, config: dict, special: dict[str, str]) -> None:
    from tokenizers import Tokenizer

    tok = tokenizer if isinstance(tokenizer, Tokenizer) else Tokenizer.from_file(str(tokenizer))
    for key, token in special.items():
        token_id = tok.token_to_id(token)
        if token_id is None:
            raise ConfigError(f"special_tokens.{key}", token, "a token of the tokenizer")
        config[key.replace("_token", "_token_id")] = token_id
    if tok.get_vocab_size() > config["vocab_size"]:
        raise ConfigError("tokenizer", f"{tok.get_vocab_size()} tokens", f"at most {config['vocab_size']} (the "
                          "model's vocabulary)")
    atomic_write(out / "tokenizer.json", lambda f: tok.save(str(f)))
    atomic_write_text(out / "tokenizer_config.json", json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": config.get(
            "max_position_embeddings", config.get("n_positions")), **special}, indent=1, sort_keys=True))
