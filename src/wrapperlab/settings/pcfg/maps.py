"""Attention patterns and MLP activation maps, and where the answer position looks.

The paper reads attention maps to see *which* tokens a counting model counts (Tracr Counter: does
block 1 still attend to ``a`` after fine-tuning to count ``b``?). For PCFG models the same question is
asked quantitatively: the mean attention mass that the answer-predicting position (``ART``) puts on
tokens equal to O_PT versus O_FT inside the span the answer depends on (``data.tasks.answer_span``: the last 40
terminals for counting, the whole window for indexing), per block and head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from wrapperlab.data import tasks as T
from wrapperlab.data.finetune_data import FinetuneDataConfig
from wrapperlab.data.samples import Samples


@dataclass
class Maps:
    """Patterns and MLP activations for one input, and attention masses averaged over many."""

    tokens: list[str]  # the example input, decoded
    patterns: list  # (layers, heads, query, key) for the example
    mlp: list  # (layers, positions, hidden) for the example
    mass_pt: list  # (layers, heads): mean attention from ART onto O_PT tokens in the answer's span
    mass_ft: list  # (layers, heads): same onto O_FT tokens
    n_mass: int  # samples averaged for the masses
    operands: dict[str, str]  # {"pt": ..., "ft": ...}

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def attention_maps(model: nn.Module, example: Samples, many: Samples, pair: FinetuneDataConfig, vocab: T.Vocab) -> Maps:
    """``example``: one sample to draw; ``many``: samples to average attention masses over; ``pair``: the task and
    the operands (O_PT, O_FT) whose attention masses are measured."""
    task, pt, ft = pair.task, pair.pt_operand, pair.operand
    n_layers = len(model.blocks)
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(n_layers)]
    device = next(model.parameters()).device
    tokens = torch.from_numpy(example.tokens[:1]).to(device)
    _, cache = model.run_with_cache(tokens, names_filter=names + [f"blocks.{l}.mlp.hook_post" for l in range(n_layers)])
    patterns = [cache[n][0].tolist() for n in names]
    mlp = [cache[f"blocks.{l}.mlp.hook_post"][0].tolist() for l in range(n_layers)]

    _, cache = model.run_with_cache(torch.from_numpy(many.tokens).to(device), names_filter=names)
    cache = {n: cache[n].float().cpu() for n in names}
    width = many.windows.shape[1]
    query = many.answer_pos - 1
    start, stop = T.answer_span(task, width)
    text_start = 5  # SOS T O O' SOT
    counted = np.zeros(many.tokens.shape, dtype=bool)
    counted[:, text_start + start : text_start + stop] = True
    masses = {}
    for key, letter in (("pt", pt), ("ft", ft)):
        keys = torch.from_numpy(counted & (many.tokens == vocab.id(letter))).float()  # (n, positions)
        per_layer = []
        for n in names:
            pat = cache[n][torch.arange(len(many)), :, torch.from_numpy(query)]  # (n, heads, key)
            per_layer.append((pat * keys[:, None, :]).sum(-1).mean(0).tolist())
        masses[key] = per_layer
    return Maps(
        tokens=vocab.decode(example.tokens[0]),
        patterns=patterns,
        mlp=mlp,
        mass_pt=masses["pt"],
        mass_ft=masses["ft"],
        n_mass=len(many),
        operands={"pt": pt, "ft": ft},
    )
