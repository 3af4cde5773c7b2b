"""A capability a user can write without code: JSON lines of ``{"prompt": ..., "answer": ...}``.

The audit (report/audit.py) needs three things from it, all drawn from the file and a seed:

* an **attack** split (what relearning trains on) and a **held-out** split (where recovery is measured): the
  relearning signature asks whether training on some of a capability's examples brings back others it never saw;
* a **never-known** twin: the same prompts with their answers shuffled among records (no record keeps its own
  answer), a capability no model can have had. Relearning it measures what training on the attack split teaches
  by itself (format, answer vocabulary), which is the control the real recovery is compared with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wrapperlab.errors import ConfigError, UserError

#: fewer records than this cannot be split into attack and held-out parts big enough to measure anything
MIN_RECORDS = 8


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    line: int = 0  # where it stands in its file (errors name it)


@dataclass(frozen=True)
class Capability:
    name: str
    examples: tuple[Example, ...]

    def split(self, seed: int, attack_share: float = 0.5) -> tuple[list[int], list[int]]:
        """Indices of the (attack, held-out) examples: a seeded permutation cut at ``attack_share`` (the same for
        the capability and its never-known twin, whose examples stand in the same order)."""
        if not 0 < attack_share < 1:
            raise ConfigError("attack_share", attack_share, "a fraction strictly between 0 and 1")
        order = np.random.default_rng([seed, 0]).permutation(len(self.examples)).tolist()
        cut = min(max(1, round(attack_share * len(order))), len(order) - 1)
        return order[:cut], order[cut:]

    def never_known(self, seed: int) -> "Capability":
        """The same prompts, each with another record's answer (a seeded derangement: a cyclic shift of a random
        permutation, so no record keeps its own answer)."""
        n = len(self.examples)
        order = np.random.default_rng([seed, 1]).permutation(n)
        answer_of = {int(order[i]): self.examples[int(order[(i + 1) % n])].answer for i in range(n)}
        return Capability(f"{self.name} (answers shuffled)",
                          tuple(Example(e.prompt, answer_of[i], e.line) for i, e in enumerate(self.examples)))


def load_capability(path: str | Path) -> Capability:
    """Read and check a capability file; a bad line is one error naming the file, the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such capability file (JSON lines of {{\"prompt\": ..., \"answer\": ...}})")
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ConfigError(where, line[:60], f"a JSON object ({e.msg})") from None
        if not isinstance(record, dict):
            raise ConfigError(where, record, "a JSON object with prompt and answer")
        for field in ("prompt", "answer"):
            value = record.get(field)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: {field}", value, "a non-empty string")
        examples.append(Example(record["prompt"], record["answer"], number))
    if len(examples) < MIN_RECORDS:
        raise ConfigError(str(path), f"{len(examples)} records", f"at least {MIN_RECORDS} (attack and held-out splits)")
    if len({e.answer for e in examples}) < 2:
        raise ConfigError(str(path), "one distinct answer", "at least two (the never-known control shuffles answers)")
    return Capability(str(path), tuple(examples))
