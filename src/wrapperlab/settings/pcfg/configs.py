"""Resolved run configs, built from a profile plus overrides and validated before anything runs.

The resolved config is what a run's id is hashed over, so it holds every setting that changes the
result (the full model shape, not a preset name) and nothing that does not (device, threads).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from wrapperlab.data.finetune_data import FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.models.gpt import GPTConfig
from wrapperlab.runs.profiles import apply_overrides, load_profiles, model_shape, profile, validated
from wrapperlab.schema import Config, Seed
from wrapperlab.training.config import TrainConfig, lr_number

#: The paper's fine-tuning learning rates for PCFG models (appendix values): the setting's one table of lr names,
#: resolved by TrainConfig's validator (training/config.py) wherever a PCFG config is built.
LR_NAMES = {"L": 1e-4, "M": 1e-5, "S": 1e-6}
NAMES = {"lr_names": LR_NAMES}
#: what randFT sets (App. E.4): questions about O_PT labelled with O_FT's answer (the capability trained "away")
RANDFT_DATA = {"data.ask": "pt", "data.answer": "ft"}


def pcfg_lr(value: str | float) -> float:
    """A PCFG learning rate as a number (a grid compares its cells' lrs through it)."""
    return lr_number(LR_NAMES, value)


class EvalConfig(Config):
    n: int = Field(1000, gt=0, description="samples per (task, operand) in the final evaluation")
    n_during: int = Field(300, gt=0, description="samples per evaluation during training")


class _RunConfig(Config):
    """What every training run has: how it trains, how it is evaluated, and its seed."""

    train: TrainConfig
    eval: EvalConfig = EvalConfig()
    seed: Seed = 0


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
    raw["model"] = model_shape(raw["model"], len(pcfg.vocab), pcfg.seq_len).model_dump()
    return validated(PretrainRunConfig, raw)


def finetune_config(
    parent: str, profile_name: str = "quick", overrides: dict[str, Any] | None = None
) -> FinetuneRunConfig:
    prof = profile(profile_name)
    raw = apply_overrides(
        {"parent": parent, "data": {}, "train": {**prof["finetune"], "lr": "M"}, "eval": prof["eval"], "seed": 0},
        overrides or {},
    )
    return validated(FinetuneRunConfig, raw, context=NAMES)


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
    return validated(FinetuneRunConfig, raw, context=NAMES)
