"""Checkpoints that survive being killed at any instant.

A checkpoint is three files: weights (safetensors), optimiser state (``torch.save``) and a small
JSON pointer naming the step and both files. The weights and the optimiser state are written under
step-stamped names first; the pointer is replaced atomically last; older files are deleted after.
A reader follows the pointer, so it never sees a half-written checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wrapperlab.files import atomic_write, atomic_write_text, load_weights, save_weights

POINTER = "checkpoint.json"


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


def read_pointer(directory: Path) -> dict[str, Any] | None:
    """The latest checkpoint's pointer (its step and files), ``None`` when there is none."""
    path = directory / POINTER
    return json.loads(path.read_text()) if path.exists() else None


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore the latest checkpoint into ``model`` and ``optimizer``; ``None`` when there is none."""
    pointer = read_pointer(directory)
    if pointer is None:
        return None
    load_weights(model, directory / pointer["weights"])
    optimizer.load_state_dict(torch.load(directory / pointer["optimizer"], weights_only=True))
    return pointer
