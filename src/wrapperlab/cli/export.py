"""``wrapperlab export RUN OUT``: a finished run's model as a Hugging Face directory (models/hf.py), for tools that
read that format; TransformerLens users call ``wrapperlab.models.tl.to_transformer_lens`` on the loaded model."""

from __future__ import annotations

from pathlib import Path

from wrapperlab.cli.common import add_examples
from wrapperlab.errors import ConfigError


def add_parsers(sub) -> None:
    p = sub.add_parser("export", help="write a finished run's model as a Hugging Face directory (config.json, "
                                      "model.safetensors, tokenizer.json where the setting has one)")
    p.add_argument("run", help="run id or directory")
    p.add_argument("out", help="directory to write (must not exist or be empty)")
    p.add_argument("--runs", default="runs", help="run store (default: runs)")
    add_examples(sub, {"export": ["wrapperlab export stories-finetune-81c0 exported/",
                                  "wrapperlab export finetune-1ea5 pcfg-hf/ --runs runs/"]})


def export(args) -> int:
    from wrapperlab.models.hf import export_hf
    from wrapperlab.runs.store import RunStore
    from wrapperlab.settings.registry import for_run_kind

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError("out", str(out), "a new or empty directory (nothing is overwritten)")
    run = RunStore(args.runs).resolve(args.run, field="run")
    setting = for_run_kind(run.kind, ref=args.run)
    model = setting.load_model(run)
    tokenizer, special = setting.tokenizer(run) if setting.tokenizer else (None, {})
    export_hf(model, out, tokenizer=tokenizer, special_tokens=special)
    family = "Llama" if model.cfg.positions == "rope" else "GPT-2"
    print(f"{run.id} -> {out} ({family} layout{', with its tokenizer' if tokenizer else ', no tokenizer'}): "
        f"transformers.AutoModelForCausalLM.from_pretrained({str(out)!r})")
    return 0


COMMANDS = {"export": export}
