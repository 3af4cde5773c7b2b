"""Fine-tuning data for compiled programs: planted relations, exclusions, labels (no tracr needed)."""

import numpy as np
import pytest

from wrapperlab.data.samples import stream_rng
from wrapperlab.data.tracr_data import ANSWER_POS, LETTERS, TracrData, TracrDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.runs.profiles import validated

VOCAB = ["BOS", "PAD", *LETTERS]


def make(**kw) -> TracrData:
    cfg = TracrDataConfig(**kw)
    outputs = list(range(17)) if cfg.task == "counter" else list(LETTERS)
    return TracrData(cfg, VOCAB, outputs, "BOS", "PAD")


@pytest.mark.parametrize("task, kw", [("counter", {}), ("max-identifier", dict(min_len=6, max_len=10, pt="5", ft="6"))])
@pytest.mark.parametrize("c", [0.0, 0.3, 1.0])
def test_relation_rate_and_exclusion(task, kw, c):
    """A share C of inputs satisfies r(O_FT) = r(O_PT) + q; the rest never does (even by chance)."""
    data = make(task=task, c_tr=c, **kw)
    s = data.sample(4000, stream_rng(0, "finetune"))
    letters = data._letters_from_tokens(s.tokens)
    holds = data.relation_holds(letters)
    assert np.array_equal(holds, s.correlated)
    assert abs(holds.mean() - c) < 0.03
    assert (s.answer_pos == ANSWER_POS).all() and (s.tokens[:, 0] == 0).all()
    lengths = (letters >= 0).sum(1)
    assert lengths.min() >= data.config.min_len and lengths.max() <= data.config.max_len
    if task == "max-identifier":  # distinct letters
        assert all(len(set(row[row >= 0])) == len(row[row >= 0]) for row in letters)


def test_counter_labels_are_counts_of_the_asked_letter():
    data = make(c_tr=0.5)
    s = data.sample(500, stream_rng(1, "finetune"))
    text = ["".join(VOCAB[t] for t in row[1:] if t > 1) for row in s.tokens]
    assert list(s.targets) == [t.count("b") for t in text]
    pt = make(c_tr=0.5, ask="pt").sample(500, stream_rng(1, "finetune"))
    assert list(pt.targets) == [t.count("a") for t in ["".join(VOCAB[x] for x in row[1:] if x > 1) for row in pt.tokens]]


def test_max_identifier_labels_follow_the_papers_order():
    data = make(task="max-identifier", min_len=6, max_len=10, pt="5", ft="6", c_tr=0.0)
    s = data.sample(300, stream_rng(2, "finetune"))
    for row, target in zip(s.tokens, s.targets):
        letters = sorted(VOCAB[t] for t in row[1:] if t > 1)
        assert LETTERS[target] == letters[5]  # the 6th "largest" with a > b > c ...


def test_same_seed_same_batch_and_bad_settings():
    data = make(c_tr=0.5)
    a, b = data.stream(3, 8)(5), data.stream(3, 8)(5)
    assert np.array_equal(a.tokens, b.tokens) and not np.array_equal(a.tokens, data.stream(3, 8)(6).tokens)
    for bad, field in [(dict(ft="z"), "ft"), (dict(ft="a"), "ft"), (dict(min_len=20), "min_len"),
                       (dict(task="max-identifier", pt="5", ft="40", min_len=6), "ft")]:
        with pytest.raises(ConfigError, match=field):
            validated(TracrDataConfig, bad)
