"""The RASP programs: the paper's Counter and Max-identifier, and tracr library programs (parity checks).

Every RASP import happens inside a function, so this module imports without the ``tracr`` extra.
"""

from __future__ import annotations

import dataclasses
import string
from dataclasses import dataclass
from typing import Any, Callable

from wrapperlab.errors import ConfigError


def rasp_module():
    """``tracr.rasp.rasp``, or a clear error saying which extra to install."""
    try:
        from tracr.rasp import rasp
    except ImportError:
        raise ConfigError(
            "tracr", "not installed", "the optional extra: pip install 'wrapperlab[tracr]' (compiling needs JAX)"
        ) from None
    return rasp


@dataclass(frozen=True)
class Program:
    """A RASP program with the settings it is compiled for.

    ``answer`` says where the program's result is read: ``"index1"`` = RASP index 1, i.e. the second
    input token (sequence position 2; BOS sits before index 0). The paper's Counter and Max-identifier
    select with ``indices`` as queries against a boolean key (True == 1), so only that query computes
    the answer. ``"all"`` = every non-BOS position.
    ``min_len`` is the shortest input on which the program is defined (Max-identifier needs 5 tokens).
    """

    name: str
    build: Callable[[], Any]
    vocab: tuple[str, ...]
    max_seq_len: int
    answer: str = "all"
    distinct: bool = False  # inputs without repeated tokens (sort_unique, Max-identifier)
    min_len: int = 1
    description: str = ""
    family: str = ""  # the task its data asks (a variant compiled for another target shares its base's); "" = name

    @property
    def task(self) -> str:
        return self.family or self.name


def counter(operand: str = "a"):
    """Count ``operand``: the paper's Alg. 1 (its selector's query is ``indices``, so the count is
    formed at index 1; the identity Aggregate copies it to the output space)."""
    rasp = rasp_module()
    is_op = rasp.categorical(rasp.Map(lambda t: t == operand, rasp.tokens)).named(f"is_{operand}")
    sel = rasp.Select(is_op, rasp.indices, rasp.Comparison.EQ).named("count_select")
    n = rasp.categorical(rasp.SelectorWidth(sel)).named(f"count_{operand}")
    identity = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.EQ).named("identity")
    return rasp.categorical(rasp.Aggregate(identity, n)).named("out")


def max_identifier(rank: int = 5):
    """The ``rank``-th "largest" token with the paper's order a > b > c ... (Alg. 2): the token with
    exactly ``rank - 1`` alphabetically earlier tokens, read at index 1 (needs >= ``rank`` tokens)."""
    rasp = rasp_module()
    less = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LT).named("earlier")
    n_less = rasp.categorical(rasp.SelectorWidth(less)).named("n_earlier")
    is_target = rasp.categorical(rasp.Map(lambda n: n == rank - 1, n_less)).named("is_target")
    sel = rasp.Select(is_target, rasp.indices, rasp.Comparison.EQ).named("target_select")
    return rasp.categorical(rasp.Aggregate(sel, rasp.tokens)).named("out")


def _lib(name: str):
    rasp = rasp_module()
    from tracr.compiler import lib

    if name == "length":
        return lib.make_length()
    if name == "reverse":
        return lib.make_reverse(rasp.tokens)
    if name == "hist":
        return lib.make_hist()
    if name == "sort_unique":
        return lib.make_sort_unique(rasp.tokens, rasp.tokens)
    if name == "frac_prevs":
        return lib.make_frac_prevs(rasp.numerical(rasp.Map(lambda t: t == "a", rasp.tokens)).named("is_a_num"))
    raise KeyError(name)


LETTERS = tuple(string.ascii_lowercase)

PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in [
        # a..j: the paper's Fig. 12 counting example uses ten letters (its text says nine)
        Program("counter", counter, LETTERS[:10], 16, answer="index1", min_len=2,
                description="count(a) (paper Alg. 1)"),
        Program("max-identifier", max_identifier, LETTERS, 10, answer="index1", distinct=True, min_len=5,
                description="5th largest token, a > b > c ... (paper Alg. 2)"),
        Program("length", lambda: _lib("length"), LETTERS[:5], 8, description="tracr lib: length"),
        Program("reverse", lambda: _lib("reverse"), LETTERS[:5], 8, description="tracr lib: reverse"),
        Program("hist", lambda: _lib("hist"), LETTERS[:5], 8, description="tracr lib: histogram"),
        Program("sort_unique", lambda: _lib("sort_unique"), LETTERS[:8], 8, distinct=True,
                description="tracr lib: sort (unique keys)"),
        Program("frac_prevs", lambda: _lib("frac_prevs"), LETTERS[:4], 8,
                description="tracr lib: fraction of previous 'a' (numerical output)"),
    ]
}


#: programs with a variant compiled for another target: ``counter-b`` counts b, ``max-identifier-6`` finds the 6th
#: largest — a model that computes the fine-tuning target exactly and never computed the pretraining one (the
#: Tracr Scr.+FT baseline, reverse fine-tuned to the pretraining target like a fine-tuned model)
TARGETED = {"counter": counter, "max-identifier": lambda target: max_identifier(int(target))}


def target_variant(name: str, target: str) -> str:
    """The name of ``name`` compiled for ``target`` (see :data:`TARGETED`)."""
    if name not in TARGETED:
        raise ConfigError("program", name, f"one with a compiled never-had-it variant ({sorted(TARGETED)})")
    variant = f"{name}-{target}"
    program(variant)
    return variant


def program(name: str) -> Program:
    if name in PROGRAMS:
        return PROGRAMS[name]
    base, _, target = name.rpartition("-")
    if base in TARGETED and target:
        spec = PROGRAMS[base]
        valid = target in spec.vocab if base == "counter" else target.isdigit() and 1 <= int(target) <= spec.max_seq_len
        if valid:
            return dataclasses.replace(spec, name=name, build=lambda: TARGETED[base](target), family=base,
                                       description=f"{spec.description}, compiled for {target}")
    raise ConfigError("program", name, f"one of {sorted(PROGRAMS)}, or counter-<letter> / max-identifier-<rank>")
