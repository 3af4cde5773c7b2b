"""Verdict rules: pure functions from measurements to whether a claim is shown, kept apart from the report's
layout so that each rule is one place to read and test."""

from __future__ import annotations


def wrapper_shown(after: dict, k_half: dict, steps: dict[str, dict]) -> bool:
    """The paper's three signatures together: the behaviour is mostly gone after FT (< 50 %), a few units
    (K <= 15) hold it back, and reFT reaches 90 % in every seed while Scr.+FT never does, or later."""
    gone = after["mean"] is not None and after["mean"] < 0.5
    pruned = k_half["mean"] is not None and not k_half["missing"] and k_half["mean"] <= 15
    reft, scr = steps["reft"], steps["scr+ft"]
    revived = reft["mean"] is not None and not reft["missing"]
    measured = (scr["n"] or 0) + (scr["missing"] or 0) > 0  # no Scr.+FT run: nothing to be faster than
    faster = measured and (scr["mean"] is None or (revived and scr["mean"] > reft["mean"]))
    return gone and pruned and revived and faster
