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

import numpy as np
import torch
from pydantic import Field, field_validator

from wrapperlab.data.tracr_data import TracrData, TracrDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.files import save_weights
from wrapperlab.models.gpt import GPT
from wrapperlab.models.tracr.compiled import CompiledModel
from wrapperlab.models.tracr.programs import program
from wrapperlab.runs.profiles import apply_overrides, load_profiles, profile, validated
from wrapperlab.runs.stage import Say, StageAsk, StageResult, Training, cached, first_steps, load_run_weights, run_stage
from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.schema import Config, Seed
from wrapperlab.settings.tracr.evaluate import tracr_accuracies, tracr_test_sets
from wrapperlab.training.config import Runtime, TrainConfig, lr_number
from wrapperlab.training.losses import position_loss

#: The paper's learning rates for compiled models (App. C.1); VS appears only in reFT. The setting's one table of lr
#: names, resolved by TrainConfig's validator wherever a Tracr config is built.
TRACR_LRS = {"L": 1e-1, "M": 1e-2, "S": 1e-3, "VS": 1e-4}
NAMES = {"lr_names": TRACR_LRS}
TUNED_KINDS = ("tracr-finetune", "tracr-reft", "tracr-scratch", "tracr-scrft")
#: code version per run kind and analysis: bump one when what it computes changes meaning (runs/stage.py)
VERSIONS = {"tracr-compile": 1, "tracr-finetune": 1, "tracr-reft": 1, "tracr-scratch": 1, "tracr-scrft": 1,
            "tracr-attention": 1, "tracr-wsearch": 1}


class TracrCompileConfig(Config):
    program: str = "counter"
    vocab: tuple[str, ...] | None = Field(None, description="default: the program's (Counter a..j)")
    max_seq_len: int | None = Field(None, gt=1, description="default: the program's")
    causal: bool = False

    @field_validator("program")
    @classmethod
    def _known(cls, value: str) -> str:
        program(value)  # raises a ConfigError naming the choices
        return value


class TracrEvalConfig(Config):
    n: int = Field(2000, gt=0)
    n_during: int = Field(500, gt=0)


class TracrFinetuneConfig(Config):
    parent: str
    data: TracrDataConfig
    train: TrainConfig
    noise_std: float = Field(1e-4, ge=0, description="Gaussian noise added to the compiled weights first")
    eval: TracrEvalConfig = TracrEvalConfig()
    seed: Seed = 0


def tracr_lr(value: str | float) -> float:
    """A Tracr learning rate as a number (a grid compares its cells' lrs through it)."""
    return lr_number(TRACR_LRS, value)


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
    return finetune_config_for(parent.id, program(parent.config()["program"]).task, profile_name, overrides, stage)


def finetune_config_for(parent_id: str, program_name: str, profile_name: str = "quick",
                        overrides: dict[str, Any] | None = None, stage: str = "finetune") -> TracrFinetuneConfig:
    """:func:`tracr_finetune_config` from the parent's id and program alone — what a spec's check builds before the
    compiled parent exists."""
    section = _section(profile_name)
    if program_name not in section.get("data", {}):
        raise ConfigError("program", program_name, f"one with fine-tuning data in the profile ({sorted(section['data'])})")
    raw = apply_overrides(
        {"parent": parent_id, "data": {"task": program_name, **section["data"][program_name]}, "train": section[stage],
         "noise_std": section["noise_std"], "eval": section["eval"], "seed": 0},
        overrides or {},
    )
    raw["train"].setdefault("lr", "M")
    return validated(TracrFinetuneConfig, raw, context=NAMES)


def reft_config_for(ft_id: str, ft_cfg: TracrFinetuneConfig, profile_name: str = "quick", lr: str | float | None = None,
                    overrides: dict[str, Any] | None = None) -> TracrFinetuneConfig:
    """:func:`tracr_reft_config` from the fine-tuning's id and config (no stored run needed)."""
    lr = ft_cfg.train.lr * load_profiles()["reft_lr_factor"] if lr is None else lr
    data = ft_cfg.data.model_dump()
    data.update(ask="pt", c_tr=0.0)
    return finetune_config_for(ft_id, ft_cfg.data.task, profile_name, {"parent": ft_id, "data": data, "train.lr": lr,
                                                                         "seed": ft_cfg.seed, **(overrides or {})},
                               stage="reft")


# -- stages --------------------------------------------------------------------------------------------


def compile_stage(cfg: TracrCompileConfig, store: RunStore, say: Say = print) -> StageResult:
    """Compile (JAX) and store the converted model; later stages load it without JAX."""
    from wrapperlab.models.tracr.programs import rasp_module

    existing = store.run_for("tracr-compile", cfg.model_dump(mode="json"), VERSIONS["tracr-compile"])
    if not existing.done or existing.damaged():
        rasp_module()  # computing needs the extra: without it one clear line, and no half-made run directory

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

    return run_stage(StageAsk("tracr-compile", cfg, compute, VERSIONS["tracr-compile"]), store, Runtime(), say)


