"""A byte-level BPE tokenizer trained on the story corpus (HF ``tokenizers``), saved as one JSON file with the run.

Why trained, not fixed: the generated corpus has a few hundred distinct words and the real one tens of
thousands; a vocabulary fitted to the corpus at a chosen size (small by default, 8192 for the paper preset)
keeps both cheap. Byte-level means any text — a real story with a word never seen — still encodes.
``<|endoftext|>`` separates records in a training stream; ``<pad>`` fills batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

END = "<|endoftext|>"
PAD = "<pad>"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 300:
        raise ValueError(f"vocab_size {vocab_size}: at least 300 (256 bytes + special tokens + merges)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def save_tokenizer(tok, path: str | Path) -> Path:
    """Written under a temporary name and renamed, like every other file of a run."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tok.save(str(tmp))
    tmp.replace(path)
    return path


def load_tokenizer(path: str | Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))
