"""Files that survive being killed at any instant: every write goes to a temporary file that is renamed onto its
target, so a reader sees the old file or the new one. Weights are safetensors files.

At the bottom of the house (beside errors.py): models, training, runs and the report all write through here.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path``: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if missing) for the block: two processes sharing a store take
    turns at what must not interleave (computing one run, rewriting one report). The kernel drops the lock when
    its holder dies, so a killed process never leaves a store locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict made safe for safetensors: contiguous CPU tensors, tied weights stored once."""
    seen: dict[int, str] = {}
    out = {}
    for name, tensor in model.state_dict().items():
        key = tensor.data_ptr()
        if key in seen:
            continue
        seen[key] = name
        out[name] = tensor.detach().to("cpu").contiguous()
    return out


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    atomic_write(path, lambda p: save_file(weights(model), str(p), metadata=metadata))


def load_weights(model: nn.Module, path: Path) -> None:
    state = load_file(str(path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {n for n in missing if n == "unembed.weight" and getattr(model.cfg, "tie_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{path}: weights do not fit the model (missing {sorted(missing)}, unexpected {unexpected})")
