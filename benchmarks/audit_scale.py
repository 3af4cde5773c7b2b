"""How long `wrapperlab audit` takes on a GPT-2-small-sized pair (124 M parameters) on this machine, full
fine-tuning vs LoRA, and where the time goes.

A randomly initialised GPT-2-small (12 x 768, vocabulary 50,257; nothing downloaded) is written as a Hugging Face
directory with a word-level tokenizer and read back natively through ``transformers`` exactly as a user's model is.
Each part of an audit is timed once — loading, scoring the held-out half, a relearning step (full fine-tuning and
LoRA), the pruning sweep, the probes — and the parts are added up to a default audit (3 seeds, 100 relearning steps
of 16 records, probes of 1,000 steps, K up to 15). Absolute times are this machine's (noisy, shared: the script says
how many threads it had); the ratios say what LoRA buys and which part to shrink (``--steps``, ``--seeds``, fewer
records) or to move to ``--device cuda``.

    python benchmarks/audit_scale.py [--records 64] [--prompt 48] [--answer 8] [--steps 3] [--lora 16] [--device cpu]
                                   [--dtype auto | fp32 bf16 ...]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from wrapperlab.audit.config import RelearnConfig
from wrapperlab.audit.encode import encode
from wrapperlab.audit.measure import PRUNE_KS, probe_answer, prune_curve, relearn, score
from wrapperlab.audit.models import load_model, load_tokenizer, resolve_dtype
from wrapperlab.data.capability import load_capability


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t0, out


def write_pair(tmp: Path, records: int, prompt: int, answer: int) -> tuple[Path, Path]:
    """A random-init GPT-2-small directory with a word-level tokenizer, and a capability file of random words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    cfg = GPT2Config()  # the GPT-2-small shape: 124 M parameters
    words = [f"w{i}" for i in range(cfg.vocab_size)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(tmp / "model")
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="w0", eos_token="w1").save_pretrained(tmp / "model")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(2, cfg.vocab_size, (records, prompt + answer), generator=gen).tolist()
    (tmp / "cap.jsonl").write_text("".join(
        json.dumps({"prompt": " ".join(words[i] for i in row[:prompt]),
                    "answer": " ".join(words[i] for i in row[prompt:])}) + "\n" for row in ids))
    return tmp / "model", tmp / "cap.jsonl"


def time_parts(path: Path, cap_file: Path, dtype: torch.dtype, args) -> tuple[dict[str, float], dict[str, float]]:
    """Each part of an audit timed once in ``dtype``: (every part's seconds, a relearning step's seconds per
    method)."""
    t_load, lm = timed(load_model, path, "BASE", dtype, args.device)
    data = encode(load_capability(cap_file), load_tokenizer(path, "BASE"), lm.config.n_positions)
    attack_idx, held_idx = load_capability(cap_file).split(0)
    attack, held = data.take(attack_idx), data.take(held_idx)
    t_score, _ = timed(score, lm, held)
    steps = {}
    for name, lora in (("full fine-tuning", None), (f"LoRA r={args.lora}", args.lora)):
        t_run, _ = timed(relearn, lm, (attack, held), RelearnConfig(steps=args.steps, lora=lora), 0)
        steps[name] = (t_run - t_score) / args.steps  # relearn scores the held-out half once at step 0
    t_prune, _ = timed(prune_curve, lm, attack, held)
    t_probe, _ = timed(probe_answer, {"finetuned": lm, "base": lm, "random_init": lm.twin(0), "control": lm}, attack,
                       held, 1000, 0)
    parts = {"load one model (transformers)": t_load, "score the held-out half": t_score,
             **{f"one relearning step, {k} (batch 16)": v for k, v in steps.items()},
             f"pruning sweep (saliency + {len(PRUNE_KS)} scorings)": t_prune, "probes (4 models, 1,000 steps)": t_probe}
    return parts, steps


def default_audit(parts: dict[str, float], step: float, runs: int) -> tuple[float, float]:
    """A default audit's seconds (3 seeds, ``runs`` relearning runs a seed) from its parts, and relearning's share."""
    t_load, t_score, t_prune, t_probe = (parts[k] for k in ("load one model (transformers)", "score the held-out half",
                                                            next(k for k in parts if k.startswith("pruning")),
                                                            next(k for k in parts if k.startswith("probes"))))
    run = RelearnConfig().steps * step + len(RelearnConfig().eval_at) * t_score
    per_seed = runs * run + runs * t_prune + t_probe + 3 * t_score
    return 3 * per_seed + (runs + 1) * t_load, runs * run / per_seed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=64, help="capability records (half attack, half held out)")
    ap.add_argument("--prompt", type=int, default=48, help="prompt tokens per record")
    ap.add_argument("--answer", type=int, default=8, help="answer tokens per record")
    ap.add_argument("--steps", type=int, default=3, help="relearning steps timed (the mean is used)")
    ap.add_argument("--lora", type=int, default=16, help="the LoRA rank timed beside full fine-tuning")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16", "fp16"],
                    help="one or more: each is timed in this run (e.g. --dtype fp32 bf16 for their ratio)")
    args = ap.parse_args()
    dtypes = [resolve_dtype(d, args.device) for d in args.dtype]
    totals = {}
    with tempfile.TemporaryDirectory() as tmp:
        path, cap_file = write_pair(Path(tmp), args.records, args.prompt, args.answer)
        for dtype in dtypes:
            name = str(dtype).removeprefix("torch.")
            parts, steps = time_parts(path, cap_file, dtype, args)
            print(f"GPT-2-small shape (124 M parameters) in {name}; {args.records} records of {args.prompt} + "
                  f"{args.answer} tokens; {torch.get_num_threads()} threads on {args.device}")
            for part, seconds in parts.items():
                print(f"  {part:52s} {seconds:9.1f} s")
            for method, step in steps.items():
                for control, runs in (("without --control", 2), ("with --control", 3)):
                    totals[name, method, control], share = default_audit(parts, step, runs)
                    print(f"default audit, {name}, {method}, {control}: {totals[name, method, control] / 60:.0f} min "
                          f"(relearning {100 * share:.0f} % of it)")
            full, lora = list(steps)
            print(f"ratio full / LoRA ({name}): relearning step {steps[full] / steps[lora]:.2f}, default audit with "
                  f"--control {totals[name, full, 'with --control'] / totals[name, lora, 'with --control']:.2f}")
    names = list(dict.fromkeys(k[0] for k in totals))
    for other in names[1:]:
        ratios = [totals[names[0], m, c] / totals[other, m, c] for (n, m, c) in totals if n == other]
        print(f"ratio {names[0]} / {other}, default audits: {min(ratios):.2f} to {max(ratios):.2f}")


if __name__ == "__main__":
    main()
