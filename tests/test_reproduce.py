"""Experiment specs: validation at the boundary, expansion into a graph, resumable in-process runs."""

import pytest

from wrapperlab.cli.main import main
from wrapperlab.errors import ConfigError
from wrapperlab.orchestration.reproduce import reproduce, time_table
from wrapperlab.orchestration.spec import expand, load_spec, shipped_specs
from wrapperlab.runs.store import RunStore
from wrapperlab.training.config import Runtime


def test_shipped_specs_expand_parents_first():
    assert {"pcfg-counter", "pcfg-indexer", "tracr-counter", "tracr-max"} <= set(shipped_specs())
    for name in shipped_specs():
        spec = load_spec(name)
        for profile in ("test", "quick", "paper"):
            nodes = expand(spec, profile)
            seen = set()
            for node in nodes:
                assert all(p in seen for p in node.parents), node.key
                seen.add(node.key)
            assert len(seen) == len(nodes)
    quick = expand(load_spec("pcfg-counter"), "quick")
    assert sum(n.stage == "pretrain" for n in quick) == 3  # one pretraining per seed, shared by its fine-tunings
    assert sum(n.stage == "finetune" for n in quick) == 3 * 1 * 2
    baselines = [n for n in quick if n.stage == "baseline"]  # Scr.+FT's pretraining: one per pretraining
    assert len(baselines) == 3 and all(len(n.parents) == 1 and n.parents[0].startswith("pretrain") for n in baselines)
    assert all(n.parents[1] in {b.key for b in baselines} for n in quick if n.stage == "reft")
    # negative controls analysed like the wrapper cell: C_Tr = 0 pruned, probed, reverse fine-tuned; the
    # never-had-it model (the Scr.+FT pretraining) pruned and probed with the same options
    for stage in ("prune", "probe", "reft"):
        assert {n.point["c_tr"] for n in quick if n.stage == stage and "c_tr" in n.point} == {0.0, 1.0}
    never = [n for n in quick if n.point.get("model") == "never"]
    assert sorted(n.stage for n in never) == ["probe"] * 3 + ["prune"] * 3
    assert all(n.parents == [f"baseline seed={n.point['seed']} prior=low"] for n in never)
    treated_prune = next(n for n in quick if n.stage == "prune" and "c_tr" in n.point)
    assert next(n for n in never if n.stage == "prune").options == treated_prune.options
    paper = expand(load_spec("pcfg-counter"), "paper")
    assert sum(n.stage == "finetune" for n in paper) == 3 * 3 * 3 * 4  # seeds x priors x lrs x C_Tr
    tracr = expand(load_spec("tracr-counter"), "quick")
    # one compiled program for every seed, and one compiled for the fine-tuning target (the Scr.+FT baseline's)
    assert [n.point for n in tracr if n.stage == "compile"] == [{"program": "counter"},
                                                                 {"program": "counter", "target": "ft"}]


