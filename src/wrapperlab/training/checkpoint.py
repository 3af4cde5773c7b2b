"""Checkpoints that survive being killed at any instant.

A checkpoint is three files: weights (safetensors), optimiser state (``torch.save``) and a small
JSON pointer naming the step and both files. The weights and the optimiser state are written under
step-stamped names first; the pointer is replaced atomically last; older files are deleted after.
A reader follows the pointer, so it never sees a half-written checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

POINTER = "checkpoint.json"


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


def save_checkpoint(directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, extra: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    weights_name, optim_name = f"model-{step:08d}.safetensors", f"optimizer-{step:08d}.pt"
    save_weights(model, directory / weights_name)
    atomic_write(directory / optim_name, lambda p: torch.save(optimizer.state_dict(), p))
    pointer = {"step": step, "weights": weights_name, "optimizer": optim_name, **extra}
    atomic_write_text(directory / POINTER, json.dumps(pointer, indent=1))
    for old in directory.iterdir():  # keep only what the pointer names
        if old.name not in (weights_name, optim_name, POINTER) and old.suffix in (".safetensors", ".pt"):
            old.unlink(missing_ok=True)


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore the latest checkpoint into ``model`` and ``optimizer``; ``None`` when there is none."""
    pointer_path = directory / POINTER
    if not pointer_path.exists():
        return None
    pointer = json.loads(pointer_path.read_text())
    load_weights(model, directory / pointer["weights"])
    optimizer.load_state_dict(torch.load(directory / pointer["optimizer"], weights_only=True))
    return pointer
