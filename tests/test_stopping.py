"""The stop rule (training/stopping.py): a threshold held for some evaluations, or a plateau below it; resumable."""

import pytest
import torch
from test_stacked import config, model, stream

from wrapperlab.errors import ConfigError
from wrapperlab.runs.profiles import validated
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import Trainee, fit
from wrapperlab.training.stopping import StopRule


def decisions(rule: StopRule, values: list[float]) -> list[str | None]:
    return [rule.update({"acc": v}) for v in values]


def test_the_threshold_must_hold_for_the_evaluations_asked():
    assert decisions(StopRule({"acc": 0.99}), [0.5, 0.995]) == [None, "threshold"]
    held = decisions(StopRule({"acc": 0.99}, holds_needed=2), [0.5, 0.995, 0.98, 0.995, 0.996])
    assert held == [None, None, None, None, "threshold"]  # one lucky evaluation does not end it


def test_a_plateau_below_the_threshold_stops_after_its_patience():
    rule = StopRule({"acc": 0.99}, plateau=3, delta=0.005)
    # 0.452, 0.451, 0.453 never beat the best 0.45 by 0.005: the third of them is the plateau
    assert decisions(rule, [0.2, 0.4, 0.45, 0.452, 0.451, 0.453]) == [None] * 5 + ["plateau"]
    rising = StopRule({"acc": 0.99}, plateau=3, delta=0.005)
    assert decisions(rising, [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) == [None] * 7  # still learning: no plateau
    assert decisions(StopRule({"acc": 0.99}), [0.5] * 10) == [None] * 10  # no plateau rule asked: never


def test_the_rule_resumes_from_its_state():
    values = [0.2, 0.4, 0.45, 0.452, 0.451, 0.453]
    whole = decisions(StopRule({"acc": 0.99}, plateau=3), values)
    first = StopRule({"acc": 0.99}, plateau=3)
    head = decisions(first, values[:4])
    cfg = TrainConfig(iters=10, batch_size=1, lr=1e-3, stop_when={"acc": 0.99}, stop_plateau=3)
    resumed = StopRule.of(cfg, first.state())
    assert head + decisions(resumed, values[4:]) == whole
    import json

    unreported = StopRule({"acc": 0.99}, plateau=3)
    unreported.update({"loss": 1.0})  # the metric missing from an evaluation: -inf, kept as JSON null
    state = json.loads(json.dumps(unreported.state(), allow_nan=False))
    assert StopRule.of(cfg, state).best == {"acc": float("-inf")}


def test_the_new_options_keep_old_run_ids_and_need_stop_when():
    plain = TrainConfig(iters=10, batch_size=1, lr=1e-3)
    assert not {"stop_holds", "stop_plateau", "plateau_delta"} & set(plain.model_dump())  # ids as before
    asked = TrainConfig(iters=10, batch_size=1, lr=1e-3, stop_when={"acc": 0.9}, stop_plateau=3)
    assert asked.model_dump()["stop_plateau"] == 3
    with pytest.raises(ConfigError, match="stop_when"):
        validated(TrainConfig, {"iters": 10, "batch_size": 1, "lr": 1e-3, "stop_plateau": 3})


def test_a_run_stops_on_its_plateau_and_a_killed_one_resumes_to_the_same_step(tmp_path):
    """A metric that rises then flattens (a function of the step): the run stops stop_margin steps after the
    plateau's evaluation, says why, and one killed after its step-20 checkpoint, mid-way through the plateau's
    patience, resumes to the same end and the same weights."""
    curve = {5: 0.3, 10: 0.5, 15: 0.6, 20: 0.602, 25: 0.601, 30: 0.603, 35: 0.9}
    cfg = config(1e-3).model_copy(update={"iters": 50, "eval_every": 5, "checkpoint_every": 10,
                                          "stop_when": {"acc": 0.99}, "stop_plateau": 3, "stop_margin": 2})

    def evaluate(m, step):
        return {"acc": curve.get(step, 0.0)}

    whole = model(0)
    state = fit(Trainee(whole, stream(0), cfg, evaluate=evaluate), Runtime(progress=False))
    assert (state.step, state.stop_reason, state.stopped_early) == (32, "plateau", True)  # plateau at 30, +2

    class Killed(Exception):
        pass

    def dies_at_25(m, step):
        if step == 25:
            raise Killed
        return evaluate(m, step)

    killed = model(0)
    with pytest.raises(Killed):
        fit(Trainee(killed, stream(0), cfg, tmp_path, evaluate=dies_at_25), Runtime(progress=False))
    resumed = model(0)
    again = fit(Trainee(resumed, stream(0), cfg, tmp_path, evaluate=evaluate), Runtime(progress=False))
    assert (again.step, again.stop_reason, again.resumed_from) == (32, "plateau", 20)
    assert all(torch.equal(a, b) for a, b in zip(whole.parameters(), resumed.parameters()))
