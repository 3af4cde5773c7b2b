"""Compile a RASP program with tracr and convert the result to a :class:`CompiledModel` (needs JAX).

Weight mapping (haiku stores ``x @ W``, i.e. ``in x out``; torch stores ``out x in``):
``token_embed`` -> ``embed``, ``pos_embed`` -> ``pos_embed``; per layer ``attn/{query,key,value}``
-> the Q, K, V row blocks of ``attn.qkv`` (heads major, as our attention splits them),
``attn/linear`` -> ``attn.out``, ``mlp/linear_1`` -> ``mlp.fc_in``, ``mlp/linear_2`` -> ``mlp.fc_out``.
Attention logits are scaled by 1/sqrt(key_size) in both. The unembedding is rebuilt from the
residual labels and the output encoder (see :mod:`.compiled`).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPTConfig
from wrapperlab.models.tracr.compiled import CompiledModel
from wrapperlab.models.tracr.programs import Program, program, rasp_module

BOS, PAD = "BOS", "PAD"  # upper case sorts before the letters, so BOS = 0 and PAD = 1


def compile_program(
    name: str, vocab: Sequence[str] | None = None, max_seq_len: int | None = None, causal: bool = False
) -> tuple[CompiledModel, Any]:
    """Compile a named program (see :data:`~.programs.PROGRAMS`); returns ``(compiled, tracr_model)``.

    The tracr model is returned for parity checks; everything downstream uses ``compiled``.
    """
    spec: Program = program(name)
    rasp_module()  # a clear "install the extra" error before anything else
    return compile_rasp(spec.build(), vocab or spec.vocab, max_seq_len or spec.max_seq_len, causal, name, spec.answer)


def compile_rasp(
    sop: Any, vocab: Sequence[Any], max_seq_len: int, causal: bool = False, name: str = "custom", answer: str = "all"
) -> tuple[CompiledModel, Any]:
    """Compile any RASP program (a ``tracr.rasp`` SOp) for ``vocab`` and ``max_seq_len``."""
    rasp_module()
    from tracr.compiler import compiling

    vocab = tuple(vocab)
    if {BOS, PAD} & set(vocab):
        raise ConfigError("vocab", sorted(vocab), f"tokens other than {BOS!r} and {PAD!r}")
    try:
        assembled = compiling.compile_rasp_to_model(
            sop, vocab=set(vocab), max_seq_len=max_seq_len, causal=causal, compiler_bos=BOS, compiler_pad=PAD
        )
    except (NotImplementedError, ValueError) as e:
        raise ConfigError("program", name, f"a program tracr can compile ({e})") from None
    compiled = convert(assembled, sop.label, name=name, causal=causal, max_seq_len=max_seq_len, answer=answer)
    compiled.settings = {"vocab": list(vocab), "max_seq_len": max_seq_len, "causal": causal}
    return compiled, assembled


def convert(assembled: Any, output_label: str, name: str, causal: bool, max_seq_len: int, answer: str = "all") -> CompiledModel:
    """tracr ``AssembledTransformerModel`` -> :class:`CompiledModel` (weights copied, nothing shared)."""
    params = {k: {kk: np.asarray(v, dtype=np.float32) for kk, v in d.items()} for k, d in assembled.params.items()}
    mc = assembled.model_config
    labels = [str(label) for label in assembled.residual_labels]
    tok, pos = params["token_embed"]["embeddings"], params["pos_embed"]["embeddings"]
    input_vocab = [v for v, _ in sorted(assembled.input_encoder.encoding_map.items(), key=lambda kv: kv[1])]
    out_encoder = assembled.output_encoder
    output_values = None
    if out_encoder is not None and getattr(out_encoder, "encoding_map", None):
        output_values = [v for v, _ in sorted(out_encoder.encoding_map.items(), key=lambda kv: kv[1])]
        rows = [labels.index(f"{output_label}:{v}") for v in output_values]
    else:
        rows = [labels.index(output_label)]
    unembed = np.zeros((len(rows), len(labels)), dtype=np.float32)
    unembed[np.arange(len(rows)), rows] = 1.0

    cfg = GPTConfig(
        vocab_size=tok.shape[0], n_ctx=pos.shape[0], d_model=tok.shape[1], n_layers=mc.num_layers,
        n_heads=mc.num_heads, head_dim=mc.key_size, d_mlp=mc.mlp_hidden_size, vocab_out=len(rows),
        pad_token=input_vocab.index(PAD), norm="none", act="relu", positions="learned",
        attention="causal" if causal else "bidirectional", bias=True,
    )
    state = {"embed.weight": tok, "pos_embed.weight": pos, "unembed.weight": unembed}
    for layer in range(mc.num_layers):
        p = f"transformer/layer_{layer}"
        attn = [params[f"{p}/attn/{part}"] for part in ("query", "key", "value")]
        state[f"blocks.{layer}.attn.qkv.weight"] = np.concatenate([a["w"].T for a in attn])
        state[f"blocks.{layer}.attn.qkv.bias"] = np.concatenate([a["b"] for a in attn])
        for ours, theirs in (("attn.out", "attn/linear"), ("mlp.fc_in", "mlp/linear_1"), ("mlp.fc_out", "mlp/linear_2")):
            state[f"blocks.{layer}.{ours}.weight"] = params[f"{p}/{theirs}"]["w"].T
            state[f"blocks.{layer}.{ours}.bias"] = params[f"{p}/{theirs}"]["b"]
    return CompiledModel(
        program=name, gpt=cfg, residual_labels=labels, input_vocab=input_vocab, output_values=output_values,
        output_label=output_label, bos=BOS, pad=PAD, max_seq_len=max_seq_len, causal=causal, answer=answer,
        state={k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()},
    )


def reference(assembled: Any, inputs: Sequence[Sequence[Any]]) -> tuple[list[list[Any]], list[list[np.ndarray]]]:
    """tracr's own answer, for parity checks: decoded outputs at the real positions of each input and
    the residual stream after every sub-layer (``2 * n_layers`` arrays of ``(pos, d_model)``).

    Inputs of one length run as one batch through tracr's forward function (no padding involved);
    decoding follows ``AssembledTransformerModel.apply``.
    """
    import jax.numpy as jnp

    decoded: list[Any] = [None] * len(inputs)
    residuals: list[Any] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_length.setdefault(len(x), []).append(i)
    for idx in by_length.values():
        tokens = jnp.array([assembled.input_encoder.encode([BOS, *inputs[i]]) for i in idx])
        out = assembled.forward(assembled.params, tokens)
        unembedded = np.asarray(out.unembedded_output)
        resid = [np.asarray(r) for r in out.transformer_output.residuals]
        for row, i in enumerate(idx):
            values = unembedded[row].tolist()
            if assembled.output_encoder is not None:
                values = assembled.output_encoder.decode(values)
            decoded[i] = list(values[1:])
            residuals[i] = [r[row] for r in resid]
    return decoded, residuals
