"""Every verdict rule reaches each of its three outcomes on measurements built by hand; no test accepts two."""

from __future__ import annotations

import math

import pytest

from wrapperlab.claims import verdicts as V


def _prune(gains_at_k: dict[int, float], base: float = 0.05) -> tuple[list[int], list[float]]:
    ks = sorted({0, *gains_at_k})
    return ks, [base + gains_at_k.get(k, 0.0) for k in ks]


def test_measurements_read_the_right_numbers():
    assert V.prune_gain(*_prune({5: 0.4, 50: 0.9})) == pytest.approx(0.4)  # K = 50 is beyond "a handful"
    assert V.best_block([0.9, 0.5, 0.8]) == 0.8 and V.best_block([0.9, 0.6, 0.6]) == 0.6  # B0 (embeddings) excluded
    assert V.log2_steps(None, 1024) == 10 and V.log2_steps(3000, 1024) == 10 and V.log2_steps(4, 1024) == 2


@pytest.mark.parametrize("treated, control, outcome", [
    ([0.9, 0.95, 0.92], [0.1, 0.12, 0.08], V.SHOWN),  # a large effect, tight interval
    ([0.1, 0.12, 0.08], [0.1, 0.11, 0.09], V.NOT_SHOWN),  # no effect, tight interval
    ([0.9, 0.1, 0.6], [0.1, 0.1, 0.1], V.INCONCLUSIVE),  # an interval straddling the margin
    ([0.9, 0.95, None], [0.1, 0.1, 0.1], V.INCONCLUSIVE),  # two seeds with both values
    ([0.9, 0.9, 0.9], [0.1, 0.1, 0.1], V.SHOWN),  # tied seeds: a zero-width interval, marked resolution-limited
    ([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], V.NOT_SHOWN),  # ... on either side of the margin
    ([0.9, 0.8, 0.7], [0.5, 0.4, 0.3], V.SHOWN),  # ... and where the sides vary but their differences tie
])
def test_the_paired_rule(treated, control, outcome):
    verdict = V.paired_rule("claim", treated, control, 0.1, "x")
    assert verdict.outcome == outcome, verdict.reason
    assert verdict.numbers["treated"] == treated
    diffs = [t - c for t, c in zip(treated, control) if t is not None and c is not None]
    tied = len(diffs) >= V.MIN_SEEDS and max(diffs) - min(diffs) < 1e-9
    assert ("resolution-limited" in verdict.reason) == tied and verdict.numbers.get("resolution_limited", False) == tied


def test_behaviour_rule_reaches_every_outcome():
    pretrained = [0.99, 0.98, 0.99]
    assert V.behaviour_hidden(pretrained, [0.02, 0.04, 0.02]).outcome == V.SHOWN
    assert V.behaviour_hidden(pretrained, [0.95, 0.9, 0.97]).outcome == V.NOT_SHOWN
    assert V.behaviour_hidden(pretrained, [0.1, 0.9, 0.4]).outcome == V.INCONCLUSIVE


def test_pruning_rule_reaches_every_outcome():
    never = [0.0, 0.01, 0.0]
    assert V.pruning_revival([0.5, 0.6, 0.55], never).outcome == V.SHOWN
    assert V.pruning_revival([0.02, 0.0, 0.01], never).outcome == V.NOT_SHOWN
    assert V.pruning_revival([0.5, 0.0, 0.2], never).outcome == V.INCONCLUSIVE


def test_probe_rule_takes_the_strongest_control_per_seed():
    treated = [0.98, 0.99, 0.99]
    random_init, never = [0.65, 0.6, 0.62], [0.97, 0.98, 0.99]
    assert V.probe_readout(treated, [random_init, [0.7, 0.7, 0.7]]).outcome == V.SHOWN
    assert V.probe_readout(treated, [random_init, never]).outcome == V.NOT_SHOWN  # the never-had-it model reads it too
    assert V.probe_readout([0.98, 0.7, 0.9], [random_init, [0.7, 0.7, 0.7]]).outcome == V.INCONCLUSIVE
    assert V.probe_readout(treated, []).outcome == V.INCONCLUSIVE


