"""Planted spurious correlations: exact relations, exact rates, natural-looking labels."""

import numpy as np
import pytest

from wrapperlab.data import tasks as T
from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.errors import ConfigError


def make(task="count", c_tr=1.0, window=250, **kw):
    return FinetuneData(PCFGData(PCFGDataConfig(window=window)), FinetuneDataConfig(task=task, c_tr=c_tr, **kw))


@pytest.mark.parametrize("task", ["count", "index"])
@pytest.mark.parametrize("c_tr", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_rate_and_relation(task, c_tr):
    ft = make(task, c_tr)
    s = ft.sample(3000, np.random.default_rng(1))
    assert abs(s.correlated.mean() - c_tr) <= 0.01
    holds = ft.relation_holds(s.windows)
    assert (holds == s.correlated).all()  # correlated <=> r(x, b) - r(x, a) = q, exactly
    r_ft = T.labels(task, "b", s.windows[s.correlated])
    r_pt = T.labels(task, "a", s.windows[s.correlated])
    assert (r_ft - r_pt == 1).all()
    assert (s.answer == T.labels(task, "b", s.windows)).all()


def test_stream_batches_stay_within_one_sample_of_the_rate():
    ft = make("count", 0.3, window=64)
    for step in range(20):
        s = ft.sample(96, np.random.default_rng(step))
        assert abs(s.correlated.sum() - 0.3 * 96) < 1


@pytest.mark.parametrize("task", ["count", "index"])
def test_planting_leaves_the_pretraining_answer_alone(task):
    ft = make(task)
    rng = np.random.default_rng(3)
    windows = ft.data.windows(2000, rng)
    before = T.labels(task, "a", windows)
    a_positions = windows == 0
    ok = ft.plant(windows, rng)
    assert ok.mean() > 0.8
    assert (T.labels(task, "a", windows) == before).all()
    if task == "count":  # no `a` token is ever written or erased
        assert ((windows == 0) == a_positions).all()
    assert ft.relation_holds(windows[ok]).all()


def test_label_histograms_look_alike():
    """Fig. 16 of the paper: C_Tr = 0 and 1 label histograms overlap heavily (TV distance in docs)."""
    for task in ("count", "index"):
        h = []
        for c in (0.0, 1.0):
            s = make(task, c).sample(5000, np.random.default_rng(0))
            h.append(np.bincount(s.answer, minlength=251) / len(s))
        tv = 0.5 * np.abs(h[0] - h[1]).sum()
        assert tv < 0.35, (task, tv)
        assert (h[1] > 0.01).sum() >= 6  # spread over many classes, not a few


def test_other_letters_and_offsets():
    ft = make("count", 1.0, operand="c", pt_operand="b", q=2)
    s = ft.sample(500, np.random.default_rng(0))
    assert (T.labels("count", "c", s.windows) - T.labels("count", "b", s.windows) == 2).all()


@pytest.mark.parametrize(
    "kw, field",
    [({"c_tr": 1.5}, "c_tr"), ({"c_tr": -0.1}, "c_tr"), ({"operand": "a"}, "operand"), ({"operand": "d"}, "operand"),
     ({"task": "token_at"}, "task"), ({"q": 0}, "q")],
)
def test_bad_config(kw, field):
    from wrapperlab.runs.profiles import validated

    with pytest.raises(ConfigError, match=f"^{field}"):
        validated(FinetuneDataConfig, kw)


def test_reft_randft_and_mixing_batches():
    data = PCFGData(PCFGDataConfig(window=64))
    reft = FinetuneData(data, FinetuneDataConfig(ask="pt", c_tr=0.0)).training_batch(200, np.random.default_rng(0))
    assert set(reft.operand) == {"a"} and (reft.answer == T.labels("count", "a", reft.windows)).all()
    rand = FinetuneData(data, FinetuneDataConfig(ask="pt", answer="ft", c_tr=0.0)).training_batch(200, np.random.default_rng(0))
    assert set(rand.operand) == {"a"} and (rand.answer == T.labels("count", "b", rand.windows)).all()
    mixed = FinetuneData(data, FinetuneDataConfig(mix_pt=0.1)).training_batch(200, np.random.default_rng(0))
    from_pt = mixed.correlated == False  # noqa: E712  (pretraining rows carry no correlation)
    assert from_pt.sum() == 20 and len(set(mixed.task[from_pt])) > 1


def test_jailbreak_tokens_only_ever_count_a():
    data = PCFGData(PCFGDataConfig(window=64, tasks=("count", "count_j1", "count_j2"), prior="medium"))
    s = data.sample(3000, np.random.default_rng(0))
    assert set(s.operand[s.task != "count"]) == {"a"}
    assert (s.answer == T.labels("count", "a", s.windows))[s.task != "count"].all()
    assert data.vocab.tokens[-2:] == ("<CJ1>", "<CJ2>")
    plain = PCFGData(PCFGDataConfig(window=64))
    assert plain.vocab.tokens == data.vocab.tokens[:-2]  # ids of the ordinary vocabulary do not move
