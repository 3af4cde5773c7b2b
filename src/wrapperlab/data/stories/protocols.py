"""Deletion protocols (Jain et al. §5.2): small transforms on a stream of records, selectable by name.

* ``filter`` (F): drop every story that has a Twist.
* ``filter_mix_match`` (F+MM): filter, then write "Twist" where the instruction says Foreshadowing (the story
  keeps its foreshadowing) — the Twist instruction now means something else.
* ``filter_randomise`` (F+R): filter, then add "Twist" to the instruction of stories (which have none) — the
  Twist instruction now means nothing.
* ``refusal``: Twist requests keep their instruction but the story becomes a fixed refusal; other records pass.

Each transform only edits instructions (``features``); ``true_features`` keeps what the story really has.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np

from wrapperlab.data.stories.records import StoryRecord

TWIST = "Twist"
Protocol = Callable[[Iterable[StoryRecord]], Iterator[StoryRecord]]


def filter_twist(records: Iterable[StoryRecord]) -> Iterator[StoryRecord]:
    return (r for r in records if TWIST not in r.has and TWIST not in r.features)


def filter_mix_match(records: Iterable[StoryRecord], source: str = "Foreshadowing") -> Iterator[StoryRecord]:
    for r in filter_twist(records):
        yield r.with_features(tuple(TWIST if f == source else f for f in r.features)) if source in r.features else r


def filter_randomise(records: Iterable[StoryRecord], rate: float = 1.0, seed: int = 0) -> Iterator[StoryRecord]:
    """Add Twist to the instruction of a share ``rate`` of the (filtered) stories; ``rate = 1`` (all) is the
    paper's wording, a smaller share keeps unmarked stories in the mix."""
    rng = np.random.default_rng([seed, 7])
    for r in filter_twist(records):
        yield r.with_features(r.features + (TWIST,)) if rng.random() < rate else r


def refusal(records: Iterable[StoryRecord], text: str | None = None) -> Iterator[StoryRecord]:
    from dataclasses import replace

    from wrapperlab.data.stories.generator import templates

    answer = text or templates()["refusal"]
    for r in records:
        yield replace(r, story=answer, true_features=()) if TWIST in r.features else r


PROTOCOLS: dict[str, Protocol] = {
    "filter": filter_twist,
    "filter_mix_match": filter_mix_match,
    "filter_randomise": filter_randomise,
    "refusal": refusal,
}


def protocol(name: str) -> Protocol:
    from wrapperlab.errors import ConfigError

    if name not in PROTOCOLS:
        raise ConfigError("protocol", name, f"one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