def test_speed_rule_treats_never_as_censored_at_the_budget():
    long, short = [2000, 2000, 2000], [200, 200, 200]
    shown = V.revival_speed([150, 150, 200], [None, None, None], long)  # at least 2000 / 200: > 3 doublings
    assert shown.outcome == V.SHOWN and shown.numbers["control_steps"] == [None, None, None]
    assert math.isclose(shown.numbers["effect"]["mean"],
                        sum(math.log2(2000) - math.log2(s) for s in (150, 150, 200)) / 3)
    assert V.revival_speed([150, 150, 200], [150, 160, 200], long).outcome == V.NOT_SHOWN  # the control learns as fast
    assert V.revival_speed([None, None, None], [100, 120, 110], long).outcome == V.NOT_SHOWN  # only the control learns
    # a control that never learns within a budget too short to show a 2x gap: not "not shown", inconclusive
    too_short = V.revival_speed([150, 150, 200], [None, None, None], short)
    assert too_short.outcome == V.INCONCLUSIVE and "budget" in too_short.reason
    assert V.revival_speed([None, None, None], [None, None, None], long).outcome == V.INCONCLUSIVE  # neither learns
    assert V.revival_speed([150, None, 150], [None, None, None], long).outcome == V.INCONCLUSIVE  # reFT failed once
    assert V.revival_speed([100, 1500, 300], [1000, 1000, 1000], long).outcome == V.INCONCLUSIVE
    assert V.revival_speed([150, 150], [None, None], long[:2]).outcome == V.INCONCLUSIVE
    # the baseline's own, longer budget: censored at 2000 while reFT had 200 steps -> a lower bound of > 3 doublings
    assert V.revival_speed([150, 150, 200], [None, None, None], short, long).outcome == V.SHOWN
    assert V.revival_speed([150, 150, 200], [None, None, None], short, short).outcome == V.INCONCLUSIVE


def test_the_wrapper_needs_every_part():
    shown = V.Verdict("a", V.SHOWN, "")
    not_shown = V.Verdict("b", V.NOT_SHOWN, "")
    unsure = V.Verdict("c", V.INCONCLUSIVE, "")
    assert V.pcfg_wrapper(shown, shown, shown, shown).outcome == V.SHOWN
    assert V.pcfg_wrapper(shown, unsure, not_shown, shown).outcome == V.NOT_SHOWN
    assert V.pcfg_wrapper(shown, unsure, shown, shown).outcome == V.INCONCLUSIVE
    assert len(V.pcfg_wrapper(shown, shown, shown, unsure).numbers["parts"]) == 4


@pytest.mark.parametrize("rule, margin", [(V.correlation_only, V.T1_MARGIN), (V.relevant_capability_generalises,
                                                                             V.T2_MARGIN),
                                          (V.prior_protects, V.T3_MARGIN), (V.long_finetuning_removes, V.T8_MARGIN)])
def test_every_table5_claim_reaches_each_outcome(rule, margin):
    control = [0.1, 0.12, 0.11]
    assert rule([c + margin + 0.2 for c in control], control).outcome == V.SHOWN
    assert rule([c + margin - 0.2 for c in control], control).outcome == V.NOT_SHOWN
    assert rule([c + margin + d for c, d in zip(control, (0.3, -0.3, 0.0))], control).outcome == V.INCONCLUSIVE
    assert rule([0.9, 0.9], [0.1, 0.1]).outcome == V.INCONCLUSIVE  # two seeds


def test_prior_speed_claim_is_censored_like_the_speed_rule():
    caps = [300, 300, 300]
    assert V.prior_speeds_revival([20, 25, 20], [300, 250, 280], caps, caps).outcome == V.SHOWN
    assert V.prior_speeds_revival([20, 25, 20], [22, 24, 20], caps, caps).outcome == V.NOT_SHOWN
    assert V.prior_speeds_revival([20, 25, 20], [None, 25, None], caps, caps).outcome == V.INCONCLUSIVE
    assert V.prior_speeds_revival([200, None, 200], [None, None, None], caps, caps).outcome == V.INCONCLUSIVE