@pytest.mark.parametrize("text, key", [
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0], window: [64]}\n", "axes.window"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: M, c_tr: [1.0]}\n", "axes.lr"),
    ("name: x\nkind: pcfg\n", "axes"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], c_tr: [1.0]}\n", "axes.lr"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nanalyses: {stare: {}}\n", "analyses.stare"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nbase: {pretraining: {}}\n", "base.pretraining"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nprofiles: {quick: {base: {tune: {}}}}\n",
     "profiles.quick.base.tune"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nprofiles: {quick: {seeds: many}}\n",
     "profiles.quick.seeds"),
    ("name: x\nkind: quantum\naxes: {}\n", "kind"),
    ("[unclosed\n", "YAML"),
    # each setting's analyses take their own typed options: another setting's option, or a bad value, is named
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nanalyses: {prune: {corpora: [twist]}}\n",
     "analyses.prune.corpora"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nanalyses: {prune: {ks: [-1]}}\n",
     "analyses.prune"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\n"
     "profiles: {test: {analyses: {reft: {baselines: [scratch]}}}}\n", "profiles.test.analyses.reft.baselines"),
    ("name: x\nkind: stories\naxes: {protocol: [filter], lr: [M]}\nanalyses: {reft: {lrs: [M]}}\n",
     "analyses.reft.lrs"),
    # a spec option is its setting's: Tracr's program is no PCFG key
    ("name: x\nkind: pcfg\nprogram: counter\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\n", "program"),
])
def test_bad_specs_name_the_file_and_key(tmp_path, capsys, text, key):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_spec(path)
    assert str(path) in str(e.value) and key in str(e.value)
    assert main(["reproduce", str(path), "--runs", tmp_path / "runs"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["report", str(tmp_path)]) == 2  # nothing reproduced there
    assert not (tmp_path / "runs").exists()


def test_a_specs_options_are_its_settings_typed_models():
    """An analysis entry is the setting's options class with its defaults (the nodes read them by attribute); a
    Tracr spec's program is its spec options."""
    from wrapperlab.settings.pcfg.options import ProbeOptions, PruneOptions
    from wrapperlab.settings.tracr.nodes import TracrSpecOptions

    counter = load_spec("pcfg-counter")
    quick = counter.analyses_for("quick")
    assert isinstance(quick["prune"], PruneOptions) and quick["prune"].n_eval == 500 and quick["prune"].ks[-1] == 20
    assert isinstance(quick["probe"], ProbeOptions) and quick["probe"].iters is None  # the profile's, at run time
    assert counter.analyses_for("paper")["prune"].ks == PruneOptions().ks  # unset: the class's default
    assert counter.options is None
    assert load_spec("tracr-max").options == TracrSpecOptions(program="max-identifier")
    prune = counter.analyses_for("test")["prune"]
    assert all(n.options is prune for n in expand(counter, "test") if n.stage == "prune")


@pytest.mark.parametrize("lr", ["null", "[M]", "X", "-1e-5"])
def test_a_bad_learning_rate_axis_is_one_line_when_the_grid_is_laid_out(tmp_path, capsys, lr):
    """A grid compares its cells' lrs (each reFT lr not above its fine-tuning's) before any config is built: a value
    that is no lr is one ConfigError there, not a TypeError in arithmetic."""
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: x\nkind: pcfg\naxes: {{prior: [low], lr: [{lr}], c_tr: [1.0]}}\n"
                    "analyses: {reft: {lrs: [S]}}\n")
    with pytest.raises(ConfigError, match="lr"):
        expand(load_spec(path), "test")
    assert main(["reproduce", str(path), "--profile", "test", "--runs", tmp_path / "runs", "--quiet"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_interrupted_reproduction_resumes_without_recomputing(tmp_path):
    """Kill after two of ten nodes, run again: only the missing nodes are computed; a third call computes none."""
    spec, store = load_spec("pcfg-counter"), RunStore(tmp_path / "runs")
    quiet = Runtime(progress=False)
    lines = []

    def killer(line: str) -> None:
        lines.append(line)
        if line.startswith("[2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reproduce(spec, "test", store, runtime=quiet, say=killer)
    second = reproduce(spec, "test", store, runtime=quiet, say=lambda _: None)
    # pretrain, finetune | prune, probe, baseline, Scr.+FT, reft, the never-had-it model's prune and probe, and the
    # pretrained model's probe (Fig. 8a)
    assert len(second.nodes) == 10 and second.computed == 8
    reft = second.outcomes[next(k for k in second.outcomes if k.startswith("reft "))]
    assert reft.split["train"] > 0 and reft.split["eval"] > 0 and reft.split["wall"] <= reft.seconds + 0.01
    assert any(line.startswith("reft ") for line in time_table(second))  # reproduce --profile-time
    assert reproduce(spec, "test", store, runtime=quiet, say=lambda _: None).computed == 0
    check_report(store.root)


def check_report(root):
    """The report: HTML with every figure embedded as a decodable PNG, a Markdown twin whose figure links
    exist, our numbers beside the paper's, a verdict per analysed cell, and summary.json."""
    import base64
    import json
    import re

    from wrapperlab.report.render import write_report

    paths = write_report(root)
    page = paths["html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 5  # behaviour bars, FT curves; pruning, probes, reFT for the one analysed cell
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    markdown = paths["markdown"].read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (paths["markdown"].parent / link).exists()
    assert "(17.2 / 15.2)" in markdown  # the paper's Table 5 cell beside ours (lr 1e-4, C_Tr 1, low prior)
    summary = json.loads(paths["summary"].read_text())
    assert "pcfg-counter/test" in summary and "pretrained_o_pt" in summary["pcfg-counter/test"]
    # the precision the runs resolved to (precision: auto), read from their configs: a snapshot says which it holds
    precisions = {json.loads(p.read_text())["train"]["precision"] for p in root.glob("*-*/config.json")}
    assert summary["pcfg-counter/test"]["precision"] == "+".join(sorted(precisions)) in ("fp32", "bf16")
    # one seed: every rule needs three, so the verdict (from claims/verdicts.py) can only be inconclusive
    (cell,) = summary["pcfg-counter/test"]["analysed"]
    assert cell["verdict"] == "inconclusive" and "a wrapper hides count(O_PT)** — **inconclusive**" in markdown
    assert {s["outcome"] for s in cell["signatures"].values()} == {"inconclusive"}
    never = cell["signatures"]["pruning revives count(O_PT)"]["numbers"]["control"]
    assert len(never) == 1 and never[0] is not None  # the never-had-it model was pruned like the FT model


def test_two_processes_on_one_store_compute_each_run_once(tmp_path):
    """Two `reproduce` processes (one with 2 workers) at once on one store: every run is trained by exactly
    one of them (the store's locks), and both finish with the same, complete set of runs."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "wrapperlab", "reproduce", "pcfg-counter", "--profile", "test", "--out", str(runs),
           "--quiet", "--threads", "1"]
    procs = [subprocess.Popen(cmd + extra, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for extra in ([], ["--workers", "2"])]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outputs]
    made = [r for r in RunStore(runs).runs() if r.done]
    assert len(made) == 6  # pretrain, finetune, reft, and the baselines: scrft + its own pretraining, scratch
    assert all(len(r.computed_by()) == 1 for r in made), {r.id: r.computed_by() for r in made}
    assert all(f"{len(expand(load_spec('pcfg-counter'), 'test'))} nodes" in o[0] for o in outputs)


def test_profile_base_overrides_reach_the_runs_and_only_that_profile(tmp_path):
    """A spec's ``profiles.<p>.base`` changes that profile's stage settings (and so the run ids), not others'."""
    import json

    text = ("name: sized\nkind: pcfg\naxes: {prior: [low], lr: [L], c_tr: [1.0]}\n"
            "base: {finetune: {train.batch_size: 8}}\n"
            "profiles: {test: {seeds: 1, base: {pretrain: {train.iters: 6, model.n_layers: 1}, finetune: {train.iters: 4}}}}\n")
    (tmp_path / "sized.yaml").write_text(text)
    spec = load_spec(tmp_path / "sized.yaml")
    assert spec.base_for("test", "finetune") == {"train.batch_size": 8, "train.iters": 4}
    assert spec.base_for("quick", "finetune") == {"train.batch_size": 8}
    store = RunStore(tmp_path / "runs")
    out = reproduce(spec, "test", store, runtime=Runtime(progress=False), say=lambda _: None)
    pt, ft = (store.resolve(out.outcomes[n.key].run_id).config() for n in out.nodes)
    assert (pt["train"]["iters"], pt["model"]["n_layers"]) == (6, 1)
    assert (ft["train"]["iters"], ft["train"]["batch_size"]) == (4, 8)
    saved = json.loads((tmp_path / "runs" / "reproductions" / "sized-test.json").read_text())
    assert saved["base"]["pretrain"] == {"train.iters": 6, "model.n_layers": 1}


def test_ray_executor_on_a_local_cluster(tmp_path):
    """`--executor ray --address` against a Ray head on 127.0.0.1: every node a task, each run computed once;
    a later local call on the same store computes nothing."""
    import shutil
    import socket
    import subprocess
    import sys

    pytest.importorskip("ray")
    ray_cli = shutil.which("ray") or str(__import__("pathlib").Path(sys.executable).parent / "ray")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    import tempfile

    env = {**__import__("os").environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's unix sockets live under it (107-char limit)
    start = [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        runs = tmp_path / "runs"
        cmd = [sys.executable, "-m", "wrapperlab", "reproduce", "pcfg-counter", "--profile", "test", "--out",
               str(runs), "--quiet", "--executor", "ray", "--address", f"127.0.0.1:{port}"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)  # Ray nices its workers
        assert done.returncode == 0, done.stderr[-2000:]
        assert "10 nodes, 10 computed" in done.stdout
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    made = [r for r in RunStore(runs).runs() if r.done]
    assert len(made) == 6 and all(len(r.computed_by()) == 1 for r in made)
    again = reproduce(load_spec("pcfg-counter"), "test", RunStore(runs), runtime=Runtime(progress=False),
                      say=lambda _: None)
    assert again.computed == 0


def test_submitit_executor_through_its_local_executor(tmp_path):
    """`--executor submitit --cluster local`: every ready node a submitit job (local processes, as Slurm would run
    them), at most --workers in flight; each run computed once, and a later local call computes nothing."""
    import subprocess
    import sys

    pytest.importorskip("submitit")
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "wrapperlab", "reproduce", "pcfg-counter", "--profile", "test", "--out", str(runs),
           "--quiet", "--executor", "submitit", "--cluster", "local", "--workers", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10 nodes, 10 computed" in done.stdout
    made = [r for r in RunStore(runs).runs() if r.done]
    assert len(made) == 6 and all(len(r.computed_by()) == 1 for r in made)
    jobs = {p.parent.name for p in (runs / "submitit").glob("*/*_result.pkl")}
    assert len(jobs) == 10  # one job per node, its logs in the store
    again = reproduce(load_spec("pcfg-counter"), "test", RunStore(runs), runtime=Runtime(progress=False),
                      say=lambda _: None)
    assert again.computed == 0


def test_a_submitit_job_that_fails_on_bad_input_is_one_line(tmp_path):
    """An error the user can act on, raised inside a job (here: training diverges at a huge lr), reaches the
    driver whole: one line naming it, exit 2."""
    import subprocess
    import sys

    pytest.importorskip("submitit")
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: bad\nkind: pcfg\nbase:\n  pretrain: {train.lr: 1000000.0}\n"
                    "axes: {prior: [low], lr: [L], c_tr: [1.0]}\nanalyses: {}\n")
    r = subprocess.run([sys.executable, "-m", "wrapperlab", "reproduce", str(spec), "--profile", "test", "--out",
                        str(tmp_path / "runs"), "--quiet", "--executor", "submitit", "--cluster", "local"],
                       capture_output=True, text=True, timeout=600)
    errors = [line for line in r.stderr.splitlines() if line.startswith("wrapperlab: error")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "diverged at step" in errors[0] and len(list((tmp_path / "runs" / "submitit").glob("*/*_result.pkl"))) == 1


@pytest.mark.parametrize("module, extra", [("ray", "ray"), ("submitit", "slurm")])
def test_a_missing_executor_is_one_clear_line(monkeypatch, tmp_path, capsys, module, extra):
    import builtins

    real_import = builtins.__import__

    def without(name, *args, **kwargs):
        if name == module:
            raise ImportError(f"no {module} here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    argv = ["reproduce", "pcfg-counter", "--profile", "test", "--executor", module, "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"wrapperlab[{extra}]" in err[0]
    assert not (tmp_path / "runs").exists()  # refused before the store is touched


def test_reft_runs_at_the_named_lrs_not_above_the_finetuning_lr():
    """pcfg-table5 asks for reFT at eta_M and eta_S: an eta_L fine-tuning gets both, eta_M both, eta_S only eta_S;
    one Scr.+FT per (seed, prior, reFT lr), shared by the C_Tr cells' reFTs and started from the never-had-it model."""
    nodes = {n.key: n for n in expand(load_spec("pcfg-table5"), "quick")}
    refts = [n for n in nodes.values() if n.stage == "reft"]
    assert {(n.point["lr"], n.point["reft_lr"]) for n in refts} == {("L", "M"), ("L", "S"), ("M", "M"), ("M", "S"),
                                                                   ("S", "S")}
    scrfts = [n for n in nodes.values() if n.stage == "scrft"]
    assert len(scrfts) == 3 * 3 * 2 and all(nodes[n.parents[0]].stage == "baseline" for n in scrfts)
    for n in refts:
        (scrft,) = [nodes[p] for p in n.parents if nodes[p].stage == "scrft"]
        assert scrft.point == {k: v for k, v in n.point.items() if k not in ("c_tr", "lr")}
