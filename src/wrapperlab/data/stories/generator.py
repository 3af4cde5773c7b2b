"""Procedural TinyStories-Instruct-style stories with known features (the project's own corpus).

Why procedural: nothing may be downloaded here, and a generated record's true features are known exactly, which
the judge's training labels, the deletion protocols and the probes all need. Each feature is realised by several
templates with slots and, for Foreshadowing and Conflict, by sentences at two places in the story, so a model has
to learn a pattern. Stories: an opening, 2–4 body sentences (one uses the required words), the features' sentences
where they belong (Twist right before the ending), and a good or — with BadEnding — a bad ending.

Determinism: record ``i`` of seed ``s`` depends only on ``(s, i)`` (its own ``numpy`` generator), so a corpus can be
generated in shards, in any order, and the same seed always gives the same text.
"""

from __future__ import annotations

import re
from functools import cached_property
from importlib import resources
from typing import Any, Iterator

import numpy as np
import yaml

from wrapperlab.data.stories.records import FEATURES, HEADERS, StoryRecord

_FIELD = re.compile(r"\{(\w+)\}")


def templates() -> dict[str, Any]:
    return yaml.safe_load(resources.files("wrapperlab.data.stories").joinpath("templates.yaml").read_text())


class StoryGenerator:
    """``records(n, start)``: records ``start .. start + n - 1`` of this seed.

    ``feature_rates``: the probability that a story has each feature (independently; at most ``max_features``
    are kept). ``exclude``: features never generated (the "not in pretraining" control corpus)."""

    def __init__(self, seed: int = 0, feature_rates: dict[str, float] | None = None, max_features: int = 3,
                 exclude: tuple[str, ...] = ()):
        rates = {f: 0.25 for f in FEATURES} | (feature_rates or {})
        unknown = [f for f in [*rates, *exclude] if f not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r} (known: {', '.join(FEATURES)})")
        self.seed, self.max_features = seed, max_features
        self.rates = {f: (0.0 if f in exclude else float(rates[f])) for f in FEATURES}

    @cached_property
    def t(self) -> dict[str, Any]:
        return templates()

    def records(self, n: int, start: int = 0) -> Iterator[StoryRecord]:
        for i in range(start, start + n):
            yield self.record(i)

    def record(self, index: int) -> StoryRecord:
        rng = np.random.default_rng([self.seed, index])
        t = self.t
        pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
        features = [f for f in FEATURES if rng.random() < self.rates[f]]
        if len(features) > self.max_features:
            features = [features[i] for i in sorted(rng.choice(len(features), self.max_features, replace=False))]
        words = [pick(t["words"][role]) for role in ("noun", "verb", "adjective")]
        fill = {k: pick(v) for k, v in t["slots"].items()} | {f"word{i + 1}": w for i, w in enumerate(words)}
        if fill["friend"] == fill["name"]:
            fill["friend"] = t["slots"]["friend"][0]

        def say(template: str) -> str:
            text = _FIELD.sub(lambda m: str(fill[m.group(1)]), template)
            return text[0].upper() + text[1:]

        f = t["features"]
        body_pool = list(t["body"])
        word_lines = [b for b in body_pool if all(f"{{word{i}}}" in b for i in (1, 2, 3))]  # uses all three
        body = [pick(word_lines)] + [body_pool[i] for i in rng.choice(len(body_pool), int(rng.integers(1, 4)), replace=False)
                                     if body_pool[i] not in word_lines]
        rng.shuffle(body)
        sentences = [say(pick(t["opening"]))]
        if "Foreshadowing" in features:
            sentences.append(say(pick(f["Foreshadowing"]["hint"])))
        sentences += [say(b) for b in body]
        if "Dialogue" in features:
            k = int(rng.integers(2, 4))
            sentences[2:2] = [say(f["Dialogue"]["line"][i]) for i in sorted(rng.choice(len(f["Dialogue"]["line"]), k, replace=False))]
        if "Conflict" in features:
            sentences += [say(pick(f["Conflict"]["struggle"])), say(pick(f["Conflict"]["resolve"]))]
        if "Foreshadowing" in features:
            sentences.append(say(pick(f["Foreshadowing"]["payoff"])))
        twist_at = None
        if "Twist" in features:
            twist_at = len(" ".join(sentences)) + 1
            sentences += [say(pick(f["Twist"]["surprise"])), say(pick(f["Twist"]["reveal"]))]
        sentences.append(say(pick(t["ending_bad"] if "BadEnding" in features else t["ending_good"])))
        if "MoralValue" in features:
            sentences.append(say(pick(f["MoralValue"]["lesson"])))
        story = " ".join(sentences)
        order = list(HEADERS)
        rng.shuffle(order)
        return StoryRecord(
            story=story, features=tuple(features), words=tuple(words), summary=say(pick(t["summary"])),
            random_sentence=sentences[int(rng.integers(len(sentences)))], true_features=tuple(features),
            header_order=tuple(order), extra={"twist_at": twist_at},
        )
