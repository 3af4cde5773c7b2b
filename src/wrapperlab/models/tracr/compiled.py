"""A compiled RASP program as a :class:`GPT`, with the labels of its residual space and its encoders.

Stored as two files (``model.safetensors`` + ``tracr.json``), so that fine-tuning and analysing a
compiled model needs no JAX. The unembedding is the projection of the residual stream onto the
program's output subspace (one row per output value), not an identity: tracr computes it on the
fly and never stores it, and an identity is right only when the output happens to be the first
residual dimensions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from wrapperlab.errors import ConfigError
from wrapperlab.files import atomic_write_text, load_weights, save_weights
from wrapperlab.models.gpt import GPT, GPTConfig

META = "tracr.json"
WEIGHTS = "model.safetensors"


@dataclass
class CompiledModel:
    """Everything needed to run a compiled program without tracr.

    ``input_vocab``: token values in id order (BOS and PAD included). ``output_values``: the class of
    each unembedding row, or ``None`` for a numerical program (one output dimension holding the value).
    """

    program: str
    gpt: GPTConfig
    residual_labels: list[str]
    input_vocab: list[Any]
    output_values: list[Any] | None
    output_label: str
    bos: str
    pad: str
    max_seq_len: int
    causal: bool
    answer: str = "all"
    settings: dict[str, Any] = field(default_factory=dict)  # what it was compiled from (program args)
    state: dict[str, torch.Tensor] | None = None

    # -- running -----------------------------------------------------------------------------------

    def model(self) -> GPT:
        """A fresh :class:`GPT` holding the compiled weights, its residual labels attached."""
        model = GPT(self.gpt)
        if self.state is not None:
            model.load_state_dict(self.state)
        model.residual_labels = list(self.residual_labels)
        return model.eval()

    @property
    def token_ids(self) -> dict[Any, int]:
        return {v: i for i, v in enumerate(self.input_vocab)}

    def encode(self, inputs: Sequence[Sequence[Any]]) -> np.ndarray:
        """Inputs without BOS -> ``(n, 1 + longest)`` ids: BOS first, right-padded with PAD."""
        ids = self.token_ids
        longest = max((len(x) for x in inputs), default=0)
        if longest > self.max_seq_len:
            raise ConfigError("input length", longest, f"at most max_seq_len={self.max_seq_len}")
        out = np.full((len(inputs), 1 + longest), ids[self.pad], dtype=np.int64)
        out[:, 0] = ids[self.bos]
        for i, x in enumerate(inputs):
            unknown = [t for t in x if t not in ids or t in (self.bos, self.pad)]
            if unknown:
                raise ConfigError("input token", unknown[0], f"one of the compiled vocabulary {self.input_vocab}")
            out[i, 1 : 1 + len(x)] = [ids[t] for t in x]
        return out

    def decode(self, logits: torch.Tensor) -> list[list[Any]]:
        """``(n, pos, n_out)`` -> per position the output value (argmax class, or the numerical value)."""
        if self.output_values is None:
            return logits[..., 0].tolist()
        classes = logits.argmax(-1).tolist()
        return [[self.output_values[c] for c in row] for row in classes]

    @torch.no_grad()
    def run(self, inputs: Sequence[Sequence[Any]], model: GPT | None = None) -> list[list[Any]]:
        """Decoded outputs at the real (non-BOS, non-PAD) positions of each input."""
        model = model or self.model()
        logits = model(torch.from_numpy(self.encode(inputs)).to(next(model.parameters()).device)).cpu()
        decoded = self.decode(logits)
        return [row[1 : 1 + len(x)] for row, x in zip(decoded, inputs)]

    # -- files -------------------------------------------------------------------------------------

    def meta(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("state")
        out["gpt"] = self.gpt.model_dump()
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        model = self.model()
        save_weights(model, directory / WEIGHTS)
        atomic_write_text(directory / META, json.dumps(self.meta(), indent=1) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "CompiledModel":
        directory = Path(directory)
        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError("compiled model", str(directory), f"a directory with a readable {META} ({e})") from None
        meta["gpt"] = GPTConfig(**meta["gpt"])
        compiled = cls(**meta)
        model = GPT(compiled.gpt)
        try:
            load_weights(model, directory / WEIGHTS)
        except (ValueError, OSError, RuntimeError) as e:  # a damaged file is an IntegrityError, raised as it is
            raise ConfigError("compiled model", str(directory), f"readable weights ({type(e).__name__}: {e})") from None
        compiled.state = {k: v.clone() for k, v in model.state_dict().items()}
        return compiled

    def label_index(self, label: str) -> int:
        try:
            return self.residual_labels.index(label)
        except ValueError:
            raise ConfigError("residual label", label, f"one of {self.residual_labels[:8]} ...") from None
