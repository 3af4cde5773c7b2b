"""Seeded randomness that leaves the caller's state as it was.

Analyses draw random things (a random-init control model, a probe's data order) from their own seed; seeding
the global torch RNG inside them would change what the caller draws next, so an analysis run between two
training steps could change a run's result. Everything here restores the global state on the way out.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch
from torch import nn

from wrapperlab.models.gpt import GPT

F = TypeVar("F", bound=Callable)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Inside: the global torch CPU RNG seeded with ``seed``; outside: the state it had before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@contextmanager
def kept_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Inside: ``model`` in eval mode; outside: back in the train/eval mode it had."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def in_eval_mode(fn: F) -> F:
    """Decorator for ``fn(model, ...)``: it runs with ``model`` in eval mode, and the model leaves in the mode it
    came in (a measurement inside a training loop must not switch dropout off for the steps after it)."""

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        with kept_mode(model):
            return fn(model, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def random_init_twin(model: GPT, seed: int) -> GPT:
    """The same architecture with fresh weights drawn from ``seed`` (in eval mode): the control every probe
    and audit compares a trained model with. The global RNG is left as it was."""
    with seeded(seed):
        return GPT(model.cfg).eval()
