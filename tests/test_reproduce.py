"""Experiment specs: validation at the boundary, expansion into a graph, resumable in-process runs."""

import pytest

from wrapperlab.cli import main
from wrapperlab.errors import ConfigError
from wrapperlab.experiments.reproduce import reproduce
from wrapperlab.experiments.spec import expand, load_spec, shipped_specs
from wrapperlab.experiments.store import RunStore
from wrapperlab.training.config import Runtime


def test_shipped_specs_expand_parents_first():
    assert {"pcfg-counter", "tracr-counter"} <= set(shipped_specs())
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
    assert sum(n.stage == "finetune" for n in quick) == 3 * 2 * 2
    tracr = expand(load_spec("tracr-counter"), "quick")
    assert sum(n.stage == "compile" for n in tracr) == 1  # one compiled program for every seed


@pytest.mark.parametrize("text, key", [
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0], window: [64]}\n", "axes.window"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: M, c_tr: [1.0]}\n", "axes.lr"),
    ("name: x\nkind: pcfg\n", "axes"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], c_tr: [1.0]}\n", "axes.lr"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nanalyses: {stare: {}}\n", "analyses.stare"),
    ("name: x\nkind: pcfg\naxes: {prior: [low], lr: [M], c_tr: [1.0]}\nbase: {pretraining: {}}\n", "base.pretraining"),
    ("name: x\nkind: quantum\naxes: {}\n", "kind"),
    ("[unclosed\n", "YAML"),
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


def test_interrupted_reproduction_resumes_without_recomputing(tmp_path):
    """Kill after two nodes, run again: only the missing nodes are computed; a third call computes none."""
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
    assert len(second.nodes) == 5 and second.computed == 3
    assert reproduce(spec, "test", store, runtime=quiet, say=lambda _: None).computed == 0
    check_report(store.root)


def check_report(root):
    """The report: HTML with every figure embedded as a decodable PNG, a Markdown twin whose figure links
    exist, our numbers beside the paper's, a verdict per analysed cell, and summary.json."""
    import base64
    import json
    import re

    from wrapperlab.report.report import write_report

    paths = write_report(root)
    page = paths["html"].read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 3  # pruning, probes, reFT for the one analysed cell
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    markdown = paths["markdown"].read_text()
    for link in re.findall(r"\]\((figures/[^)]+)\)", markdown):
        assert (paths["markdown"].parent / link).exists()
    assert "(17.2 / 15.2)" in markdown  # the paper's Table 5 cell beside ours (lr 1e-4, C_Tr 1, low prior)
    assert "wrapper shown" in markdown or "not shown at this scale" in markdown
    summary = json.loads(paths["summary"].read_text())
    assert "pcfg-counter/test" in summary and "pretrained_count_a" in summary["pcfg-counter/test"]


def test_two_processes_on_one_store_compute_each_run_once(tmp_path):
    """Two `reproduce` processes (one with 2 workers) at once on one store: every run is trained by exactly
    one of them (the store's locks), and both finish with the same, complete set of runs."""
    import subprocess
    import sys

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "wrapperlab.cli", "reproduce", "pcfg-counter", "--profile", "test", "--out", str(runs),
           "--quiet", "--threads", "1"]
    procs = [subprocess.Popen(cmd + extra, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for extra in ([], ["--workers", "2"])]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outputs]
    made = [r for r in RunStore(runs).runs() if r.done]
    assert len(made) == 6  # pretrain, finetune, reft, and the baselines: scrft + its own pretraining, scratch
    assert all(len(r.computed_by()) == 1 for r in made), {r.id: r.computed_by() for r in made}
    assert all(f"{len(expand(load_spec('pcfg-counter'), 'test'))} nodes" in o[0] for o in outputs)
