"""Tracr stages over the run store: compile a program once, then fine-tune / reFT the compiled model.

``tracr-compile-<hash>`` holds the converted weights and labels (the only stage that imports JAX);
``tracr-finetune-<hash>`` and ``tracr-reft-<hash>`` name their parent and hold trained weights.
Fine-tuning follows the paper's App. C.1: Gaussian noise on the compiled weights, SGD with momentum,
batch 96, warm-up then cosine to 1 % of the peak; gradient clipping is a setting (on by default: η_M
diverged without it in the pilot). The unembedding is the fixed read-out projection — it is neither
noised nor trained (tracr has no such weight; training it would only relabel the output space).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from wrapperlab.analysis.tracr_eval import tracr_accuracies, tracr_test_sets
from wrapperlab.data.tracr_data import TracrData, TracrDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.experiments.configs import apply_overrides, load_profiles, profile, validated
from wrapperlab.experiments.pipeline import Say, StageResult, _stage, _train, first_steps
from wrapperlab.experiments.store import Run, RunStore
from wrapperlab.models.gpt import GPT
from wrapperlab.models.tracr.compiled import CompiledModel
from wrapperlab.models.tracr.programs import program
from wrapperlab.training.checkpoint import load_weights, save_weights
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import position_loss

#: The paper's learning rates for compiled models (App. C.1); VS appears only in reFT.
TRACR_LRS = {"L": 1e-1, "M": 1e-2, "S": 1e-3, "VS": 1e-4}
TUNED_KINDS = ("tracr-finetune", "tracr-reft")


class TracrCompileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    program: str = "counter"
    vocab: tuple[str, ...] | None = Field(None, description="default: the program's (Counter a..j)")
    max_seq_len: int | None = Field(None, gt=1, description="default: the program's")
    causal: bool = False

    @field_validator("program")
    @classmethod
    def _known(cls, value: str) -> str:
        program(value)  # raises a ConfigError naming the choices
        return value


class TracrEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n: int = Field(2000, gt=0)
    n_during: int = Field(500, gt=0)


class TracrFinetuneConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    parent: str
    data: TracrDataConfig
    train: TrainConfig
    noise_std: float = Field(1e-4, ge=0, description="Gaussian noise added to the compiled weights first")
    eval: TracrEvalConfig = TracrEvalConfig()
    seed: int = Field(0, ge=0)


def tracr_lr(value: str | float) -> float:
    if isinstance(value, str) and value in TRACR_LRS:
        return TRACR_LRS[value]
    try:
        lr = float(value)
    except (TypeError, ValueError):
        lr = -1.0
    if not lr > 0:
        raise ConfigError("lr", value, f"a positive number or one of {list(TRACR_LRS)}")
    return lr


# -- configs from profiles ------------------------------------------------------------------------------


def _section(profile_name: str) -> dict[str, Any]:
    section = profile(profile_name).get("tracr")
    if not isinstance(section, dict):
        raise ConfigError("profile", profile_name, "a profile with a tracr section")
    return section


def compile_config(program: str = "counter", overrides: dict[str, Any] | None = None) -> TracrCompileConfig:
    return validated(TracrCompileConfig, {"program": program, **(overrides or {})})


def tracr_finetune_config(
    parent: Run, profile_name: str = "quick", overrides: dict[str, Any] | None = None, stage: str = "finetune"
) -> TracrFinetuneConfig:
    """Profile section + overrides (``train.lr`` may be a name: L, M, S, VS) -> a validated config."""
    section = _section(profile_name)
    program = parent.config()["program"]
    if program not in section.get("data", {}):
        raise ConfigError("program", program, f"one with fine-tuning data in the profile ({sorted(section['data'])})")
    raw = apply_overrides(
        {"parent": parent.id, "data": {"task": program, **section["data"][program]}, "train": section[stage],
         "noise_std": section["noise_std"], "eval": section["eval"], "seed": 0},
        overrides or {},
    )
    raw["train"]["lr"] = tracr_lr(raw["train"].get("lr", "M"))
    return validated(TracrFinetuneConfig, raw)


# -- stages --------------------------------------------------------------------------------------------


def compile_stage(cfg: TracrCompileConfig, store: RunStore, say: Say = print) -> StageResult:
    """Compile (JAX) and store the converted model; later stages load it without JAX."""

    def compute(run: Run) -> dict:
        from wrapperlab.models.tracr.compile import compile_program

        say(f"compiling {cfg.program} into {run.path}")
        compiled, _ = compile_program(cfg.program, cfg.vocab, cfg.max_seq_len, cfg.causal)
        compiled.save(run.path)
        return {
            "program": cfg.program, "d_model": compiled.gpt.d_model, "n_layers": compiled.gpt.n_layers,
            "d_mlp": compiled.gpt.d_mlp, "head_dim": compiled.gpt.d_head, "params": compiled.model().num_params(),
            "output_values": compiled.output_values, "residual_labels": len(compiled.residual_labels),
        }

    return _stage("tracr-compile", cfg, store, Runtime(), say, compute)


def compiled_of(run: Run, field: str = "run") -> CompiledModel:
    """The compiled model at the root of a tracr run's lineage, with *this* run's weights."""
    store, root = RunStore(run.path.parent), run
    for _ in range(100):
        if root.kind == "tracr-compile":
            break
        if root.kind not in TUNED_KINDS:
            raise ConfigError(field, run.id, "a tracr run (tracr-compile, tracr-finetune or tracr-reft)")
        root = store.resolve(root.config()["parent"], field="parent")
    compiled = CompiledModel.load(root.path)
    if run is not root:
        model = GPT(compiled.gpt)
        try:
            load_weights(model, run.weights_path)
        except Exception as e:  # safetensors raises several types for truncated or foreign files
            raise ConfigError(field, str(run.path), f"a run with readable weights ({type(e).__name__}: {e})") from None
        compiled.state = model.state_dict()
    return compiled


def data_for(compiled: CompiledModel, cfg: TracrDataConfig) -> TracrData:
    if cfg.max_len > compiled.max_seq_len:
        raise ConfigError("data.max_len", cfg.max_len, f"at most the compiled max_seq_len={compiled.max_seq_len}")
    if cfg.task != compiled.program:
        raise ConfigError("data.task", cfg.task, f"the compiled program ({compiled.program})")
    return TracrData(cfg, compiled.input_vocab, compiled.output_values or [], compiled.bos, compiled.pad)


def add_noise(model: GPT, std: float, seed: int) -> None:
    """N(0, std²) on every weight except the read-out projection (App. C.1: compiled weights are sparse)."""
    if not std:
        return
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("unembed"):
                p.add_(torch.randn(p.shape, generator=gen) * std)


def tracr_finetune(
    cfg: TracrFinetuneConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print,
    kind: Literal["tracr-finetune", "tracr-reft"] = "tracr-finetune",
) -> StageResult:
    """Fine-tune a compiled (or fine-tuned) model; reFT is the same with the pretraining question asked."""
    parent = store.resolve(cfg.parent, field="parent")
    if parent.id != cfg.parent:
        cfg = cfg.model_copy(update={"parent": parent.id})
    compiled = compiled_of(parent, field="parent")
    if compiled.output_values is None:
        raise ConfigError("parent", parent.id, "a program with categorical output")
    data = data_for(compiled, cfg.data)

    def compute(run: Run) -> dict:
        say(f"{kind}: {parent.id} into {run.path}")
        model = compiled.model()
        model.unembed.weight.requires_grad_(False)
        add_noise(model, cfg.noise_std if parent.kind == "tracr-compile" else 0.0, cfg.seed)
        during = tracr_test_sets(data, cfg.eval.n_during, cfg.seed)
        final = tracr_test_sets(data, cfg.eval.n, cfg.seed)
        before = tracr_accuracies(model, data, final)

        def evaluate(m, step):
            acc = tracr_accuracies(m, data, during)
            return {k: v for k, v in acc.items() if k.startswith(("acc_", "shortcut"))}

        state = _train(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, runtime, evaluate,
                       loss_fn=position_loss)
        save_weights(model, run.weights_path)
        return {
            "before": before,
            "after": tracr_accuracies(model, data, final, detail=True),
            "first_step_at": first_steps(run.metrics()),
            "steps": state.step,
            "train_seconds": state.seconds,
            "resumed_from": state.resumed_from,
            "final_loss": state.last_loss,
        }

    return _stage(kind, cfg, store, runtime, say, compute)


def tracr_reft_config(ft: Run, profile_name: str = "quick", lr: str | float | None = None) -> TracrFinetuneConfig:
    """reFT of a tracr fine-tune: the pretraining answer asked on uncorrelated inputs, at ``lr``
    (default: the profile's ``reft_lr_factor`` x the fine-tuning lr)."""
    ft_cfg = validated(TracrFinetuneConfig, ft.config())
    lr = ft_cfg.train.lr * load_profiles()["reft_lr_factor"] if lr is None else tracr_lr(lr)
    data = ft_cfg.data.model_dump()
    data.update(ask="pt", c_tr=0.0)
    root = compiled_root(ft)
    return tracr_finetune_config(root, profile_name, {"parent": ft.id, "data": data, "train.lr": lr,
                                                      "seed": ft_cfg.seed}, stage="reft")


def compiled_root(run: Run) -> Run:
    store = RunStore(run.path.parent)
    while run.kind != "tracr-compile":
        run = store.resolve(run.config()["parent"], field="parent")
    return run
