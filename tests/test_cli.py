"""The command line: data dumps, the test profile end to end, and bad input -> one line, exit 2."""

import json
import subprocess
import sys

import pytest

from wrapperlab.cli.main import main

TEST = ["--profile", "test", "--quiet"]


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "wrapperlab", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_data_derivations(capsys):
    assert main(["data", "derivations", "--n", "3", "--seed", "1"]) == 0
    rows = lines(capsys.readouterr().out)
    assert len(rows) == 3 and all(set(r) == {"derivation"} and set(r["derivation"]) <= set("abc") for r in rows)
    main(["data", "derivations", "--n", "3", "--seed", "1"])
    assert lines(capsys.readouterr().out) == rows  # seeded


@pytest.mark.parametrize("task, operand", [("count", "b"), ("count_composite", "aa"), ("index", "c"),
                                           ("index_composite", "bb"), ("token_at", "null")])
def test_data_sample(capsys, task, operand):
    assert main(["data", "sample", "--task", task, "--operand", operand, "--n", "4", "--seed", "2"]) == 0
    rows = lines(capsys.readouterr().out)
    assert len(rows) == 4
    for r in rows:
        assert set(r) == {"task", "operand", "arg", "text", "answer", "tokens"}
        assert r["task"] == task and r["operand"] == operand and len(r["text"]) == 250
        assert r["tokens"][-2] == str(r["answer"]) and len(r["tokens"]) == 259


def test_data_sample_draws_from_the_prior(capsys):
    main(["data", "sample", "--n", "200", "--prior", "0,1,0", "--task", "count"])
    assert {r["operand"] for r in lines(capsys.readouterr().out)} == {"b"}


def test_data_finetune(capsys):
    main(["data", "finetune", "--task", "count", "--operand", "b", "--pt-operand", "a", "--c-tr", "0.5",
          "--n", "200", "--seed", "0"])
    rows = lines(capsys.readouterr().out)
    assert {"correlated", "pt_operand", "answer", "text"} <= set(rows[0])
    assert sum(r["correlated"] for r in rows) == 100
    for r in rows:
        na, nb = r["text"][-40:].count("a"), r["text"][-40:].count("b")
        assert r["answer"] == nb and (nb == na + 1) == r["correlated"]


def test_pretrain_finetune_eval_end_to_end(runs_dir, capsys):
    assert main(["pretrain", *TEST, "--runs", runs_dir]) == 0
    (pt,) = [p for p in runs_dir.iterdir()]
    assert {"config.json", "model.safetensors", "metrics.jsonl", "result.json", "DONE"} <= {p.name for p in pt.iterdir()}
    assert not (pt / "checkpoint").exists()
    config = json.loads((pt / "config.json").read_text())
    assert config["model"]["n_layers"] == 2 and config["data"]["prior"] == "low"
    # same config again: reused, not recomputed
    mtime = (pt / "model.safetensors").stat().st_mtime_ns
    assert main(["pretrain", *TEST, "--runs", runs_dir]) == 0
    assert (pt / "model.safetensors").stat().st_mtime_ns == mtime
    assert main(["finetune", pt.name[:14], *TEST, "--runs", runs_dir, "--c-tr", "1", "--lr", "M"]) == 0
    (ft,) = [p for p in runs_dir.iterdir() if p.name.startswith("finetune")]
    cfg = json.loads((ft / "config.json").read_text())
    assert cfg["parent"] == pt.name and cfg["train"]["lr"] == 1e-5 and cfg["data"]["c_tr"] == 1.0
    result = json.loads((ft / "result.json").read_text())
    assert set(result["after"]) == {"acc_ft_cte0", "acc_ft_cte1", "acc_pt_cte0", "acc_pt_cte1"}
    capsys.readouterr()
    assert main(["eval", ft.name, "--runs", runs_dir, "--n", "50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "count/a" in out["accuracy"] and "acc_pt_cte0" in out["finetune"]


BAD = [
    (["pretrain", "--prior", "lowest"], "prior"),
    (["pretrain", "--prior", "0.5,0.4,0.2"], "prior"),
    (["pretrain", "--set", "data.prior=[0.5, 0.6, -0.1]"], "prior"),
    (["pretrain", "--window", "30"], "window"),
    (["pretrain", "--lr", "0"], "lr"),
    (["pretrain", "--lr", "-1e-3"], "lr"),
    (["pretrain", "--iters", "0"], "iters"),
    (["pretrain", "--batch-size", "-2"], "batch_size"),
    (["pretrain", "--tasks", "count,sum"], "task"),
    (["pretrain", "--set", "train.warp=3"], "train.warp"),
    (["pretrain", "--set", "train.loss=all"], "train.loss"),
    (["pretrain", "--set", "model.n_heads={9c9][.[ {"], "model.n_heads"),  # not YAML (found by the fuzz test)
    (["pretrain", "--profile", "huge"], "profile"),
    (["pretrain", "--device", "tpu"], "device"),
    (["finetune", "pretrain-nothere"], "parent"),
    (["data", "sample", "--task", "sum"], "task"),
    (["data", "sample", "--task", "count", "--operand", "z"], "operand"),
    (["data", "sample", "--prior", "0.2,0.2"], "prior"),
    (["data", "sample", "--n", "0"], "n"),
    (["data", "finetune", "--c-tr", "1.5"], "c_tr"),
    (["data", "finetune", "--operand", "a"], "operand"),
    (["data", "finetune", "--window", "20"], "window"),
    (["data", "sample", "--n", "ten"], "--n"),
]


@pytest.mark.parametrize("argv, field", BAD)
def test_bad_input_is_one_line_exit_2(tmp_path, argv, field):
    store = ["--runs", tmp_path / "runs"] if argv[0] in ("pretrain", "finetune") else []
    r = run_cli(*argv, *store, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and field in err[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_bad_finetune_values_leave_no_run(runs_dir):
    assert main(["pretrain", *TEST, "--runs", runs_dir]) == 0
    before = sorted(p.name for p in runs_dir.iterdir())
    for argv, field in [(["--c-tr", "1.5"], "c_tr"), (["--lr", "0"], "lr"), (["--lr", "X"], "lr"),
                        (["--iters", "-5"], "iters"), (["--operand", "a"], "operand"), (["--task", "index", "--q", "0"], "q")]:
        r = run_cli("finetune", before[0], *TEST, "--runs", runs_dir, *argv)
        assert r.returncode == 2 and field in r.stderr and len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)
    assert sorted(p.name for p in runs_dir.iterdir()) == before


def test_corrupt_and_unfinished_parents(runs_dir):
    assert main(["pretrain", *TEST, "--runs", runs_dir]) == 0
    (pt,) = list(runs_dir.iterdir())
    weights = pt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    r = run_cli("finetune", pt.name, *TEST, "--runs", runs_dir)
    assert r.returncode == 2 and "parent" in r.stderr and "weights" in r.stderr
    (pt / "DONE").unlink()
    r = run_cli("finetune", pt.name, *TEST, "--runs", runs_dir)
    assert r.returncode == 2 and "finished" in r.stderr
    (pt / "config.json").write_text("{not json")
    r = run_cli("eval", pt.name, "--runs", runs_dir)
    assert r.returncode == 2 and "corrupt" in r.stderr
    assert [p.name for p in runs_dir.iterdir()] == [pt.name]