def test_steps_to_a_threshold_read_the_first_step_that_reaches_it():
    curve = [(30, 0.6), (0, 1.3), (5, 0.9), (10, 0.7), (20, None)]  # unsorted, with a missing value
    assert V.first_step(curve, lambda v: v <= 0.7) == 10 and V.first_step(curve, lambda v: v <= 0.5) is None
    assert V.deletion_worked(0.8, 0.4) and not V.deletion_worked(0.8, 0.41) and V.deletion_worked(None, 0.1) is None


def test_story_revival_counts_only_the_seeds_where_the_deletion_worked():
    caps, claim = [75, 75, 75, 75], {"claim": "revives", "what": "log2 steps"}
    fast, never = [5, 10, 5, 5], [None, None, None, None]
    assert V.story_revival(fast, never, caps, caps, [True] * 4, **claim).outcome == V.SHOWN
    assert V.story_revival(fast, [6, 10, 5, 5], caps, caps, [True] * 4, **claim).outcome == V.NOT_SHOWN
    assert V.story_revival([5, 75, 5, 40], [None, 75, 20, 40], caps, caps, [True] * 4, **claim).outcome \
        == V.INCONCLUSIVE
    # the same fast revival, but the deletion had not removed the Twist in two seeds: nothing to revive there
    partly = V.story_revival(fast, never, caps, caps, [True, False, True, None], **claim)
    assert partly.outcome == V.INCONCLUSIVE and "2 of 4 seed(s)" in partly.reason
    # a seed where it did not work is left out of the pairs (its 75 vs 5 would have weakened the effect)
    shown = V.story_revival([5, 75, 5, 5], [None, 5, None, None], caps, caps, [True, False, True, True], **claim)
    assert shown.outcome == V.SHOWN and shown.numbers["all_treated_steps"] == [5, 75, 5, 5]


@pytest.mark.parametrize("rule", [V.story_learned, V.story_follows_request])
def test_the_story_gap_rules_reach_each_outcome(rule):
    control = [0.02, 0.0, 0.05]
    assert rule([0.9, 0.85, 0.95], control).outcome == V.SHOWN
    assert rule([0.05, 0.1, 0.05], control).outcome == V.NOT_SHOWN
    assert rule([0.9, 0.1, 0.5], control).outcome == V.INCONCLUSIVE


def test_story_deletion_and_probe_rules_reach_each_outcome():
    pretrained = [0.9, 0.8, 0.85]
    assert V.story_deleted(pretrained, [0.0, 0.02, 0.0], "F").outcome == V.SHOWN
    assert V.story_deleted(pretrained, [0.8, 0.75, 0.8], "F").outcome == V.NOT_SHOWN  # the Twist is still written
    assert V.story_deleted(pretrained, [0.0, 0.7, 0.3], "F").outcome == V.INCONCLUSIVE
    twin, never = [0.6, 0.62, 0.58], [0.7, 0.72, 0.69]
    assert V.story_probe([0.9, 0.92, 0.91], [twin, never], "requested").outcome == V.SHOWN
    probe = V.story_probe([0.71, 0.72, 0.7], [twin, never], "requested")
    assert probe.outcome == V.NOT_SHOWN and "pretrained model minus" in probe.reason


def test_the_intervention_rules_reach_each_outcome():
    plain = [0.05, 0.1, 0.02]
    assert V.mixing_keeps([0.9, 0.95, 0.85], plain, "10 %").outcome == V.SHOWN
    assert V.mixing_keeps([0.06, 0.1, 0.03], plain, "10 %").outcome == V.NOT_SHOWN
    assert V.mixing_keeps([0.9, 0.1, 0.5], plain, "10 %").outcome == V.INCONCLUSIVE
    assert V.jailbreak_revives([0.99, 0.98, 1.0], plain).outcome == V.SHOWN
    assert V.jailbreak_revives([0.05, 0.1, 0.02], plain).outcome == V.NOT_SHOWN  # the token does not matter


