"""Science checks at the quick profile (2 blocks x 128 pretrained 400 steps on the counting family, bf16 where
the CPU has it natively, else fp32; about a minute of CPU per run): the acceptance numbers of the PCFG core.

Marked slow; CI runs them. Skip locally with ``pytest -m "not slow"``.
"""

import pytest

from wrapperlab.runs.store import RunStore
from wrapperlab.settings.pcfg.configs import finetune_config, pretrain_config
from wrapperlab.settings.pcfg.stages import finetune, pretrain
from wrapperlab.training.config import Runtime, native_bf16

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


@pytest.fixture(scope="module")
def wrapped(pretrained):
    """The C_Tr = 1, eta_M fine-tune: the model that should hold a wrapper."""
    store, stage = pretrained
    cfg = finetune_config(stage.run.id, "quick", {"train.lr": "M", "data.c_tr": 1.0})
    return store, finetune(cfg, store, QUIET, say=lambda _: None)


def test_pruning_a_few_rows_revives_counting_a(wrapped):
    """Issue 3: with the paper's unit (rows of every matrix), <= 20 rows restore at least half of the
    pretrained count-a accuracy, which fine-tuning had destroyed, while the fine-tuned shortcut weakens."""
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.runs.stage import Lab
    from wrapperlab.settings.pcfg.analyses import prune_run

    store, ft = wrapped
    data = prune_run(Lab(store, say=lambda _: None), ft.run.id, PruneConfig(ks=(0, 5, 10, 15, 20))).data
    pt = data["curves"]["acc_pt_cte0"]
    print("pruning rows, Acc O_PT(C_Te=0) at K=0,5,10,15,20:", pt, "pretrained:", data["reference"]["acc_pt_cte0"])
    assert pt[0] < 0.3  # the capability looks gone after fine-tuning
    assert data["k_to_half"] is not None and data["k_to_half"] <= 20


def test_probe_still_reads_count_a_after_finetuning(wrapped):
    """The count of a stays linearly readable in the fine-tuned model, well above a random-init control."""
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.runs.stage import Lab
    from wrapperlab.settings.pcfg.analyses import probe_run

    store, ft = wrapped
    data = probe_run(Lab(store, say=lambda _: None), ft.run.id, ProbeConfig(iters=2000)).data
    acc = data["accuracy"]["count_a"]
    print("probe count a per block, model:", acc["model"], "random init:", acc["random_init"])
    assert acc["model"][-1] >= 0.9
    assert acc["model"][-1] >= acc["random_init"][-1] + 0.15


def test_reft_revives_fast_and_scratch_does_not(wrapped):
    """reFT at a tenth of the fine-tuning lr brings count-a back to >= 90 % within 300 steps; the same
    training from random weights does not reach 50 %."""
    from wrapperlab.runs.profiles import validated
    from wrapperlab.settings.pcfg.configs import FinetuneRunConfig, reft_config

    store, ft = wrapped
    ft_cfg = validated(FinetuneRunConfig, ft.run.config())
    reft = finetune(reft_config(ft_cfg, ft.run.id, "quick"), store, QUIET, say=lambda _: None, kind="reft")
    scratch_cfg = reft_config(ft_cfg, ft_cfg.parent, "quick", init="random")
    scratch = finetune(scratch_cfg, store, QUIET, say=lambda _: None, kind="scratch")
    print("reFT first steps:", reft.result["first_step_at"]["acc_pt_cte0"],
          "scratch:", scratch.result["first_step_at"]["acc_pt_cte0"])
    assert reft.result["first_step_at"]["acc_pt_cte0"]["0.9"] is not None
    assert scratch.result["first_step_at"]["acc_pt_cte0"]["0.5"] is None


def test_reft_from_the_pretrained_model_keeps_its_accuracy(pretrained):
    """reFT trains on the pretraining question with honest labels; applied to the pretrained model itself
    it must not lower Acc O_PT (within one binomial standard error of the 1000-sample estimate)."""
    from wrapperlab.settings.pcfg.configs import FinetuneRunConfig, finetune_config, reft_config
    store, stage = pretrained
    ft_cfg = finetune_config(stage.run.id, "quick", {"train.lr": "M", "data.c_tr": 1.0})
    assert isinstance(ft_cfg, FinetuneRunConfig)
    # the whole budget: the profile's reFT stops 10 steps after 90 %, which a pretrained model starts above
    cfg = reft_config(ft_cfg, stage.run.id, "quick", {"train.stop_when": {}})
    assert cfg.train.iters == 300 and not cfg.train.stop_when
    result = finetune(cfg, store, QUIET, say=lambda _: None, kind="reft").result
    before, after = result["before"]["acc_pt_cte0"], result["after"]["acc_pt_cte0"]
    print("reFT on the pretrained model: Acc O_PT(C_Te=0)", before, "->", after)
    assert after >= before - (before * (1 - before) / 1000) ** 0.5


@pytest.mark.skipif(not native_bf16(), reason="this CPU emulates bf16 (no AVX-512/AMX): the quick profile trains in "
                    "fp32 here, and an emulated bf16 twin would cost ~14x its fp32 time")
def test_bf16_training_matches_fp32_within_noise(pretrained):
    """bf16 autocast (attention kept in fp32 on CPU; the quick profile's precision) trains the quick model to the
    same count-a accuracy as fp32: the same seed, both >= 95 % and within 3 points of each other (the spread of three
    fp32 seeds was 1.2 points)."""
    store, _ = pretrained  # the bf16 run is the fixture's own (reused), the fp32 twin is computed
    acc = {prec: pretrain(pretrain_config("quick", {"train.precision": prec}), store, QUIET,
                          say=lambda _: None).result["accuracy"]["count/a"] for prec in ("fp32", "bf16")}
    print("count a after 400 steps:", acc)
    assert min(acc.values()) >= 0.95 and abs(acc["fp32"] - acc["bf16"]) <= 0.03
