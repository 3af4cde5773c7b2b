"""The paper's data interventions (App. E) as optional PCFG axes and an analysis: randFT and mixed cells are built,
stored and stacked as their own kind of run; a jailbreak analysis is refused before anything runs where the
pretraining never had the jailbreak tokens."""

from __future__ import annotations

import pytest

from wrapperlab.cli.main import main
from wrapperlab.orchestration.reproduce import reproduce
from wrapperlab.orchestration.spec import load_spec
from wrapperlab.runs.store import RunStore
from wrapperlab.training.config import Runtime

GRID = ("name: grid\nkind: pcfg\ndescription: interventions\n"
        "base:\n  finetune: {data.task: count, data.operand: b, data.pt_operand: a}\n"
        "axes: {prior: [low], lr: [M], c_tr: [1.0], randft: [false, true], mix_pt: [0.0, 0.1]}\n"
        "profiles: {test: {seeds: 1}}\n")


def test_intervention_cells_are_their_own_runs_alone_or_stacked(tmp_path):
    """Four cells (randFT or not x 0 or 10 % PT data): each fine-tuning has the data its point says and randFT runs
    are of kind randft; trained as stacks (one per run kind) they are the same runs as trained alone."""
    path = tmp_path / "grid.yaml"
    path.write_text(GRID)
    spec, ids = load_spec(path), {}
    for stack in (1, 4):
        store = RunStore(tmp_path / f"runs{stack}")
        lines: list[str] = []
        result = reproduce(spec, "test", store, runtime=Runtime(progress=False, stack=stack), say=lines.append)
        ids[stack] = {key: o.run_id for key, o in result.outcomes.items()}
        for node in (n for n in result.nodes if n.stage == "finetune"):
            run = store.resolve(result.outcomes[node.key].run_id)
            data = run.config()["data"]
            assert run.kind == ("randft" if node.point["randft"] else "finetune")
            assert (data["ask"], data["answer"]) == (("pt", "ft") if node.point["randft"] else ("ft", "asked"))
            assert data["mix_pt"] == node.point["mix_pt"]
        if stack == 4:
            assert sum("2 finetune runs as one stack" in line for line in lines) == 1
            assert sum("2 randft runs as one stack" in line for line in lines) == 1
    assert ids[1] == ids[4]


def test_a_jailbreak_analysis_needs_the_jailbreak_pretraining(tmp_path, capsys):
    path = tmp_path / "jail.yaml"
    path.write_text("name: jail\nkind: pcfg\nbase:\n  finetune: {data.task: count, data.operand: b, data.pt_operand: a}\n"
                    "axes: {prior: [low], lr: [M], c_tr: [1.0]}\nanalyses: {jailbreak: {}}\n"
                    "profiles: {test: {seeds: 1}}\n")
    runs = tmp_path / "runs"
    assert main(["reproduce", str(path), "--profile", "test", "--runs", str(runs), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "analyses.jailbreak" in err and "count_j1" in err
    assert not runs.exists() or not any(p.name.startswith("pretrain") for p in runs.iterdir())  # nothing trained
    shipped = load_spec("pcfg-jailbreak")
    assert shipped.base_for("quick", "pretrain")["data.tasks"] == ["count", "count_j1", "count_j2"]


@pytest.mark.parametrize("axis, bad", [("mix_pt", 1.0), ("mix_pt", -0.1), ("randft", "maybe")])
def test_bad_intervention_values_are_one_line(tmp_path, capsys, axis, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(GRID.replace("randft: [false, true], mix_pt: [0.0, 0.1]", f"{axis}: [{bad}]"))
    assert main(["reproduce", str(path), "--profile", "test", "--runs", str(tmp_path / "runs"), "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
