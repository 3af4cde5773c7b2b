"""The TensorBoard mirror (`--tensorboard DIR`): what it draws equals metrics.jsonl, a resumed run draws the redone
steps once, and the mirror is not part of a run's identity."""

import json
import subprocess
import sys

import pytest

from wrapperlab.cli.main import main

TEST = ["--profile", "test", "--quiet", "--set", "train.checkpoint_every=10", "--set", "train.eval_every=5"]


def drawn(directory) -> dict[str, dict[int, float]]:
    """Every scalar TensorBoard would draw from the event files in ``directory`` (purged steps left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def steps_drawn(directory, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return [e.step for e in acc.Scalars(tag)]


def test_the_mirror_draws_what_metrics_jsonl_holds_and_changes_no_id(tmp_path):
    pytest.importorskip("tensorboard")
    board = tmp_path / "board"
    assert main(["pretrain", *TEST, "--runs", tmp_path / "a", "--tensorboard", board]) == 0
    assert main(["pretrain", *TEST, "--runs", tmp_path / "b"]) == 0
    (run,) = (tmp_path / "a").iterdir()
    assert [p.name for p in (tmp_path / "b").iterdir()] == [run.name]  # same id with or without the mirror
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = drawn(board / run.name)
    assert {"loss", "lr", "acc/count/a"} <= set(scalars)
    for key, values in scalars.items():
        assert values == pytest.approx({r["step"]: r[key] for r in metrics if key in r}, rel=1e-6)


def test_a_resumed_run_draws_each_redone_step_once(tmp_path, kill_at_checkpoint):
    """Killed after its step-20 checkpoint, which is then damaged: the resume redoes steps 11-20; TensorBoard draws
    steps 15 and 20 once, with the values metrics.jsonl keeps."""

    pytest.importorskip("tensorboard")
    board, store = tmp_path / "board", tmp_path / "runs"
    args = ["pretrain", *TEST, "--runs", str(store), "--tensorboard", str(board)]
    kill_at_checkpoint(20)
    assert main(args) == 130
    kill_at_checkpoint.disarm()
    (run,) = store.iterdir()
    assert steps_drawn(board / run.name, "loss") == [5, 10, 15, 20]
    weights = run / "checkpoint" / "model-00000020.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100:] = bytes(100)
    weights.write_bytes(bytes(data))
    r = subprocess.run([sys.executable, "-m", "wrapperlab", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps_drawn(board / run.name, "loss") == [r["step"] for r in metrics if "loss" in r] == [5, 10, 15, 20, 25,
                                                                                                    30, 35, 40]
    assert drawn(board / run.name)["loss"] == pytest.approx({r["step"]: r["loss"] for r in metrics if "loss" in r})


def test_a_tensorboard_path_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["pretrain", *TEST, "--runs", tmp_path / "runs", "--tensorboard", tmp_path / "f"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "tensorboard" in err[0] and not (tmp_path / "runs").exists()


def test_tensorboard_missing_is_one_line_naming_the_extra(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("no tensorboard here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    assert main(["pretrain", *TEST, "--runs", tmp_path / "runs", "--tensorboard", tmp_path / "board"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wrapperlab[tensorboard]" in err[0] and not (tmp_path / "runs").exists()
