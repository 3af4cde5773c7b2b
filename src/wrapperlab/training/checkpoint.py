"""Checkpoints that survive being killed at any instant, and damaged files.

A checkpoint is three files: weights (safetensors, carrying the sha256 of their tensors), optimiser state
(``torch.save``) and a small JSON pointer naming the step, both files and the optimiser file's sha256. The weights
and the optimiser state are written under step-stamped names first; the pointer is replaced atomically last. The
previous checkpoint is kept (its pointer as ``checkpoint.prev.json``) and older files are deleted: a reader follows
the pointer, so it never sees a half-written checkpoint, and if the latest checkpoint's files turn out damaged it
falls back to the previous one, saying so.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wrapperlab.errors import IntegrityError
from wrapperlab.files import atomic_write, atomic_write_text, file_digest, load_weights, save_weights

POINTER = "checkpoint.json"
PREVIOUS = "checkpoint.prev.json"
SELF_DIGEST = "pointer_sha256"


def save_checkpoint(directory: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    weights_name, optim_name = f"model-{step:08d}.safetensors", f"optimizer-{step:08d}.pt"
    try:
        save_weights(model, directory / weights_name)
        atomic_write(directory / optim_name, lambda p: torch.save(optimizer.state_dict(), p))
    except OSError:  # a full disk: this step's files go (no pointer names them); the last checkpoint stays usable
        pointers = [_pointer_or_none(directory / p) for p in (POINTER, PREVIOUS)]
        named = {ptr[key] for ptr in pointers if ptr for key in ("weights", "optimizer")}
        for name in (weights_name, optim_name):
            if name not in named:
                (directory / name).unlink(missing_ok=True)
        raise
    pointer = {"step": step, "weights": weights_name, "optimizer": optim_name,
               "optimizer_sha256": file_digest(directory / optim_name), **extra}
    pointer[SELF_DIGEST] = _digest(pointer)
    previous = _pointer_or_none(directory / POINTER)
    if previous is not None and previous.get("step") != step:
        atomic_write_text(directory / PREVIOUS, json.dumps(previous, indent=1))
    else:
        previous = _pointer_or_none(directory / PREVIOUS)
    atomic_write_text(directory / POINTER, json.dumps(pointer, indent=1))
    keep = {weights_name, optim_name, *((previous["weights"], previous["optimizer"]) if previous else ())}
    for old in directory.iterdir():  # keep only what the two pointers name
        if old.name not in keep and old.suffix in (".safetensors", ".pt"):
            old.unlink(missing_ok=True)


def _digest(pointer: dict[str, Any]) -> str:
    """The sha256 of a pointer's content (apart from this digest): an edited ``step`` would make a resume continue
    from a step the weights are not at, and finish with other weights than an uninterrupted run."""
    body = {k: v for k, v in pointer.items() if k != SELF_DIGEST}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _pointer_or_none(path: Path) -> dict[str, Any] | None:
    """A pointer file's content; ``None`` when it is missing or torn (a torn pointer names no usable files)."""
    try:
        pointer = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return pointer if isinstance(pointer, dict) and {"step", "weights", "optimizer"} <= set(pointer) else None


def read_pointer(directory: Path) -> dict[str, Any] | None:
    """The latest checkpoint's pointer (its step and files), ``None`` when there is none."""
    return _pointer_or_none(directory / POINTER)


def _restore(directory: Path, pointer: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Load one checkpoint, verifying both files before either touches the model or the optimiser."""
    optim_path = directory / pointer["optimizer"]
    recorded = pointer.get("optimizer_sha256")
    if recorded is not None and file_digest(optim_path) != recorded:
        raise IntegrityError(optim_path, "sha256 differs from the one recorded when it was written (damaged)")
    state = _load_optimizer_state(optim_path)
    load_weights(model, directory / pointer["weights"])
    optimizer.load_state_dict(state)


def _load_optimizer_state(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as e:  # torch.load raises several types for truncated or foreign files
        raise IntegrityError(path, f"unreadable optimiser state ({type(e).__name__})") from None


def load_checkpoint(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore the latest good checkpoint into ``model`` and ``optimizer`` and return its pointer; ``None`` when
    there is none. A damaged latest checkpoint falls back to the previous one (said on stderr); when both are
    damaged, an :class:`IntegrityError` names the file and how to restart."""
    failures: list[IntegrityError] = []
    for name in (POINTER, PREVIOUS):
        pointer = _pointer_or_none(directory / name)
        if pointer is None:
            continue
        if SELF_DIGEST in pointer and pointer[SELF_DIGEST] != _digest(pointer):  # older pointers carry none
            failures.append(IntegrityError(directory / name, "its content differs from the digest recorded when it "
                                                             "was written (edited or damaged)"))
            continue
        try:
            _restore(directory, pointer, model, optimizer)
        except (IntegrityError, FileNotFoundError, ValueError) as e:
            failures.append(e if isinstance(e, IntegrityError) else IntegrityError(directory / pointer["weights"],
                                                                                   f"unusable ({e})"))
            continue
        if failures:
            print(f"wrapperlab: {failures[0].path}: {failures[0].problem}; resuming from the checkpoint at step "
                  f"{pointer['step']} instead", file=sys.stderr, flush=True)
        return pointer
    if failures:
        last = failures[-1]
        raise IntegrityError(last.path, last.problem, f"no good checkpoint is left: delete {directory} to restart "
                                                      "the run from step 0")
    return None
