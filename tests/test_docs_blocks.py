"""Published numbers come from summary.json: marked Markdown blocks are rewritten, everything else is left alone,
and a bad block is one error naming the file with nothing written."""

from __future__ import annotations

import pytest

from wrapperlab.claims import verdicts as V
from wrapperlab.cli.main import main
from wrapperlab.errors import ConfigError
from wrapperlab.report.docs import update_docs


def _summary() -> dict:
    parts = [V.behaviour_hidden([0.99, 0.98, 0.99], [0.02, 0.04, 0.02]),
             V.pruning_revival([0.5, 0.6, 0.55], [0.0, 0.01, 0.0]),
             V.probe_readout([0.98, 0.99, 0.99], [[0.65, 0.6, 0.62], [0.7, 0.7, 0.7]]),
             V.revival_speed([150, 150, 200], [None, None, None], [200, 200, 200])]
    cell = {"prior": "low", "lr": 1e-5, "c_tr": 1.0, "seeds": [0, 1, 2], "verdict": V.pcfg_wrapper(*parts).outcome,
            "signatures": {p.claim: p.as_dict() for p in parts}}
    stat = {"mean": 0.5, "ci95": 0.1, "n": 3, "missing": 0}
    return {"pcfg-counter/quick": {"task": "count", "o_pt": "a", "o_ft": "b", "pretrained_o_pt": stat,
                                   "pretrained_o_ft": stat, "analysed": [cell], "nodes": 27, "seconds": 750.4,
                                   "finetune": [{"label": "low, η_M, C_Tr=1", **{m: stat for m in (
                                       "acc_pt_cte0", "acc_pt_cte1", "acc_ft_cte0", "acc_ft_cte1")}}]}}


DOC = ("# Title\nkept text\n<!-- wrapperlab:pcfg-verdicts pcfg-counter/quick -->\nstale\n<!-- /wrapperlab -->\n"
       "middle\n<!-- wrapperlab:wall-time pcfg-counter/quick -->\n<!-- /wrapperlab -->\nend\n")


