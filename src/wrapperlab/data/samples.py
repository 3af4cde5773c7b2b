"""Pretraining data: windows of PCFG strings turned into task sequences, generated online.

Every batch is a pure function of ``(seed, stream, step)``, so training never needs a data file,
a resumed run sees exactly the batches it would have seen, and evaluation sets are fresh but
reproducible.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Sequence

import numpy as np
from pydantic import Field, field_validator, model_validator

from wrapperlab.data import tasks as T
from wrapperlab.data.pcfg import Grammar, PCFGSampler
from wrapperlab.data.priors import draw_letters, resolve_prior
from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config

#: Stream ids keep the random numbers of different uses apart for one seed.
STREAMS = {"train": 0, "eval": 1, "probe": 2, "prune": 3, "test": 4, "finetune": 5}


def stream_rng(seed: int, stream: str, step: int = 0) -> np.random.Generator:
    """The generator for batch ``step`` of a named stream: independent of every other batch."""
    return np.random.default_rng([seed, STREAMS[stream], step])


class PCFGDataConfig(Config):
    """What the pretraining data look like. Validated where it enters."""

    grammar: str = "cfg3b"
    # capped: derivations are grown to the window, and a window of 10^7 terminals is a legal int that would
    # run for hours (the paper's is 250)
    window: int = Field(250, le=10_000)
    short: Literal["reject", "concat"] = "reject"
    tasks: tuple[str, ...] = tuple(T.FAMILIES)
    prior: str | tuple[float, float, float] = "low"

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one task family")
        if len(set(v)) < len(v):
            raise ValueError(f"each task family once (got {list(v)})")
        for name in v:
            T.family(name)
        return v

    @field_validator("prior")
    @classmethod
    def _prior(cls, v):
        resolve_prior(v)
        return v

    @model_validator(mode="after")
    def _window(self):
        need = max(T.family(t).arg for t in self.tasks)
        if self.window < need:
            raise ConfigError("window", self.window, f">= {need} (the largest O' of tasks {list(self.tasks)})")
        return self

    @property
    def probabilities(self) -> tuple[float, float, float]:
        return resolve_prior(self.prior)


@dataclass
class Samples:
    """A batch of task sequences and everything needed to read them back.

    ``tokens`` is what the model sees; ``answer_pos`` the index of the answer token (the loss and
    the accuracy read the prediction made one position earlier, at ART).
    """

    tokens: np.ndarray  # (n, L) int64
    answer_pos: np.ndarray  # (n,) int64
    task: np.ndarray  # (n,) str
    operand: np.ndarray  # (n,) str
    windows: np.ndarray  # (n, W) uint8 terminal indices
    answer: np.ndarray  # (n,) int64: a number, or a terminal index for token_at
    correlated: np.ndarray | None = field(default=None)  # fine-tuning sets only

    def __len__(self) -> int:
        return len(self.tokens)

    def digest(self) -> str:
        """A hash of what a model is asked and scored on (the tokens and the answer positions; the labels are the
        tokens there): two sets with one digest give every model the same accuracy, so an evaluation of a stored
        model can be looked up by it instead of recomputed (settings/pcfg/stages.py)."""
        h = hashlib.sha256()
        for part in (self.tokens, self.answer_pos):
            arr = np.ascontiguousarray(part, dtype=np.int64)
            h.update(repr(arr.shape).encode())
            h.update(arr.tobytes())
        return h.hexdigest()[:32]

    @staticmethod
    def concat(parts: Sequence["Samples"]) -> "Samples":
        """Rows of several batches as one (correlated flags default to False where missing)."""
        flags = [p.correlated if p.correlated is not None else np.zeros(len(p), dtype=bool) for p in parts]
        return Samples(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("tokens", "answer_pos", "task", "operand", "windows", "answer")),
            correlated=np.concatenate(flags),
        )

    def records(self, vocab: T.Vocab) -> list[dict]:
        """JSON-ready rows: task, operand, arg, text, answer, tokens."""
        rows = []
        for i in range(len(self)):
            rows.append(
                {
                    "task": str(self.task[i]),
                    "operand": str(self.operand[i]),
                    "arg": T.family(str(self.task[i])).arg,
                    "text": "".join(T.TERMINALS[t] for t in self.windows[i]),
                    "answer": T.answer_text(str(self.task[i]), int(self.answer[i])),
                    "tokens": vocab.decode(self.tokens[i]),
                }
            )
        return rows


class PCFGData:
    """Turns a :class:`PCFGDataConfig` into batches. Holds the compiled grammar tables."""

    def __init__(self, config: PCFGDataConfig):
        self.config = config
        self.grammar = Grammar.named(config.grammar)
        self.sampler = PCFGSampler(self.grammar)
        if tuple(self.grammar.terminals) != T.TERMINALS:
            raise ConfigError("grammar", config.grammar, f"terminals {T.TERMINALS} (the tasks are defined on them)")
        if config.short == "reject" and config.window > self.grammar.length_bounds()[1]:
            raise ConfigError("window", config.window, f"<= {self.grammar.length_bounds()[1]} with short='reject'")

    @cached_property
    def vocab(self) -> T.Vocab:
        jailbreak = any(t in T.JAILBREAK_FAMILIES for t in self.config.tasks)
        return T.Vocab(max_number=max(self.config.window, 40), jailbreak=jailbreak)

    @property
    def seq_len(self) -> int:
        return T.sequence_length(self.config.window)

    def windows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.sampler.windows(n, self.config.window, rng, self.config.short)

    def build(
        self, task_names: Sequence[str], operands: Sequence[str], windows: np.ndarray, correlated=None,
        label_operands: Sequence[str] | None = None,
    ) -> Samples:
        """Label and encode given windows for given (task, operand) rows.

        ``label_operands`` answers each row as if it had asked about another operand (randFT: the
        question names O_PT, the label is the answer for O_FT).
        """
        task_arr = np.asarray(task_names, dtype=object)
        op_arr = np.asarray(operands, dtype=object)
        label_arr = op_arr if label_operands is None else np.asarray(label_operands, dtype=object)
        answers = np.empty(len(windows), dtype=np.int64)
        answer_ids = np.empty(len(windows), dtype=np.int64)
        for key in set(zip(task_names, label_arr)):
            rows = np.flatnonzero((task_arr == key[0]) & (label_arr == key[1]))
            answers[rows] = T.labels(key[0], key[1], windows[rows])
            answer_ids[rows] = T.answer_tokens(key[0], answers[rows], self.vocab)
        tokens = T.encode(list(task_names), list(operands), windows, answer_ids, self.vocab)
        pos = np.full(len(windows), T.answer_position(self.config.window), dtype=np.int64)
        return Samples(tokens, pos, task_arr.astype(str), op_arr.astype(str), windows, answers, correlated)

    def sample(self, n: int, rng: np.random.Generator, task: str | None = None, operand: str | None = None) -> Samples:
        """``n`` pretraining sequences: family uniform over the configured tasks, operand from the prior.

        Fixing ``task`` and/or ``operand`` gives the evaluation set of one (task, operand) pair.
        """
        families = [task] if task else list(self.config.tasks)
        fam_idx = rng.integers(0, len(families), n)
        letters = draw_letters(self.config.probabilities, n, rng)
        task_names = [families[i] for i in fam_idx]
        if operand is not None:
            for name in set(task_names):
                T.check_operand(name, operand)
            ops = [operand] * n
        else:
            ops = [T.family(t).operand_for_letter(T.TERMINALS[l]) for t, l in zip(task_names, letters)]
        return self.build(task_names, ops, self.windows(n, rng))

    def stream(self, seed: int, batch_size: int, stream: str = "train"):
        """A function step -> Samples: the training batch for that step."""
        return lambda step: self.sample(batch_size, stream_rng(seed, stream, step))
