"""Analysis verbs on test-profile runs: they write results and figures, reuse them, and refuse bad input."""

import json
import subprocess
import sys

import pytest

from wrapperlab.cli.main import main

TEST = ["--profile", "test", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory, lineage):
    runs = tmp_path_factory.mktemp("analysis") / "runs"
    pt, (ft,) = lineage(runs, ["--c-tr", "1", "--lr", "L"])
    return runs, pt, ft


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "wrapperlab", *map(str, args)], capture_output=True, text=True)


def test_prune_writes_result_and_figure_once(store, capsys):
    runs, _, ft = store
    argv = ["prune", ft, "--runs", runs, "--ks", "0,1,3", "--n", "50", "--samples", "32"]
    assert main(argv) == 0
    (result,) = (runs / ft / "analysis").glob("prune-*.json")
    data = json.loads(result.read_text())
    assert data["ks"] == [0, 1, 3] and set(data["curves"]) == {"acc_ft_cte0", "acc_ft_cte1", "acc_pt_cte0", "acc_pt_cte1"}
    assert result.with_suffix(".png").stat().st_size > 1000
    mtime = result.stat().st_mtime_ns
    assert main(argv) == 0
    assert result.stat().st_mtime_ns == mtime  # cached, not recomputed
    assert main(argv + ["--device", "cpu"]) == 0
    assert result.stat().st_mtime_ns == mtime  # where it computes is not part of the result's key
    assert main(["prune", ft, "--runs", runs, "--unit", "mlp_hidden", "--ks", "0,2", "--n", "50", "--samples", "32"]) == 0


def test_probe_attention_diff_reft(store):
    runs, pt, ft = store
    assert main(["probe", ft, "--runs", runs, "--iters", "30", "--n-train", "64", "--n-test", "32"]) == 0
    (probe,) = (runs / ft / "analysis").glob("probe-*.json")
    data = json.loads(probe.read_text())
    assert data["layers"] == ["B0", "B1", "B2"]
    assert set(data["accuracy"]["count_a"]) == {"model", "random_init"}
    assert main(["attention", ft, "--runs", runs, "--n", "20"]) == 0
    assert len(list((runs / ft / "analysis").glob("attention-*-mass.png"))) == 1
    maps = json.loads(next((runs / ft / "analysis").glob("attention-*.json")).read_text())
    for layer in maps["patterns"]:
        for head in layer:
            assert all(abs(sum(row) - 1) < 1e-4 for row in head)  # attention rows sum to 1
    assert main(["attention", ft, "--runs", runs, "--n", "20", "--text", "abc" * 21 + "a"]) == 0
    assert main(["diff", pt, ft, "--runs", runs]) == 0
    assert main(["reft", ft, *TEST, "--runs", runs, "--baselines"]) == 0
    kinds = sorted(p.name.split("-")[0] for p in runs.iterdir())
    assert kinds.count("reft") == 1 and kinds.count("scrft") == 1 and kinds.count("scratch") == 1
    assert kinds.count("pretrain") == 2  # the original and the never-counted-a baseline
    reft_dir = next(p for p in runs.iterdir() if p.name.startswith("reft"))
    steps = [r["step"] for r in map(json.loads, (reft_dir / "metrics.jsonl").read_text().splitlines())]
    assert steps[:4] == [0, 1, 2, 5]
    assert (reft_dir / "reft.png").exists()


BAD = [
    (["reft", "{pt}"], "run"),
    (["prune", "{ft}", "--ks", "0,100000"], "ks"),
    (["prune", "{ft}", "--matrices", "attn.nope"], "matrices"),
    (["prune", "{ft}", "--ks", "a,b"], "ks"),
    (["prune", "{pt}"], "run"),
    (["diff", "{pt}", "nothing-here"], "run_b"),
    (["attention", "{ft}", "--against", "{ft}"], "against"),
    (["attention", "{ft}", "--text", "abcd"], "text"),
    *(([verb, "{ft}", "--device", device], "device") for verb in ("prune", "probe", "attention", "eval")
      for device in ("cuda:7", "tpu")),
    (["diff", "{pt}", "{ft}", "--device", "cuda:7"], "device"),
]


@pytest.mark.parametrize("argv, field", BAD)
def test_bad_analysis_input(store, argv, field):
    runs, pt, ft = store
    r = run_cli(*[a.format(pt=pt, ft=ft) for a in argv], "--runs", runs)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and field in r.stderr and "Traceback" not in r.stderr


def test_diff_refuses_different_architectures(store, tmp_path):
    runs, pt, _ = store
    assert main(["pretrain", *TEST, "--runs", runs, "--set", "model.d_model=32"]) == 0
    other = next(p.name for p in runs.iterdir() if p.name.startswith("pretrain") and p.name != pt
                 and json.loads((p / "config.json").read_text())["model"]["d_model"] == 32)
    r = run_cli("diff", pt, other, "--runs", runs)
    assert r.returncode == 2 and "same architecture" in r.stderr


def test_demo_is_a_shortcut_over_the_counter_spec(tmp_path, capsys):
    """`demo` runs the pcfg-counter spec (no second code path) and writes the report."""
    runs = tmp_path / "runs"
    assert main(["demo", "--profile", "test", "--runs", runs, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pcfg-counter (test)" in out and "report:" in out
    rep = json.loads((runs / "reproductions" / "pcfg-counter-test.json").read_text())
    assert rep["spec"] == "pcfg-counter" and {n["stage"] for n in rep["nodes"]} >= {"pretrain", "finetune", "reft"}
    assert (runs / "report" / "report.html").exists()


def test_demo_rejects_bad_seeds(tmp_path):
    r = run_cli("demo", "--profile", "test", "--runs", tmp_path / "runs", "--seeds", "0")
    assert r.returncode == 2 and "seeds" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()

