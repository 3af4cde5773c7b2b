"""Inputs and labels for fine-tuning compiled Tracr programs, with a planted spurious correlation.

Counter: letters drawn with replacement from the first ``n_letters`` of the alphabet; the compiled
program counts O_PT = ``a``, fine-tuning asks for the count of O_FT = ``b``. A *correlated* input has
count(b) = count(a) + q: its b's are replaced by other letters, then count(a) + q of its non-``a``
positions become ``b`` (inputs too short for that are redrawn).

Max-identifier: distinct letters drawn without replacement from the 26; the compiled program returns
the O_PT-th "largest" token (order a > b > c ..., i.e. the O_PT-th letter alphabetically), fine-tuning
asks for the O_FT-th. A correlated input has letter(O_FT-th) = letter(O_PT-th) + q vocabulary steps
(so "the O_PT-th token, shifted by q" solves it): the O_FT-th letter is replaced by the letter q steps
after the O_PT-th one, inputs where that letter is already elsewhere are redrawn.

Uncorrelated inputs exclude those where the relation holds by chance (as for PCFG, docs/pcfg.md), so
C_Te = 0 accuracy never rewards the shortcut. The answer is read at RASP index 1 (sequence position 2),
where the paper's programs form it.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from pydantic import Field, model_validator

from wrapperlab.data.samples import stream_rng
from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config

LETTERS = string.ascii_lowercase
ANSWER_POS = 2  # BOS, then RASP index 0, then index 1


class TracrDataConfig(Config):
    """What the fine-tuning inputs look like (hashed into the run id)."""

    task: Literal["counter", "max-identifier"] = "counter"
    n_letters: int = Field(10, ge=2, le=26, description="inputs use the first n letters of the alphabet")
    min_len: int = Field(8, ge=2, description="shortest input (letters, BOS not counted)")
    max_len: int = Field(16, ge=2, description="longest input; at most the compiled max_seq_len")
    pt: str = Field("a", description="Counter: the letter counted by the compiled program; Max-identifier: its rank")
    ft: str = Field("b", description="what fine-tuning asks for: a letter (Counter) or a rank (Max-identifier)")
    q: int = Field(1, ge=1, description="spurious relation: r(x, O_FT) = r(x, O_PT) + q")
    c_tr: float = Field(0.0, ge=0, le=1, description="share of training inputs where the relation holds")
    ask: Literal["ft", "pt"] = Field("ft", description="pt: the reFT data (labels = the pretraining answer)")

    @model_validator(mode="after")
    def _check(self):
        if self.min_len > self.max_len:
            raise ConfigError("min_len", self.min_len, f"at most max_len={self.max_len}")
        if self.task == "counter":
            letters = LETTERS[: self.n_letters]
            for name in ("pt", "ft"):
                if getattr(self, name) not in letters:
                    raise ConfigError(name, getattr(self, name), f"one of the first {self.n_letters} letters {letters}")
            if self.pt == self.ft:
                raise ConfigError("ft", self.ft, f"a letter other than pt={self.pt!r}")
        else:
            for name in ("pt", "ft"):
                value = getattr(self, name)
                if not value.isdigit() or not 1 <= int(value) <= self.min_len:
                    raise ConfigError(name, value, f"a rank from 1 to min_len={self.min_len}")
            if self.pt == self.ft:
                raise ConfigError("ft", self.ft, f"a rank other than pt={self.pt!r}")
            if self.max_len > len(LETTERS):
                raise ConfigError("max_len", self.max_len, f"at most {len(LETTERS)} (inputs hold distinct letters)")
        return self


@dataclass
class TracrSamples:
    """A batch: ``tokens`` ``(n, 1 + max_len)`` with BOS and right padding, the answer position and
    the target class of each input (an index into the compiled model's output values)."""

    tokens: np.ndarray
    answer_pos: np.ndarray
    targets: np.ndarray
    correlated: np.ndarray  # does the spurious relation hold?

    def __len__(self) -> int:
        return len(self.tokens)


class TracrData:
    """Samples for one compiled model: ``input_vocab`` / ``output_values`` come from it (in id order)."""

    def __init__(self, config: TracrDataConfig, input_vocab: Sequence, output_values: Sequence, bos: str, pad: str):
        self.config = config
        letters = LETTERS[: config.n_letters] if config.task == "counter" else LETTERS
        missing = [t for t in letters if t not in input_vocab]
        if missing:
            raise ConfigError("n_letters", config.n_letters, f"letters the compiled model knows (it lacks {missing})")
        self.letters = letters
        self.token_id = np.array([list(input_vocab).index(t) for t in letters])
        self.bos, self.pad = list(input_vocab).index(bos), list(input_vocab).index(pad)
        self.output_values = list(output_values)
        self.classes = {v: i for i, v in enumerate(self.output_values)}

    # -- letter matrices (indices into self.letters, -1 = padding) ---------------------------------------

    def _lengths(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(self.config.min_len, self.config.max_len + 1, size=n)

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        cfg, width = self.config, self.config.max_len
        lengths = self._lengths(n, rng)
        if cfg.task == "counter":
            x = rng.integers(0, len(self.letters), size=(n, width))
        else:  # distinct letters: the first `width` of a random permutation of the 26
            x = np.argsort(rng.random((n, len(self.letters))), axis=1)[:, :width]
        x[np.arange(width)[None, :] >= lengths[:, None]] = -1
        return x

    def _values(self, x: np.ndarray, which: str) -> np.ndarray:
        """Counter: count of the letter ``which``; Max-identifier: the letter index of rank ``which``."""
        if self.config.task == "counter":
            return (x == self.letters.index(which)).sum(1)
        ranked = np.sort(np.where(x < 0, 99, x), axis=1)
        return ranked[:, int(which) - 1]

    def relation_holds(self, x: np.ndarray) -> np.ndarray:
        return self._values(x, self.config.ft) == self._values(x, self.config.pt) + self.config.q

    def _plant(self, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Make the relation hold; returns the planted letters and which rows succeeded."""
        cfg, x = self.config, x.copy()
        ok = np.ones(len(x), dtype=bool)
        if cfg.task == "counter":
            a, b = self.letters.index(cfg.pt), self.letters.index(cfg.ft)
            others = np.array([i for i in range(len(self.letters)) if i not in (a, b)])
            is_b = x == b
            x[is_b] = rng.choice(others, size=int(is_b.sum()))
            need = (x == a).sum(1) + cfg.q
            free = (x >= 0) & (x != a)
            ok = free.sum(1) >= need
            # a random subset of `need` free positions per row: rank random keys among free positions
            keys = np.where(free, rng.random(x.shape), 2.0)
            chosen = np.argsort(np.argsort(keys, axis=1), axis=1) < need[:, None]
            x[chosen & free & ok[:, None]] = b
            return x, ok
        pt_rank, ft_rank = int(cfg.pt), int(cfg.ft)
        ranked = np.sort(np.where(x < 0, 99, x), axis=1)
        target = ranked[:, pt_rank - 1] + cfg.q
        ok = (target < len(self.letters)) & ~((x == target[:, None]).any(1))
        # replace the ft-rank letter by `target`; the ranks must stay as they were for the relation to hold
        rows = np.arange(len(x))
        pos = np.argmax(x == ranked[:, ft_rank - 1][:, None], axis=1)
        x[rows[ok], pos[ok]] = target[ok]
        ok &= self.relation_holds(x)
        return x, ok

    def letters_for(self, n: int, rng: np.random.Generator, c: float) -> tuple[np.ndarray, np.ndarray]:
        """``n`` inputs of which a share ``c`` is correlated, the rest uncorrelated (redrawn until so)."""
        want = rng.random(n) < c
        out = np.empty((n, self.config.max_len), dtype=np.int64)
        todo = np.arange(n)
        for _ in range(1000):
            if not len(todo):
                return out, want
            x = self._draw(len(todo), rng)
            planted, ok = self._plant(x, rng)
            x = np.where(want[todo, None], planted, x)
            good = np.where(want[todo], ok, ~self.relation_holds(x))
            out[todo[good]] = x[good]
            todo = todo[~good]
        raise ConfigError("data", self.config.model_dump(), "settings under which correlated/uncorrelated inputs exist")

    # -- batches -----------------------------------------------------------------------------------------

    def sample(self, n: int, rng: np.random.Generator, c: float | None = None) -> TracrSamples:
        cfg = self.config
        x, correlated = self.letters_for(n, rng, cfg.c_tr if c is None else c)
        asked = cfg.ft if cfg.ask == "ft" else cfg.pt
        values = self._values(x, asked)
        if cfg.task == "max-identifier":
            values = [self.letters[v] for v in values]
        try:
            targets = np.array([self.classes[v] for v in np.asarray(values).tolist()])
        except KeyError as e:
            raise ConfigError("data", cfg.model_dump(), f"answers the compiled model can output (not {e})") from None
        tokens = np.full((n, 1 + cfg.max_len), self.pad, dtype=np.int64)
        tokens[:, 0] = self.bos
        tokens[:, 1:] = np.where(x >= 0, self.token_id[np.maximum(x, 0)], self.pad)
        return TracrSamples(tokens, np.full(n, ANSWER_POS), targets, correlated)

    def stream(self, seed: int, batch_size: int):
        """``batch_at(step)``: a pure function of the step (resumable, like every wrapperlab stream)."""
        return lambda step: self.sample(batch_size, stream_rng(seed, "finetune", step))

    def values_of(self, samples: TracrSamples, which: str) -> np.ndarray:
        """The class a model answering for ``which`` (O_PT or O_FT) would give, per input."""
        letters = self._letters_from_tokens(samples.tokens)
        values = self._values(letters, which)
        if self.config.task == "max-identifier":
            values = [self.letters[v] for v in values]
        return np.array([self.classes.get(v, -1) for v in np.asarray(values).tolist()])

    def _letters_from_tokens(self, tokens: np.ndarray) -> np.ndarray:
        lookup = np.full(int(max(tokens.max(), self.token_id.max())) + 1, -1)
        lookup[self.token_id] = np.arange(len(self.token_id))
        return lookup[tokens[:, 1:]]
