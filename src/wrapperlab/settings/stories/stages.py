"""Story language-model stages over the run store: pretrain, delete (fine-tune under a protocol), reFT.

* ``stories-pretrain``: trains the shared tokenizer (saved as the run's ``tokenizer.json``), a judge on labelled
  records (``judge.json``) and the model; the "not in pretraining" control is the same stage with
  ``data.exclude = [Twist]`` (same tokenizer, same judge: both are fitted on the full feature mix).
* ``stories-finetune``: continues a run on records under a deletion protocol (``data.protocol``), or — for
  reFT — on Twist stories (``data.only = [Twist]``) or a Twist-rich mix (``data.feature_rates``).

Every stage logs the loss on held-out Twist stories (story tokens only) during training (and generation scores
at ``eval.gen_at`` steps) and writes, before and after, that loss and the generation scores (judged Twist rate
for prompts that request it and for prompts that do not). Runs are content-addressed and resumable like every
other run. :func:`pretrain_story_config`, :func:`delete_config` and :func:`reft_story_config` build a stage's
config from a profile's ``stories`` section (the CLI verbs and the ``stories-twist`` spec use them), and
:func:`probe_story_run` stores the probes of a run (:mod:`wrapperlab.settings.stories.probes`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple, Sequence

import torch
from pydantic import Field, model_validator

from wrapperlab.analysis.rng import random_init_twin
from wrapperlab.data.stories.corpus import (
    StoriesDataConfig,
    TokenStream,
    fit_tokenizer,
    full_mix,
    records,
)
from wrapperlab.errors import ConfigError
from wrapperlab.files import save_weights
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.runs.profiles import apply_overrides, model_shape, profile, validated
from wrapperlab.runs.stage import Say, StageAsk, StageResult, Training, cached, load_run_weights, run_stage
from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.schema import Config, Seed
from wrapperlab.training.config import Runtime, TrainConfig

STORY_KINDS = ("stories-pretrain", "stories-finetune")
#: the deletion learning rates by name: the paper does not give its TinyStories values (protocol.md §6); S and M are
#: the CPU pilot's two deletion strengths. The setting's one table of lr names, resolved by TrainConfig's validator.
STORY_LRS = {"S": 1e-4, "M": 1e-3}
NAMES = {"lr_names": STORY_LRS}
#: code version per run kind and analysis: bump one when what it computes changes meaning (runs/stage.py)
#: 2: real data applies a corpus's exclusions before taking n_records (the not-in-PT control was trained on fewer)
VERSIONS = {"stories-pretrain": 2, "stories-finetune": 2, "story-probe": 1}


class StoriesEvalConfig(Config):
    n_loss: int = Field(200, gt=0, description="held-out Twist stories for the Twist loss")
    n_prompts: int = Field(32, gt=1, description="held-out instructions prompting generation, half requesting a Twist")
    samples: int = Field(4, gt=0, description="stories generated per prompt")
    max_new: int = Field(160, gt=0)
    temperature: float = Field(1.0, gt=0)
    judge_records: int = Field(5000, gt=0)
    gen_at: tuple[int, ...] = Field((), description="training steps (besides before/after) that also get generation scores")


class StoriesRunConfig(Config):
    data: StoriesDataConfig
    train: TrainConfig
    eval: StoriesEvalConfig = StoriesEvalConfig()
    model: dict[str, Any] | None = Field(None, description="pretraining: GPT settings (preset + overrides)")
    parent: str | None = Field(None, description="fine-tuning: the run continued")
    seed: Seed = 0

    @model_validator(mode="after")
    def _gen_steps_are_eval_steps(self):
        for step in self.eval.gen_at:
            if step not in self.train.eval_at and step % self.train.eval_every and step != self.train.iters:
                raise ValueError(f"eval.gen_at step {step} is not an evaluation step (add it to train.eval_at)")
        return self


CORPORA = ("twist", "mixed")


def stories_profile(name: str) -> dict[str, Any]:
    """The ``stories`` section of a profile (profiles.yaml)."""
    prof = profile(name)
    if "stories" not in prof:
        raise ConfigError("profile", name, "a profile with a 'stories' section")
    return prof["stories"]


def pretrain_story_config(profile_name: str = "quick", overrides: dict[str, Any] | None = None, seed: int = 0,
                          control: bool = False) -> StoriesRunConfig:
    """The pretraining (or, ``control``: the same on a corpus without Twist — "not in PT") of a profile."""
    raw = apply_overrides({**stories_profile(profile_name)["pretrain"], "seed": seed}, overrides or {})
    if control:
        raw["data"] = {**raw.get("data", {}), "exclude": ["Twist"]}
    cfg = validated(StoriesRunConfig, raw)
    # the shape checked now, with the vocabulary the tokenizer is asked for: a bad model setting is refused before
    # a run directory exists, not after the tokenizer has been trained inside one
    model_shape(cfg.model or {}, cfg.data.vocab_size, cfg.data.context)
    return cfg


def _child_config(store: RunStore, parent_ref: str, profile_name: str, stage: str, data: dict[str, Any],
                  overrides: dict[str, Any] | None) -> StoriesRunConfig:
    """A fine-tune of ``parent``: the root's data and eval settings with ``data`` on top, the profile's
    ``stage`` train/eval settings, the parent's seed, then ``overrides``."""
    parent = store.resolve(parent_ref, field="parent")
    if parent.kind not in STORY_KINDS:
        raise ConfigError("parent", parent_ref, "a stories-pretrain or stories-finetune run")
    root = validated(StoriesRunConfig, lineage_root(parent, "stories-pretrain", via=STORY_KINDS).config())
    seed = validated(StoriesRunConfig, parent.config()).seed
    return child_config(root, Parent(parent.id, seed), profile_name, stage, data, overrides)