def compiled_of(run: Run, field: str = "run") -> CompiledModel:
    """The compiled model at the root of a tracr run's lineage, with *this* run's weights."""
    root = compiled_root(run, field)
    compiled = CompiledModel.load(root.path)
    if run is not root:
        compiled.state = load_run_weights(GPT(compiled.gpt), run, field).state_dict()
    return compiled


def compiled_root(run: Run, field: str = "run") -> Run:
    """The ``tracr-compile`` run a tracr run descends from; anything else is a clear error."""
    return lineage_root(run, "tracr-compile", via=TUNED_KINDS, field=field,
                        expected="a tracr run (tracr-compile, tracr-finetune or tracr-reft)")


def data_for(compiled: CompiledModel, cfg: TracrDataConfig) -> TracrData:
    if cfg.max_len > compiled.max_seq_len:
        raise ConfigError("data.max_len", cfg.max_len, f"at most the compiled max_seq_len={compiled.max_seq_len}")
    if cfg.task != program(compiled.program).task:
        raise ConfigError("data.task", cfg.task, f"the compiled program's task ({program(compiled.program).task})")
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
    kind: Literal["tracr-finetune", "tracr-reft", "tracr-scratch", "tracr-scrft"] = "tracr-finetune",
) -> StageResult:
    """Fine-tune a compiled (or fine-tuned) model; reFT is the same with the pretraining question asked.

    ``tracr-scrft`` is the Scr.+FT baseline: a program compiled for the fine-tuning target (``counter-b``: it never
    counted a; :func:`~wrapperlab.models.tracr.programs.target_variant`), noised like any compiled model and trained
    on the pretraining question exactly like the reFT it is compared with.

    ``tracr-scratch`` is the never-had-it control: the same architecture and read-out projection with
    freshly initialised weights, trained exactly like the reFT it is compared with (the run kind, not the
    config, marks it, so its id differs from the reFT's)."""
    parent = store.resolve(cfg.parent, field="parent")
    if parent.id != cfg.parent:
        cfg = cfg.model_copy(update={"parent": parent.id})
    compiled = compiled_of(parent, field="parent")
    if compiled.output_values is None:
        raise ConfigError("parent", parent.id, "a program with categorical output")
    data = data_for(compiled, cfg.data)

    def compute(run: Run) -> Training:
        say(f"{kind}: {parent.id} into {run.path}")
        model = compiled.model()
        if kind == "tracr-scratch":
            torch.manual_seed(cfg.seed)
            fresh = GPT(compiled.gpt)
            with torch.no_grad():
                fresh.unembed.weight.copy_(model.unembed.weight)
            model = fresh
        model.unembed.weight.requires_grad_(False)
        add_noise(model, cfg.noise_std if parent.kind == "tracr-compile" and kind != "tracr-scratch" else 0.0, cfg.seed)
        during = tracr_test_sets(data, cfg.eval.n_during, cfg.seed)
        final = tracr_test_sets(data, cfg.eval.n, cfg.seed)
        before = tracr_accuracies(model, data, final)

        def evaluate(m, step):
            acc = tracr_accuracies(m, data, during)
            return {k: v for k, v in acc.items() if k.startswith(("acc_", "shortcut"))}

        def finish(state) -> dict:
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

        return Training(run, model, data.stream(cfg.seed, cfg.train.batch_size), cfg, evaluate, finish,
                        loss_fn=position_loss)

    return run_stage(StageAsk(kind, cfg, compute, VERSIONS[kind]), store, runtime, say)


def tracr_reft_config(ft: Run, profile_name: str = "quick", lr: str | float | None = None,
                      overrides: dict[str, Any] | None = None) -> TracrFinetuneConfig:
    """reFT of a tracr fine-tune: the pretraining answer asked on uncorrelated inputs, at ``lr``
    (default: the profile's ``reft_lr_factor`` x the fine-tuning lr); ``overrides`` (dotted) come last."""
    compiled_root(ft)  # a tracr lineage, or a clear error
    return reft_config_for(ft.id, validated(TracrFinetuneConfig, ft.config()), profile_name, lr, overrides)


# -- analyses of tracr runs (stored beside the run, cached by config) ------------------------------------


def _tuned(store: RunStore, ref: str) -> tuple[Run, TracrFinetuneConfig, CompiledModel, TracrData]:
    run = store.resolve(ref)
    if run.kind not in TUNED_KINDS:
        raise ConfigError("run", ref, "a tracr-finetune or tracr-reft run (its data settings define O_PT and O_FT)")
    cfg = validated(TracrFinetuneConfig, run.config())
    compiled = compiled_of(run)
    return run, cfg, compiled, data_for(compiled, cfg.data)


