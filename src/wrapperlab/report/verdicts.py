"""Verdict rules: pure functions from per-seed measurements to ``shown`` / ``not shown`` / ``inconclusive`` and the
numbers the outcome rests on. The rules are stated in docs/reproduce.md ("Verdict rules"); the report takes its
verdicts from here and nowhere else, and every rule is unit-tested to reach each of its outcomes.

Every rule compares a treated measurement with its negative control measured the same way, seed by seed (the
control of seed s shares seed s's pretraining data stream), through the 95 % t-interval of the paired
difference ``effect = treated - control`` (oriented so that the claim predicts a positive effect):

* ``shown`` — the whole interval lies above the rule's margin: the effect is there and at least that large;
* ``not shown`` — the whole interval lies below the margin: an effect that large is excluded;
* ``inconclusive`` — the interval straddles the margin, or fewer than :data:`MIN_SEEDS` seeds have both values.

A claim made of several signatures (the PCFG wrapper) is shown when each is shown, not shown when any is not
shown, and inconclusive otherwise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from wrapperlab.analysis.stats import mean_ci

SHOWN, NOT_SHOWN, INCONCLUSIVE = "shown", "not shown", "inconclusive"
OUTCOMES = (SHOWN, NOT_SHOWN, INCONCLUSIVE)
MIN_SEEDS = 3

#: margins (the smallest effect a rule counts as the claim): accuracies are fractions, speed is log2 steps
BEHAVIOUR_MARGIN = 0.5  # fine-tuning removed at least half of the pretraining behaviour (Acc O_PT, C_Te = 0)
PRUNE_MARGIN = 0.10  # pruning brings back at least 10 points more count(O_PT) than in the never-had-it model
PRUNE_K_MAX = 15  # "a handful": the paper restores count a with 5-15 pruned neurons (Fig. 7 sweeps 0-15)
PROBE_MARGIN = 0.05  # the probe reads count(O_PT) at least 5 points better than the best control model
SPEED_MARGIN = 1.0  # reFT reaches 90 % at least 2x (one doubling) sooner than the never-had-it model


@dataclass(frozen=True)
class Verdict:
    """One claim's outcome and what it rests on (``numbers``: the effect's mean ± CI, n, the per-seed values)."""

    claim: str
    outcome: str
    reason: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_rule(claim: str, treated: Sequence[float | None], control: Sequence[float | None], margin: float,
                what: str) -> Verdict:
    """The generic rule: the paired effect ``treated - control`` per seed against ``margin`` (module doc)."""
    pairs = [(t, c) for t, c in zip(treated, control) if t is not None and c is not None]
    numbers: dict[str, Any] = {"treated": list(treated), "control": list(control), "margin": margin}
    if len(pairs) < MIN_SEEDS:
        return Verdict(claim, INCONCLUSIVE, f"{len(pairs)} seed(s) with both {what} measured; the rule needs "
                                            f"{MIN_SEEDS}", numbers)
    effect = mean_ci([t - c for t, c in pairs])
    low, high = effect["mean"] - effect["ci95"], effect["mean"] + effect["ci95"]
    numbers.update(effect=effect, low=low, high=high)
    span = f"{what}: effect {effect['mean']:+.3g} (95 % CI {low:+.3g} to {high:+.3g}, n = {len(pairs)}) vs margin {margin:g}"
    if low > margin:
        return Verdict(claim, SHOWN, span, numbers)
    if high < margin:
        return Verdict(claim, NOT_SHOWN, span, numbers)
    return Verdict(claim, INCONCLUSIVE, span + " (the interval straddles the margin)", numbers)


def outcome_counts(outcomes: Sequence[str]) -> str:
    """How many parts came out each way: "2 shown, 2 not shown of 4"."""
    counts = ", ".join(f"{list(outcomes).count(o)} {o}" for o in (SHOWN, NOT_SHOWN, INCONCLUSIVE) if o in outcomes)
    return f"{counts} of {len(outcomes)}"


def combine(claim: str, parts: Sequence[Verdict], labels: Sequence[str] | None = None) -> Verdict:
    """A claim that needs every part: shown if all are, not shown if any is not, inconclusive otherwise. The reason
    counts the parts' outcomes and names each part (by its ``labels``, e.g. the grid cell, else its claim)."""
    outcomes = [p.outcome for p in parts]
    outcome = NOT_SHOWN if NOT_SHOWN in outcomes else SHOWN if outcomes and all(o == SHOWN for o in outcomes) \
        else INCONCLUSIVE
    names = list(labels) if labels is not None else [p.claim for p in parts]
    reason = f"{outcome_counts(outcomes)}: " + "; ".join(f"{n}: {p.outcome}" for n, p in zip(names, parts))
    return Verdict(claim, outcome, reason, {"parts": [p.as_dict() for p in parts]})


