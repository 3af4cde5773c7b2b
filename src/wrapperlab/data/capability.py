"""A capability a user can write without code, in the two forms the field keeps: records of a prompt and its answer
(``{"prompt": ..., "answer": ...}``), or multiple-choice records (a question, its choices, the index of the right
one: the WMDP / MMLU form the unlearning papers score), in any file data/records.py reads.

The audit (audit/) needs three things from it, all drawn from the file and a seed:

* an **attack** split (what relearning trains on) and a **held-out** split (where recovery is measured): the
  relearning signature asks whether training on some of a capability's examples brings back others it never saw;
* a **never-known** twin, a capability no model can have had: the same prompts with their answers shuffled among
  records (no record keeps its own), or, for multiple choice, each question answered by another of its own choices.
  Relearning it measures what training on the attack split teaches by itself (format, answer vocabulary, the
  letters), which is the control the real recovery is compared with.

A multiple-choice record becomes the prompt the papers score::

    {question}
    A. {choice 0}
    B. {choice 1}
    ...
    Answer:

answered by its letter; audit/encode.py scores the letter's log-probability, and accuracy is whether the right
letter is the likeliest of the record's letters.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from wrapperlab.data.records import read_records
from wrapperlab.errors import ConfigError, UserError
from wrapperlab.schema import Config

#: fewer records than this cannot be split into attack and held-out parts big enough to measure anything
MIN_RECORDS = 8
LETTERS = string.ascii_uppercase


class CapabilityFields(Config):
    """Where a record keeps what the audit reads: the field names of the two forms (a file whose first record has
    the ``choices`` field is multiple choice), and the split of a ``datasets`` directory holding several."""

    prompt: str = Field("prompt", min_length=1)
    answer: str = Field("answer", min_length=1, description="the answer text, or the right choice's index "
                                                            "(0-based) or letter for multiple choice")
    question: str = Field("question", min_length=1)
    choices: str = Field("choices", min_length=1, description="a list field, or several columns named with "
                                                              "commas (CSV: A,B,C,D)")
    split: str | None = None


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    line: int = 0  # where it stands in its file (errors name it)
    letters: tuple[str, ...] = ()  # multiple choice: the letters of its choices (``answer`` is one of them)


@dataclass(frozen=True)
class Capability:
    name: str
    examples: tuple[Example, ...]

    @property
    def multiple_choice(self) -> bool:
        return bool(self.examples and self.examples[0].letters)

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
        permutation, so no record keeps its own answer); for multiple choice, each with a seeded other letter of its
        own (shuffling letters among records would leave a quarter of four-choice records right)."""
        if self.multiple_choice:
            rng = np.random.default_rng([seed, 1])
            wrong = [[x for x in e.letters if x != e.answer] for e in self.examples]
            return Capability(f"{self.name} (wrong letters)",
                              tuple(Example(e.prompt, w[int(rng.integers(len(w)))], e.line, e.letters)
                                    for e, w in zip(self.examples, wrong)))
        n = len(self.examples)
        order = np.random.default_rng([seed, 1]).permutation(n)
        answer_of = {int(order[i]): self.examples[int(order[(i + 1) % n])].answer for i in range(n)}
        return Capability(f"{self.name} (answers shuffled)",
                          tuple(Example(e.prompt, answer_of[i], e.line) for i, e in enumerate(self.examples)))


def _text_field(record: dict, field: str, where: str, option: str) -> str:
    value = record.get(field)
    if isinstance(value, str) and value:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate ("\ud800" in JSON): no tokenizer takes it
            raise ConfigError(f"{where}: {field}", f"{value!r:.60}", "text of valid Unicode characters") from None
        return value
    got = "missing" if field not in record else value
    raise ConfigError(f"{where}: {field}", got, f"a non-empty string (--{option}-field names another field)")


def _choices(record: dict, fields: CapabilityFields, where: str) -> list[str]:
    columns = [c.strip() for c in fields.choices.split(",")]
    if len(columns) > 1:
        values = [record.get(c) for c in columns]
    else:
        values = record.get(columns[0])
        if isinstance(values, str) and values.startswith("["):  # a list kept as JSON text (a CSV cell)
            try:
                values = json.loads(values)
            except json.JSONDecodeError:
                pass
    if hasattr(values, "tolist"):  # a numpy array from Parquet / datasets
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or not 2 <= len(values) <= len(LETTERS) \
            or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(f"{where}: {fields.choices}", values if not isinstance(values, list) else f"{values!r:.80}",
                          f"2 to {len(LETTERS)} non-empty strings (--choices-field names another field)")
    return list(values)


def _right(value: Any, n: int, where: str, field: str) -> int:
    """The right choice's index from an index (0-based, maybe as text) or a letter."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    elif isinstance(value, str) and len(value.strip()) == 1 and value.strip().upper() in LETTERS:
        value = LETTERS.index(value.strip().upper())
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < n:
        raise ConfigError(f"{where}: {field}", value, f"the right choice: an index 0..{n - 1} or a letter "
                                                      f"A..{LETTERS[n - 1]}")
    return int(value)


def multiple_choice_prompt(question: str, choices: list[str]) -> str:
    listed = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
    return f"{question}\n{listed}\nAnswer:"


def _example(record: Any, fields: CapabilityFields, where: str, line: int, choice: bool) -> Example:
    if not isinstance(record, dict):
        raise ConfigError(where, f"{record!r:.60}", "a record with named fields (a JSON object)")
    if not choice:
        return Example(_text_field(record, fields.prompt, where, "prompt"),
                       _text_field(record, fields.answer, where, "answer"), line)
    choices = _choices(record, fields, where)
    right = _right(record.get(fields.answer, "missing"), len(choices), where, fields.answer)
    letters = tuple(LETTERS[:len(choices)])
    return Example(multiple_choice_prompt(_text_field(record, fields.question, where, "question"), choices),
                   letters[right], line, letters)


def _is_choice(record: Any, fields: CapabilityFields) -> bool:
    columns = [c.strip() for c in fields.choices.split(",")]
    return isinstance(record, dict) and all(c in record for c in columns) and fields.prompt not in record


def load_capability(path: str | Path, fields: CapabilityFields = CapabilityFields()) -> Capability:
    """Read and check a capability (JSON lines, CSV, Parquet, or a ``datasets`` directory: data/records.py); a bad
    record is one error naming the file, the line or row, and the field."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such capability file (JSON lines of {{\"prompt\": ..., \"answer\": ...}}, or "
                        f"multiple choice: question, choices, answer; docs/audit.md)")
    examples: list[Example] = []
    choice = None
    for number, record in read_records(path, fields.split):
        where = f"{path}:{number}"
        if choice is None:
            choice = _is_choice(record, fields)  # the first record says which form the file is in
        examples.append(_example(record, fields, where, number, choice))
    if len(examples) < MIN_RECORDS:
        raise ConfigError(str(path), f"{len(examples)} records", f"at least {MIN_RECORDS} (attack and held-out splits)")
    if not choice and len({e.answer for e in examples}) < 2:
        raise ConfigError(str(path), "one distinct answer", "at least two (the never-known control shuffles answers)")
    return Capability(str(path), tuple(examples))