def test_randft_non_inferiority_is_censored_both_ways():
    caps = [300, 300, 300]
    assert V.randft_revives_like_ft([20, 25, 20], [15, 20, 20], caps, caps).outcome == V.SHOWN  # < 1 doubling slower
    assert V.randft_revives_like_ft([20, 20, 20], [40, 45, 40], caps, caps).outcome == V.SHOWN  # faster
    assert V.randft_revives_like_ft([160, 200, 150], [20, 25, 20], caps, caps).outcome == V.NOT_SHOWN  # 3 doublings
    # the randFT reFT never revived in one seed: a big effect, but its true steps may be far beyond the budget
    assert V.randft_revives_like_ft([None, 20, 20], [250, 250, 250], caps, caps).outcome == V.INCONCLUSIVE
    # the plain reFT never got there within its shorter budget: randFT being slower than it is not established
    assert V.randft_revives_like_ft([100, 120, 100], [None, None, None], caps, [10, 10, 10]).outcome == V.INCONCLUSIVE
    assert V.randft_revives_like_ft([100, 120, 100], [10, 10, 10], caps, [300] * 3).outcome == V.NOT_SHOWN


def test_audit_rules_reach_every_outcome():
    SHOWN, NOT_SHOWN, INCONCLUSIVE, WRAPPED, DELETED = V.SHOWN, V.NOT_SHOWN, V.INCONCLUSIVE, V.WRAPPED, V.DELETED
    audit_removed, audit_relearning, audit_verdict = V.audit_removed, V.audit_relearning, V.audit_verdict
    removed = audit_removed([-0.7, -0.69, -0.71], [-1.5, -1.4, -1.45])
    assert removed.outcome == SHOWN
    assert audit_removed([-0.7, -0.69, -0.71], [-0.71, -0.7, -0.7]).outcome == NOT_SHOWN
    assert audit_removed([-0.7, -0.69], [-1.5, -1.4]).outcome == INCONCLUSIVE  # two seeds
    fast = audit_relearning([4, 8, 4], [64, 100, None], [100] * 3, "CONTROL")
    assert fast.outcome == SHOWN and "CONTROL" in fast.claim
    same = audit_relearning([16, 16, 20], [16, 20, 16], [100] * 3, "CONTROL")
    assert same.outcome == NOT_SHOWN
    censored = audit_relearning([16, 16, 20], [None, None, None], [20] * 3, "CONTROL")
    assert censored.outcome == INCONCLUSIVE  # the control never got there in a short budget: a gap is not excluded
    assert audit_verdict(removed, [fast]).outcome == WRAPPED
    assert audit_verdict(removed, [same]).outcome == DELETED
    assert audit_verdict(removed, [fast, same]).outcome == INCONCLUSIVE
    kept = audit_removed([-0.7, -0.69, -0.71], [-0.71, -0.7, -0.7])
    verdict = audit_verdict(kept, [fast])
    assert verdict.outcome == INCONCLUSIVE and verdict.reason.startswith("removal not shown")


def test_audit_signature_rules_reach_every_outcome():
    SHOWN, NOT_SHOWN, INCONCLUSIVE = V.SHOWN, V.NOT_SHOWN, V.INCONCLUSIVE
    # both never-learned models end the budget level: the speed rule is censored, the level rule excludes a gap
    censored = V.audit_relearning([None] * 3, [None] * 3, [100] * 3, "a model that never had it (CONTROL)")
    level = V.audit_relearned_level([-1.403, -1.40, -1.41], [-1.410, -1.405, -1.40])
    assert censored.outcome == INCONCLUSIVE and level.outcome == NOT_SHOWN
    combined = V.audit_relearning_vs_model(censored, level)
    assert combined.outcome == NOT_SHOWN and combined.numbers["decided_by"] == "relearned level"
    assert combined.claim == censored.claim  # the verdict names the control the same way either rule decides
    # where the speed rule decides, the level does not overrule it
    fast = V.audit_relearning([4, 8, 4], [None] * 3, [100] * 3, "CONTROL")
    assert V.audit_relearning_vs_model(fast, level).outcome == SHOWN
    assert V.audit_relearned_level([-0.7, -0.75, -0.72], [-1.4, -1.5, -1.45]).outcome == SHOWN
    assert V.audit_relearned_level([-0.7, -1.4], [-1.4, -1.5]).outcome == INCONCLUSIVE
    # probes: the strongest control per seed counts; a label one token dominates is not applicable
    assert V.audit_probe([0.9, 0.85, 0.9], [[0.5, 0.55, 0.5], [0.6, 0.6, 0.62]], 0.2).outcome == SHOWN
    assert V.audit_probe([0.6, 0.6, 0.62], [[0.5, 0.55, 0.5], [0.6, 0.61, 0.62]], 0.2).outcome == NOT_SHOWN
    skewed = V.audit_probe([0.9, 0.85, 0.9], [[0.5, 0.55, 0.5]], 0.95)
    assert skewed.outcome == INCONCLUSIVE and "not applicable" in skewed.reason
    # pruning: share of the gap recovered, FINETUNED minus the control
    assert V.audit_pruning([0.6, 0.5, 0.7], [0.02, 0.0, 0.05], "CONTROL").outcome == SHOWN
    assert V.audit_pruning([0.01, 0.0, 0.02], [0.02, 0.0, 0.01], "CONTROL").outcome == NOT_SHOWN
    assert V.audit_pruning([0.6, None, 0.7], [0.02, 0.0, 0.05], "CONTROL").outcome == INCONCLUSIVE