# -- measurements a rule reads -------------------------------------------------------------------------------


def prune_gain(prune: dict[str, Any], k_max: int = PRUNE_K_MAX, metric: str = "acc_pt_cte0") -> float:
    """The most a pruning sweep raised ``metric`` over its unpruned value, using at most ``k_max`` units."""
    ks, values = prune["ks"], prune["curves"][metric]
    base = values[ks.index(0)] if 0 in ks else values[0]
    return max(v for k, v in zip(ks, values) if k <= k_max) - base


def probe_best(probe: dict[str, Any], which: str = "model", target: str | None = None) -> float:
    """The best probe accuracy over the blocks after the embeddings (B1 ...) for ``target`` (default: O_PT's)."""
    acc = probe["accuracy"][target or next(iter(probe["accuracy"]))][which]
    return max(acc[1:] or acc)


def log2_steps(steps: int | None, cap: int) -> float:
    """Steps to a threshold on a log2 scale; a run that never got there within ``cap`` counts as ``cap`` (so a
    control that never learns is credited with the least it could have needed: the rule stays conservative)."""
    return math.log2(max(1, cap if steps is None else min(steps, cap)))


# -- the PCFG rules (paper §5.1: behaviour, pruning, probing, reFT) --------------------------------------------


def behaviour_hidden(pretrained: Sequence[float | None], after: Sequence[float | None]) -> Verdict:
    """Fine-tuning removed the pretraining behaviour: Acc O_PT (C_Te = 0) before minus after fine-tuning."""
    return paired_rule("fine-tuning hides count(O_PT)", pretrained, after, BEHAVIOUR_MARGIN,
                       "Acc O_PT(C_Te=0) pretrained minus after FT")


def pruning_revival(treated_gain: Sequence[float | None], never_gain: Sequence[float | None]) -> Verdict:
    """Pruning ≤ 15 units by pretraining-task saliency brings count(O_PT) back, beyond what the same pruning does
    to a model that never had it (the Scr.+FT pretraining)."""
    return paired_rule("pruning revives count(O_PT)", treated_gain, never_gain, PRUNE_MARGIN,
                       f"Acc O_PT(C_Te=0) gain from pruning ≤ {PRUNE_K_MAX} units, FT model minus never-had-it model")


def probe_readout(treated: Sequence[float | None], controls: Sequence[Sequence[float | None]]) -> Verdict:
    """A linear probe reads count(O_PT) from the fine-tuned model better than from every control model (random
    init, never-had-it): per seed the strongest control counts."""
    strongest = [None if any(c is None for c in cs) else max(cs) for cs in zip(*controls)] if controls else []
    return paired_rule("a probe reads count(O_PT)", treated, strongest, PROBE_MARGIN,
                       "best-block probe accuracy, FT model minus the best control")


def revival_speed(treated_steps: Sequence[int | None], control_steps: Sequence[int | None],
                  caps: Sequence[int], control_caps: Sequence[int] | None = None,
                  claim: str = "reFT revives count(O_PT) faster than Scr.+FT learns it",
                  what: str = "log2 steps to 90 %, Scr.+FT minus reFT") -> Verdict:
    """reFT brings count(O_PT) to 90 % sooner than the never-had-it model learns it with the same training:
    log2 steps of the control minus the reFT's. A run that never got there is censored at its budget (``caps``
    for reFT, ``control_caps`` — default the same — for Scr.+FT, which gets a longer one): a censored control
    makes the effect a lower bound, so it can support "shown" but never "not shown" (the budget may simply have
    been too short: inconclusive); a censored reFT can never support "shown"."""
    control_caps = caps if control_caps is None else control_caps
    treated = [log2_steps(t, cap) for t, cap in zip(treated_steps, caps)]
    control = [log2_steps(c, cap) for c, cap in zip(control_steps, control_caps)]
    verdict = paired_rule(claim, control, treated, SPEED_MARGIN, what)
    numbers = {**verdict.numbers, "treated_steps": list(treated_steps), "control_steps": list(control_steps),
               "caps": list(caps), "control_caps": list(control_caps)}
    control_censored = any(c is None for c, t in zip(control_steps, treated_steps))
    treated_censored = any(t is None for t in treated_steps)
    if verdict.outcome == SHOWN and treated_censored:
        return Verdict(verdict.claim, INCONCLUSIVE, verdict.reason + "; the faster curve itself did not reach 90 % in "
                       "every seed", numbers)
    if verdict.outcome == NOT_SHOWN and control_censored:
        return Verdict(verdict.claim, INCONCLUSIVE, verdict.reason + "; the slower curve never reached 90 % within its "
                       "budget in some seed, so a larger gap is not excluded (a longer budget would tell)", numbers)
    return Verdict(verdict.claim, verdict.outcome, verdict.reason, numbers)


