import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def runs_dir(tmp_path):
    return tmp_path / "runs"


@pytest.fixture(scope="session")
def lineage():
    """``lineage(runs, *finetunes)``: one test-profile pretraining in ``runs`` and one fine-tuning of it per argv list
    in ``finetunes``, all through the CLI as a user would make them; returns the pretraining's id and the fine-tunings'
    ids, sorted. Session-scoped so module-scoped store fixtures can build on it."""
    from wrapperlab.cli.main import main

    test = ["--profile", "test", "--quiet"]

    def make(runs, *finetunes: list[str]) -> tuple[str, list[str]]:
        assert main(["pretrain", *test, "--runs", runs]) == 0
        pt = next(runs.iterdir()).name
        for argv in finetunes:
            assert main(["finetune", pt, *test, "--runs", runs, *argv]) == 0
        return pt, sorted(p.name for p in runs.iterdir() if p.name.startswith("finetune"))

    return make


@pytest.fixture
def kill_at_checkpoint(monkeypatch):
    """``kill_at_checkpoint(step)`` makes training stop as Ctrl-C would right after it saves its checkpoint at ``step``
    (None: its first), so the run is left to resume; ``kill_at_checkpoint.disarm()`` restores saving."""
    import wrapperlab.training.loop as loop

    real = loop.save_checkpoint

    def arm(step: int | None = None) -> None:
        def save_then_die(directory, at, *rest, **kw):
            real(directory, at, *rest, **kw)
            if step is None or at == step:
                raise KeyboardInterrupt

        monkeypatch.setattr(loop, "save_checkpoint", save_then_die)

    arm.disarm = lambda: monkeypatch.setattr(loop, "save_checkpoint", real)
    return arm
