"""Task labels against a deliberately naive reference, and the sequence format."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wrapperlab.data import tasks as T
from wrapperlab.data.finetune_data import FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.errors import ConfigError


def reference(task: str, operand: str, text: str) -> int | str:
    """Straight from the definitions in docs/pcfg.md, one character at a time."""
    if task == "token_at":
        return text[len(text) - 40]
    if task == "count":
        return sum(ch == operand for ch in text[-40:])
    if task == "count_composite":
        tail = text[-40:]
        return sum(tail[i : i + 2] == operand for i in range(len(tail) - 1))
    seen = 0
    for index in range(1, len(text) + 1):  # index 1 = last terminal
        if task == "index":
            hit = text[-index] == operand
        else:
            hit = index < len(text) and text[-index - 1] + text[-index] == operand
        seen += hit
        if seen == 6:
            return index
    return 0


PAIRS = [(t, op) for t, f in T.FAMILIES.items() for op in f.operands]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet="abc", min_size=40, max_size=90), min_size=1, max_size=8).filter(
    lambda xs: len({len(x) for x in xs}) == 1))
def test_labels_match_reference(texts):
    windows = np.array([[T.TERMINALS.index(ch) for ch in t] for t in texts], dtype=np.uint8)
    for task, op in PAIRS:
        got = T.labels(task, op, windows)
        for text, value in zip(texts, got):
            want = reference(task, op, text)
            assert T.answer_text(task, int(value)) == want, (task, op, text)


def test_edge_cases():
    text = "a" * 40
    w = np.array([[0] * 40], dtype=np.uint8)
    assert T.labels("count", "a", w)[0] == 40
    assert T.labels("count_composite", "aa", w)[0] == 39
    assert T.labels("index", "a", w)[0] == 6
    assert T.labels("index_composite", "aa", w)[0] == 6
    assert T.labels("index", "b", w)[0] == 0  # fewer than 6 occurrences
    assert reference("index_composite", "aa", text) == 6


def test_sequence_format():
    data = PCFGData(PCFGDataConfig(window=64))
    s = data.sample(20, np.random.default_rng(0), task="count", operand="a")
    row = s.records(data.vocab)[0]
    toks = row["tokens"]
    assert len(toks) == 64 + 9
    assert toks[:5] == ["<sos>", "<C>", "a", "40", "<sot>"]
    assert "".join(toks[5:69]) == row["text"]
    assert toks[69:] == ["<eot>", "<art>", str(row["answer"]), "<eos>"]
    assert s.answer_pos[0] == 71 and data.vocab.tokens[s.tokens[0, 71]] == str(row["answer"])


def test_token_at_answer_is_a_terminal():
    data = PCFGData(PCFGDataConfig(window=64))
    row = data.sample(3, np.random.default_rng(0), task="token_at").records(data.vocab)[0]
    assert row["operand"] == "null" and row["tokens"][2] == "<null>"
    assert row["answer"] in ("a", "b", "c") and row["answer"] == row["text"][-40]


def test_vocab_covers_every_index_answer():
    data = PCFGData(PCFGDataConfig(window=250))
    assert data.vocab.tokens[-1] == "250"
    assert len(set(data.vocab.tokens)) == len(data.vocab)


@pytest.mark.parametrize(
    "task, operand, field",
    [("count", "aa", "operand"), ("sum", "a", "task"), ("token_at", "a", "operand"), ("count_composite", "a", "operand")],
)
def test_bad_task_or_operand(task, operand, field):
    with pytest.raises(ConfigError, match=f"^{field}"):
        T.labels(task, operand, np.zeros((1, 64), dtype=np.uint8))


def test_window_shorter_than_arg():
    with pytest.raises(ConfigError, match="window"):
        T.labels("count", "a", np.zeros((1, 30), dtype=np.uint8))


def test_answer_spans_are_what_the_labels_read():
    """The attention-mass span: the last O' = 40 terminals for counting, the whole window for indexing (O' = 6 is an
    occurrence number, not a width), the single terminal at index 40 for token_at."""
    from wrapperlab.data.tasks import answer_span

    assert answer_span("count", 64) == answer_span("count_composite", 64) == (24, 64)
    assert answer_span("index", 64) == answer_span("index_composite", 64) == (0, 64)
    assert answer_span("token_at", 64) == (24, 25)


def test_the_indexer_attention_mass_covers_the_whole_window():
    """Under uniform causal attention (queries and keys zeroed) the mass ART puts on O_PT tokens is their count in the
    answer's span over the positions it sees. For the indexer that span is the window: an a in the window's first
    positions — where the 6th a from the end often is — counts (the old span, the last 6 positions, missed it)."""
    import torch

    from wrapperlab.data.samples import PCFGData, PCFGDataConfig
    from wrapperlab.models.gpt import GPT, GPTConfig
    from wrapperlab.settings.pcfg.maps import attention_maps

    data = PCFGData(PCFGDataConfig(window=64, tasks=("index",)))
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=len(data.vocab), n_ctx=data.seq_len)).eval()
    with torch.no_grad():
        for block in model.blocks:
            d = block.attn.qkv.weight.shape[0] // 3
            block.attn.qkv.weight[: 2 * d] = 0  # q and k rows: every score equal, attention uniform
            if block.attn.qkv.bias is not None:
                block.attn.qkv.bias[: 2 * d] = 0
    many = data.sample(50, np.random.default_rng(0), task="index", operand="a")
    maps = attention_maps(model, many, many, FinetuneDataConfig(task="index", pt_operand="a", operand="b"), data.vocab)
    query = many.answer_pos - 1
    window = many.tokens[:, 5 : 5 + 64]
    expected = np.mean((window == data.vocab.id("a")).sum(1) / (query + 1))
    assert np.allclose(maps.mass_pt, expected, atol=1e-5)
