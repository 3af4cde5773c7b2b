"""Files that survive being killed at any instant: every write goes to a temporary file that is renamed onto its
target, so a reader sees the old file or the new one. Weights are safetensors files that carry the sha256 of their
tensors, recorded when written and checked when read: flipped bytes are named, never trained on.

At the bottom of the house (beside errors.py): models, training, runs and the report all write through here.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from wrapperlab.errors import IntegrityError

#: the safetensors metadata key holding :func:`tensors_digest` of the file's tensors
DIGEST_KEY = "wrapperlab.sha256"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then rename ``tmp`` onto ``path``: readers see the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        try:
            write(Path(tmp))
        except OSError:
            raise
        except Exception as e:  # torch.save and safetensors report a full disk in their own exception types
            if not _disk_full(e):
                raise
            raise OSError(errno.ENOSPC, "No space left on device", str(path)) from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _disk_full(error: Exception) -> bool:
    """Whether a serializer's error is a full disk: safetensors says "No space left on device (os error 28)",
    torch.save's zip writer only "unexpected pos" after a short write."""
    text = str(error)
    return "No space left" in text or "os error 28" in text or "unexpected pos" in text


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


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensors_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order: what a weights file must still hold
    when read. (Over the tensors rather than the file, so the digest can live inside the file it checks.)"""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_weights(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    state = weights(model)
    meta = {**(metadata or {}), DIGEST_KEY: tensors_digest(state)}
    atomic_write(path, lambda p: save_file(state, str(p), metadata=meta))


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors, verified against the digest recorded when it was written (files written before
    digests were recorded are read unverified). A damaged file is an :class:`IntegrityError` naming it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except FileNotFoundError:
        raise
    except Exception as e:  # safetensors raises several types for truncated or foreign files
        raise IntegrityError(path, f"unreadable weights ({type(e).__name__}: {' '.join(str(e).split())})") from None
    recorded = meta.get(DIGEST_KEY)
    if recorded is not None:
        found = tensors_digest(state)
        if found != recorded:
            raise IntegrityError(path, f"sha256 of its tensors is {found[:12]}..., not the {recorded[:12]}... "
                                       "recorded when it was written (the file is damaged)")
    return state


def load_weights(model: nn.Module, path: Path) -> None:
    state = read_weights(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {n for n in missing if n == "unembed.weight" and getattr(model.cfg, "tie_embeddings", False)}
    if set(missing) - tied or unexpected:
        raise ValueError(f"{path}: weights do not fit the model (missing {sorted(missing)}, unexpected {unexpected})")
