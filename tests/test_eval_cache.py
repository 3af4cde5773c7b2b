"""What the store caches across runs (issue 14) gives exactly what computing it again would: a parent's evaluation on
its children's final sets, and a random-init control's residuals and probes on one probe input set."""

import json

import pytest

from wrapperlab.cli.main import main
from wrapperlab.data.finetune_data import FinetuneData
from wrapperlab.data.samples import PCFGData
from wrapperlab.runs.profiles import validated
from wrapperlab.runs.store import RunStore
from wrapperlab.settings.pcfg.configs import FinetuneRunConfig
from wrapperlab.settings.pcfg.evaluate import finetune_accuracies, finetune_test_sets
from wrapperlab.settings.pcfg.stages import load_model, pretraining_config


@pytest.fixture(scope="module")
def store(tmp_path_factory, lineage):
    """One pretraining and two fine-tunings of it that differ only in C_Tr (so their test sets are the same)."""
    runs = tmp_path_factory.mktemp("cache") / "runs"
    pt, fts = lineage(runs, ["--c-tr", "1"], ["--c-tr", "0"])
    return runs, pt, fts


def test_siblings_share_one_parent_evaluation_equal_to_computing_it(store):
    runs, pt, fts = store
    (stored,) = (runs / pt / "analysis").glob("eval-*.json")  # one evaluation for both children
    assert json.loads(stored.read_text())["key"]["metric"] == "four"
    later = max((runs / ft / "config.json").stat().st_mtime_ns for ft in fts)
    assert stored.stat().st_mtime_ns < later  # written by the first child, read by the second
    befores = [json.loads((runs / ft / "result.json").read_text())["before"] for ft in fts]
    assert befores[0] == befores[1]
    parent = RunStore(runs).resolve(pt)
    cfg = validated(FinetuneRunConfig, RunStore(runs).resolve(fts[0]).config())
    data = FinetuneData(PCFGData(pretraining_config(parent).data), cfg.data)
    direct = finetune_accuracies(load_model(parent), data, test_sets=finetune_test_sets(data, cfg.eval.n, cfg.seed))
    assert direct.as_dict() == befores[0]


def test_control_residuals_cached_by_content_equal_to_computing_them(store, capsys):
    runs, pt, fts = store
    argv = ["--runs", runs, "--iters", "30", "--n-train", "64", "--n-test", "32"]
    assert main(["probe", fts[0], *argv]) == 0
    cache = sorted((runs / "cache" / "residuals").glob("*.pt"))
    assert len(cache) == 2  # the twin's residuals on the training and the test inputs
    (probes,) = (runs / "cache" / "control-probes").glob("*.pt")  # and its probes' accuracies
    (result,) = (runs / fts[0] / "analysis").glob("probe-*.json")
    cold = json.loads(result.read_text())["accuracy"]
    result.unlink()
    stamps = [p.stat().st_mtime_ns for p in [*cache, probes]]
    assert main(["probe", fts[0], *argv]) == 0  # the control's residuals and probes read back, the model's computed
    assert [p.stat().st_mtime_ns for p in [*cache, probes]] == stamps
    assert json.loads(result.read_text())["accuracy"] == cold
    probes.unlink()  # the control's probes trained again give what the cache held
    result.unlink()
    assert main(["probe", fts[0], *argv]) == 0
    assert json.loads(result.read_text())["accuracy"] == cold
    assert main(["probe", fts[1], *argv]) == 0  # a sibling meets the same twin on the same inputs
    assert sorted((runs / "cache" / "residuals").glob("*.pt")) == cache
    assert len(list((runs / "cache" / "control-probes").glob("*.pt"))) == 1
    (sibling,) = (runs / fts[1] / "analysis").glob("probe-*.json")
    assert json.loads(sibling.read_text())["accuracy"]["count_a"]["random_init"] == cold["count_a"]["random_init"]
    # a damaged cache file is only a cache: computed again, said once, the same numbers
    cache[0].write_bytes(cache[0].read_bytes()[:100])
    result.unlink()
    capsys.readouterr()
    assert main(["probe", fts[0], *argv]) == 0
    assert "unreadable" in capsys.readouterr().err
    assert json.loads(result.read_text())["accuracy"] == cold