class Parent(NamedTuple):
    """The run a story run continues: its id and its seed (the child's)."""

    id: str
    seed: int


def child_config(root: StoriesRunConfig, parent: Parent, profile_name: str, stage: str, data: dict[str, Any],
                 overrides: dict[str, Any] | None) -> StoriesRunConfig:
    """:func:`_child_config` from the root pretraining's config itself (no store): what the run graph builds, from
    its parents' configs, and its check with a placeholder parent before anything runs."""
    section = stories_profile(profile_name)[stage]
    raw = {"data": {**full_mix(root.data).model_dump(mode="json"), **data},
           "eval": {**root.eval.model_dump(mode="json"), "gen_at": [], **section.get("eval", {})},
           "train": section["train"], "parent": parent.id, "seed": parent.seed}
    return validated(StoriesRunConfig, apply_overrides(raw, overrides or {}), context=NAMES)


def delete_config(store: RunStore, parent: str, profile_name: str, protocol: str, lr: str | float,
                  overrides: dict[str, Any] | None = None) -> StoriesRunConfig:
    """Deletion: fine-tune ``parent`` on the root corpus under ``protocol`` at ``lr`` (a number, S or M)."""
    return _child_config(store, parent, profile_name, "finetune", *delete_parts(protocol, lr, overrides))


