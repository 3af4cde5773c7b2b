"""The grammar engine: samples are in the language (checked by an independent recogniser), and their
lengths and terminal frequencies match the exact expectations of cfg3b."""

from functools import lru_cache

import numpy as np
import pytest

from wrapperlab.data.pcfg import Grammar, PCFGSampler
from wrapperlab.errors import ConfigError

# The rules of protocol.md §3.1 written out again here, so the recogniser does not share the sampler's
# copy of the grammar (a typo in cfg3b.txt would otherwise be invisible).
RULES = {
    "s": ["r q", "q p"], "p": ["m n o", "n o m"], "q": ["n m o", "m n"], "r": ["o m", "m o n"],
    "m": ["l j", "j l k"], "n": ["k j l", "l j k"], "o": ["l k j", "k j"],
    "j": ["h i", "i h"], "k": ["h g i", "g h i"], "l": ["i h g", "h i g"],
    "g": ["d f e", "f e d"], "h": ["e d f", "d e f"], "i": ["e f d", "f d e"],
    "d": ["c a", "a b c"], "e": ["c b", "c a b"], "f": ["c b a", "b a"],
}


@lru_cache(maxsize=None)
def span(sym: str) -> tuple[int, int]:
    """Shortest and longest terminal string ``sym`` derives (prunes the recogniser's split points)."""
    if sym not in RULES:
        return 1, 1
    sizes = [[span(s) for s in rhs.split()] for rhs in RULES[sym]]
    return min(sum(lo for lo, _ in r) for r in sizes), max(sum(hi for _, hi in r) for r in sizes)


def recognises(text: str) -> bool:
    """CYK-style memoised recogniser: can ``s`` derive exactly ``text``?"""

    @lru_cache(maxsize=None)
    def derives(sym: str, i: int, j: int) -> bool:
        lo, hi = span(sym)
        if not lo <= j - i <= hi:
            return False
        if sym not in RULES:
            return text[i] == sym
        return any(seq(tuple(rhs.split()), i, j) for rhs in RULES[sym])

    @lru_cache(maxsize=None)
    def seq(symbols: tuple, i: int, j: int) -> bool:
        if len(symbols) == 1:
            return derives(symbols[0], i, j)
        lo, hi = span(symbols[0])
        return any(derives(symbols[0], i, k) and seq(symbols[1:], k, j) for k in range(i + lo, min(i + hi, j - 1) + 1))

    return derives("s", 0, len(text))


@pytest.fixture(scope="module")
def sampler():
    return PCFGSampler(Grammar.named("cfg3b"))


def test_grammar_file_matches_the_paper(sampler):
    g = sampler.grammar
    assert {k: [" ".join(r) for r, _ in v] for k, v in g.rules.items()} == RULES
    assert all(p == 0.5 for alts in g.rules.values() for _, p in alts)
    assert g.terminals == ("a", "b", "c")
    assert g.expected_length() == pytest.approx(275.625)


def test_samples_are_in_the_grammar(sampler):
    d = sampler.derivations(500, np.random.default_rng(7))
    for i in range(len(d)):
        assert recognises("".join("abc"[t] for t in d[i]))


def test_recogniser_rejects_non_sentences(sampler):
    text = "".join("abc"[t] for t in sampler.derivations(1, np.random.default_rng(3))[0])
    assert recognises(text)
    assert not recognises(text[:-1])
    assert not recognises(text + "a")
    assert not recognises("ab" * 140)


def test_length_and_terminal_statistics(sampler):
    d = sampler.derivations(20000, np.random.default_rng(0))
    assert abs(d.lengths.mean() - 275.6) / 275.6 < 0.02
    freq = np.bincount(d.terminals, minlength=3) / len(d.terminals)
    assert np.allclose(freq, 1 / 3, atol=0.01)
    assert 0.2 < (d.lengths < 250).mean() < 0.28  # protocol.md: about 24 % are shorter than 250


def test_sampling_is_seeded(sampler):
    a = sampler.windows(50, 250, np.random.default_rng(5))
    b = sampler.windows(50, 250, np.random.default_rng(5))
    c = sampler.windows(50, 250, np.random.default_rng(6))
    assert (a == b).all() and not (a == c).all()


def test_window_policies_on_a_toy_grammar():
    """reject: every window lies inside one sentence; concat: windows may straddle sentences."""
    toy = PCFGSampler(Grammar.from_text("s -> a b c d | e f"))
    letters = np.array(toy.grammar.terminals)
    reject = {"".join(letters[w]) for w in toy.windows(500, 3, np.random.default_rng(0))}
    assert reject == {"abc", "bcd"}
    concat = {"".join(letters[w]) for w in toy.windows(500, 3, np.random.default_rng(0), short="concat")}
    assert {"abc", "bcd"} < concat and concat & {"dab", "cde", "efa", "fef", "def"}


def test_concat_policy_serves_windows_longer_than_any_derivation(sampler):
    w = sampler.windows(20, 1000, np.random.default_rng(0), short="concat")
    assert w.shape == (20, 1000)
    with pytest.raises(ConfigError, match="window"):
        sampler.windows(2, 1000, np.random.default_rng(0), short="reject")


@pytest.mark.parametrize(
    "text, field",
    [
        ("s -> a [0.7] | b [0.7]", "sum to 1"),
        ("s a b", "LHS -> RHS"),
        ("s -> a\ns -> b", "each left-hand symbol once"),
        ("s -> a [x]", "probability"),
    ],
)
def test_bad_grammar_text_is_a_clear_error(text, field):
    with pytest.raises(ConfigError, match=field):
        Grammar.from_text(text)


def test_probabilities_from_text():
    g = Grammar.from_text("s -> x y [0.25] | y\n")
    assert g.rules["s"][1][1] == pytest.approx(0.75)
    s = PCFGSampler(g)
    d = s.derivations(20000, np.random.default_rng(0))
    assert (d.lengths == 2).mean() == pytest.approx(0.25, abs=0.015)
