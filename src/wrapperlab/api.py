"""What a notebook imports: the toolkit's entry points as plain functions over a run store.

Every function takes the store directory (``runs``, default ``./runs``) and returns what the CLI prints from:
stage results (``.run``: the run, ``.result``: its headline numbers, ``.reused``), typed analysis results (stored
under the analysed run and reused when asked again), or a model. Nothing here holds logic of its own: each call
is one function of a setting, the orchestration or the report. docs/architecture.md has a worked example (run in
the tests).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from torch import nn

from wrapperlab.orchestration.reproduce import Reproduction
from wrapperlab.runs.stage import Lab, Say, StageResult
from wrapperlab.runs.store import Run, RunStore
from wrapperlab.training.config import Runtime

if TYPE_CHECKING:
    from wrapperlab.audit.result import AuditResult
    from wrapperlab.settings.pcfg.results import ProbeRecord, PruneRecord, ReftCurves

__all__ = ["pretrain", "finetune", "prune", "probe", "reft", "reproduce", "report", "load_run", "audit"]


def _quiet(say: Say | None) -> Say:
    return say if say is not None else (lambda _: None)


def pretrain(profile: str = "quick", overrides: dict[str, Any] | None = None, runs: str | Path = "runs",
             runtime: Runtime | None = None, say: Say | None = None) -> StageResult:
    """Pretrain a PCFG model: ``profile`` plus dotted ``overrides`` (e.g. ``{"train.iters": 400, "data.prior":
    "low"}``); a finished run with the same config is reused."""
    from wrapperlab.settings.pcfg.configs import pretrain_config
    from wrapperlab.settings.pcfg.stages import pretrain as run_pretrain

    return run_pretrain(pretrain_config(profile, overrides), RunStore(runs), runtime or Runtime(progress=False),
                        _quiet(say))


def finetune(parent: str, profile: str = "quick", overrides: dict[str, Any] | None = None, runs: str | Path = "runs",
             runtime: Runtime | None = None, say: Say | None = None) -> StageResult:
    """Fine-tune PCFG run ``parent`` (id, prefix or path); ``overrides`` as for :func:`pretrain`, with ``train.lr``
    a number or L / M / S."""
    from wrapperlab.settings.pcfg.configs import finetune_config
    from wrapperlab.settings.pcfg.stages import finetune as run_finetune

    store = RunStore(runs)
    cfg = finetune_config(store.resolve(parent, field="parent").id, profile, overrides)
    return run_finetune(cfg, store, runtime or Runtime(progress=False), _quiet(say))


def prune(run: str, ks: Sequence[int] | None = None, n_eval: int = 1000, seed: int = 0, runs: str | Path = "runs",
          **settings: Any) -> PruneRecord:
    """Accuracies of a fine-tuned PCFG run after zeroing its top-K units by pretraining-task saliency, per K
    (``ks`` and ``settings``: :class:`~wrapperlab.analysis.pruning.PruneConfig` fields; unset ones keep its
    defaults)."""
    from wrapperlab.analysis.pruning import PruneConfig
    from wrapperlab.runs.profiles import validated
    from wrapperlab.settings.pcfg.analyses import prune_run
    from wrapperlab.settings.pcfg.results import PruneRecord

    cfg = validated(PruneConfig, {**settings, **({"ks": list(ks)} if ks is not None else {})})
    art = prune_run(Lab(RunStore(runs), _quiet(None)), run, cfg, n_eval=n_eval, seed=seed)
    return PruneRecord.from_json(art.data, str(art.json_path))


def probe(run: str, iters: int | None = None, seed: int = 0, runs: str | Path = "runs", **settings: Any) -> ProbeRecord:
    """Linear probes for the counts of O_PT and O_FT after every block of a PCFG run, beside a random-init twin
    (``iters`` and ``settings``: :class:`~wrapperlab.analysis.probing.ProbeConfig` fields; unset ones keep its
    defaults)."""
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.runs.profiles import validated
    from wrapperlab.settings.pcfg.analyses import probe_run
    from wrapperlab.settings.pcfg.results import ProbeRecord

    cfg = validated(ProbeConfig, {**settings, **({"iters": iters} if iters is not None else {})})
    art = probe_run(Lab(RunStore(runs), _quiet(None)), run, cfg, seed=seed)
    return ProbeRecord.from_json(art.data, str(art.json_path))


def reft(run: str, profile: str = "quick", overrides: dict[str, Any] | None = None,
         baselines: bool | Sequence[str] = False, runs: str | Path = "runs", runtime: Runtime | None = None,
         say: Say | None = None) -> ReftCurves:
    """Reverse fine-tuning of a fine-tuned PCFG run (and, with ``baselines``, Scr.+FT / Scr.): per curve its run,
    start and end accuracy, steps to 50 % / 90 %, and the curve (``.curves()``: by name)."""
    from wrapperlab.settings.pcfg.reft import run_reft

    return run_reft(RunStore(runs), run, profile, overrides, baselines, runtime or Runtime(progress=False),
                    _quiet(say)).summary()


def reproduce(spec: str | Path, profile: str = "quick", runs: str | Path = "runs", seeds: int | None = None,
              workers: int = 1, runtime: Runtime | None = None, say: Say | None = None,
              yes: bool = False) -> Reproduction:
    """Run a paper experiment from its spec (a shipped name or a YAML file), resumably; then :func:`report`.
    ``yes``: run a grid above the cap of ``orchestration.reproduce.GRID_CAP`` runs (refused otherwise)."""
    from wrapperlab.orchestration.reproduce import Executor
    from wrapperlab.orchestration.reproduce import reproduce as run_spec
    from wrapperlab.orchestration.spec import load_spec

    return run_spec(load_spec(spec), profile, RunStore(runs), seeds, runtime or Runtime(progress=False), _quiet(say),
                    executor=Executor(workers=workers), yes=yes)


def report(runs: str | Path = "runs") -> dict[str, Path]:
    """Write the HTML / Markdown report and ``summary.json`` over every reproduction in the store."""
    from wrapperlab.report.render import write_report

    return write_report(runs)


def load_run(ref: str, runs: str | Path = "runs") -> tuple[Run, nn.Module]:
    """A finished run of any setting and its trained model (eval mode), found through the setting that owns it."""
    from wrapperlab.settings.registry import for_run_kind

    run = RunStore(runs).resolve(ref)
    return run, for_run_kind(run.kind, ref=ref).load_model(run)


def audit(base: str | Path, finetuned: str | Path, capability: str | Path, control: str | Path | None = None,
          out: str | Path | None = None, say: Say | None = None, force: bool = False, **settings: Any) -> AuditResult:
    """Deleted or wrapped? Audit a fine-tuned local Hugging Face model against its base on a capability (JSON lines
    of prompt/answer), beside ``control`` (a model that never had it) when given; ``settings``: the fields of
    :class:`~wrapperlab.audit.config.AuditConfig` (``seeds``, ``device``, ``dtype``, ``relearn={"steps": ..., "lora":
    ...}``, ...), unset ones at its defaults. Returns every number as a typed result; with ``out``, also writes
    ``audit.json``, ``audit.md`` and ``audit.html`` there (checked to be a writable directory before anything is
    computed; one that holds an audit already is refused unless ``force``)."""
    from wrapperlab.audit.config import AuditConfig
    from wrapperlab.audit.run import run_audit
    from wrapperlab.errors import ConfigError
    from wrapperlab.report.audit import write_audit
    from wrapperlab.runs.profiles import validated

    cfg = validated(AuditConfig, {"progress": False, **settings})
    for name, value in (("base", base), ("finetuned", finetuned), ("capability", capability), ("control", control),
                        ("out", out)):
        if value is not None and not str(value).strip():
            raise ConfigError(name, "an empty path", "a path (leave control out to audit without one)")
    made = out is not None and not Path(out).exists()
    if out is not None:
        _check_out(Path(out), [Path(p) for p in (base, finetuned, control, capability) if p is not None], force)
    try:
        result = run_audit(base, finetuned, capability, cfg, control=control, say=_quiet(say))
    except BaseException:
        if made and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # a refused audit leaves no empty directory behind
        raise
    if out is not None:
        write_audit(result, out)
    return result


def _check_out(out: Path, inputs: list[Path], force: bool) -> None:
    """``out`` is a directory the audit can write and that holds none of its inputs — checked before any model is
    loaded, so a read-only place or a typo costs nothing, not the hours of the audit."""
    from wrapperlab.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError("out", str(out), "a directory for the audit's files (this is a file)")
    if (out / "audit.json").exists() and not force:  # a re-run replaced an earlier audit without a word
        raise ConfigError("out", str(out), "a directory without an audit (this one holds one: --force replaces it)")
    where = out.resolve()
    for p in inputs:
        if p.exists() and (where == p.resolve() or (p.is_dir() and p.resolve() in where.parents)):
            raise ConfigError("out", str(out), f"a directory apart from the audit's inputs (this is or is in {p})")
    out.mkdir(parents=True, exist_ok=True)
    probe = out / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")  # a directory that exists but is not writable fails here, not at the end
    probe.unlink()
