import numpy as np
import pytest

from wrapperlab.data.priors import NAMED_PRIORS, draw_letters, resolve_prior
from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.data.tasks import FAMILIES
from wrapperlab.errors import ConfigError


@pytest.mark.parametrize("name", list(NAMED_PRIORS))
def test_operand_frequencies_follow_the_prior(name):
    """100k samples: each letter's frequency within 1 percentage point of the prior; families uniform."""
    data = PCFGData(PCFGDataConfig(window=64, prior=name, tasks=("count", "count_composite", "index")))
    s = data.sample(100_000, np.random.default_rng(0))
    letters = np.array([op[0] for op in s.operand])
    for letter, p in zip("abc", NAMED_PRIORS[name]):
        assert abs((letters == letter).mean() - p) < 0.01
    for fam in ("count", "count_composite", "index"):
        assert abs((s.task == fam).mean() - 1 / 3) < 0.01
    composite = s.task == "count_composite"
    assert all(op in FAMILIES["count_composite"].operands for op in s.operand[composite])


def test_user_vector_and_zero_probabilities():
    assert resolve_prior("0.6,0.3,0.1") == (0.6, 0.3, 0.1)
    letters = draw_letters((0.0, 1.0, 0.0), 10000, np.random.default_rng(0))
    assert (letters == 1).all()
    letters = draw_letters(NAMED_PRIORS["low"], 100000, np.random.default_rng(1))
    assert not (letters == 2).any()


@pytest.mark.parametrize("bad", ["uniform", "0.5,0.5", "0.5,0.4,0.2", "-0.1,0.6,0.5", "x,y,z", "nan,0.5,0.5"])
def test_bad_priors(bad):
    with pytest.raises(ConfigError, match="^prior"):
        resolve_prior(bad)
