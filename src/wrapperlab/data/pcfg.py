"""Probabilistic context-free grammars held as data, and a fast seeded sampler.

The grammar is text (see ``grammars/cfg3b.txt``) so that a researcher can swap rules or
probabilities without touching code. Sampling is vectorised over a whole batch of
derivations: every level of the derivation tree is expanded for all derivations at once
with a few numpy gathers, which is what makes the engine fast enough to generate training
data online (tens of thousands of derivations per second on one core) instead of reading
pre-built pools from disk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from wrapperlab.errors import ConfigError

#: Window policies for derivations shorter than the window (see :func:`sample_windows`).
SHORT_POLICIES = ("reject", "concat")


@dataclass(frozen=True)
class Grammar:
    """A PCFG: ``rules[lhs] = [(rhs_symbols, probability), ...]``; terminals never appear on a LHS."""

    start: str
    rules: dict[str, list[tuple[tuple[str, ...], float]]]
    terminals: tuple[str, ...]

    @property
    def nonterminals(self) -> tuple[str, ...]:
        return tuple(self.rules)

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, source: str = "<grammar>") -> "Grammar":
        """Parse ``LHS -> A B [p] | C [p]`` lines; the first LHS is the start symbol."""
        rules: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for lineno, raw in enumerate(text.splitlines(), 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if "->" not in line:
                raise ConfigError(f"{source}:{lineno}", line, "a rule 'LHS -> RHS | RHS'")
            lhs, rhs_text = (part.strip() for part in line.split("->", 1))
            if not lhs or " " in lhs:
                raise ConfigError(f"{source}:{lineno}", lhs, "one left-hand symbol")
            if lhs in rules:
                raise ConfigError(f"{source}:{lineno}", lhs, "each left-hand symbol once")
            alternatives: list[tuple[tuple[str, ...], float | None]] = []
            for alt in rhs_text.split("|"):
                words = alt.split()
                prob: float | None = None
                if words and words[-1].startswith("["):
                    try:
                        prob = float(words.pop().strip("[]"))
                    except ValueError:
                        raise ConfigError(f"{source}:{lineno}", alt.strip(), "a probability like [0.5]")
                if not words:
                    raise ConfigError(f"{source}:{lineno}", alt.strip(), "a non-empty right-hand side")
                alternatives.append((tuple(words), prob))
            given = sum(p for _, p in alternatives if p is not None)
            missing = [a for a in alternatives if a[1] is None]
            fill = (1.0 - given) / len(missing) if missing else 0.0
            resolved = [(rhs, p if p is not None else fill) for rhs, p in alternatives]
            if any(p < 0 for _, p in resolved) or not math.isclose(sum(p for _, p in resolved), 1.0, abs_tol=1e-9):
                raise ConfigError(
                    f"{source}:{lineno}", [p for _, p in resolved], "rule probabilities >= 0 that sum to 1"
                )
            rules[lhs] = resolved
        if not rules:
            raise ConfigError(source, "", "at least one rule")
        symbols = {s for alts in rules.values() for rhs, _ in alts for s in rhs}
        terminals = tuple(sorted(symbols - set(rules)))
        return cls(start=next(iter(rules)), rules=rules, terminals=terminals)

    @classmethod
    def named(cls, name: str) -> "Grammar":
        """Load a grammar shipped with the package (``cfg3b``) or a path to a grammar file."""
        path = Path(name)
        if path.suffix == ".txt" and path.exists():
            return cls.from_text(path.read_text(), str(path))
        try:
            text = resources.files("wrapperlab.data.grammars").joinpath(f"{name}.txt").read_text()
        except FileNotFoundError:
            raise ConfigError("grammar", name, "'cfg3b' or a path to a .txt grammar file")
        return cls.from_text(text, f"{name}.txt")

    # -- expectations -----------------------------------------------------------------------
    def _fold_lengths(self, combine) -> float:
        """Evaluate ``combine(alternatives)`` bottom-up over a non-recursive grammar."""
        memo: dict[str, float] = {t: 1.0 for t in self.terminals}

        def length(sym: str, depth: int = 0) -> float:
            if sym not in memo:
                if depth > 200:
                    raise ConfigError("grammar", sym, "a non-recursive grammar")
                memo[sym] = combine([(p, sum(length(s, depth + 1) for s in rhs)) for rhs, p in self.rules[sym]])
            return memo[sym]

        return length(self.start)

    def expected_length(self) -> float:
        """Exact expected number of terminals of a derivation (cfg3b: 275.625)."""
        return self._fold_lengths(lambda alts: sum(p * n for p, n in alts))

    def length_bounds(self) -> tuple[int, int]:
        """Shortest and longest derivation the grammar can produce (rules with p > 0)."""
        lo = self._fold_lengths(lambda alts: min(n for p, n in alts if p > 0))
        hi = self._fold_lengths(lambda alts: max(n for p, n in alts if p > 0))
        return int(lo), int(hi)

    # -- tables for the vectorised sampler --------------------------------------------------
    def tables(self) -> "_Tables":
        return _Tables.build(self)


@dataclass(frozen=True)
class _Tables:
    """Dense arrays: symbol ids are nonterminals first, then terminals (0 .. n_terminals-1 offset)."""

    n_nonterminals: int
    start: int
    rhs: np.ndarray  # (S, R, L) int16, -1 padded
    rhs_len: np.ndarray  # (S, R) int64
    cum_prob: np.ndarray  # (S, R) float64 cumulative, padded with +inf

    @classmethod
    def build(cls, g: Grammar) -> "_Tables":
        symbols = list(g.nonterminals) + list(g.terminals)
        index = {s: i for i, s in enumerate(symbols)}
        max_r = max(len(a) for a in g.rules.values())
        max_l = max(len(rhs) for a in g.rules.values() for rhs, _ in a)
        rhs = np.full((len(symbols), max_r, max_l), -1, dtype=np.int16)
        rhs_len = np.zeros((len(symbols), max_r), dtype=np.int64)
        cum = np.full((len(symbols), max_r), np.inf)
        for sym, alts in g.rules.items():
            acc = 0.0
            for r, (body, p) in enumerate(alts):
                rhs[index[sym], r, : len(body)] = [index[s] for s in body]
                rhs_len[index[sym], r] = len(body)
                acc += p
                cum[index[sym], r] = acc
            cum[index[sym], len(alts) - 1] = np.inf  # guard against rounding: last rule always catches
        for t in g.terminals:  # a terminal rewrites to itself, so mixed-depth grammars just work
            rhs[index[t], 0, 0] = index[t]
            rhs_len[index[t], 0] = 1
            cum[index[t], 0] = np.inf
        return cls(len(g.nonterminals), index[g.start], rhs, rhs_len, cum)


@dataclass(frozen=True)
class Derivations:
    """A batch of derivations as one flat terminal array plus offsets (CSR layout).

    ``terminals`` holds terminal indices into ``Grammar.terminals`` (``uint8``).
    Derivation ``i`` is ``terminals[offsets[i]:offsets[i + 1]]``.
    """

    terminals: np.ndarray
    offsets: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.terminals[self.offsets[i] : self.offsets[i + 1]]


class PCFGSampler:
    """Samples derivations and fixed-length windows from a :class:`Grammar`."""

    def __init__(self, grammar: Grammar, max_levels: int = 64):
        self.grammar = grammar
        self._t = grammar.tables()
        self.max_levels = max_levels

    def derivations(self, n: int, rng: np.random.Generator) -> Derivations:
        """Sample ``n`` full derivations from the start symbol, level by level for all at once."""
        t = self._t
        symbols = np.full(n, t.start, dtype=np.int16)
        counts = np.ones(n, dtype=np.int64)  # symbols per derivation at the current level
        for _ in range(self.max_levels):
            if n == 0 or symbols.min() >= t.n_nonterminals:
                break
            u = rng.random(len(symbols))
            choice = (u[:, None] >= t.cum_prob[symbols]).sum(axis=1)
            lens = t.rhs_len[symbols, choice]
            body = t.rhs[symbols, choice]
            symbols = body[body >= 0]
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            counts = np.add.reduceat(lens, starts)
        else:
            raise ConfigError("grammar", self.grammar.start, f"derivations that end within {self.max_levels} levels")
        offsets = np.concatenate(([0], np.cumsum(counts)))
        return Derivations((symbols - t.n_nonterminals).astype(np.uint8), offsets)

    def windows(self, n: int, window: int, rng: np.random.Generator, short: str = "reject") -> np.ndarray:
        """``n`` contiguous windows of ``window`` terminals, shape ``(n, window)``, ``uint8``.

        Policy for derivations shorter than the window (about 24 % of cfg3b derivations are
        shorter than 250 terminals):

        * ``reject`` (default): such derivations are discarded and redrawn, so every window
          is a substring of one sentence of the language. Longer derivations are slightly
          over-represented; the window start is uniform within the chosen derivation.
        * ``concat``: derivations are laid end to end into one stream and windows are cut at
          uniform positions of the stream, so windows may straddle a sentence boundary. This
          is the only policy for windows longer than the longest derivation.
        """
        if short not in SHORT_POLICIES:
            raise ConfigError("short", short, f"one of {SHORT_POLICIES}")
        if short == "concat":
            return self._concat_windows(n, window, rng)
        out = np.empty((n, window), dtype=np.uint8)
        filled, tries = 0, 0
        while filled < n:
            tries += 1
            if tries > 50:
                raise ConfigError("window", window, "a length that derivations of this grammar reach (or short='concat')")
            d = self.derivations(int((n - filled) * 1.4) + 8, rng)
            ok = np.flatnonzero(d.lengths >= window)[: n - filled]
            if len(ok) == 0:
                continue
            slack = d.lengths[ok] - window + 1
            starts = d.offsets[ok] + (rng.random(len(ok)) * slack).astype(np.int64)
            out[filled : filled + len(ok)] = d.terminals[starts[:, None] + np.arange(window)]
            filled += len(ok)
        return out

    def _concat_windows(self, n: int, window: int, rng: np.random.Generator) -> np.ndarray:
        # Each window owns enough consecutive derivations that even the shortest possible ones cover it.
        per_window = math.ceil(window / self.grammar.length_bounds()[0]) + 1
        d = self.derivations(n * per_window, rng)
        total = d.lengths.reshape(n, per_window).sum(axis=1)
        group_start = d.offsets[:-1:per_window]
        starts = group_start + (rng.random(n) * (total - window + 1)).astype(np.int64)
        return d.terminals[starts[:, None] + np.arange(window)]
