"""Encode: a capability's records as model input, tokenized as the model will see them — the prompt with the
tokenizer's special tokens (a BOS) or wrapped in its chat template (``chat_template``), the answer without, so the
answer's tokens are exactly the ones scored. A multiple-choice record's answer is its letter, one token (`` A``
after the prompt's ``Answer:``, or ``A`` opening an assistant turn), and it keeps its choices' letter tokens
(``options``) so accuracy can be read among them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from wrapperlab.data.capability import Capability
from wrapperlab.errors import ConfigError


@dataclass(frozen=True)
class Encoded:
    """Records as model input: ``tokens`` (n, length) right-padded, ``mask`` (n, length) 1 on real tokens,
    ``target`` (n, length) the next token at each position where it is an answer token, -1 elsewhere; for multiple
    choice, ``options`` (n, choices) the token of each of a record's letters (-1 past its last)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    target: torch.Tensor
    options: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def take(self, idx: torch.Tensor | list[int]) -> "Encoded":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Encoded(self.tokens[idx], self.mask[idx], self.target[idx],
                       None if self.options is None else self.options[idx])

    def to(self, device: torch.device) -> "Encoded":
        return Encoded(self.tokens.to(device), self.mask.to(device), self.target.to(device),
                       None if self.options is None else self.options.to(device))

    def batches(self, max_tokens: int, device: torch.device) -> Iterator["Encoded"]:
        """Consecutive batches of at most ``max_tokens`` tokens (rows x their padded length; at least one row),
        cut to their longest row, on ``device``."""
        lengths = self.mask.sum(1)
        start = 0
        while start < len(self):
            end = start + 1
            while end < len(self) and (end + 1 - start) * int(lengths[start:end + 1].max()) <= max_tokens:
                end += 1
            width = int(lengths[start:end].max())
            part = self.take(torch.arange(start, end))
            yield Encoded(part.tokens[:, :width], part.mask[:, :width], part.target[:, :width], part.options).to(device)
            start = end


def prompt_ids(tokenizer, prompt: str, chat_template: bool) -> list[int]:
    """A prompt's token ids: with the tokenizer's special tokens, or as the user turn of its chat template (with the
    assistant's turn opened: the answer follows)."""
    if not chat_template:
        return tokenizer(prompt).input_ids
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("chat_template", True, "a tokenizer with a chat template (this one has none)")
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    except Exception as e:  # jinja2's syntax, assertion and raise_exception errors: the template is the model's
        why = f"{type(e).__name__}: {' '.join(str(e).split())[:100]}"
        raise ConfigError("chat_template", f"a template that fails ({why})", "a chat template that renders a user "
                                                                             "turn") from None
    return tokenizer(text, add_special_tokens=False).input_ids


def letter_tokens(tokenizer, letters: tuple[str, ...], chat_template: bool) -> dict[str, int]:
    """Each choice letter's one token as it follows the prompt: `` A`` after ``Answer:`` (``A`` opening a chat
    turn), or bare ``A`` where the tokenizer splits the spaced form; refused where a letter is not one token."""
    for prefix in ([""] if chat_template else [" ", ""]):
        ids = {x: tokenizer(prefix + x, add_special_tokens=False).input_ids for x in letters}
        if all(len(v) == 1 and v[0] != tokenizer.unk_token_id for v in ids.values()) \
                and len({v[0] for v in ids.values()}) == len(letters):
            return {x: v[0] for x, v in ids.items()}
    raise ConfigError("multiple-choice letters", f"{letters[0]}..{letters[-1]} as several tokens (or one shared, or "
                                                 "unknown) in this tokenizer", "one distinct known token each")


def encode(capability: Capability, tokenizer, n_ctx: int | None, chat_template: bool = False,
           truncate: bool = False) -> Encoded:
    """Every record of ``capability``; one longer than the model's context (``n_ctx``) is an error naming it — or,
    with ``truncate`` (the never-known twin, whose shuffled answers can land on longer prompts), its answer is cut to
    fit."""
    rows, targets = [], []
    letters = max((e.letters for e in capability.examples), key=len)
    ids = letter_tokens(tokenizer, letters, chat_template) if letters else {}
    for example in capability.examples:
        prompt = prompt_ids(tokenizer, example.prompt, chat_template)
        answer = [ids[example.answer]] if letters else tokenizer(example.answer, add_special_tokens=False).input_ids
        where = f"{capability.name}:{example.line}"
        if not answer:
            raise ConfigError(f"{where}: answer", example.answer, "text that tokenizes to at least one token")
        if truncate and n_ctx and len(prompt) < n_ctx:
            answer = answer[:n_ctx - len(prompt)]
        seq = prompt + answer
        if n_ctx and len(seq) > n_ctx:
            raise ConfigError(where, f"{len(seq)} tokens (prompt and answer)", f"at most the model's context of {n_ctx}")
        rows.append(seq)
        targets.append([-1] * (len(prompt) - 1) + answer + [-1])  # position t predicts token t + 1
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    tokens = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    target = torch.full((len(rows), length), -1, dtype=torch.long)
    for i, (row, tgt) in enumerate(zip(rows, targets)):
        tokens[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
        target[i, :len(tgt)] = torch.tensor(tgt)
    options = None
    if letters:
        options = torch.full((len(rows), len(letters)), -1, dtype=torch.long)
        for i, example in enumerate(capability.examples):
            options[i, :len(example.letters)] = torch.tensor([ids[x] for x in example.letters])
    return Encoded(tokens, mask, target, options)


def context_of(config) -> int | None:
    """The longest sequence a model's config allows (None: it does not say)."""
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def answer_majority(data: Encoded) -> float:
    """The share of records whose first answer token is the most common one (whether a probe of it can tell
    anything: claims/verdicts.AUDIT_PROBE_SKEW)."""
    first = data.target.gather(1, (data.target >= 0).to(torch.int8).argmax(1)[:, None])[:, 0]
    return float(first.bincount().max()) / len(first)


#: the most of a capability's tokens that may be the tokenizer's unknown token: past it the records are mostly not
#: in the model's vocabulary (another tokenizer's text, a typo'd field), and the audit would measure ``<unk>``
UNKNOWN_MAX = 0.01


def check_unknown(data: Encoded, tokenizer, capability: Capability, say) -> int:
    """How many of the records' tokens (prompts and answers) are the unknown token — said when any are, refused in
    one line naming the first such record above :data:`UNKNOWN_MAX` (they became ``<unk>`` without a word)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:  # byte-level tokenizers have none: every text has tokens
        return 0
    hits = (data.tokens == unk) & data.mask.bool()
    n, total = int(hits.sum()), int(data.mask.sum())
    if n and n / total > UNKNOWN_MAX:
        first = capability.examples[int(hits.any(1).to(torch.int8).argmax())]
        raise ConfigError(f"{capability.name}:{first.line}", f"{n} of {total} tokens unknown to the tokenizer "
                                                             f"({100 * n / total:.1f} %)",
                          f"at most {100 * UNKNOWN_MAX:g} % (text in the models' vocabulary)")
    if n:
        say(f"{n} of {total} capability tokens are unknown to the tokenizer ({tokenizer.unk_token})")
    return n

