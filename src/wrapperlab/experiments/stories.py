"""Story language-model stages over the run store: pretrain, delete (fine-tune under a protocol), reFT.

* ``stories-pretrain``: trains the shared tokenizer (saved as the run's ``tokenizer.json``), a judge on labelled
  records (``judge.json``) and the model; the "not in pretraining" control is the same stage with
  ``data.exclude = [Twist]`` (same tokenizer, same judge: both are fitted on the full feature mix).
* ``stories-finetune``: continues a run on records under a deletion protocol (``data.protocol``), or — for
  reFT — on Twist stories (``data.only = [Twist]``) or a Twist-rich mix (``data.feature_rates``).

Every stage logs the loss on held-out Twist stories (story tokens only) during training and writes, before
and after, that loss and the generation scores (judged Twist rate for prompts that request it and for prompts
that do not). Runs are content-addressed and resumable like every other run.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from wrapperlab.data.stories.corpus import StoriesDataConfig, TokenStream, fit_tokenizer, full_mix, records
from wrapperlab.errors import ConfigError
from wrapperlab.experiments.pipeline import Say, StageResult, _stage, _train, load_run_weights
from wrapperlab.experiments.store import Run, RunStore, lineage_root
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.training.checkpoint import save_weights
from wrapperlab.training.config import Runtime, TrainConfig

STORY_KINDS = ("stories-pretrain", "stories-finetune")


class StoriesEvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    n_loss: int = Field(200, gt=0, description="held-out Twist stories for the Twist loss")
    n_prompts: int = Field(32, gt=1, description="held-out instructions prompting generation, half requesting a Twist")
    samples: int = Field(4, gt=0, description="stories generated per prompt")
    max_new: int = Field(160, gt=0)
    temperature: float = Field(1.0, gt=0)
    judge_records: int = Field(5000, gt=0)


class StoriesRunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    data: StoriesDataConfig
    train: TrainConfig
    eval: StoriesEvalConfig = StoriesEvalConfig()
    model: dict[str, Any] | None = Field(None, description="pretraining: GPT settings (preset + overrides)")
    parent: str | None = Field(None, description="fine-tuning: the run continued")
    seed: int = Field(0, ge=0)


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
    """Held-out Twist stories (for the Twist loss) and prompts, half of them requesting a Twist."""
    held = full_mix(cfg.data)
    twist = [r for r in records(held, "test") if "Twist" in r.has][: cfg.eval.n_loss]
    pool = list(records(full_mix(cfg.data, n_records=max(200, 8 * cfg.eval.n_prompts)), "test"))
    half = cfg.eval.n_prompts // 2
    prompts = [r for r in pool if "Twist" in r.features][:half] + \
              [r for r in pool if "Twist" not in r.features][: cfg.eval.n_prompts - half]
    return twist, prompts


def _measure(model, tok, judge, cfg: StoriesRunConfig, twist: list, prompts: list) -> dict[str, Any]:
    from wrapperlab.analysis.story_eval import generation_scores, story_loss

    scores = generation_scores(model, tok, judge, prompts, samples=cfg.eval.samples, max_new=cfg.eval.max_new,
                               temperature=cfg.eval.temperature, seed=cfg.seed)
    return {"twist_loss": story_loss(model, tok, twist), "gen_twist": scores["requested"],
            "gen_non": scores["unrequested"], "n_gen": scores["n_requested"] + scores["n_unrequested"]}


def stories_stage(cfg: StoriesRunConfig, store: RunStore, runtime: Runtime = Runtime(), say: Say = print) -> StageResult:
    """Pretrain (``cfg.model`` set) or fine-tune (``cfg.parent`` set) a story model; see the module doc."""
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.analysis.story_eval import story_loss
    from wrapperlab.data.stories.tokenizer import save_tokenizer

    if (cfg.model is None) == (cfg.parent is None):
        raise ConfigError("model/parent", None, "exactly one: model (pretraining) or parent (fine-tuning)")
    kind: Literal["stories-pretrain", "stories-finetune"] = "stories-pretrain" if cfg.model else "stories-finetune"
    if cfg.parent:
        parent = store.resolve(cfg.parent, field="parent")
        if parent.kind not in STORY_KINDS or not parent.done:
            raise ConfigError("parent", cfg.parent, "a finished stories-pretrain or stories-finetune run")
        cfg = cfg.model_copy(update={"parent": parent.id})

    def compute(run: Run) -> dict[str, Any]:
        if kind == "stories-pretrain":
            tok = fit_tokenizer(cfg.data)
            save_tokenizer(tok, run.path / "tokenizer.json")
            judge = Judge.fit(list(records(full_mix(cfg.data, n_records=cfg.eval.judge_records))), seed=cfg.seed)
            judge.save(run.path / "judge.json")
            settings = dict(cfg.model)
            preset = settings.pop("preset", None)
            shape = GPTConfig.preset(preset, vocab_size=tok.get_vocab_size(), n_ctx=cfg.data.context, **settings) \
                if preset else GPTConfig(vocab_size=tok.get_vocab_size(), n_ctx=cfg.data.context, **settings)
            torch.manual_seed(cfg.seed)
            model = GPT(shape)
        else:
            model, tok, judge = load_story_model(store, parent)
            model.train()
        say(f"{kind} into {run.path}")
        stream = TokenStream(cfg.data, tok)
        twist, prompts = _held_out(cfg)
        before = _measure(model, tok, judge, cfg, twist, prompts) if kind == "stories-finetune" else None

        def evaluate(m, step):
            out = {"twist_loss": story_loss(m, tok, twist)}
            m.train()
            return out

        state = _train(run, model, stream.stream(cfg.seed, cfg.train.batch_size), cfg, runtime, evaluate)
        save_weights(model, run.weights_path)
        return {"model": model.cfg.model_dump(), "records": stream.n_records, "tokens": int(len(stream.tokens)),
                "before": before, "after": _measure(model, tok, judge, cfg, twist, prompts), "steps": state.step,
                "train_seconds": state.seconds, "tokens_per_second": state.tokens_per_second,
                "resumed_from": state.resumed_from}

    return _stage(kind, cfg, store, runtime, say, compute)
