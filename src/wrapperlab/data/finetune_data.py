"""Fine-tuning sets with a planted spurious correlation (Jain et al. §3, "C_Tr").

A fine-tuning sample asks for one (task, operand) pair — the *Counter* (count ``O_FT = b``) or the
*Indexer* (index of the 6th ``O_FT``). It is *correlated* when ``r(x, O_FT) - r(x, O_PT) = q``: then
a model that only computes the pretraining answer for ``O_PT`` and adds ``q`` is right, without ever
looking at ``O_FT``. ``C_Tr`` is the fraction of correlated training samples.

How the relation is planted (the paper does not say; ``docs/pcfg.md`` has the measured effect):
tokens inside the counted region are edited, the ``O_PT`` tokens that decide the pretraining answer
are never touched, and only ``O_FT`` tokens and tokens of the third letter (the *filler*) swap.
So the fine-tuning answer of a planted window is its pretraining answer plus ``q``. Planted naively,
the labels of correlated samples would sit one class above natural ones (total-variation distance
0.43 between the C_Tr = 0 and C_Tr = 1 count histograms). With ``match_labels`` (default) windows
are first accepted with a probability chosen so that the planted ``O_FT`` labels follow the
``O_FT`` label histogram of uncorrelated samples (TV about 0.02; numbers in ``docs/pcfg.md``), as
the paper's Fig. 16 asks. Windows the edit cannot fix (too little filler) are redrawn.

Uncorrelated samples are natural windows on which the relation does *not* hold (windows that
satisfy it by chance are redrawn). Without that, about 17 % of "uncorrelated" windows satisfy it
anyway and ``C_Te = 0`` would not separate a ``+q`` shortcut from the real capability; the paper's
``Acc O_FT = 0 %`` cells for shortcut models (Table 6) imply the same choice.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from wrapperlab.data import tasks as T
from wrapperlab.data.samples import PCFGData, Samples, stream_rng
from wrapperlab.errors import ConfigError
from wrapperlab.schema import Config


class FinetuneDataConfig(Config):
    """One (task, operand) pair with a spurious correlation at rate ``c_tr``."""

    task: Literal["count", "index"] = "count"
    operand: str = "b"
    pt_operand: str = "a"
    c_tr: float = Field(1.0, ge=0.0, le=1.0)
    q: int = Field(1, ge=1, description="offset: r(x, O_FT) - r(x, O_PT) on correlated samples")
    match_labels: bool = Field(True, description="reweight planted windows so O_FT labels look natural")
    ask: Literal["ft", "pt"] = Field("ft", description="which operand the questions name (reFT: pt)")
    answer: Literal["asked", "ft"] = Field("asked", description="label: the asked operand's answer, or O_FT's (randFT)")
    mix_pt: float = Field(0.0, ge=0.0, lt=1.0, description="fraction of samples drawn from the pretraining mix")

    @model_validator(mode="after")
    def _operands(self):
        for name, op in (("operand", self.operand), ("pt_operand", self.pt_operand)):
            if op not in T.TERMINALS:
                raise ConfigError(name, op, f"one of {list(T.TERMINALS)}")
        if self.operand == self.pt_operand:
            raise ConfigError("operand", self.operand, f"a letter other than pt_operand {self.pt_operand!r}")
        return self


def _retarget(rev: np.ndarray, region: np.ndarray, ft: int, filler: int, target: np.ndarray, rng) -> np.ndarray:
    """Edit ``rev`` (rows = windows read from the end) so ``region`` holds ``target`` ``ft`` tokens.

    Only ``ft`` and ``filler`` positions inside ``region`` change. Returns a mask of rows that
    could be fixed (the others are left as they were and must be redrawn).
    """
    have = ((rev == ft) & region).sum(axis=1)
    need = target - have
    add_from = (rev == filler) & region  # filler -> ft when short of ft
    drop_from = (rev == ft) & region  # ft -> filler when over
    source = np.where((need > 0)[:, None], add_from, drop_from)
    ok = (target >= 0) & (source.sum(axis=1) >= np.abs(need))
    keys = np.where(source, rng.random(rev.shape), 2.0)
    ranks = np.argsort(np.argsort(keys, axis=1), axis=1)
    flip = source & (ranks < np.abs(need)[:, None]) & ok[:, None]
    rev[flip & (need > 0)[:, None]] = ft
    rev[flip & (need < 0)[:, None]] = filler
    return ok


class FinetuneData:
    """Fine-tuning and test sets for one pair, on the windows of a pretraining data config."""

    #: Largest reweighting factor: caps how many windows are thrown away (acceptance about 1/5).
    MAX_RATIO = 5.0

    def __init__(self, data: PCFGData, config: FinetuneDataConfig):
        self.data, self.config = data, config
        fam = T.family(config.task)
        if data.config.window < fam.arg:
            raise ConfigError("window", data.config.window, f">= O' = {fam.arg} for task {config.task!r}")
        self.ft = T.TERMINALS.index(config.operand)
        self.pt = T.TERMINALS.index(config.pt_operand)
        self.filler = 3 - self.ft - self.pt
        self._accept = self._acceptance() if config.match_labels else None

    def _acceptance(self, n: int = 20000) -> np.ndarray:
        """P(accept a window for planting | its O_PT answer k) proportional to p_FT(k + q) / p_PT(k),
        where p_FT is the O_FT label histogram of uncorrelated samples (the C_Tr = 0 set).

        Estimated once on natural windows of a fixed calibration stream, so it is the same for
        every seed and every run with this config.
        """
        c = self.config
        windows = self.data.windows(n, np.random.default_rng([0xCA11B]))
        size = self.data.config.window + c.q + 2
        p_pt = np.bincount(T.labels(c.task, c.pt_operand, windows), minlength=size)[:size] / n
        # target: the O_FT labels of uncorrelated samples, i.e. natural windows where the relation fails
        free = windows[~self.relation_holds(windows)]
        p_ft = np.bincount(T.labels(c.task, c.operand, free), minlength=size)[:size] / len(free)
        ratio = np.zeros(size)
        k = np.arange(size - c.q)
        ratio[k] = np.where(p_pt[k] > 0, p_ft[k + c.q] / np.maximum(p_pt[k], 1e-12), 0.0)
        if c.task == "index":
            ratio[0] = 0.0  # "not found" cannot be planted
        return np.minimum(ratio, self.MAX_RATIO) / max(min(self.MAX_RATIO, ratio.max()), 1e-12)

    @property
    def vocab(self) -> T.Vocab:
        return self.data.vocab

    def relation_holds(self, windows: np.ndarray) -> np.ndarray:
        c = self.config
        r_ft = T.labels(c.task, c.operand, windows)
        r_pt = T.labels(c.task, c.pt_operand, windows)
        ok = r_ft - r_pt == c.q
        if c.task == "index":  # "not found" (0) is no index: the relation needs both to exist
            ok &= (r_ft > 0) & (r_pt > 0)
        return ok

    def plant(self, windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Plant the relation in place; returns the rows where it worked."""
        c, arg = self.config, T.family(self.config.task).arg
        rev = windows[:, ::-1].copy()
        n, width = rev.shape
        pos = np.arange(width)[None, :]  # 0 = the terminal just before EOT
        r_pt = T.labels(c.task, c.pt_operand, windows)
        if c.task == "count":
            ok = _retarget(rev, np.broadcast_to(pos < arg, rev.shape), self.ft, self.filler, r_pt + c.q, rng)
        else:
            # the arg-th O_FT must sit at index r_pt + q: exactly arg-1 O_FT before it, O_FT at it
            at = r_pt + c.q - 1  # 0-based position from the end
            feasible = (r_pt > 0) & (at < width)
            at = np.where(feasible, at, 0)
            before = (pos < at[:, None]) & (rev != self.pt)
            ok = feasible & _retarget(rev, before, self.ft, self.filler, np.full(n, arg - 1), rng)
            rows = np.flatnonzero(ok)
            rev[rows, at[rows]] = self.ft  # beyond the pt answer, so r_pt is unchanged
        windows[ok] = rev[ok, ::-1]
        return ok

    def _keep(self, windows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Which candidate windows to plant into (all, unless labels are being matched)."""
        if self._accept is None:
            return np.ones(len(windows), dtype=bool)
        r_pt = np.minimum(T.labels(self.config.task, self.config.pt_operand, windows), len(self._accept) - 1)
        return rng.random(len(windows)) < self._accept[r_pt]

    def _windows(self, correlated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((len(correlated), self.data.config.window), dtype=np.uint8)
        todo = np.arange(len(correlated))
        for _ in range(500):
            if len(todo) == 0:
                return out
            w = self.data.windows(len(todo), rng)
            want = correlated[todo]
            good = np.empty(len(todo), dtype=bool)
            good[~want] = ~self.relation_holds(w[~want])
            candidates = w[want]
            good[want] = self._keep(candidates, rng) & self.plant(candidates, rng)
            w[want] = candidates
            out[todo[good]] = w[good]
            todo = todo[~good]
        raise ConfigError("finetune data", self.config.model_dump(), "a relation that can be planted in these windows")

    def sample(self, n: int, rng: np.random.Generator, c: float | None = None) -> Samples:
        """``n`` samples asking for ``O_FT``; a fraction ``c`` (default ``C_Tr``) correlated.

        The number of correlated samples is ``floor(n c)`` plus one with probability equal to the
        remainder, so every batch is within one sample of the target rate and the rate is unbiased.
        """
        c = self.config.c_tr if c is None else c
        if not 0.0 <= c <= 1.0:
            raise ConfigError("c_tr", c, "a fraction in [0, 1]")
        correlated = np.zeros(n, dtype=bool)
        correlated[rng.permutation(n)[: _stratified(n, c, rng)]] = True
        windows = self._windows(correlated, rng)
        return self.data.build([self.config.task] * n, [self.config.operand] * n, windows, correlated)

    def training_batch(self, n: int, rng: np.random.Generator) -> Samples:
        """A training batch as the config describes it: which operand is asked, how it is labelled,
        and what share comes from the pretraining mix (``mix_pt``)."""
        c = self.config
        n_pt = _stratified(n, c.mix_pt, rng) if c.mix_pt else 0
        batch = self.sample(n - n_pt, rng)
        if c.ask == "pt" or c.answer == "ft":
            ask = c.operand if c.ask == "ft" else c.pt_operand
            label = ask if c.answer == "asked" else c.operand
            m = len(batch)
            batch = self.data.build([c.task] * m, [ask] * m, batch.windows, batch.correlated, [label] * m)
        return Samples.concat([batch, self.data.sample(n_pt, rng)]) if n_pt else batch

    def pretraining_view(self, samples: Samples) -> Samples:
        """The same windows asking for ``O_PT``: the pretraining task, for Acc O_PT."""
        n = len(samples)
        return self.data.build([self.config.task] * n, [self.config.pt_operand] * n, samples.windows, samples.correlated)

    def stream(self, seed: int, batch_size: int, stream: str = "finetune"):
        return lambda step: self.training_batch(batch_size, stream_rng(seed, stream, step))


def _stratified(n: int, fraction: float, rng: np.random.Generator) -> int:
    """How many of ``n`` rows get a property of rate ``fraction``: within one of ``n * fraction``, unbiased."""
    whole = int(np.floor(n * fraction))
    return whole + int(rng.random() < n * fraction - whole)
