"""Resolved run configs, built from a profile plus overrides and validated before anything runs.

The resolved config is what a run's id is hashed over, so it holds every setting that changes the
result (the full model shape, not a preset name) and nothing that does not (device, threads).
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wrapperlab.data.finetune_data import FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import PRESETS, GPTConfig
from wrapperlab.training.config import TrainConfig

#: The paper's fine-tuning learning rates for PCFG models (appendix values).
LR_NAMES = {"L": 1e-4, "M": 1e-5, "S": 1e-6}


def load_profiles() -> dict[str, Any]:
    return yaml.safe_load(resources.files("wrapperlab.experiments").joinpath("profiles.yaml").read_text())


def profile(name: str) -> dict[str, Any]:
    profiles = {k: v for k, v in load_profiles().items() if isinstance(v, dict)}
    if name not in profiles:
        raise ConfigError("profile", name, f"one of {sorted(profiles)}")
    return profiles[name]


def parse_lr(value: str | float, names: dict[str, float] = LR_NAMES) -> float:
    """A learning rate: a number or one of the paper's names (PCFG: L, M, S)."""
    if isinstance(value, str) and value in names:
        return names[value]
    try:
        lr = float(value)
    except (TypeError, ValueError):
        lr = -1.0
    if not lr > 0:
        raise ConfigError("lr", value, f"a positive number or one of {list(names)}")
    return lr


def validated(model: type[BaseModel], data: dict[str, Any], where: str = "") -> BaseModel:
    """Build a pydantic model, turning its first complaint into a one-line :class:`ConfigError`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in (where, *err["loc"]) if p != "")
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ConfigError):
            raise ConfigError(f"{where}.{cause.field}" if where else cause.field, cause.value, cause.allowed)
        raise ConfigError(field or model.__name__, err.get("input"), err["msg"].lower())


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1e-3}`` -> nested update of a copy of ``base``; unknown sections are errors."""
    out = yaml.safe_load(yaml.safe_dump(base))  # deep copy of plain data
    for dotted, value in overrides.items():
        keys = dotted.split(".")
        node = out
        for key in keys[:-1]:
            if not isinstance(node.get(key), dict):
                raise ConfigError(dotted, value, f"a key under one of {sorted(k for k, v in out.items() if isinstance(v, dict))}")
            node = node[key]
        node[keys[-1]] = value
    return out


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(1000, gt=0, description="samples per (task, operand) in the final evaluation")
    n_during: int = Field(300, gt=0, description="samples per evaluation during training")


class _RunConfig(BaseModel):
    """What every training run has: how it trains, how it is evaluated, and its seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    train: TrainConfig
    eval: EvalConfig = EvalConfig()
    seed: int = Field(0, ge=0)


class PretrainRunConfig(_RunConfig):
    data: PCFGDataConfig
    model: GPTConfig


class FinetuneRunConfig(_RunConfig):
    parent: str  # the canonical id of the run fine-tuned from
    data: FinetuneDataConfig
    init: Literal["parent", "random"] = Field(
        "parent", description="random: the parent's architecture with fresh weights (the Scr. baseline)"
    )


def pretrain_config(profile_name: str = "quick", overrides: dict[str, Any] | None = None) -> PretrainRunConfig:
    """Profile + overrides -> a validated pretraining config with the model shape fully resolved."""
    prof = profile(profile_name)
    raw = apply_overrides(
        {"data": prof["data"], "model": prof["model"], "train": prof["pretrain"], "eval": prof["eval"], "seed": 0},
        overrides or {},
    )
    data = validated(PCFGDataConfig, raw["data"], "data")
    pcfg = PCFGData(data)
    model_raw = dict(raw["model"])
    preset = model_raw.pop("preset", None)
    if preset is not None and preset not in PRESETS:
        raise ConfigError("model.preset", preset, f"one of {sorted(PRESETS)}")
    shape = {**PRESETS.get(preset, {}), **model_raw, "vocab_size": len(pcfg.vocab), "n_ctx": pcfg.seq_len}
    raw["model"] = validated(GPTConfig, shape, "model").model_dump()
    return validated(PretrainRunConfig, raw)


def finetune_config(
    parent: str, profile_name: str = "quick", overrides: dict[str, Any] | None = None
) -> FinetuneRunConfig:
    prof = profile(profile_name)
    raw = apply_overrides(
        {"parent": parent, "data": {}, "train": {**prof["finetune"], "lr": LR_NAMES["M"]}, "eval": prof["eval"], "seed": 0},
        overrides or {},
    )
    if "lr" in raw["train"]:
        raw["train"]["lr"] = parse_lr(raw["train"]["lr"])
    return validated(FinetuneRunConfig, raw)


#: What the reFT data ask: the pretraining operand, on uncorrelated (C_Te = 0) windows, honestly labelled.
REFT_DATA = {"ask": "pt", "answer": "asked", "c_tr": 0.0, "mix_pt": 0.0}


def reft_config(
    finetuned: FinetuneRunConfig, parent: str, profile_name: str = "quick", overrides: dict[str, Any] | None = None,
    init: str = "parent",
) -> FinetuneRunConfig:
    """reFT of a fine-tuned run (or, with another ``parent``/``init``, its baselines): train back on
    the pretraining question with the fine-tuning run's pair and seed, at ``reft_lr_factor`` x its lr."""
    prof = profile(profile_name)
    raw = apply_overrides(
        {
            "parent": parent,
            "init": init,
            "data": {**finetuned.data.model_dump(mode="json"), **REFT_DATA},
            "train": {**prof["reft"], "lr": finetuned.train.lr * load_profiles()["reft_lr_factor"]},
            "eval": prof["eval"],
            "seed": finetuned.seed,
        },
        overrides or {},
    )
    raw["train"]["lr"] = parse_lr(raw["train"]["lr"])
    return validated(FinetuneRunConfig, raw)
