"""What an audit is run with, validated where it enters: one line naming a bad value (``--probe-iters -1``,
``--lr inf``), never a traceback later."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from wrapperlab.data.capability import CapabilityFields
from wrapperlab.schema import Config

DTYPE_NAMES = ("auto", "fp32", "bf16", "fp16")


class RelearnConfig(Config):
    """How FINETUNED (and each control) is trained on the attack split: ``steps`` optimiser steps of ``batch_size``
    records at a constant ``lr`` (AdamW, no weight decay, gradients clipped at 1), full fine-tuning or LoRA of rank
    ``lora``; each step's records in micro-batches of at most ``batch_tokens`` tokens (the step's loss unchanged)."""

    steps: int = Field(100, gt=0, le=100_000)
    lr: float = Field(1e-4, gt=0, le=1.0)
    batch_size: int = Field(16, gt=0)
    lora: int | None = Field(None, gt=0, le=1024, description="LoRA rank (peft); None: full fine-tuning")
    grad_checkpoint: bool = False

    @property
    def eval_at(self) -> list[int]:
        """Where the held-out split is scored: doublings (speed is compared in log2 steps, so early steps matter
        most), every 10th step and the last."""
        doublings = [2 ** k for k in range(self.steps.bit_length()) if 2 ** k <= self.steps]
        return sorted({0, *doublings, *range(10, self.steps + 1, 10), self.steps})


class AuditConfig(Config):
    """Everything an audit's numbers depend on, and where it computes (``device``, ``dtype``: not its numbers' key,
    but recorded with them)."""

    seeds: int = Field(3, gt=0, le=100, description="splits and batch orders (the verdicts need 3)")
    attack_share: float = Field(0.5, gt=0, lt=1)
    relearn: RelearnConfig = RelearnConfig()
    probe_iters: int = Field(1000, gt=0, le=1_000_000, description="training steps of each linear probe")
    batch_tokens: int = Field(8192, ge=64, description="tokens per forward pass (scoring, probing, micro-batches)")
    chat_template: bool = Field(False, description="wrap each prompt in the tokenizer's chat template")
    fields: CapabilityFields = CapabilityFields()
    device: str = "cpu"
    dtype: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    progress: bool = True
