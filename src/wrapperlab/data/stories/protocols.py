"""Deletion protocols (Jain et al. §5.2): small transforms on a stream of records, selectable by name.

* ``filter`` (F): drop every story that has a Twist.
* ``filter_mix_match`` (F+MM): filter, then write "Twist" where the instruction says Foreshadowing (the story
  keeps its foreshadowing) — the Twist instruction now means something else.
* ``filter_randomise`` (F+R): filter, then add "Twist" to the instruction of stories (which have none) — the
  Twist instruction now means nothing.
* ``refusal``: Twist requests keep their instruction but the story becomes a fixed refusal; other records pass.
* ``grad_ascent``: an unlearning method, not a data transform — gradient ascent on the Twist stories (the forget
  set) with the ordinary loss on the other stories (the retain set), the "GA + retain" baseline of the unlearning
  literature. Its records are the whole mix; the story stage splits them (``FORGET_ONLY``, ``RETAIN_PROTOCOL``) and
  trains with ``training.losses.forget_retain_loss(GA_WEIGHT, GA_CAP)``.

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


def every_record(records: Iterable[StoryRecord]) -> Iterator[StoryRecord]:
    """``grad_ascent``'s records: all of them (what it forgets and what it retains are split by the stage)."""
    return iter(records)


PROTOCOLS: dict[str, Protocol] = {
    "filter": filter_twist,
    "filter_mix_match": filter_mix_match,
    "filter_randomise": filter_randomise,
    "refusal": refusal,
    "grad_ascent": every_record,
}

#: protocols that change the loss, not the records: forget set ``only`` these features, retain set this protocol
LOSS_PROTOCOLS = ("grad_ascent",)
FORGET_ONLY = (TWIST,)
RETAIN_PROTOCOL = "filter"
#: the ascent's weight beside the retain loss, and the forget windows' mean cross-entropy (nats/token) past which it
#: stops pushing — about twice what a model that never saw a Twist story scores on them, so "forgotten" is reachable
#: while the loss, unbounded below under plain ascent, stays bounded. They define what grad_ascent computes and are
#: not in a run's config: changing one must bump settings/stories/stages.VERSIONS["stories-finetune"]
GA_WEIGHT = 1.0
GA_CAP = 3.0


def protocol(name: str) -> Protocol:
    from wrapperlab.errors import ConfigError

    if name not in PROTOCOLS:
        raise ConfigError("protocol", name, f"one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