def test_the_tracr_rules_reach_each_outcome():
    """The two Tracr verdicts the report decided by a mean with no interval, now rules: each reaches all three
    outcomes, inconclusive where the interval straddles the margin or fewer than 3 seeds have both values."""
    floor = [0.1, 0.1, 0.1]
    assert V.single_weight_revival([0.6, 0.62, 0.58], floor).outcome == V.SHOWN  # 50 points above the floor
    assert V.single_weight_revival([0.15, 0.12, 0.14], floor).outcome == V.NOT_SHOWN  # within 20 points of it
    assert V.single_weight_revival([0.6, 0.1, 0.35], floor).outcome == V.INCONCLUSIVE  # straddles
    assert V.single_weight_revival([0.6, None, 0.6], floor).outcome == V.INCONCLUSIVE  # two seeds
    assert V.sort_kept([1.0, 2.0, 1.5], [30.0, 28.0, 35.0]).outcome == V.SHOWN  # the smallest lr moved it least
    assert V.sort_kept([30.0, 28.0, 35.0], [1.0, 2.0, 1.5]).outcome == V.NOT_SHOWN
    assert V.sort_kept([10.0, 1.0, 30.0], [12.0, 20.0, 5.0]).outcome == V.INCONCLUSIVE


def test_tied_seeds_are_printed_as_resolution_limited_never_as_an_interval():
    """Seeds that tie on the evaluation grid give a zero-width interval; the tables say so instead of printing
    "+0.80 (+0.80 to +0.80)" as if the effect were known exactly."""
    from wrapperlab.report.docs import _effect
    from wrapperlab.report.tables import effect_text

    tied = V.paired_rule("claim", [0.9, 0.9, 0.9], [0.1, 0.1, 0.1], 0.1, "x")
    spread = V.paired_rule("claim", [0.9, 0.95, 0.92], [0.1, 0.12, 0.08], 0.1, "x")
    assert effect_text(tied.numbers) == "+0.80 (seeds tied: resolution-limited)"
    assert _effect(tied.numbers) == "+0.80 (all 3 seeds tied: resolution-limited) vs 0.1"
    assert "resolution-limited" not in effect_text(spread.numbers) + _effect(spread.numbers) + spread.reason