def test_blocks_are_generated_and_the_rest_kept(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(DOC)
    assert update_docs(_summary(), [doc]) == {doc: 2}
    text = doc.read_text()
    assert "stale" not in text and text.startswith("# Title\nkept text\n") and text.endswith("end\n")
    assert "99.0 / 98.0 / 99.0 → 2.0 / 4.0 / 2.0 (**shown**)" in text  # per-seed numbers beside the outcome
    assert "150 / 150 / 200 vs never / never / never (200) (**inconclusive**)" in text and "| **inconclusive** |" in text
    assert "27 nodes, 12 min 30 s" in text
    assert "4 tests at the 95 % level" in text and "about 0.1 would read **shown** by chance alone" in text
    assert update_docs(_summary(), [doc]) == {doc: 2} and doc.read_text() == text  # idempotent


@pytest.mark.parametrize("block, field", [
    ("<!-- wrapperlab:nonsense pcfg-counter/quick -->\n<!-- /wrapperlab -->\n", "block wrapperlab:nonsense"),
    ("<!-- wrapperlab:wall-time pcfg-counter/paper -->\n<!-- /wrapperlab -->\n", "pcfg-counter/paper"),
])
def test_a_bad_block_names_the_file_and_writes_nothing(tmp_path, block, field):
    good, bad = tmp_path / "good.md", tmp_path / "bad.md"
    good.write_text(DOC)
    bad.write_text(block)
    with pytest.raises(ConfigError, match="bad.md") as err:
        update_docs(_summary(), [good, bad])
    assert field in str(err.value)
    assert good.read_text() == DOC  # checked before anything was written


def test_report_docs_from_the_command_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nothing"), "--docs", str(tmp_path / "x.md")]) == 2
    assert "reproduce" in capsys.readouterr().err


def test_the_localisation_block_gives_each_block_its_share(tmp_path):
    from wrapperlab.report.sections.pcfg import localisation
    from wrapperlab.settings.pcfg.results import PruneRecord

    stat = lambda m: {"mean": m, "ci95": 0.0, "n": 3, "missing": 0}  # noqa: E731
    prune = PruneRecord(kind="prune", run="finetune-0", key={}, config={}, ks=[0], curves={},
                        top_units=[{"block": 0}] * 12 + [{"block": 2}] * 3)
    assert localisation(prune, None, k=15)["latter_half"] == pytest.approx(0.2)  # block 2 of 3 is the latter half
    cell = {"prior": "low", "blocks": 3, "lr": "M", "c_tr": 1.0, "pruned_share": [stat(0.8), stat(0.0), stat(0.2)],
            "latter_half": stat(0.2), "probe_gain": [stat(0.3), stat(0.31), stat(None)]}
    doc = tmp_path / "doc.md"
    doc.write_text("<!-- wrapperlab:pcfg-localisation pcfg-depth/quick -->\n<!-- /wrapperlab -->\n")
    update_docs({"pcfg-depth/quick": {"localisation": [cell]}}, [doc])
    assert "| low, 3 blocks, η M, C_Tr = 1 | B1 80 · B2 0 · B3 20 | 20.0 ± 0.0 | B1 30 · B2 31 · B3 - |" in doc.read_text()


def test_the_time_split_block_is_the_profile_time_table():
    from wrapperlab.report.docs import time_split
    from wrapperlab.timing import per_stage

    nodes = [{"stage": "finetune", "seconds": 60.0, "reused": False,
              "split": {"train": 40.0, "eval": 15.0, "data": 2.0, "dispatch": 3.0}},
             {"stage": "finetune", "seconds": 50.0, "reused": False, "split": {"train": 40.0, "eval": 8.0}},
             {"stage": "finetune", "seconds": 99.0, "reused": True, "split": {"train": 99.0}},  # not computed here
             {"stage": "probe", "seconds": 20.0, "reused": False, "split": {"analysis": 19.0}}]
    rows = per_stage(nodes)
    assert rows["finetune"]["nodes"] == 2 and rows["finetune"]["wall"] == 113.0
    assert rows["finetune"]["wall/train"] == pytest.approx(113 / 80) and "wall/train" not in rows["probe"]
    text = time_split({"time_split": rows})
    assert "| fine-tuning | 2 | 113 | 80 | 23 | 2 | – | 1.41 |" in text and "| probes | 1 | 20 | – | – | – | 19 | – |" in text


def test_the_claims_block_gives_each_claim_its_outcome_and_effect():
    from wrapperlab.report.docs import pcfg_claims

    claims = [{"where": "η_M", "claim": "T1: a claim", "outcome": "shown", "reason": "r",
               "numbers": {"effect": {"mean": 0.93, "n": 3}, "low": 0.66, "high": 1.2, "margin": 0.3}},
              {"where": "every analysed cell", "claim": "T5: all of them", "outcome": "not shown",
               "reason": "2 shown, 2 not shown of 4: ...",
               "numbers": {"parts": [{"outcome": o} for o in ("shown", "not shown", "shown", "not shown")]}}]
    rows = pcfg_claims({"claims": claims}).splitlines()
    assert rows[2] == "| T1: a claim | η_M | **shown** | +0.93 (+0.66 to +1.20, n = 3) vs 0.3 |"
    assert rows[3] == "| T5: all of them | every analysed cell | **not shown** | 2 shown, 2 not shown of 4 |"


def test_the_tracr_reft_block_is_the_table_4_replica_with_its_verdicts():
    from wrapperlab.report.docs import tracr_reft

    steps = {"mean": 500.0, "ci95": 0.0, "n": 3, "missing": 0}
    never = {"mean": None, "ci95": None, "n": 0, "missing": 3}
    end = {"mean": 0.99, "ci95": 0.01, "n": 3, "missing": 0}
    verdict = V.revival_speed([500, 500, 500], [None, None, None], [2000] * 3,
                              claim="reFT (FT η_M, C_Tr=1, reFT η_S) revives count(O_PT) faster than Scr.+FT learns it")
    text = tracr_reft({"reft": [
        {"who": "FT η_M, C_Tr=1", "reft_lr": "S", "steps_to_0.9": steps, "end": end, "reached": 3, "seeds": 3},
        {"who": "Scr.+FT (compiled for O_FT)", "reft_lr": "S", "steps_to_0.9": never, "end": end, "reached": 0,
         "seeds": 3},
        {"who": "FT η_M, C_Tr=1", "reft_lr": "VS", "steps_to_0.9": never, "end": end, "reached": 0, "seeds": 3}],
        "reft_verdicts": [verdict.as_dict()]})
    lines = text.splitlines()
    assert lines[0] == ("| reverse fine-tuned model | reFT η_S: steps to 90 % (reached; end %) | reFT η_VS: steps to 90 % "
                        "(reached; end %) |")
    assert lines[2].startswith("| FT η_M, C_Tr=1 | 500") and "(3/3;" in lines[2] and "(0/3;" in lines[2]
    assert lines[3].startswith("| Scr.+FT (compiled for O_FT) |") and lines[3].endswith("| – |")
    assert f"**{verdict.outcome}**" in lines[-1] and "Scr.+FT learns it" in lines[-1]


def test_snapshots_regenerate_the_blocks_and_the_check_finds_a_drift(tmp_path, capsys):
    """Snapshots hold exactly what the blocks read: from them alone every block renders as `--docs` wrote it; a
    typed edit inside a block is found (exit 1, the block named); a block of a reproduction without a snapshot is
    listed, not passed silently; a damaged snapshot is one line."""
    from wrapperlab.report.docs import check_docs, load_snapshots, write_snapshots

    doc, snaps = tmp_path / "doc.md", tmp_path / "results"
    summary = _summary()
    doc.write_text(DOC)
    update_docs(summary, [doc])  # as `report --docs` writes it, then a block of a reproduction with no snapshot
    doc.write_text(doc.read_text() + "<!-- wrapperlab:wall-time pcfg-depth/quick -->\n<!-- /wrapperlab -->\n")
    assert [p.name for p in write_snapshots(summary, snaps)] == ["pcfg-counter-quick.json"]
    found = check_docs([doc], load_snapshots(snaps))
    assert (found.differing, found.checked) == ([], 2) and found.unchecked == [f"{doc}: wall-time pcfg-depth/quick"]
    assert main(["report", "--check-docs", str(doc), "--snapshots", str(snaps)]) == 0
    doc.write_text(doc.read_text().replace("27 nodes", "28 nodes"))  # a number typed over a generated one
    assert main(["report", "--check-docs", str(doc), "--snapshots", str(snaps)]) == 1
    assert f"differs from its snapshot: {doc}: wall-time pcfg-counter/quick" in capsys.readouterr().err
    # re-rendered from the snapshots alone (as after a change to how a block is written): the drift is gone, the
    # block without a snapshot is left as it was
    assert main(["report", "--docs", str(doc), "--snapshots", str(snaps)]) == 0
    assert "27 nodes" in doc.read_text() and "pcfg-depth/quick -->\n<!-- /wrapperlab -->" in doc.read_text()
    assert main(["report", "--check-docs", str(doc), "--snapshots", str(snaps)]) == 0
    capsys.readouterr()
    (snaps / "pcfg-counter-quick.json").write_text("{torn")
    assert main(["report", "--check-docs", str(doc), "--snapshots", str(snaps)]) == 2
    err = capsys.readouterr().err
    assert "pcfg-counter-quick.json" in err and len(err.strip().splitlines()) == 1
    assert main(["report"]) == 2 and "--check-docs" in capsys.readouterr().err
    assert main(["report", "--docs", str(doc), "--snapshots", str(tmp_path / "none")]) == 2  # no snapshots: an error
    assert "snapshots" in capsys.readouterr().err


def test_the_published_blocks_match_the_committed_snapshots():
    """What CI checks: every block of README.md and docs/*.md whose reproduction has a snapshot in docs/results/
    renders from it exactly as committed (`wrapperlab report --check-docs`)."""
    from pathlib import Path

    from wrapperlab.report.docs import check_docs, load_snapshots

    root = Path(__file__).resolve().parent.parent
    snapshots = load_snapshots(root / "docs" / "results")
    assert "pcfg-counter/quick" in snapshots
    found = check_docs([root / "README.md", *sorted((root / "docs").glob("*.md"))], snapshots)
    assert found.differing == [] and found.checked >= 7  # the precision block included
    assert {p.name for p in (root / "docs" / "results" / "by-precision").glob("*.json")} >= {
        "pcfg-counter-quick-bf16.json", "pcfg-counter-quick-fp32.json"}


def test_the_precision_block_sets_each_verdict_side_by_side_and_marks_those_that_move(tmp_path):
    """`report --snapshots` also files each snapshot under its precision; the precision block reads them all and
    shows every verdict of a reproduction per precision, marking the rows whose outcome differs — here the pruning
    part (shown in bf16, not shown in fp32) and with it the cell's wrapper verdict — and only those."""
    from wrapperlab.report.docs import PRECISION_DIR, write_snapshots

    snaps = tmp_path / "results"
    bf16, fp32 = _summary(), _summary()
    bf16["pcfg-counter/quick"]["precision"], fp32["pcfg-counter/quick"]["precision"] = "bf16", "fp32"
    cell = fp32["pcfg-counter/quick"]["analysed"][0]
    parts = [V.Verdict(**p) for p in cell["signatures"].values()]
    parts[1] = V.pruning_revival([0.02, 0.03, 0.01], [0.0, 0.01, 0.0])
    cell.update(signatures={p.claim: p.as_dict() for p in parts}, verdict=V.pcfg_wrapper(*parts).outcome)
    write_snapshots(bf16, snaps)
    write_snapshots(fp32, snaps)
    assert sorted(p.name for p in (snaps / PRECISION_DIR).glob("*.json")) == ["pcfg-counter-quick-bf16.json",
                                                                              "pcfg-counter-quick-fp32.json"]
    doc = tmp_path / "doc.md"
    doc.write_text(f"<!-- wrapperlab:precision results/{PRECISION_DIR} -->\n<!-- /wrapperlab -->\n")
    assert update_docs({}, [doc]) == {doc: 1}
    lines = [line for line in doc.read_text().splitlines() if line.startswith("| ")]
    assert lines[0] == "| verdict | bf16 | fp32 | precision-sensitive |"
    moved = [line.split(" | ")[0] for line in lines[1:] if line.endswith("| **yes** |")]
    assert moved == ["| low, η 1e-05, C_Tr = 1: pruning revives count(O_PT)",
                     "| low, η 1e-05, C_Tr = 1: **the wrapper verdict**"]
    assert len(lines) == 1 + 5 and "2 precision-sensitive" in doc.read_text()
    pruning = next(line for line in lines if "pruning" in line)
    assert "**shown** +0.55" in pruning and "**not shown** +0.02" in pruning
    assert "different rule versions" not in doc.read_text()
    fp32["pcfg-counter/quick"]["rules"] = 2  # decided by newer rules than the bf16 snapshot: said in the block
    write_snapshots(fp32, snaps)
    update_docs({}, [doc])
    assert "**decided by different rule versions** (bf16: 1, fp32: 2)" in doc.read_text()
    (snaps / PRECISION_DIR / "pcfg-counter-quick-bf16.json").unlink()  # one precision: nothing compared, none claimed
    update_docs({}, [doc])
    assert "in fp32 only: nothing to compare yet" in doc.read_text() and "precision-sensitive**" not in doc.read_text()
    (snaps / PRECISION_DIR / "pcfg-counter-quick-fp32.json").write_text('{"key": "pcfg-counter/quick", "summary": {}}')
    with pytest.raises(ConfigError, match="precision"):  # a snapshot that does not say its precision
        update_docs({}, [doc])