def delete_parts(protocol: str, lr: str | float,
                 overrides: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a deletion puts on top of its root's data (the protocol) and of the profile (its lr, then overrides)."""
    from wrapperlab.data.stories.protocols import protocol as check_protocol

    check_protocol(protocol)
    return {"protocol": protocol}, {"train.lr": lr, **(overrides or {})}


def reft_story_config(store: RunStore, parent: str, profile_name: str, corpus: str = "twist",
                      overrides: dict[str, Any] | None = None) -> StoriesRunConfig:
    """reFT: ``twist`` — every story has a Twist (the paper's protocol); ``mixed`` — Twist in a share
    ``mixed_twist_rate`` of truly labelled stories, so the *requested* Twist can be told from "always twist"."""
    return _child_config(store, parent, profile_name, "reft", reft_data(corpus, profile_name), overrides)


def reft_data(corpus: str, profile_name: str) -> dict[str, Any]:
    """What a reFT corpus puts on top of its root's data."""
    if corpus not in CORPORA:
        raise ConfigError("corpus", corpus, f"one of {list(CORPORA)}")
    return {"only": ["Twist"]} if corpus == "twist" else \
        {"feature_rates": {"Twist": stories_profile(profile_name)["mixed_twist_rate"]}}


def load_story_model(store: RunStore, run: Run):
    """(model, tokenizer, judge) of a finished story run: the weights are the run's, tokenizer and judge its
    pretraining root's."""
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.data.stories.tokenizer import load_tokenizer

    root = lineage_root(run, "stories-pretrain", via=STORY_KINDS)
    model = GPT(GPTConfig.model_validate(root.result()["model"]))
    load_run_weights(model, run)
    return model.eval(), load_tokenizer(root.path / "tokenizer.json"), Judge.load(root.path / "judge.json")


def _held_out(cfg: StoriesRunConfig) -> tuple[list, list]:
    """Held-out Twist stories (for the Twist loss) and prompts, half of them requesting a Twist — drawn from the
    full mix at the default rates whatever the run trains on, so every run of one corpus is measured on the same
    stories and prompts (generated records are fixed per (seed, index), so ``n_records`` only bounds the draw)."""
    generated = cfg.data.source == "generated"
    held = full_mix(cfg.data, feature_rates={}, n_records=20 * cfg.eval.n_loss if generated else cfg.data.n_records)
    twist = [r for r in records(held, "test") if "Twist" in r.has][: cfg.eval.n_loss]
    pool = list(records(full_mix(held, n_records=max(200, 8 * cfg.eval.n_prompts) if generated else
                                 cfg.data.n_records), "test"))
    half = cfg.eval.n_prompts // 2
    prompts = [r for r in pool if "Twist" in r.features][:half] + \
              [r for r in pool if "Twist" not in r.features][: cfg.eval.n_prompts - half]
    return twist, prompts


def check_real_data(cfg: StoriesRunConfig) -> None:
    """A real corpus must hold what a run measures, checked before its run dir exists: training records (after the
    exclusions and the protocol), held-out Twist stories for the Twist loss, and held-out prompts with and without a
    Twist request (and so held-out records for the judge). A small file otherwise ended in a crash after training or a
    Twist loss over no stories."""
    if cfg.data.source == "generated":
        return
    key = (cfg.data.model_dump_json(), cfg.eval.model_dump_json())
    if key in _CORPORA_CHECKED:  # every node of a reproduction asks: a corpus is read once per process
        return
    where = f"data.source ({cfg.data.source}, first {cfg.data.n_records} records per split)"
    if next(records(cfg.data), None) is None:
        raise ConfigError(where, "no training records",
                          "a corpus with training records left after its exclusions, 'only' and protocol")
    twist, prompts = _held_out(cfg)
    if not twist:
        raise ConfigError(where, "no held-out Twist story", "held-out records (every 10th) that include Twist stories")
    asked = sum("Twist" in r.features for r in prompts)
    if not 0 < asked < len(prompts):
        raise ConfigError(where, f"{asked} of {len(prompts)} held-out prompts request a Twist",
                          "held-out prompts with and without a Twist request")
    _CORPORA_CHECKED.add(key)


#: (data, eval) settings whose real corpus passed :func:`check_real_data` in this process
_CORPORA_CHECKED: set[tuple[str, str]] = set()


def _gen(model, tok, judge, cfg: StoriesRunConfig, prompts: list) -> dict[str, Any]:
    from wrapperlab.settings.stories.evaluate import Sampling, generation_scores

    sampling = Sampling(cfg.eval.samples, cfg.eval.max_new, cfg.eval.temperature, cfg.seed)
    scores = generation_scores(model, tok, judge, prompts, sampling)
    return {"gen_twist": scores["requested"], "gen_non": scores["unrequested"],
            "n_gen": scores["n_requested"] + scores["n_unrequested"]}


def _measure(model, tok, judge, cfg: StoriesRunConfig, twist: list, prompts: list) -> dict[str, Any]:
    from wrapperlab.settings.stories.evaluate import story_loss

    return {"twist_loss": story_loss(model, tok, twist), **_gen(model, tok, judge, cfg, prompts)}


def _measure_key(cfg: StoriesRunConfig) -> dict[str, Any]:
    """What a measurement depends on besides the weights: two runs with equal keys measure alike, so a
    fine-tune's "before" is its parent's "after" whenever the keys match (no second generation pass)."""
    real = cfg.data.source != "generated"  # real data: the held-out sets are drawn from the first n_records
    return {"source": cfg.data.source, "data_seed": cfg.data.seed, "n_records": cfg.data.n_records if real else None,
            "eval": cfg.eval.model_dump(mode="json", exclude={"gen_at", "judge_records"}), "seed": cfg.seed}


def _stream_and_loss(data, tok):
    """A run's batches and loss: a deletion protocol edits records (the token loss), an unlearning method
    (protocols.LOSS_PROTOCOLS) trains forget and retain windows with its own loss."""
    from wrapperlab.data.stories import protocols
    from wrapperlab.data.stories.corpus import ForgetRetainStream
    from wrapperlab.training.losses import forget_retain_loss

    if data.protocol in protocols.LOSS_PROTOCOLS:
        return ForgetRetainStream(data, tok), forget_retain_loss(protocols.GA_WEIGHT, protocols.GA_CAP)
    return TokenStream(data, tok), None


def stories_stage(cfg: StoriesRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print) -> StageResult:
    """Pretrain (``cfg.model`` set) or fine-tune (``cfg.parent`` set) a story model; see the module doc."""
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.data.stories.tokenizer import save_tokenizer
    from wrapperlab.settings.stories.evaluate import story_loss

    if (cfg.model is None) == (cfg.parent is None):
        raise ConfigError("model/parent", None, "exactly one: model (pretraining) or parent (fine-tuning)")
    kind: Literal["stories-pretrain", "stories-finetune"] = "stories-pretrain" if cfg.model else "stories-finetune"
    if cfg.parent:
        parent = store.resolve(cfg.parent, field="parent")
        if parent.kind not in STORY_KINDS or not parent.done:
            raise ConfigError("parent", cfg.parent, "a finished stories-pretrain or stories-finetune run")
        cfg = cfg.model_copy(update={"parent": parent.id})
    check_real_data(cfg)

    def compute(run: Run) -> Training:
        if kind == "stories-pretrain":
            tok = fit_tokenizer(cfg.data)
            save_tokenizer(tok, run.path / "tokenizer.json")
            judge = Judge.fit(list(records(full_mix(cfg.data, n_records=cfg.eval.judge_records))), seed=cfg.seed)
            judge.save(run.path / "judge.json")
            held = full_mix(cfg.data, feature_rates={}, n_records=max(500, cfg.eval.judge_records // 4))
            judge_accuracy = judge.accuracy(list(records(held, "test")))
            shape = model_shape(cfg.model, tok.get_vocab_size(), cfg.data.context)
            torch.manual_seed(cfg.seed)
            model = GPT(shape)
        else:
            model, tok, judge = load_story_model(store, parent)
            model.train()
            judge_accuracy = None
        say(f"{kind} into {run.path}")
        stream, loss_fn = _stream_and_loss(cfg.data, tok)
        twist, prompts = _held_out(cfg)
        before = None
        if kind == "stories-finetune":
            same = parent.result().get("measure_key") == _measure_key(cfg)
            before = parent.result()["after"] if same else _measure(model, tok, judge, cfg, twist, prompts)

        def evaluate(m, step):
            out = {"twist_loss": story_loss(m, tok, twist)}
            if step in cfg.eval.gen_at:
                out |= _gen(m, tok, judge, cfg, prompts)
            return out

        def finish(state) -> dict[str, Any]:
            save_weights(model, run.weights_path)
            return {"model": model.cfg.model_dump(), "params": model.num_params(),
                    "records": stream.n_records, "tokens": int(stream.n_tokens),
                    "before": before, "after": _measure(model, tok, judge, cfg, twist, prompts), "steps": state.step,
                    "measure_key": _measure_key(cfg), "judge_accuracy": judge_accuracy,
                    "train_seconds": state.seconds, "tokens_per_second": state.tokens_per_second,
                    "resumed_from": state.resumed_from}

        return Training(run, model, stream.stream(cfg.seed, cfg.train.batch_size), cfg, evaluate, finish, loss_fn)

    return run_stage(StageAsk(kind, cfg, compute, VERSIONS[kind]), store, runtime, say)


#: the story probes' random-init twin draws from seed + this (kept from before the twin moved to analysis/rng.py)
TWIN_SEED_OFFSET = 1_000_003


def probe_story_run(store: RunStore, ref: str, profile_name: str = "quick", designs: Sequence[str] | None = None,
                    seed: int = 0, say: Say = print):
    """Probe a story run's model (and its random-init twin) in every design on held-out records of its root
    corpus (full mix, default rates); stored under the run and reused when asked again."""
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.settings.stories.probes import DESIGNS, probe_story_model

    run = store.resolve(ref)
    if run.kind not in STORY_KINDS:
        raise ConfigError("run", ref, "a stories-pretrain or stories-finetune run")
    settings = stories_profile(profile_name)["probe"]
    designs = tuple(designs or DESIGNS)
    cfg = ProbeConfig(iters=settings["iters"])
    key = {"probe": cfg.model_dump(mode="json"), "designs": list(designs), "n_records": settings["n_records"],
           "seed": seed}

    def compute() -> dict[str, Any]:
        model, tok, _ = load_story_model(store, run)
        root = validated(StoriesRunConfig, lineage_root(run, "stories-pretrain", via=STORY_KINDS).config())
        held = list(records(full_mix(root.data, feature_rates={}, n_records=settings["n_records"]), "test"))
        say(f"probing {run.id}: {len(held)} held-out records, designs {', '.join(designs)}")
        return probe_story_model(model, random_init_twin(model, TWIN_SEED_OFFSET + seed), held, tok, cfg, designs, seed).as_dict()

    return cached(run, "story-probe", key, compute, VERSIONS["story-probe"])
