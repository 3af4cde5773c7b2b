"""Stacked training (training/stacked.py): a run trained inside a stack is the run trained alone."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import Trainee, fit, train
from wrapperlab.training.stacked import Stack

VOCAB, LENGTH, ANSWER = 24, 20, 17


@dataclass
class Batch:
    tokens: np.ndarray
    answer_pos: np.ndarray


def stream(seed: int):
    """A run's data: a pure function of the step, as the trainer requires; the answer is a function of the
    input (the sum of the first tokens, mod the vocabulary), so the loss has something to learn."""
    def batch_at(step: int) -> Batch:
        rng = np.random.default_rng([seed, step])
        tokens = rng.integers(1, VOCAB, size=(8, LENGTH))
        tokens[:, ANSWER] = 1 + tokens[:, :4].sum(1) % (VOCAB - 1)
        return Batch(tokens, np.full(8, ANSWER))
    return batch_at


def model(seed: int, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.preset("test", vocab_size=VOCAB, n_ctx=LENGTH, **overrides))


def config(lr: float, loss: str = "answer") -> TrainConfig:
    return TrainConfig(iters=50, batch_size=8, lr=lr, warmup_frac=0.1, min_lr_frac=0.1, loss=loss,
                       weight_decay=0.1, grad_clip=0.5, eval_every=1000, checkpoint_every=1000)


@pytest.mark.parametrize("loss", ["answer", "sequence"])
def test_a_run_trained_in_a_stack_equals_the_run_trained_alone(loss):
    """Three runs with their own seeds, data and lrs, 50 steps: every weight of every stacked run matches the same
    run trained alone by the one training loop, to float tolerance, and so do their logits. One exception, by
    design: the key part of the attention's qkv bias gets no true gradient (softmax ignores a shift shared by all
    keys), so AdamW turns float noise there into lr-sized steps in either run; it is compared through the logits,
    which it cannot change."""
    seeds, lrs = (0, 1, 2), (3e-3, 1e-3, 3e-4)
    cfgs = [config(lr, loss) for lr in lrs]
    alone = [model(s) for s in seeds]
    for m, s, c in zip(alone, seeds, cfgs):
        fit(Trainee(m, stream(s), c), Runtime(progress=False))
    stacked = [model(s) for s in seeds]
    states = train([Trainee(m, stream(s), c) for m, s, c in zip(stacked, seeds, cfgs)], Runtime(progress=False),
                   stacked=True)
    assert all(np.isfinite(s.last_loss) and s.step == 50 for s in states)
    d = alone[0].cfg.d_model
    probe = torch.from_numpy(stream(99)(0).tokens)
    for seed, a, b in zip(seeds, alone, stacked):
        before = dict(model(seed).named_parameters())
        moved = max((p - before[n]).abs().max().item() for n, p in a.named_parameters())
        assert moved > 1e-3  # training did move the weights: the comparison is not of two untouched models
        for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
            if name.endswith("attn.qkv.bias"):  # q and v parts only (see above)
                pa, pb = torch.cat([pa[:d], pa[2 * d:]]), torch.cat([pb[:d], pb[2 * d:]])
            # fp32 over 50 AdamW steps, which scale a float-level difference in a near-zero gradient up to an
            # lr-sized step (measured: at most 6e-6, on weights training moved by up to 0.08)
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5, msg=name)
        with torch.no_grad():
            torch.testing.assert_close(b(probe), a(probe), rtol=1e-4, atol=1e-5)


def test_runs_that_are_not_the_same_computation_do_not_stack():
    with pytest.raises(ValueError, match="train.iters"):
        Stack([model(0), model(1)], [config(1e-3), config(1e-3).model_copy(update={"iters": 10})])
    with pytest.raises(ValueError, match="architecture"):
        Stack([model(0), model(1, n_layers=1)], [config(1e-3), config(1e-3)])
    with pytest.raises(ValueError, match="AdamW"):
        sgd = config(1e-3).model_copy(update={"optimizer": "sgd"})
        Stack([model(0)], [sgd])


def _same(a: GPT, b: GPT) -> None:
    d = a.cfg.d_model
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        if name.endswith("attn.qkv.bias"):
            pa, pb = torch.cat([pa[:d], pa[2 * d:]]), torch.cat([pb[:d], pb[2 * d:]])
        torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5, msg=name)


def test_a_stacked_run_is_evaluated_logged_and_checkpointed_as_alone_and_resumes_alone(tmp_path):
    """Evaluations at the steps the loop makes them (eval_every, eval_at, the end), with the loss and lr the run
    alone logs; killed during its fourth evaluation, each run resumes *alone* from the stack's checkpoint at step
    30 and ends where the uninterrupted run alone ends."""
    seeds, lrs = (0, 1), (3e-3, 1e-3)
    cfgs = [config(lr).model_copy(update={"eval_every": 10, "eval_at": (0, 5), "checkpoint_every": 10})
            for lr in lrs]
    probe = torch.from_numpy(stream(99)(0).tokens[:, :ANSWER])

    def evaluate(model, step):
        return {"out": float(model(probe)[:, -1].float().mean())}

    alone_logs = [[] for _ in seeds]
    alone = [model(s) for s in seeds]
    for m, s, c, log in zip(alone, seeds, cfgs, alone_logs):
        fit(Trainee(m, stream(s), c, evaluate=evaluate, log=log.append), Runtime(progress=False))

    stacked_logs = [[] for _ in seeds]
    kill = {"at": 40}

    def killing(model, step):
        if step == kill["at"]:
            raise KeyboardInterrupt
        return evaluate(model, step)

    dirs = [tmp_path / f"run{s}" for s in seeds]
    with pytest.raises(KeyboardInterrupt):
        train([Trainee(model(s), stream(s), c, d, killing, log.append)
               for s, c, d, log in zip(seeds, cfgs, dirs, stacked_logs)], Runtime(progress=False), stacked=True)
    for theirs, ours in zip(alone_logs, stacked_logs):
        assert [r["step"] for r in ours] == [r["step"] for r in theirs if r["step"] < 40] == [0, 5, 10, 20, 30]
        for a, b in zip(theirs, ours):
            assert a["lr"] == b["lr"] and set(a) == set(b)
            assert abs(a["out"] - b["out"]) < 1e-4 and abs(a.get("loss", 0) - b.get("loss", 0)) < 1e-4
    for s, c, directory, reference in zip(seeds, cfgs, dirs, alone):
        resumed = model(s)
        state = fit(Trainee(resumed, stream(s), c, directory), Runtime(progress=False))
        assert state.resumed_from == 30
        _same(reference, resumed)


def test_reproduce_with_stacks_stores_what_it_stores_without(tmp_path):
    """A grid whose four fine-tunings (two priors x two C_Tr) are ready together: with --stack 4 they train as
    one stack, and the store holds the same runs (same ids, same logged steps, the same accuracies) as the
    reproduction that trains each alone."""
    from wrapperlab.orchestration.reproduce import reproduce
    from wrapperlab.orchestration.spec import load_spec
    from wrapperlab.runs.store import RunStore

    path = tmp_path / "grid.yaml"
    path.write_text("name: grid\nkind: pcfg\ndescription: stacking check\n"
                    "base:\n  finetune: {data.task: count, data.operand: b, data.pt_operand: a}\n"
                    "axes: {prior: [low, high], lr: [M], c_tr: [0.0, 1.0]}\nprofiles: {test: {seeds: 1}}\n")
    spec, out = load_spec(path), {}
    for stack in (1, 4):
        lines: list[str] = []
        result = reproduce(spec, "test", RunStore(tmp_path / f"runs{stack}"), runtime=Runtime(progress=False, stack=stack),
                           say=lines.append)
        out[stack] = (result, lines)
    (alone, alone_lines), (stacked, stacked_lines) = out[1], out[4]
    assert any("4 finetune runs as one stack" in line for line in stacked_lines)
    assert not any("as one stack" in line for line in alone_lines)
    fts = [n for n in alone.nodes if n.stage == "finetune"]
    assert len(fts) == 4
    for node in fts:
        a, b = alone.outcomes[node.key], stacked.outcomes[node.key]
        assert a.run_id == b.run_id and not b.reused
        ra = RunStore(tmp_path / "runs1").resolve(a.run_id)
        rb = RunStore(tmp_path / "runs4").resolve(b.run_id)
        assert [m["step"] for m in ra.metrics()] == [m["step"] for m in rb.metrics()]
        for key, value in a.result.after.items():
            assert abs(value - b.result.after[key]) <= 0.02, (node.key, key)


@pytest.mark.parametrize("stacked", [False, True])
def test_a_deferred_guard_trains_bit_identically_and_names_the_first_diverged_step(tmp_path, monkeypatch,
                                                                                      stacked):
    """The guard an accelerator uses (no host sync per step: read at evaluations, checkpoints and the end), forced
    on the CPU: a run that stays finite ends bit for bit where the eager guard's does; a run whose loss turns
    non-finite at step 23 raises at the next check (the checkpoint at 30) naming step 23, no NaN reached a weight,
    and the checkpoint left is the one of step 20."""
    import math

    from wrapperlab.errors import DivergedError
    from wrapperlab.training.checkpoint import load_checkpoint
    from wrapperlab.training.optim import make_optimizer

    cfg = config(1e-3).model_copy(update={"checkpoint_every": 10})
    n = 2 if stacked else 1
    weights = {}
    for deferred in (False, True):
        models = [model(s) for s in range(n)]
        train([Trainee(m, stream(s), cfg) for s, m in enumerate(models)],
              Runtime(progress=False, deferred_guard=deferred), stacked=stacked)
        weights[deferred] = [[p.detach().clone() for p in m.parameters()] for m in models]
    assert all(torch.equal(a, b) for ra, rb in zip(weights[False], weights[True]) for a, b in zip(ra, rb))

    import wrapperlab.training.losses as losses
    import wrapperlab.training.stacked as stacked_module

    real, calls = losses.compute_loss, [0]

    def nan_at_step_23(*args, **kwargs):  # one call per step, alone or stacked (vmap calls it once for all runs)
        calls[0] += 1
        loss = real(*args, **kwargs)
        return loss * math.nan if calls[0] == 23 else loss

    monkeypatch.setattr(losses, "compute_loss", nan_at_step_23)
    monkeypatch.setattr(stacked_module, "compute_loss", nan_at_step_23)
    models = [model(s) for s in range(n)]
    trainees = [Trainee(m, stream(s), cfg, checkpoint_dir=tmp_path / f"ck{s}", name=f"run{s}")
                for s, m in enumerate(models)]
    with pytest.raises(DivergedError, match="at step 23: loss nan") as raised:
        train(trainees, Runtime(progress=False, deferred_guard=True), stacked=stacked)
    assert raised.value.run == "run0"
    for s, m in enumerate(models):
        assert all(torch.isfinite(p).all() for p in m.parameters())
        fresh = model(s)
        assert load_checkpoint(tmp_path / f"ck{s}", fresh, make_optimizer(fresh, cfg))["step"] == 20