def pcfg_wrapper(behaviour: Verdict, pruning: Verdict, probe: Verdict, speed: Verdict) -> Verdict:
    """The paper's claim for a cell: fine-tuning hid count(O_PT) behind a wrapper (all four parts hold)."""
    return combine("a wrapper hides count(O_PT)", [behaviour, pruning, probe, speed])


# -- the claims the paper's text makes about Table 5 and Figs. 5-9 (docs/reproduce.md, "pcfg-table5") -----------
# Rules across priors pair the cells by seed index (each prior has its own pretraining per seed).

T1_MARGIN = 0.3  # the correlated-minus-uncorrelated gap in Acc O_FT grows by >= 30 points from C_Tr = 0 to 1
T2_MARGIN = 0.2  # a strongly relevant capability adds >= 20 points of uncorrelated Acc O_FT at C_Tr = 0.8
T3_MARGIN = 0.2  # a high prior keeps >= 20 points more count(O_PT) after fine-tuning with C_Tr = 1
T8_MARGIN = 0.3  # long fine-tuning at eta_L removes >= 30 points of count(O_PT) between "@1K" and the end


def correlation_only(gap_ctr1: Sequence[float | None], gap_ctr0: Sequence[float | None]) -> Verdict:
    """T1 (Fig. 5): under the low prior, C_Tr = 1 teaches O_FT only where the correlation holds — the gap
    Acc O_FT(C_Te=1) - Acc O_FT(C_Te=0) at C_Tr = 1 against the same gap at C_Tr = 0."""
    return paired_rule("T1: with C_Tr = 1 the low-prior model learns O_FT only where the correlation holds",
                       gap_ctr1, gap_ctr0, T1_MARGIN, "Acc O_FT gap C_Te=1 minus C_Te=0, C_Tr=1 minus C_Tr=0")


def relevant_capability_generalises(high: Sequence[float | None], low: Sequence[float | None]) -> Verdict:
    """T2 (Fig. 5): a strongly relevant capability (high prior) learns O_FT on uncorrelated data even at C_Tr = 0.8."""
    return paired_rule("T2: with a strongly relevant capability a high C_Tr still generalises", high, low, T2_MARGIN,
                       "Acc O_FT(C_Te=0) at C_Tr=0.8, high prior minus low prior")


def prior_protects(high: Sequence[float | None], low: Sequence[float | None]) -> Verdict:
    """T3 (Fig. 6): a high prior mitigates the collapse of count(O_PT) under C_Tr = 1."""
    return paired_rule("T3: a high prior protects count(O_PT) from the spurious correlation", high, low, T3_MARGIN,
                       "Acc O_PT(C_Te=0) after FT at C_Tr=1, high prior minus low prior")


def prior_speeds_revival(high_steps: Sequence[int | None], low_steps: Sequence[int | None],
                         high_caps: Sequence[int], low_caps: Sequence[int]) -> Verdict:
    """T7 (Fig. 9): the higher the prior, the faster reFT revives count(O_PT) (censored like the speed rule)."""
    return revival_speed(high_steps, low_steps, high_caps, low_caps,
                         claim="T7: reFT revives count(O_PT) faster under the high prior than under the low",
                         what="log2 reFT steps to 90 %, low prior minus high prior")


def long_finetuning_removes(early: Sequence[float | None], end: Sequence[float | None]) -> Verdict:
    """T8 (Table 5): at eta_L, fine-tuning on removes count(O_PT) even where it is strongly relevant (high prior,
    C_Tr = 0): Acc O_PT(C_Te=0) at "@1K" minus at the end."""
    return paired_rule("T8: long fine-tuning at eta_L removes count(O_PT) even under the high prior", early, end,
                       T8_MARGIN, "Acc O_PT(C_Te=0) @1K analog minus end of fine-tuning")
