"""The training loop: it learns, checkpoints atomically, and a SIGKILLed run resumes bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from wrapperlab.data.samples import PCFGData, PCFGDataConfig
from wrapperlab.errors import ConfigError
from wrapperlab.models.gpt import GPT, GPTConfig
from wrapperlab.training.checkpoint import load_checkpoint, save_checkpoint
from wrapperlab.training.config import Runtime, TrainConfig
from wrapperlab.training.loop import Trainee, fit
from wrapperlab.training.losses import compute_loss
from wrapperlab.training.optim import make_optimizer
from wrapperlab.training.schedule import lr_at


def setup(window=64, tasks=("count",)):
    data = PCFGData(PCFGDataConfig(window=window, tasks=tasks))
    torch.manual_seed(0)
    return data, GPT(GPTConfig.preset("test", vocab_size=len(data.vocab), n_ctx=data.seq_len))


def test_schedule_warmup_then_cosine_to_floor():
    cfg = TrainConfig(iters=100, batch_size=1, lr=1.0, warmup_frac=0.2, min_lr_frac=0.01)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.05) and lrs[19] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[19:], lrs[20:]))
    assert lr_at(100, cfg) == pytest.approx(0.01)


@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
@pytest.mark.parametrize("loss", ["sequence", "answer"])
def test_loss_goes_down(optimizer, loss):
    data, model = setup()
    lr = 3e-3 if optimizer == "adamw" else 0.3
    cfg = TrainConfig(iters=60, batch_size=32, lr=lr, loss=loss, optimizer=optimizer, warmup_frac=0.1, answer_weight=1.0)
    batch = data.sample(256, np.random.default_rng(9))
    tokens, pos = torch.from_numpy(batch.tokens), torch.from_numpy(batch.answer_pos)
    with torch.no_grad():
        before = compute_loss(model, tokens, pos, cfg).item()
    fit(Trainee(model, data.stream(0, 32), cfg), Runtime(progress=False))
    with torch.no_grad():
        after = compute_loss(model, tokens, pos, cfg).item()
    assert after < before * 0.8


def test_answer_weight_adds_the_answer_term():
    data, model = setup()
    batch = data.sample(8, np.random.default_rng(0))
    tokens, pos = torch.from_numpy(batch.tokens), torch.from_numpy(batch.answer_pos)
    base = TrainConfig(iters=1, batch_size=8, lr=1e-3)
    plain = compute_loss(model, tokens, pos, base)
    answer = compute_loss(model, tokens, pos, base.model_copy(update={"loss": "answer"}))
    weighted = compute_loss(model, tokens, pos, base.model_copy(update={"answer_weight": 2.0}))
    assert weighted.item() == pytest.approx(plain.item() + 2 * answer.item(), rel=1e-5)


def test_bidirectional_answer_loss_cannot_see_the_answer():
    data = PCFGData(PCFGDataConfig(window=64, tasks=("count",)))
    torch.manual_seed(0)
    model = GPT(GPTConfig.preset("test", vocab_size=len(data.vocab), n_ctx=data.seq_len, attention="bidirectional"))
    cfg = TrainConfig(iters=150, batch_size=32, lr=3e-3, loss="answer")
    fit(Trainee(model, data.stream(0, 32), cfg), Runtime(progress=False))
    from wrapperlab.settings.pcfg.evaluate import accuracy

    # if the answer leaked, a bidirectional model would copy it and score ~100 % at once
    assert accuracy(model, data.sample(300, np.random.default_rng(5))) < 0.9


def test_checkpoint_round_trip_and_cleanup(tmp_path):
    data, model = setup()
    cfg = TrainConfig(iters=5, batch_size=4, lr=1e-3)
    opt = make_optimizer(model, cfg)
    tokens = torch.from_numpy(data.sample(4, np.random.default_rng(0)).tokens)
    model(tokens).sum().backward()
    opt.step()
    for step in (1, 3, 5):
        save_checkpoint(tmp_path, step, model, opt, {})
    names = sorted(p.name for p in tmp_path.iterdir())  # the latest and the previous checkpoint (its fallback)
    assert names == ["checkpoint.json", "checkpoint.prev.json", "model-00000003.safetensors",
                     "model-00000005.safetensors", "optimizer-00000003.pt", "optimizer-00000005.pt"]
    _, fresh = setup()
    fresh_opt = make_optimizer(fresh, cfg)
    assert load_checkpoint(tmp_path, fresh, fresh_opt)["step"] == 5
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), n
    assert fresh_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def _pretrain_cmd(runs):
    return [sys.executable, "-m", "wrapperlab", "pretrain", "--profile", "test", "--quiet", "--runs", str(runs),
            "--set", "train.iters=240", "--set", "train.checkpoint_every=20", "--set", "train.eval_every=40"]


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    """Acceptance 5: kill -9 mid-run, run the same command again, get the same final weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_pretrain_cmd(straight), check=True, capture_output=True, env=env)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_pretrain_cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline:
        pointers = list(killed.glob("*/checkpoint/checkpoint.json"))
        if pointers:
            try:
                step = json.loads(pointers[0].read_text())["step"]
            except (json.JSONDecodeError, OSError):
                step = 0
            if step >= 60:
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (run,) = list(killed.iterdir())
    assert 60 <= step < 240 and not (run / "DONE").exists(), "the run finished before it could be killed"

    subprocess.run(_pretrain_cmd(killed), check=True, capture_output=True, text=True, env=env)
    assert (run / "DONE").exists()
    result = json.loads((run / "result.json").read_text())
    assert result["resumed_from"] is not None and result["resumed_from"] >= 60
    a = load_file(str(next(straight.iterdir()) / "model.safetensors"))
    b = load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    assert steps == sorted(set(steps)) == list(range(40, 241, 40))
    assert next(straight.iterdir()).name == run.name  # same config, same content address