def _with_both(data: TracrData, n: int, seed: int, stream: str = "eval"):
    """Uncorrelated inputs that contain both O_PT and O_FT letters (Counter) — where attention can choose."""
    from wrapperlab.data.samples import stream_rng

    samples = data.sample(4 * n, stream_rng(seed, stream), c=0.0)
    if data.config.task == "counter":
        letters = data._letters_from_tokens(samples.tokens)
        both = ((letters == data.letters.index(data.config.pt)).any(1)
                & (letters == data.letters.index(data.config.ft)).any(1))
        idx = np.nonzero(both)[0][:n]
        samples = type(samples)(samples.tokens[idx], samples.answer_pos[idx], samples.targets[idx], samples.correlated[idx])
    return samples


def attention_run(store: RunStore, ref: str, n: int = 500, seed: int = 0):
    """Attention mass from the answer position on O_PT / O_FT / BOS per block, before (the noised compiled
    model) and after fine-tuning, and how far each block's patterns moved (``change``: total-variation
    distance), on the same inputs (a cached :class:`Artifact`)."""
    from wrapperlab.settings.tracr.analysis import attention_change, attention_mass

    run, cfg, compiled, data = _tuned(store, ref)

    def compute() -> dict[str, Any]:
        samples = _with_both(data, n, seed)
        ids = compiled.token_ids
        names = {cfg.data.pt: ids[cfg.data.pt], cfg.data.ft: ids[cfg.data.ft], "BOS": ids[compiled.bos]} \
            if cfg.data.task == "counter" else {"BOS": ids[compiled.bos]}
        before = compiled_of(compiled_root(run)).model()
        add_noise(before, cfg.noise_std, cfg.seed)
        after = compiled.model()
        return {"n": len(samples), "before": attention_mass(before, samples, names),
                "after": attention_mass(after, samples, names),
                "change": attention_change(before, after, samples, pad_id=ids.get(compiled.pad))}

    return cached(run, "tracr-attention", {"n": n, "seed": seed, "measures": ["mass", "change"]}, compute, VERSIONS["tracr-attention"])


class WeightSearchConfig(Config):
    """A single-weight search of a tracr run: the weights it tries (``|w| > min_abs``), the inputs it ranks them on
    (``n_search``) and tests the best on (``n_test``), the largest greedy set (``max_k``)."""

    min_abs: float = Field(1e-2, ge=0)
    n_search: int = Field(500, gt=0)
    n_test: int = Field(2000, gt=0)
    max_k: int = Field(5, ge=0)


def weight_search_run(store: RunStore, ref: str, cfg: WeightSearchConfig = WeightSearchConfig(), seed: int = 0,
                      say: Say = print):
    """Exhaustive single-weight pruning of a tracr run by its real O_PT accuracy (a cached :class:`Artifact`)."""
    from wrapperlab.data.samples import stream_rng
    from wrapperlab.settings.tracr.analysis import SearchOptions, single_weight_search
    from wrapperlab.settings.tracr.evaluate import tracr_test_sets

    run, _, compiled, data = _tuned(store, ref)

    def compute() -> dict[str, Any]:
        say(f"single-weight search on {run.id} (|w| > {cfg.min_abs})")
        search = data.sample(cfg.n_search, stream_rng(seed, "prune"), c=0.0)
        result = single_weight_search(compiled.model(), data, search, tracr_test_sets(data, cfg.n_test, seed),
                                      compiled.residual_labels, SearchOptions(min_abs=cfg.min_abs, max_k=cfg.max_k))
        return result.as_dict()

    key = {"min_abs": cfg.min_abs, "n_search": cfg.n_search, "n_test": cfg.n_test, "seed": seed,
           "greedy_max_k": cfg.max_k}
    return cached(run, "tracr-wsearch", key, compute, VERSIONS["tracr-wsearch"])


def noise_sweep(compiled_run: Run, data_cfg: TracrDataConfig, stds=(1e-5, 3e-5, 1e-4, 3e-4, 1e-3),
                seeds=(0, 1, 2), n: int = 2000) -> dict[str, list[float]]:
    """Acc O_PT (C_Te = 0) of the compiled model after N(0, std²) noise, per std and seed."""
    from wrapperlab.settings.tracr.evaluate import tracr_accuracies, tracr_test_sets

    compiled = compiled_of(compiled_run)
    data = data_for(compiled, data_cfg)
    tests = tracr_test_sets(data, n, 0)
    out = {}
    for std in stds:
        accs = []
        for seed in seeds:
            model = compiled.model()
            add_noise(model, std, seed)
            accs.append(tracr_accuracies(model, data, {0.0: tests[0.0]})["acc_pt_cte0"])
        out[f"{std:g}"] = accs
    return out
