"""Named activation hooks with TransformerLens' vocabulary, on plain PyTorch forward hooks.

Every intermediate activation passes through a :class:`HookPoint` (an identity module). A hook is
``fn(activation, hook) -> activation | None`` as in TransformerLens; returning a tensor replaces the
activation. Hooks live only for one ``with`` block, so a forgotten hook cannot leak into later runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Union

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], Union[torch.Tensor, None]]
NameFilter = Union[str, Callable[[str], bool], Iterable[str], None]


class HookPoint(nn.Module):
    """Identity; a place a hook can read or overwrite an activation."""

    def __init__(self) -> None:
        super().__init__()
        self.name = ""

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _matcher(names: NameFilter) -> Callable[[str], bool]:
    if names is None:
        return lambda _: True
    if isinstance(names, str):
        return lambda n: n == names
    if callable(names):
        return names
    wanted = set(names)
    return lambda n: n in wanted


class HookedModule(nn.Module):
    """Mixin: discovers its HookPoints by module path and runs with hooks or a cache."""

    def setup_hooks(self) -> None:
        self.hook_points: dict[str, HookPoint] = {}
        for name, module in self.named_modules():
            if isinstance(module, HookPoint):
                module.name = name
                self.hook_points[name] = module

    @contextmanager
    def hooks(self, fwd_hooks: Iterable[tuple[NameFilter, HookFn]]) -> Iterator[None]:
        """Install ``(name or predicate, fn)`` hooks for the duration of the block."""
        handles = []
        try:
            for names, fn in fwd_hooks:
                match = _matcher(names)
                found = [hp for n, hp in self.hook_points.items() if match(n)]
                if isinstance(names, str) and not found:
                    raise KeyError(f"no hook point named {names!r}; see model.hook_points")
                for hp in found:
                    handles.append(hp.register_forward_hook(lambda m, _inp, out, fn=fn: fn(out, m)))
            yield
        finally:
            for h in handles:
                h.remove()

    def run_with_hooks(self, tokens: torch.Tensor, fwd_hooks: Iterable[tuple[NameFilter, HookFn]], **kwargs):
        with self.hooks(list(fwd_hooks)):
            return self(tokens, **kwargs)

    def run_with_cache(self, tokens: torch.Tensor, names_filter: NameFilter = None, detach: bool = True, **kwargs):
        """Forward pass returning ``(logits, cache)``; ``cache[name]`` is each matched activation.

        Asking for ``attn.hook_pattern`` switches attention to its explicit (slower) path; a plain
        forward keeps the fused kernel.
        """
        cache: dict[str, torch.Tensor] = {}

        def save(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        logits = self.run_with_hooks(tokens, [(names_filter, save)], **kwargs)
        return logits, cache
