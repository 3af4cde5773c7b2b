"""Science checks at the quick profile (minutes of CPU): the acceptance numbers of the PCFG core.

Marked slow; CI runs them. Skip locally with ``pytest -m "not slow"``.
"""

import pytest

from wrapperlab.experiments.configs import finetune_config, pretrain_config
from wrapperlab.experiments.pipeline import finetune, pretrain
from wrapperlab.experiments.store import RunStore
from wrapperlab.training.config import Runtime

pytestmark = pytest.mark.slow

QUIET = Runtime(progress=False)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    store = RunStore(tmp_path_factory.mktemp("science") / "runs")
    stage = pretrain(pretrain_config("quick"), store, QUIET, say=lambda _: None)
    return store, stage


def test_quick_pretraining_counts_a(pretrained):
    """Acceptance 3: low prior (0.999, 0.001, 0) -> >= 95 % exact match on counting a (1000 fresh samples)."""
    _, stage = pretrained
    acc = stage.result["accuracy"]
    print(f"quick pretrain: {stage.result['steps']} steps, {stage.result['train_seconds']:.0f} s, "
          f"count a/b/c = {acc['count/a']:.3f}/{acc['count/b']:.3f}/{acc['count/c']:.3f}")
    assert acc["count/a"] >= 0.95
    assert acc["count/b"] < 0.5  # with a 0.001 prior there is no real count-b capability


def test_spurious_finetuning_learns_the_shortcut(pretrained):
    """Acceptance 4: C_Tr = 1 at eta_M -> Acc O_FT(C_Te = 1) > 90 %; the shortcut fails at C_Te = 0."""
    store, stage = pretrained
    cfg = finetune_config(stage.run.id, "quick", {"train.lr": "M", "data.c_tr": 1.0})
    after = finetune(cfg, store, QUIET, say=lambda _: None).result["after"]
    print("quick finetune C_Tr=1, eta_M:", after)
    assert after["acc_ft_cte1"] > 0.9
    assert after["acc_ft_cte0"] < 0.2  # it answers count(a) + 1, which is never right on uncorrelated data
