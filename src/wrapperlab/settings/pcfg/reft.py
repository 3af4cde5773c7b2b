"""Reverse fine-tuning (reFT) and the baselines that make its speed meaningful (Jain et al. §5.4).

* **reFT**: the fine-tuned model is trained back on the pretraining question (count O_PT on C_Te = 0
  windows) at a smaller learning rate. If fine-tuning only wrapped the capability, it returns within
  a few steps.
* **Scr.+FT**: a model pretrained exactly like the original one except that its operand prior puts all
  mass on O_FT (it never counted O_PT), trained with the same reFT settings. How fast a model that
  never had the capability learns it.
* **Scr.**: the same architecture from random weights, same settings.

Steps-to-threshold (first evaluated step with Acc O_PT(C_Te=0) >= 90 %) compare them. The baselines get
``reft_baseline_factor`` (profiles.yaml: 10) times the reFT budget, so that "not within N steps" means more than
"the budget was too short"; every curve stops a margin after it reaches the threshold (``train.stop_when``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from wrapperlab.data.tasks import TERMINALS
from wrapperlab.errors import ConfigError
from wrapperlab.runs.profiles import load_profiles, validated
from wrapperlab.runs.stage import Say, StageResult
from wrapperlab.runs.store import Run, RunStore, lineage_root
from wrapperlab.settings.pcfg.configs import FinetuneRunConfig, PretrainRunConfig, reft_config
from wrapperlab.settings.pcfg.results import ReftCurves
from wrapperlab.settings.pcfg.stages import finetune, pretrain, pretraining_config
from wrapperlab.training.config import Runtime

TARGET = "acc_pt_cte0"


def only_operand_prior(letter: str) -> tuple[float, float, float]:
    return tuple(1.0 if t == letter else 0.0 for t in TERMINALS)  # type: ignore[return-value]


def never_pt_config(root: PretrainRunConfig, operand: str) -> PretrainRunConfig:
    """The Scr.+FT pretraining: ``root`` with the whole operand prior on ``operand`` (O_FT)."""
    data = root.data.model_copy(update={"prior": only_operand_prior(operand)})
    return validated(PretrainRunConfig, root.model_copy(update={"data": data}).model_dump(mode="json"))


def root_pretrain_run(store: RunStore, run: Run) -> Run:
    return lineage_root(run, "pretrain")


@dataclass
class ReftResult:
    curves: dict[str, StageResult]  # "reft", "scr+ft", "scr"

    def steps_to(self, threshold: float = 0.9) -> dict[str, int | None]:
        return {name: stage.result["first_step_at"].get(TARGET, {}).get(str(threshold)) for name, stage in self.curves.items()}

    def summary(self) -> ReftCurves:
        return ReftCurves.from_json({
            name: {
                "run": stage.run.id,
                "start": stage.result["before"][TARGET],
                "end": stage.result["after"][TARGET],
                "steps_to_0.5": stage.result["first_step_at"].get(TARGET, {}).get("0.5"),
                "steps_to_0.9": stage.result["first_step_at"].get(TARGET, {}).get("0.9"),
                "budget": stage.run.config()["train"]["iters"],
                "lr": stage.run.config()["train"]["lr"],
                "curve": [(r["step"], r[TARGET]) for r in stage.run.metrics() if TARGET in r],
            }
            for name, stage in self.curves.items()
        })


BASELINES = ("scr+ft", "scr")


def baseline_config(reft: FinetuneRunConfig, parent: str, init: str = "parent") -> FinetuneRunConfig:
    """A baseline of reFT ``reft``: the same data, lr and seed from ``parent`` (the never-had-it model, or with
    ``init="random"`` fresh weights), for ``reft_baseline_factor`` x the reFT budget."""
    longer = reft.train.model_copy(update={"iters": reft.train.iters * int(load_profiles()["reft_baseline_factor"])})
    return reft.model_copy(update={"train": longer, "parent": parent, "init": init})


def scrft_config(finetuned: FinetuneRunConfig, never: str, profile_name: str = "quick",
                 overrides: dict | None = None) -> FinetuneRunConfig:
    """Scr.+FT of any fine-tuning like ``finetuned`` (its pair, seed and lr; the reFT data ignore its C_Tr), from the
    never-had-it model ``never``: the same run :func:`run_reft` asks for, so a spec can train it once, before the
    reFTs."""
    return baseline_config(reft_config(finetuned, never, profile_name, overrides), never)


def run_reft(
    store: RunStore,
    ref: str,
    profile_name: str = "quick",
    overrides: dict | None = None,
    baselines: bool | Sequence[str] = False,
    runtime: Runtime = Runtime(),
    say: Say = print,
) -> ReftResult:
    """reFT of ``ref`` and, with ``baselines`` (True = both, or a subset of :data:`BASELINES`), the controls
    trained the same way."""
    ft_run = store.resolve(ref)
    if ft_run.kind == "pretrain":
        raise ConfigError("run", ref, "a fine-tuned run (reFT trains a fine-tuned model back; this one has no parent)")
    ft_cfg = validated(FinetuneRunConfig, ft_run.config())
    cfg = reft_config(ft_cfg, ft_run.id, profile_name, overrides)
    return reft_curves(store, ft_run, cfg, baselines, runtime, say)


def reft_curves(store: RunStore, ft_run: Run, cfg: FinetuneRunConfig, baselines: bool | Sequence[str],
                runtime: Runtime, say: Say) -> ReftResult:
    """The reFT run ``cfg`` of the fine-tuned ``ft_run`` and the ``baselines`` asked for."""
    ft_cfg = validated(FinetuneRunConfig, ft_run.config())
    chosen = BASELINES if baselines is True else tuple(baselines or ())
    unknown = [b for b in chosen if b not in BASELINES]
    if unknown:
        raise ConfigError("baselines", unknown[0], f"one of {list(BASELINES)}")
    curves = {"reft": finetune(cfg, store, runtime, say, kind="reft")}
    if "scr+ft" in chosen:
        base = pretrain(never_pt_config(pretraining_config(ft_run), ft_cfg.data.operand), store, runtime, say)
        curves["scr+ft"] = finetune(baseline_config(cfg, base.run.id), store, runtime, say, kind="scrft")
    if "scr" in chosen:
        curves["scr"] = finetune(baseline_config(cfg, root_pretrain_run(store, ft_run).id, "random"),
                                 store, runtime, say, kind="scratch")
    return ReftResult(curves)
