"""Settings of the one training loop. Pretraining, fine-tuning, reFT and randFT differ only here,
in their data and in their starting weights."""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config, without_later_defaults


def native_bf16() -> bool:
    """Whether this machine's CPU has a fast bf16 matmul path (oneDNN's, on AVX-512 or AMX). Without one, autocast
    emulates bf16 and trains *slower* than fp32 — 14x on an AVX2-only EPYC (benchmarks/throughput.py (c): bf16 /
    fp32 tokens/s 0.07, measured 2026-12-02) — which is why the quick profile asks for ``auto``."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_lr(names: Mapping[str, float], value: Any) -> Any:
    """A learning rate as given (a number, or one of a setting's names: PCFG L, M, S) -> its number. The one place a
    name becomes a number: :class:`TrainConfig` validates ``lr`` through it, with the setting's names in the
    validation context (``validated(..., context={"lr_names": names})``), and a grid compares lrs through it."""
    if isinstance(value, str):
        if value in names:
            return names[value]
        try:
            return float(value)
        except ValueError:
            raise ConfigError("lr", value, f"a positive number or one of {list(names)}" if names
                              else "a positive number") from None
    return value


def lr_number(names: Mapping[str, float], value: Any) -> float:
    """:func:`resolve_lr`, and the result a positive finite number, or one ConfigError (a grid compares the lrs of
    its cells before any config is built: a spec's ``lr: [null]`` must not reach arithmetic)."""
    lr = resolve_lr(names, value)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ConfigError("lr", value, f"a positive number or one of {list(names)}")
    return float(lr)


#: TrainConfig fields added after runs were stored: left out of a dumped config (and so of the run id) at these values
LATER_TRAIN_OPTIONS: dict[str, object] = {"stop_holds": 1, "stop_plateau": 0, "plateau_delta": 0.005}


class TrainConfig(Config):
    """What determines the result of a training run (hashed into the run id)."""

    iters: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    lr: float = Field(gt=0)
    warmup_frac: float = Field(0.2, ge=0, lt=1, description="linear warm-up share of iters (paper: 20 %)")
    min_lr_frac: float = Field(0.01, ge=0, le=1, description="cosine floor as a fraction of lr (paper FT: 1/100)")
    optimizer: Literal["adamw", "sgd"] = "adamw"
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.1, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    loss: Literal["sequence", "answer"] = "sequence"
    answer_weight: float = Field(
        0.0,
        ge=0,
        description="sequence loss only: extra weight on the answer token's CE (loss = mean CE + w * CE_ans)",
    )
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="fp32 | bf16 (autocast) | auto: bf16 where the CPU computes it natively (native_bf16), "
        "else fp32 — resolved when the config is built, so the stored config and the run id hold the result")
    eval_every: int = Field(250, gt=0)
    eval_at: tuple[int, ...] = Field((), description="extra evaluation steps, e.g. log-spaced for reFT curves")
    checkpoint_every: int = Field(250, gt=0)
    stop_when: dict[str, float] = Field(
        default_factory=dict,
        description="stop once an evaluation has every named metric >= its threshold (reFT and its baselines: "
        "training on after the capability is back spends compute on a number nobody reads)",
    )
    stop_margin: int = Field(
        0, ge=0, description="steps trained on after stop_when first holds (the curve shows it still holds)"
    )
    stop_holds: int = Field(1, ge=1, le=1000, description="evaluations in a row at which stop_when must hold "
                            "(1: the first; training/stopping.py)")
    stop_plateau: int = Field(0, ge=0, le=1000, description="also stop once no stop_when metric has beaten its "
                              "best by plateau_delta in this many evaluations (0: never) — converged below the "
                              "threshold")
    plateau_delta: float = Field(0.005, gt=0, le=1)

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict:
        """Options added after runs were stored are left out at their defaults, so those runs keep their ids."""
        return without_later_defaults(handler(self), LATER_TRAIN_OPTIONS)

    @field_validator("lr", mode="before")
    @classmethod
    def _named_lr(cls, value: object, info: ValidationInfo) -> object:
        return resolve_lr((info.context or {}).get("lr_names") or {}, value)

    @field_validator("precision", mode="before")
    @classmethod
    def _precision(cls, value: object) -> object:
        return ("bf16" if native_bf16() else "fp32") if value == "auto" else value

    @field_validator("eval_at")
    @classmethod
    def _steps(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(step < 0 for step in value):
            raise ValueError(f"evaluation steps are >= 0 (got {sorted(value)})")
        return value

    @field_validator("stop_when")
    @classmethod
    def _finite_thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not math.isfinite(v) or not k]
        if bad:
            raise ValueError(f"stop_when needs metric names with finite thresholds (got {bad[0]!r}: {value[bad[0]]})")
        return value

    @model_validator(mode="after")
    def _stop_rule_reads_stop_when(self) -> TrainConfig:
        if (self.stop_holds != 1 or self.stop_plateau) and not self.stop_when:
            raise ConfigError("stop_when", {}, "the metrics stop_holds and stop_plateau read (e.g. {acc_ft: 0.99})")
        return self


class Runtime(Config):
    """How to run, not what to compute: never part of a run's identity."""

    device: str = "cpu"
    compile: bool = False
    progress: bool = True
    threads: int | None = Field(None, gt=0)
    deferred_guard: bool | None = Field(None, description="the divergence guard read at evaluations and "
                                        "checkpoints, not every step (None: on accelerators, where a host sync per "
                                        "step stalls the device; training/optim.py Guard)")
    stack: int = Field(1, ge=1, le=64, description="train up to this many ready runs of one stage as one stack "
                       "(training/stacked.py; 1 = every run alone)")
    tensorboard: str | None = Field(None, description="mirror each computed run's metrics to TensorBoard event "
                                    "files under this directory (runs/mirror.py)")