@pytest.mark.parametrize("compile_", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bf16_autocast_and_compile_paths_train(compile_):
    data, model = setup()
    cfg = TrainConfig(iters=4, batch_size=8, lr=1e-3, precision="bf16", eval_every=2)
    logged = []
    state = fit(Trainee(model, data.stream(0, 8), cfg, evaluate=lambda m, step: {"probe": 1.0}, log=logged.append),
                Runtime(progress=False, compile=compile_))
    assert state.step == 4 and np.isfinite(state.last_loss)
    assert [r["step"] for r in logged] == [2, 4] and all(p.dtype == torch.float32 for p in model.parameters())


def test_tied_embeddings_train_with_adamw():
    """A tied unembedding is listed once (as the embedding, undecayed) — the optimiser must not see it twice."""
    model = GPT(GPTConfig.preset("test", vocab_size=40, n_ctx=16, tie_embeddings=True))
    opt = make_optimizer(model, TrainConfig(iters=1, batch_size=1, lr=1e-3))
    params = [p for g in opt.param_groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params}) == len(list(model.parameters()))
    assert any(p is model.embed.weight for p in opt.param_groups[1]["params"])  # no decay


def _stop_run(tmp_path, fail_at=None):
    """A run that stops once a metric (here: step / 10) reaches 0.5, three steps of margin after it."""
    data, model = setup()
    cfg = TrainConfig(iters=100, batch_size=4, lr=1e-3, eval_every=5, checkpoint_every=1,
                      stop_when={"m": 0.5}, stop_margin=3)
    stream, log = data.stream(0, 4), []

    def batch_at(step):
        if step == fail_at:
            raise KeyboardInterrupt  # a run killed in its margin: the checkpoint of step fail_at is on disk
        return stream(step)

    state = fit(Trainee(model, batch_at, cfg, checkpoint_dir=tmp_path, evaluate=lambda m, step: {"m": step / 10},
                        log=log.append), Runtime(progress=False))
    return model, state, log


