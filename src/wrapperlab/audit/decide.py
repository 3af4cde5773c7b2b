"""Decide: the audit's verdicts from its seeds' numbers, by the rules of claims/verdicts.py (docs/audit.md)."""

from __future__ import annotations

from wrapperlab.audit.result import SeedRow, VerdictRecord
from wrapperlab.claims import verdicts as V


def _record(v: V.Verdict) -> VerdictRecord:
    return VerdictRecord(**v.as_dict())


def _diverged(rows: list[SeedRow]) -> str | None:
    """Which relearning run diverged, in words (None: none did)."""
    found = [f"{run} at step {step} (seed {r.seed})" for r in rows for run, step in r.diverged.items()]
    return "; ".join(found) or None


def decide(rows: list[SeedRow], steps: int, majority_share: float,
           has_control: bool) -> tuple[dict[str, VerdictRecord], dict[str, VerdictRecord], str, VerdictRecord]:
    """(the relearning verdicts, the probe and pruning signatures, the deciding rule's claim, the verdict). A model
    that never had the capability is the stronger control: it decides when given, else the never-known twin. A
    relearning run that diverged decides nothing: its verdicts are inconclusive, saying so (never a number)."""
    caps = [steps] * len(rows)
    removed = V.audit_removed([s.base.logprob for s in rows], [s.finetuned.logprob for s in rows])
    diverged = _diverged(rows)
    speed_vs_twin = V.audit_relearning([s.steps_real for s in rows], [s.steps_never_known for s in rows], caps,
                                       "on the never-known twin (answers shuffled)")
    verdicts = {"removed": removed, "never_known": speed_vs_twin}
    if has_control:
        speed = V.audit_relearning([s.steps_real for s in rows], [s.steps_control for s in rows], caps,
                                   "a model that never had it (CONTROL)")
        level = V.audit_relearned_level([s.relearn_real[-1].logprob for s in rows],
                                        [s.relearn_control[-1].logprob for s in rows])
        verdicts["control"] = V.audit_relearning_vs_model(speed, level)
    if diverged:
        verdicts = {k: v if k == "removed" else V.Verdict(v.claim, V.INCONCLUSIVE, f"relearning diverged: {diverged}; "
                                                         "lower --lr", {}) for k, v in verdicts.items()}
    decisive = verdicts["control" if has_control else "never_known"]
    verdict = V.audit_verdict(removed, [decisive])
    probe_controls = ["random_init"] + (["control"] if has_control else [])
    signatures = {}
    if all(s.probe is not None for s in rows):
        signatures["probe"] = V.audit_probe([V.best_block(s.probe["finetuned"]) for s in rows],
                                            [[V.best_block(s.probe[c]) for s in rows] for c in probe_controls],
                                            majority_share)
    if all(s.prune_real is not None for s in rows):
        which = "control" if has_control else "never_known"
        signatures["pruning"] = V.audit_pruning([s.prune_share("real") for s in rows],
                                                [s.prune_share(which) for s in rows],
                                                "CONTROL" if has_control else "FINETUNED on the never-known twin")
    return ({k: _record(v) for k, v in verdicts.items()}, {k: _record(v) for k, v in signatures.items()},
            decisive.claim, _record(verdict))
