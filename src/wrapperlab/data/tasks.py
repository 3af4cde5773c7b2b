"""The five PCFG task families, their label functions, the token vocabulary and the sequence format.

A sequence is ``SOS T O O' SOT text EOT ART Ans EOS`` (Jain et al. App. B.2): task-family token,
operand, second operand (a number), the window of terminals, the answer request and the answer.
Every number is one token. Because every window has the same length, every sequence has the
same length and the answer sits at a fixed position — no padding is needed for PCFG data.

Definitions where the paper is silent (also in ``docs/pcfg.md``). Positions inside the text are
counted from the end: the terminal just before ``EOT`` has index 1.

* ``count`` (C): occurrences of ``O`` among the last ``O'`` = 40 terminals.
* ``count_composite`` (CC): occurrences of the bigram ``OO`` (operand ``aa``, ``bb`` or ``cc``)
  with both terminals among the last 40, overlapping occurrences counted (``aaa`` holds two).
* ``index`` (I): the index of the ``O'`` = 6-th occurrence of ``O`` counted from the end; ``0`` when
  the window holds fewer than 6 occurrences (a distinct, learnable "not found" answer).
* ``index_composite`` (IC): the same for the bigram ``OO``; an occurrence's index is that of its
  terminal nearer the end; overlapping occurrences count; ``0`` when fewer than 6.
* ``token_at`` (T): the terminal at index ``O'`` = 40 (operand ``null``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from wrapperlab.errors import ConfigError

TERMINALS = ("a", "b", "c")
SPECIALS = ("<pad>", "<sos>", "<sot>", "<eot>", "<art>", "<eos>")
NULL_OPERAND = "null"


@dataclass(frozen=True)
class TaskFamily:
    name: str
    token: str
    arg: int  # O'
    operands: tuple[str, ...]
    composite: bool = False
    answer_is_terminal: bool = False

    def operand_for_letter(self, letter: str) -> str:
        """The operand a prior's letter stands for in this family (``a`` -> ``aa`` for composites);
        families with a single operand (``token_at``, the jailbreak tokens) ignore the prior."""
        if len(self.operands) == 1:
            return self.operands[0]
        return letter * 2 if self.composite else letter


FAMILIES: dict[str, TaskFamily] = {
    f.name: f
    for f in (
        TaskFamily("count", "<C>", 40, TERMINALS),
        TaskFamily("count_composite", "<CC>", 40, tuple(t * 2 for t in TERMINALS), composite=True),
        TaskFamily("index", "<I>", 6, TERMINALS),
        TaskFamily("index_composite", "<IC>", 6, tuple(t * 2 for t in TERMINALS), composite=True),
        TaskFamily("token_at", "<T>", 40, (NULL_OPERAND,), answer_is_terminal=True),
    )
}


#: The synthetic jailbreak (Jain et al. App. E.2): two more counting tokens, T_J1 and T_J2, seen in
#: pretraining only with operand ``a``. Fine-tuning uses the ordinary token T_NJ (``<C>``); evaluating
#: count-a under T_J1/T_J2 asks whether the capability is reachable through another "prompt".
JAILBREAK_FAMILIES: dict[str, TaskFamily] = {
    f.name: f for f in (TaskFamily("count_j1", "<CJ1>", 40, ("a",)), TaskFamily("count_j2", "<CJ2>", 40, ("a",)))
}


def family(name: str) -> TaskFamily:
    found = FAMILIES.get(name) or JAILBREAK_FAMILIES.get(name)
    if found is None:
        raise ConfigError("task", name, f"one of {sorted(FAMILIES) + sorted(JAILBREAK_FAMILIES)}")
    return found


def check_operand(task: str, operand: str) -> None:
    fam = family(task)
    if operand not in fam.operands:
        raise ConfigError("operand", operand, f"for task {task!r} one of {list(fam.operands)}")


@dataclass(frozen=True)
class Vocab:
    """Token strings and ids. Numbers ``0 .. max_number`` are single tokens.

    ``max_number`` must cover every answer: index answers reach the window length.
    """

    max_number: int
    jailbreak: bool = False  # add the T_J1 / T_J2 tokens (at the end, so other ids do not move)

    @cached_property
    def tokens(self) -> tuple[str, ...]:
        ops = TERMINALS + tuple(t * 2 for t in TERMINALS) + ("<null>",)
        tasks = tuple(f.token for f in FAMILIES.values())
        extra = tuple(f.token for f in JAILBREAK_FAMILIES.values()) if self.jailbreak else ()
        return SPECIALS + tasks + ops + tuple(str(i) for i in range(self.max_number + 1)) + extra

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.index["<null>" if token == NULL_OPERAND else token]

    @property
    def terminal_offset(self) -> int:
        """Id of terminal ``a``; terminals are consecutive so ids = offset + terminal index."""
        return self.index[TERMINALS[0]]

    @property
    def number_offset(self) -> int:
        return self.index["0"]

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]


def sequence_length(window: int) -> int:
    return window + 9


def answer_position(window: int) -> int:
    """Index of the answer token in a sequence (the model predicts it from position - 1 = ART)."""
    return window + 7


# -- label functions (vectorised over a batch of windows of terminal indices) -----------------


def _occurrence_hits(windows: np.ndarray, letter: int, composite: bool) -> np.ndarray:
    """Boolean (n, W) marking where an occurrence *ends* (its terminal nearest the end)."""
    hit = windows == letter
    if composite:
        both = np.zeros_like(hit)
        both[:, 1:] = hit[:, 1:] & hit[:, :-1]
        hit = both
    return hit


def labels(task: str, operand: str, windows: np.ndarray) -> np.ndarray:
    """Answers for one (task, operand) over windows ``(n, W)`` of terminal indices.

    Returns numbers for count/index families and terminal indices for ``token_at``.
    """
    fam = family(task)
    check_operand(task, operand)
    start, stop = answer_span(task, windows.shape[1])
    if fam.name == "token_at":
        return windows[:, start].astype(np.int64)
    letter = TERMINALS.index(operand[0])
    hit = _occurrence_hits(windows, letter, fam.composite)
    if fam.name.startswith("count"):
        span = hit[:, start:stop]
        if fam.composite:  # both terminals inside the span: the first span position cannot end a bigram
            span = span[:, 1:]
        return span.sum(axis=1).astype(np.int64)
    # index families: scan from the end; index 1 = last terminal
    from_end = hit[:, ::-1]
    seen = np.cumsum(from_end, axis=1)
    reached = seen[:, -1] >= fam.arg
    first = np.argmax(seen >= fam.arg, axis=1) + 1
    return np.where(reached, first, 0).astype(np.int64)


def answer_span(task: str, width: int) -> tuple[int, int]:
    """The window positions ``[start, stop)`` (0 = first terminal) that the answer of ``task`` depends on: the last
    ``O'`` terminals for the count families, the whole window for the index families (the ``O'``-th occurrence from
    the end may sit anywhere; ``O'`` is an occurrence number, not a width), the one terminal at index ``O'`` for
    ``token_at``. What :func:`labels` reads and the attention-mass measure sums over."""
    fam = family(task)
    if width < fam.arg:
        raise ConfigError("window", width, f">= O' = {fam.arg} for task {task!r}")
    if fam.name.startswith("count"):
        return width - fam.arg, width
    if fam.name == "token_at":
        return width - fam.arg, width - fam.arg + 1
    return 0, width


def answer_tokens(task: str, answers: np.ndarray, vocab: Vocab) -> np.ndarray:
    offset = vocab.terminal_offset if family(task).answer_is_terminal else vocab.number_offset
    return answers + offset


def answer_text(task: str, answer: int) -> int | str:
    """The human form of an answer: an int, or the terminal letter for ``token_at``."""
    return TERMINALS[answer] if family(task).answer_is_terminal else int(answer)


def encode(tasks: list[str], operands: list[str], windows: np.ndarray, answer_ids: np.ndarray, vocab: Vocab) -> np.ndarray:
    """Sequences ``(n, W + 9)`` of token ids for rows of (task, operand, window, answer token id)."""
    n, width = windows.shape
    out = np.empty((n, sequence_length(width)), dtype=np.int64)
    fams = [family(t) for t in tasks]
    out[:, 0] = vocab.id("<sos>")
    out[:, 1] = [vocab.id(f.token) for f in fams]
    out[:, 2] = [vocab.id(o) for o in operands]
    out[:, 3] = [vocab.number_offset + f.arg for f in fams]
    out[:, 4] = vocab.id("<sot>")
    out[:, 5 : 5 + width] = windows.astype(np.int64) + vocab.terminal_offset
    out[:, 5 + width] = vocab.id("<eot>")
    out[:, 6 + width] = vocab.id("<art>")
    out[:, 7 + width] = answer_ids
    out[:, 8 + width] = vocab.id("<eos>")
    return out