def test_the_unpaired_rule_is_welchs_interval_and_ignores_seed_order():
    """Across priors seed s of one cell shares nothing with seed s of the other: the rule compares the two means
    with Welch's interval, so reordering one side changes nothing, and the sides may have different seed counts."""
    verdict = V.unpaired_rule("claim", [4, 5, 6, 7], [1, 2, 3], 0.0, "x")
    # by hand: difference 3.5, se sqrt(1/3 + 5/12) = 0.866, Welch df 4.96 -> 4, t 2.776
    assert verdict.numbers["effect"]["mean"] == pytest.approx(3.5)
    assert verdict.numbers["effect"]["df"] == pytest.approx(4.96, abs=0.01)
    assert verdict.numbers["high"] - 3.5 == pytest.approx(2.776 * math.sqrt(0.75), rel=1e-6)
    assert verdict.outcome == V.SHOWN and "Welch" in verdict.reason and "n = 4 and 3" in verdict.reason
    high, low = [0.9, 0.6, 0.8], [0.5, 0.2, 0.45]
    assert V.unpaired_rule("c", high, low, 0.1, "x").outcome == V.INCONCLUSIVE  # wide: three seeds a side
    same, reordered = V.unpaired_rule("c", high, low, 0.1, "x"), V.unpaired_rule("c", high, low[::-1], 0.1, "x")
    assert (same.outcome, same.numbers["effect"], same.reason) == (reordered.outcome, reordered.numbers["effect"],
                                                                   reordered.reason)
    assert V.unpaired_rule("c", [0.1, 0.12, 0.08], [0.1, 0.11, 0.09], 0.1, "x").outcome == V.NOT_SHOWN
    assert V.unpaired_rule("c", [0.9, 0.92, None], [0.1, 0.1, 0.1], 0.1, "x").outcome == V.INCONCLUSIVE  # 2 seeds
    # the prior rules use it: T3 with the low prior's seeds reversed gives the same interval
    t3 = V.prior_protects([0.6, 0.7, 0.65], [0.1, 0.3, 0.2])
    assert t3.numbers["unpaired"] and (t3.numbers["low"], t3.numbers["high"]) == pytest.approx(
        (V.prior_protects([0.6, 0.7, 0.65], [0.2, 0.3, 0.1]).numbers["low"],
         V.prior_protects([0.6, 0.7, 0.65], [0.2, 0.3, 0.1]).numbers["high"]))
    assert V.prior_speeds_revival([10, 20, 10], [200, 100, 300], [300] * 3, [300] * 3).numbers["unpaired"]


def test_steps_to_a_threshold_are_read_between_evaluation_points():
    """Log-linear interpolation between the last evaluation below the threshold and the first at or above it: three
    seeds that all first reach 90 % at the evaluation at step 20 no longer tie (their curves differ), and the speed
    rule's interval gets a width; a curve already there at its first point, or never there, stays exact / None."""
    curve = [(0, 0.1), (10, 0.5), (20, 0.95), (35, 0.99)]
    # by hand: log2 10 + (0.9 - 0.5) / (0.95 - 0.5) * (log2 20 - log2 10) = 3.3219 + 0.8889 -> 2 ** 4.2108 = 18.52
    assert V.crossing_step(curve, 0.9) == pytest.approx(18.52, abs=0.01)
    assert V.crossing_step(curve, 0.95) == 20.0 and V.crossing_step(curve, 0.05) == 0.0  # exactly there: exact
    assert all(V.crossing_step([(s0, 0.5), (s1, 0.9)], 0.9) == s1 for s0, s1 in [(20, 50), (50, 100), (200, 300)])
    assert V.crossing_step(curve, 0.999) is None and V.crossing_step([], 0.9) is None
    assert V.crossing_step([(1, 0.2), (2, 0.95)], 0.9) == pytest.approx(2 ** (0.7 / 0.75))  # step 1 is log2 = 0
    seeds = [[(10, 0.5), (20, 0.95)], [(10, 0.8), (20, 0.92)], [(10, 0.3), (20, 0.99)]]
    first = [V.first_step(c, lambda v: v >= 0.9) for c in seeds]
    read = [V.crossing_step(c, 0.9) for c in seeds]
    assert first == [20, 20, 20] and len(set(read)) == 3 and all(10 < r <= 20 for r in read)
    control = [400, 500, 600]
    assert V.revival_speed(first, control, [300] * 3, [3000] * 3).numbers.get("resolution_limited") is None  # control varies
    tied = V.revival_speed(first, [500] * 3, [300] * 3, [3000] * 3)
    assert tied.numbers["resolution_limited"] and "resolution_limited" not in V.revival_speed(
        read, [500] * 3, [300] * 3, [3000] * 3).numbers


def test_a_reft_curve_reads_its_crossing_from_its_own_points():
    from wrapperlab.settings.pcfg.results import ReftCurve

    curve = ReftCurve.from_json({"run": "r", "start": 0.1, "end": 0.95, "steps_to_0.5": 10, "steps_to_0.9": 20,
                                 "curve": [(0, 0.1), (10, 0.5), (20, 0.95)]})
    assert curve.steps_to_90 == 20 and curve.crossed() == pytest.approx(18.52, abs=0.01)
