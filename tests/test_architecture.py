"""The house rules (docs/architecture.md) as tests: imports only run downward, no private name crosses a module,
the generic layers never name a setting, every setting is found through the registry, caches carry a code
version, analyses leave models and RNGs as they found them, and the documented Python API example runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

from wrapperlab.errors import ConfigError
from wrapperlab.orchestration.spec import load_spec, shipped_specs
from wrapperlab.runs.stage import cached
from wrapperlab.runs.store import RunStore
from wrapperlab.settings import registry

SRC = Path(__file__).resolve().parents[1] / "src" / "wrapperlab"
#: the layers, bottom first: a module may import from its own layer and the ones before it
LAYERS = ["errors", "schema", "files", "timing", "data", "models", "training", "analysis", "claims", "audit", "runs", "settings", "orchestration", "report",
          "api", "cli", "__main__"]
#: modules that hold no setting-specific code: they find settings through the registry only
GENERIC = ["runs", "orchestration", "report/render.py", "report/sections/common.py", "cli/main.py", "cli/common.py",
           "cli/reproduce.py", "cli/export.py", "cli/audit.py", "report/audit.py", "settings/base.py",
           "settings/graph.py", "settings/spec.py", "claims/__init__.py", "report/records.py", "audit"]


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        yield path, rel, "wrapperlab." + ".".join(rel.with_suffix("").parts)


def _runtime_imports(tree: ast.AST):
    """``from wrapperlab... import`` statements outside ``if TYPE_CHECKING:`` blocks."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and id(n) not in skipped
            and (n.module or "").startswith("wrapperlab")]


def test_imports_only_run_downward_and_no_private_name_crosses_a_module():
    upward, private = [], []
    for path, rel, module in _modules():
        layer = rel.parts[0].removesuffix(".py")
        for node in _runtime_imports(ast.parse(path.read_text())):
            other = node.module.split(".")[1] if "." in node.module else ""
            if other in LAYERS and LAYERS.index(other) > LAYERS.index(layer):
                upward.append(f"{module} imports {node.module}")
            private += [f"{module} imports {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and node.module != module]
    assert not upward, upward
    assert not private, private


def test_generic_layers_never_name_a_setting():
    names = set(registry.names())
    found = []
    for path, rel, module in _modules():
        if not any(str(rel).startswith(g) for g in GENERIC):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert not found, found


def _concepts() -> set[str]:
    """The names of one setting's concepts: its axes, its analyses' and its spec's options — those some setting
    declares and not every one does, less the training loop's own vocabulary (``iters``, ``lr``: every run has them)."""
    from wrapperlab.training.config import TrainConfig

    vocab = []
    for setting in registry.all_settings():
        names = set(setting.axes) | {f for options in setting.analyses.values() for f in options.model_fields}
        names |= set(setting.spec_options.model_fields) if setting.spec_options else set()
        vocab.append(names - {"when"})
    return (set.union(*vocab) - set.intersection(*vocab)) - set(TrainConfig.model_fields) - {"seed"}


def _names_in(tree: ast.AST):
    """(line, name) of every string constant, attribute, keyword and parameter a module spells."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value
        elif isinstance(node, ast.Attribute):
            yield node.lineno, node.attr
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.value.lineno, node.arg
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg


def test_generic_layers_name_no_settings_concept():
    """Not only no setting's name: none of its concepts (a PCFG prior or C_Tr, a Tracr program, a story corpus, a
    pruning K list) — the generic layers read them through the setting's typed options, never by name."""
    concepts = _concepts()
    assert {"prior", "c_tr", "program", "corpora", "ks", "mixed_when"} <= concepts, concepts
    found = []
    for path, rel, module in _modules():
        if any(str(rel).startswith(g) for g in GENERIC):
            found += [f"{module}:{line} {name!r}" for line, name in _names_in(ast.parse(path.read_text()))
                      if name in concepts]
    assert not found, found


def _import_graph() -> dict[str, set[str]]:
    """Module -> the wrapperlab modules it imports anywhere (at the top, inside functions, under TYPE_CHECKING)."""
    modules = {}
    for path, rel, module in _modules():
        modules[module.removesuffix(".__init__")] = path
    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("wrapperlab"):
                targets |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                            for a in node.names}
            elif isinstance(node, ast.Import):
                targets |= {a.name for a in node.names if a.name.startswith("wrapperlab")}
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def test_no_import_circle():
    """No module reaches itself through imports — lazy ones inside functions and TYPE_CHECKING ones included (a lazy
    import both ways was how the runner and its executors, and the settings and the spec, leaned on each other)."""
    graph = _import_graph()
    circles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for other in sorted(graph[module]):
            if state.get(other) == "open":
                circles.append(path[path.index(other):] + [other])
            elif other not in state:
                visit(other, [*path, other])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles


