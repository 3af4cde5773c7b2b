"""Learning-rate schedule: linear warm-up, then cosine decay to a floor. A pure function of the step,
so a resumed run needs no scheduler state."""

from __future__ import annotations

import math

from wrapperlab.training.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    warmup = int(cfg.warmup_frac * cfg.iters)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, cfg.iters - warmup)
    floor = cfg.min_lr_frac * cfg.lr
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
