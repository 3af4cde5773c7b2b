"""Where a node's wall time goes: named sections (data, train, eval, io, analysis) summed per process.

At the bottom of the house (beside files.py) because the training loop, the stages and the runner all mark their
sections here. Time is *exclusive*: a section opened inside another pauses the outer one, so the parts of a node
add up to its wall time and nothing is counted twice. Outside :func:`collect` the marks cost two clock reads.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Iterable, Iterator

#: the sections a node's time is split into (``other``: whatever no section claimed — model building, setup)
SECTIONS = ("data", "train", "eval", "io", "analysis")

_totals: dict[str, float] | None = None
_stack: list[list] = []  # [name, started]: the innermost open section is the one whose clock runs


@contextmanager
def section(name: str) -> Iterator[None]:
    """Count the time inside the block to ``name`` (minus nested sections) while a :func:`collect` is open."""
    if _totals is None:
        yield
        return
    now = time.perf_counter()
    if _stack:
        outer = _stack[-1]
        _totals[outer[0]] = _totals.get(outer[0], 0.0) + now - outer[1]
    _stack.append([name, now])
    try:
        yield
    finally:
        end = time.perf_counter()
        inner = _stack.pop()
        if _totals is not None:
            _totals[inner[0]] = _totals.get(inner[0], 0.0) + end - inner[1]
        if _stack:
            _stack[-1][1] = end


@contextmanager
def collect() -> Iterator[dict[str, float]]:
    """Collect the sections entered in the block into the yielded dict (seconds per section, plus ``other``
    for the rest of the block's wall time), filled in when the block ends."""
    global _totals
    outer, split = _totals, {}
    _totals = {}
    t0 = time.perf_counter()
    try:
        with section("other"):
            yield split
    finally:
        wall = time.perf_counter() - t0
        split.update({k: round(v, 3) for k, v in _totals.items()})
        split["wall"] = round(wall, 3)
        _totals = outer


#: the columns of a per-stage time table: handing a node to a worker, the sections, the rest
COLUMNS = ("dispatch", *SECTIONS, "other")


def per_stage(nodes: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Seconds per stage summed over the *computed* nodes (``{"stage", "seconds", "split", "reused"}`` each, as a
    reproduction stores them): ``nodes``, ``wall`` (node time plus dispatch), each of :data:`COLUMNS`, and
    ``wall/train`` where the stage trains — what ``reproduce --profile-time`` prints and the docs publish."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for node in nodes:
        split = node.get("split") or {}
        if node.get("reused") or not split:
            continue
        row = out[node["stage"]]
        row["nodes"] += 1
        row["wall"] += node.get("seconds", 0.0) + split.get("dispatch", 0.0)
        for name in COLUMNS:
            row[name] += split.get(name, 0.0)
    for row in out.values():
        if row["train"]:
            row["wall/train"] = row["wall"] / row["train"]
    return {stage: dict(row) for stage, row in out.items()}