def test_one_training_loop_and_small_functions():
    """One ``def train``; no function over 80 lines; at most 10 with more than 6 parameters (self/cls not counted)."""
    trains, long, wide = [], [], []
    for path, rel, module in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"{module}:{node.lineno} {node.name}"
                trains += [where] if node.name == "train" else []
                if node.end_lineno - node.lineno + 1 > 80:
                    long.append(where)
                a = node.args
                params = [x for x in a.posonlyargs + a.args + a.kwonlyargs if x.arg not in ("self", "cls")]
                if len(params) + bool(a.vararg) + bool(a.kwarg) > 6:
                    wide.append(where)
    assert len(trains) == 1, trains
    assert not long, long
    assert len(wide) <= 10, wide


def test_every_spec_and_run_kind_finds_its_setting():
    owners: dict[str, str] = {}
    for setting in registry.all_settings():
        for kind in setting.run_kinds:
            assert kind not in owners, f"{kind} owned by {owners[kind]} and {setting.name}"
            owners[kind] = setting.name
            assert registry.for_run_kind(kind) is setting
        assert set(setting.analyses) <= set(setting.stages)  # every analysis a spec may ask for has its stage
        assert registry.cli_module(setting.name).analyse
    for name in shipped_specs():
        spec = load_spec(name)
        assert registry.get(spec.kind).name == spec.kind
    with pytest.raises(ConfigError, match="kind"):
        registry.get("nonsense")
    with pytest.raises(ConfigError, match="known setting"):
        registry.for_run_kind("nonsense-finetune")


def test_a_setting_cannot_take_another_settings_run_kinds():
    from dataclasses import replace

    clash = replace(registry.get("tracr"), name="copycat")
    with pytest.raises(ConfigError, match="run kinds"):
        registry.register(clash)
    assert "copycat" not in registry.names()


def test_a_spec_of_an_unknown_setting_is_one_line(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: x\nkind: weather\naxes: {lr: [M]}\n")
    with pytest.raises(ConfigError, match=r"kind.*one of \['pcfg', 'stories', 'tracr'\]"):
        load_spec(path)


def test_the_code_version_is_part_of_a_runs_identity(tmp_path):
    store = RunStore(tmp_path)
    config = {"seed": 0, "lr": 1e-3}
    with store.open("pretrain", config, version=1) as v1:
        v1.finish({"x": 1})
    with store.open("pretrain", config, version=2) as v2:
        assert not v2.done  # a bumped version never reuses the old result
    assert v1.id != v2.id
    run = store.resolve(v1.id)
    assert run.config() == config and run.code_version == 1
    with pytest.raises(ConfigError, match="code_version"):
        store.run_for("pretrain", {**config, "code_version": 3}, version=1)


def test_the_code_version_is_part_of_an_analysis_key(tmp_path):
    store = RunStore(tmp_path)
    with store.open("pretrain", {"seed": 0}, version=1) as run:
        run.finish({})
    calls = []
    compute = lambda: calls.append(1) or {"value": len(calls)}  # noqa: E731
    first = cached(run, "probe", {"iters": 3}, compute, version=1)
    again = cached(run, "probe", {"iters": 3}, compute, version=1)
    bumped = cached(run, "probe", {"iters": 3}, compute, version=2)
    assert (first.reused, again.reused, bumped.reused) == (False, True, False)
    assert again.data["value"] == 1 and bumped.data["value"] == 2 and first.path != bumped.path


def test_analyses_leave_models_and_the_global_rng_as_they_found_them():
    from wrapperlab.analysis.judge import Judge
    from wrapperlab.analysis.rng import random_init_twin
    from wrapperlab.data.stories.generator import StoryGenerator
    from wrapperlab.models.gpt import GPT, GPTConfig
    from wrapperlab.settings.stories.evaluate import story_loss

    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    model = GPT(GPTConfig.preset("test", vocab_size=40, n_ctx=32))
    torch.random.set_rng_state(state)
    twin = random_init_twin(model, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(twin.embed.weight, random_init_twin(model, seed=7).embed.weight)  # seeded: the same twin
    Judge.fit(list(StoryGenerator(0).records(40)), seed=3, epochs=1)
    assert torch.equal(torch.random.get_rng_state(), state)

    class Tok:  # a tokenizer stand-in: one id per character
        def encode(self, text):
            return type("E", (), {"ids": [ord(c) % 40 for c in text]})()

    model.train()
    story_loss(model, Tok(), list(StoryGenerator(1).records(2)))
    assert model.training  # measured in eval mode, handed back in train mode


def test_the_python_api_example_in_the_docs_runs(tmp_path, monkeypatch):
    doc = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, "docs/architecture.md", "exec"), namespace)
    assert (tmp_path / "runs").is_dir() and namespace["model"] is not None
