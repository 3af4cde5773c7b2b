"""Token streams for story language models: records -> one ``<|endoftext|>``-separated token array -> windows.

A training batch is ``batch_size`` windows of ``context + 1`` tokens cut at positions drawn from ``(seed, step)``
only, so a resumed run sees exactly the batches the uninterrupted run would have (as for the PCFG data). Windows
start at a record's first token by default: with windows cut anywhere, the end of a story (where the Twist is
written) mostly lands in a window that no longer holds its instruction, and a 2-block model trained 1,000 steps
wrote Twists for 31 % of prompts asking for one and 25 % of prompts not asking (it learned the base rate); with
record-aligned windows the same model and steps gave 95 % and 2 %.
The tokenizer is trained on its own corpus (``tokenizer_records`` generated records with every feature), never
on a run's filtered or protocol-edited records, so the pretrained model, the "not in pretraining" control and
every fine-tune share one vocabulary and their losses compare.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Literal

import numpy as np
from pydantic import Field, field_validator

from wrapperlab.data.stories.generator import StoryGenerator
from wrapperlab.data.stories.records import FEATURES, StoryRecord, format_record, header
from wrapperlab.schema import Config


class StoriesDataConfig(Config):
    """Where the records come from and how they are tokenised."""

    source: str = Field("generated", description="'generated', or a local TinyStories .txt/.json file or directory")
    n_records: int = Field(100_000, gt=0, description="records used (generated: drawn; real: the first n)")
    seed: int = Field(0, ge=0, description="generated corpus seed (the run's seed draws the windows)")
    feature_rates: dict[str, float] = Field(default_factory=dict, description="generated: P(feature), default 0.25")
    exclude: tuple[str, ...] = Field((), description="features removed from the corpus (the 'not in PT' control)")
    protocol: Literal["filter", "filter_mix_match", "filter_randomise", "refusal", "grad_ascent"] | None = None
    only: tuple[str, ...] = Field((), description="keep only stories that have all of these (reFT: Twist)")
    vocab_size: int = Field(1024, ge=300)
    tokenizer_records: int = Field(20_000, gt=0)
    context: int = Field(256, gt=8)
    windows: Literal["record", "random"] = Field(
        "record", description="where training windows start: at a record's first token, so the instruction is in "
                              "the window that writes the story (record), or anywhere (random: plain LM packing)")

    @field_validator("exclude", "only")
    @classmethod
    def _features(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for f in v:
            if f not in FEATURES:
                raise ValueError(f"unknown feature {f!r} (known: {', '.join(FEATURES)})")
        return v

    @field_validator("feature_rates")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        for f, p in v.items():
            if f not in FEATURES or not 0.0 <= p <= 1.0:
                raise ValueError(f"feature_rates[{f!r}] = {p}: a feature of {list(FEATURES)} with 0 <= rate <= 1")
        return v


def records(cfg: StoriesDataConfig, split: Literal["train", "test"] = "train") -> Iterator[StoryRecord]:
    """The configured records: generated (test: another seed stream) or read from disk (test: every 10th
    record; train: the others; ``n_records`` of the split), then the exclusions, ``only`` and the deletion
    protocol."""
    from wrapperlab.data.stories import protocols

    if cfg.source == "generated":
        seed = cfg.seed if split == "train" else 10_000 + cfg.seed
        gen = StoryGenerator(seed, cfg.feature_rates, exclude=cfg.exclude)
        out: Iterable[StoryRecord] = gen.records(cfg.n_records)
    else:
        from wrapperlab.data.stories.loader import read_records

        # real data: every 10th record is held out, the rest train, so the splits never share a story
        part = 9 if split == "test" else None
        kept = (r for i, r in enumerate(read_records(cfg.source)) if (i % 10 == 9) == (part == 9))
        # exclusions first: the "not in PT" control trains on as many records as its twin, not n_records minus
        # the excluded ones
        out = itertools.islice((r for r in kept if not set(r.has) & set(cfg.exclude)), cfg.n_records)
    if cfg.only:
        out = (r for r in out if set(cfg.only) <= set(r.has))
    if cfg.protocol:
        out = protocols.protocol(cfg.protocol)(out)
    return iter(out)


def full_mix(cfg: StoriesDataConfig, **update: Any) -> StoriesDataConfig:
    """``cfg`` without its exclusions, ``only`` and protocol: what the tokenizer, the judge and the held-out
    sets are drawn from, so that every run of one corpus shares them."""
    return cfg.model_copy(update={"exclude": (), "only": (), "protocol": None, **update})


def fit_tokenizer(cfg: StoriesDataConfig):
    """The shared tokenizer: trained on ``tokenizer_records`` records of the full feature mix at the default
    feature rates (see module doc)."""
    from wrapperlab.data.stories.tokenizer import train_tokenizer

    mix = full_mix(cfg, n_records=cfg.tokenizer_records, feature_rates={})
    return train_tokenizer((format_record(r) for r in records(mix)), cfg.vocab_size)


@dataclass
class StoryBatch:
    tokens: np.ndarray  # (b, context + 1)
    answer_pos: np.ndarray  # unused by the sequence loss; zeros, so the loop's batch protocol holds


class TokenStream:
    """All records of a config as one token array; ``batch_at(step)`` for the training loop."""

    def __init__(self, cfg: StoriesDataConfig, tokenizer, split: Literal["train", "test"] = "train"):
        self.cfg, self.tok = cfg, tokenizer
        end = tokenizer.token_to_id("<|endoftext|>")
        texts = [format_record(r) for r in records(cfg, split)]
        if not texts:
            raise ValueError("no records left after the exclusions, 'only' and the protocol")
        ids = [np.asarray(e.ids + [end], dtype=np.int64) for e in tokenizer.encode_batch(texts)]
        self.tokens = np.concatenate(ids)
        self.n_records = len(texts)
        if len(self.tokens) <= cfg.context + 1:
            raise ValueError(f"{len(self.tokens)} tokens: fewer than one window of {cfg.context + 1}")
        ends = np.cumsum([len(i) for i in ids])
        starts = np.concatenate([[0], ends[:-1]])
        self.record_starts = starts[starts < len(self.tokens) - cfg.context - 1]

    def batch_at(self, step: int, batch_size: int, seed: int) -> StoryBatch:
        rng = np.random.default_rng([seed, step, 0x5707])
        if self.cfg.windows == "record":  # a record (median ~125 tokens here) fits its window, header included
            starts = self.record_starts[rng.integers(0, len(self.record_starts), size=batch_size)]
        else:
            starts = rng.integers(0, len(self.tokens) - self.cfg.context - 1, size=batch_size)
        windows = self.tokens[starts[:, None] + np.arange(self.cfg.context + 1)]
        return StoryBatch(windows, np.zeros(batch_size, dtype=np.int64))

    def stream(self, seed: int, batch_size: int):
        return lambda step: self.batch_at(step, batch_size, seed)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


@dataclass
class ForgetRetainBatch(StoryBatch):
    n_forget: int = 0  # the first rows are forget windows, the rest retain windows


class ForgetRetainStream:
    """An unlearning method's data (protocols.LOSS_PROTOCOLS): each batch half forget windows (records with every
    feature of ``FORGET_ONLY``), half retain windows (the records under ``RETAIN_PROTOCOL``), each half drawn from its
    own token stream as a deletion's batch would be."""

    def __init__(self, cfg: StoriesDataConfig, tokenizer):
        from wrapperlab.data.stories.protocols import FORGET_ONLY, RETAIN_PROTOCOL
        from wrapperlab.errors import ConfigError

        try:
            self.forget = TokenStream(cfg.model_copy(update={"protocol": None, "only": FORGET_ONLY}), tokenizer)
            self.retain = TokenStream(cfg.model_copy(update={"protocol": RETAIN_PROTOCOL}), tokenizer)
        except ValueError as e:  # e.g. a corpus (or exclusions) without a story to forget
            raise ConfigError("data.protocol", cfg.protocol, f"a corpus with stories to forget and to retain ({e})") from None
        self.n_records = self.forget.n_records + self.retain.n_records
        self.n_tokens = self.forget.n_tokens + self.retain.n_tokens

    def batch_at(self, step: int, batch_size: int, seed: int) -> ForgetRetainBatch:
        half = max(1, batch_size // 2)
        forget = self.forget.batch_at(step, half, seed)
        retain = self.retain.batch_at(step, batch_size - half, seed + 1)  # another draw from another stream
        tokens = np.concatenate([forget.tokens, retain.tokens])
        return ForgetRetainBatch(tokens, np.zeros(len(tokens), dtype=np.int64), half)

    def stream(self, seed: int, batch_size: int):
        return lambda step: self.batch_at(step, batch_size, seed)


def prompt_and_story(record: StoryRecord, tokenizer) -> tuple[list[int], list[int]]:
    """Token ids of the instruction (ending with ``Story:``) and of the story that follows it — for losses on
    story tokens only and for prompting generation with a record's instruction."""
    prompt = tokenizer.encode(header(record).rstrip(" ")).ids  # the space belongs to the story's first token
    full = tokenizer.encode(format_record(record)).ids
    if full[:len(prompt)] != prompt:
        raise ValueError(f"the instruction does not tokenise as a prefix of its record: {header(record)[-40:]!r}")
    return prompt, full[len(prompt):]