def test_stop_when_ends_training_after_its_margin(tmp_path):
    model, state, log = _stop_run(tmp_path / "straight")
    assert (state.step, state.stopped_early) == (8, True)
    assert [r["step"] for r in log] == [5, 8] and log[0]["stop_at"] == 8
    assert json.loads((tmp_path / "straight" / "checkpoint.json").read_text())["step"] == 8

    with pytest.raises(KeyboardInterrupt):
        _stop_run(tmp_path / "killed", fail_at=6)
    resumed, state2, log2 = _stop_run(tmp_path / "killed")  # the stop step comes back from the checkpoint
    assert (state2.step, state2.resumed_from, [r["step"] for r in log2]) == (8, 6, [8])
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), resumed.state_dict().values()))


def test_stop_when_needs_finite_thresholds():
    with pytest.raises(ValueError, match="finite"):
        TrainConfig(iters=10, batch_size=4, lr=1e-3, stop_when={"acc": float("inf")})


def test_stop_when_can_hold_at_the_starting_evaluation():
    """A model already past the threshold at step 0 (reFT of a model that never lost it) trains only the margin."""
    data, model = setup()
    cfg = TrainConfig(iters=100, batch_size=4, lr=1e-3, eval_every=50, eval_at=(0,), stop_when={"m": 0.5}, stop_margin=3)
    log = []
    state = fit(Trainee(model, data.stream(0, 4), cfg, evaluate=lambda m, step: {"m": 1.0}, log=log.append),
                Runtime(progress=False))
    assert (state.step, state.stopped_early) == (3, True)
    assert [(r["step"], r.get("stop_at")) for r in log] == [(0, 3), (3, None)]


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_resolves_by_machine_and_is_stored_resolved(monkeypatch, native):
    """``auto`` becomes bf16 only where the CPU has a native bf16 path (emulated bf16 trains ~14x slower than fp32
    on an AVX2-only CPU): the stored config, and so the run id, name what was computed."""
    import wrapperlab.training.config as C

    monkeypatch.setattr(C, "native_bf16", lambda: native)
    cfg = TrainConfig(iters=4, batch_size=8, lr=1e-3, precision="auto")
    assert cfg.precision == ("bf16" if native else "fp32")
    assert TrainConfig.model_validate(cfg.model_dump()).precision == cfg.precision
    with pytest.raises(ValueError):
        TrainConfig(iters=4, batch_size=8, lr=1e-3, precision="fp16")


def test_a_learning_rate_name_is_resolved_once_by_the_train_config():
    """Names become numbers in one validator, given the setting's table as validation context; without a table only
    numbers pass; a name the table lacks is one ConfigError naming the names it has."""
    from wrapperlab.runs.profiles import validated
    from wrapperlab.settings.pcfg.configs import LR_NAMES, finetune_config
    from wrapperlab.settings.tracr.stages import TRACR_LRS

    base = {"iters": 2, "batch_size": 2}
    assert validated(TrainConfig, {**base, "lr": "M"}, context={"lr_names": LR_NAMES}).lr == 1e-5
    assert validated(TrainConfig, {**base, "lr": "VS"}, context={"lr_names": TRACR_LRS}).lr == 1e-4
    assert validated(TrainConfig, {**base, "lr": "3e-4"}).lr == 3e-4  # a number given as text (the CLI's --lr)
    with pytest.raises(ConfigError, match=r"lr: got 'M'; expected a positive number$"):
        validated(TrainConfig, {**base, "lr": "M"})
    with pytest.raises(ConfigError, match=r"one of \['L', 'M', 'S'\]"):
        validated(TrainConfig, {**base, "lr": "VS"}, context={"lr_names": LR_NAMES})
    assert finetune_config("pretrain-0", "test", {"train.lr": "S"}).train.lr == 1e-6
    assert finetune_config("pretrain-0", "test").train.lr == LR_NAMES["M"]  # the fine-tuning default, by name

